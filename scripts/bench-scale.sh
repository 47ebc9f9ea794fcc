#!/usr/bin/env bash
# Processing throughput on one PostgreSQL with fsync ON (a separate throwaway cluster on port 54339):
# 1 node with a one-partition log (baseline); 1 and 2 nodes with 8 partitions and one profiles stage;
# 1 and 2 nodes with 8 partitions and one profiles stage per partition.
# Knobs: MESSAGES (20000), ROUNDS (2), DELAY_MS (0: the processing nodes reach PostgreSQL through a
# proxy on 127.0.0.1 that delays each chunk this long each way), ONLY (run one setup, by index),
# VERBOSE (print the cursors every second while draining), NODE_LOG (the processing nodes' RUST_LOG).
# NODE_CPU (e.g. 0.4: each processing node gets that share of one core in a cgroup of its own, as
# on separate machines; needs root and cgroup v1), FILL_FIRST=1 (the processing nodes are stopped while
# the log fills; the clock times the draining alone).
# Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
url=$(TOUCHPOINT_TEST_PG_PORT=54339 TOUCHPOINT_TEST_PG_DIR=/tmp/touchpoint-pg-fsync TOUCHPOINT_TEST_PG_FSYNC=on scripts/pg.sh start)
cargo build --release -q -p touchpoint-tests --bin scale-bench --bin tp-server
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
TOUCHPOINT_BENCH_PG_PIDFILE=/tmp/touchpoint-pg-fsync/postmaster.pid TOUCHPOINT_BENCH_PG_URL="$url" "${CARGO_TARGET_DIR:-target}"/release/scale-bench
