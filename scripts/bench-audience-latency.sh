#!/usr/bin/env bash
# Acknowledged message → audience_entered latency on a single node (target p99 ≤ 50 ms): core
# in-process (release build), `integration_connected` sent paced (one at a time, RATE/s) and in a
# burst, entry observed by polling audience_events on a separate read-only connection. SQLite always;
# PostgreSQL too when TOUCHPOINT_BENCH_PG_URL is set (scripts/pg.sh start, which runs fsync=off).
# Knobs: K (300 profiles per variant), RATE (20), BURST_CONCURRENCY (16), POLL_US (1000).
# Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p touchpoint-tests --bin audience-latency-bench
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"${CARGO_TARGET_DIR:-target}"/release/audience-latency-bench
