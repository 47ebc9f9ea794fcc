#!/usr/bin/env bash
# The whole pipeline under load: edge worker (workerd) → core (in-process, release build) → webhook
# destination (in-process fake receiver). Prints events/s accepted by the edge (against the same load
# on an instant fake core, same run), events/s delivered, end-to-end latency p50/p99 and the share
# delivered. SQLite always; PostgreSQL too when TOUCHPOINT_BENCH_PG_URL is set (scripts/pg.sh start,
# which runs fsync=off). Knobs: BATCHES (200), SIZE (20), CONCURRENCY (8), WAIT_SECS (120),
# POLL_MS (500, TOUCHPOINT_DELIVERY_POLL_MS's default). Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f edge-worker/build/index.js ] || scripts/build-edge.sh
cargo build --release -q -p touchpoint-tests --bin pipeline-bench
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"${CARGO_TARGET_DIR:-target}"/release/pipeline-bench
