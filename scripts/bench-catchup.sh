#!/usr/bin/env bash
# Stage CPU per message: an ingest-only node fills a fresh SQLite file with /v1/batch for FILL_SECS,
# then a processing node starts on the same file; the run ends when every stage stands still (polled
# on /metrics, at most 5 minutes). Prints the messages filled and processed (more than filled when
# a stage sends messages of its own, like the lead scores), the wall time, and the stages'
# CPU (their `tp-pipeline*` and `tp-sqlite-bg*` threads, utime + stime from /proc) per message.
# Every message is a `feature_toggled` track with a new anonymousId, so each one makes a profile;
# TOUCHPOINT_BENCH_WORKLOAD=mixed sends scripts/bench/mixed.lua instead (page, identify, group and
# two tracks per person, some people merging).
#
# Usage: scripts/bench-catchup.sh [FILL_SECS (4)]; the server's environment passes through, e.g.
#        TOUCHPOINT_BACKGROUND_THREADS=2 scripts/bench-catchup.sh. Uses target/release/tp-server (or
#        $CARGO_TARGET_DIR/release); build it first. Linux only; talks only to 127.0.0.1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${CARGO_TARGET_DIR:-$root/target}/release/tp-server"
fill="${1:-4}"
workload="$root/scripts/bench/${TOUCHPOINT_BENCH_WORKLOAD:-batch}.lua"
[ -f "$workload" ] || { echo "no such workload: $workload" >&2; exit 1; }
[ -x "$bin" ] || { echo "build it first: cargo build --release -p touchpoint-tests --bin tp-server" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is missing (scripts/bench-ingest.sh installs it)" >&2; exit 1; }
work="$(mktemp -d /tmp/tp-catchup.XXXXXX)"
pid=""
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
start() {
  DATABASE_URL="sqlite://$work/catchup.db" TOUCHPOINT_BIND="127.0.0.1:$port" TOUCHPOINT_PLAN="$root/TRACKING_PLAN.md" \
    TOUCHPOINT_SOURCES="web=wk_bench" TOUCHPOINT_ADMIN_TOKEN="catchup-admin-token-$RANDOM$RANDOM" RUST_LOG=warn \
    TOUCHPOINT_RATE_LIMIT_PER_SECOND=0 "$@" "$bin" serve > "$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && return 0; sleep 0.1; done
  echo "server not ready; log: $(tail -5 "$work/server.log")" >&2; exit 1
}
start env TOUCHPOINT_PROCESS=false
auth="$(printf 'wk_bench:' | base64)"
timeout 120 wrk -t1 -c16 -d"${fill}s" -H "Authorization: Basic $auth" -s "$workload" \
  "http://127.0.0.1:$port/v1/batch" -- "fill$RANDOM" 20 > /dev/null
filled="$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^touchpoint_commit_rows_total/ {s += $2} END {print s + 0}')"
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
t0="$(date +%s.%N)"
start env
processed() { curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^touchpoint_stage_processed_total\{stage="(profiles|audiences)"\}/ {print $1, $2}' | sort | tr '\n' ' '; }
last=""; same=0
for _ in $(seq 1 600); do  # at most 5 minutes
  now="$(processed)"
  if [ "$now" = "$last" ]; then same=$((same + 1)); else same=0; fi
  [ "$same" -ge 3 ] && break
  last="$now"; sleep 0.5
done
t1="$(date +%s.%N)"
msgs="$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^touchpoint_stage_processed_total\{stage="profiles"\}/ {print $2}')"
ticks="$(for t in /proc/$pid/task/*; do case "$(cat "$t/comm")" in tp-pipeline*|tp-sqlite-bg*) awk '{print $14 + $15}' "$t/stat";; esac; done | awk '{s += $1} END {print s + 0}')"
# The wall time leaves out the three still polls (1.5 s) that told the stages had finished.
python3 -c "m = float('$msgs'); w = $t1 - $t0 - 1.5; print(f'filled=$filled processed={m:.0f} wall={w:.1f}s messages_per_s={m / w:.0f} stage_cpu_per_message={$ticks * 1e4 / m:.1f}us')"
