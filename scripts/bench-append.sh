#!/usr/bin/env bash
# Append throughput on PostgreSQL, 1 log partition vs 8, same run, with fsync ON (a separate
# throwaway cluster on port 54339, so commits are the limit). Knobs: MESSAGES (40000), WRITERS (8),
# BATCH (50), ROUNDS (3). Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
url=$(TOUCHPOINT_TEST_PG_PORT=54339 TOUCHPOINT_TEST_PG_DIR=/tmp/touchpoint-pg-fsync TOUCHPOINT_TEST_PG_FSYNC=on scripts/pg.sh start)
cargo build --release -q -p touchpoint-tests --bin append-bench
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
TOUCHPOINT_BENCH_PG_URL="$url" "${CARGO_TARGET_DIR:-target}"/release/append-bench
