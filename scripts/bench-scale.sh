#!/usr/bin/env bash
# Processing throughput, 1 vs 2 processing nodes on one PostgreSQL with fsync ON (a separate
# throwaway cluster on port 54339, so the database, not the CPU, is meant to be the limit).
# Knobs: MESSAGES (20000), ROUNDS (2). Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
url=$(TOUCHPOINT_TEST_PG_PORT=54339 TOUCHPOINT_TEST_PG_DIR=/tmp/touchpoint-pg-fsync TOUCHPOINT_TEST_PG_FSYNC=on scripts/pg.sh start)
cargo build --release -q -p touchpoint-tests --bin scale-bench --bin tp-server
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
TOUCHPOINT_BENCH_PG_URL="$url" "${CARGO_TARGET_DIR:-target}"/release/scale-bench
