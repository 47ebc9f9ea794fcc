#!/usr/bin/env bash
# Ingestion benchmark: wrk against a hello-world axum server (the baseline) and against touchpoint's
# /v1/track (one message per request) and /v1/batch (20 per request) on a fresh SQLite file, and on
# PostgreSQL too when TOUCHPOINT_BENCH_PG_URL is set (e.g. the URL `scripts/pg.sh start` prints).
#
# Every 200 from touchpoint means "durably committed". After each touchpoint run the server is killed
# with SIGKILL and the rows are counted in the database: the run fails if fewer messages are stored
# than were acknowledged (rows beyond the acks are the requests still in flight when wrk stopped).
#
# Usage: scripts/bench-ingest.sh          (prints a markdown table on stdout; progress on stderr)
# Knobs: TOUCHPOINT_BENCH_DURATION (10s), TOUCHPOINT_BENCH_WARMUP (3s), TOUCHPOINT_BENCH_CONNECTIONS (64),
#        TOUCHPOINT_BENCH_BATCH (20), TOUCHPOINT_BENCH_PG_URL (unset: PostgreSQL rows skipped),
#        TOUCHPOINT_BENCH_IDS (ascending; random: a random v4 UUID per messageId, as Segment's
#        libraries send), TOUCHPOINT_BENCH_SKIP_BUILD=1 (reuse target/release binaries). Run it on an otherwise idle
#        machine: the load average before the runs is printed with the table.
# Talks only to 127.0.0.1. Needs root to apt-get install wrk when it is missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
duration="${TOUCHPOINT_BENCH_DURATION:-10s}"
warmup="${TOUCHPOINT_BENCH_WARMUP:-3s}"
conns="${TOUCHPOINT_BENCH_CONNECTIONS:-64}"
per_batch="${TOUCHPOINT_BENCH_BATCH:-20}"
pg_url="${TOUCHPOINT_BENCH_PG_URL:-}"
ids="${TOUCHPOINT_BENCH_IDS:-ascending}"
case "$ids" in ascending|random) ;; *) echo "[bench] error: TOUCHPOINT_BENCH_IDS is ascending or random, not $ids" >&2; exit 1 ;; esac
write_key="wk_bench"
admin_token="bench-admin-token-$RANDOM$RANDOM"
bin="${CARGO_TARGET_DIR:-$root/target}/release"

log() { echo "[bench] $*" >&2; }
die() { echo "[bench] error: $*" >&2; exit 1; }

work="$(mktemp -d /tmp/tp-bench.XXXXXX)"
server_pid=""
pg_databases=()
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  for db in "${pg_databases[@]}"; do
    psql -q "$pg_url" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools ----------------------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "wrk is missing; install it (apt-get install -y wrk) or run as root"
  log "installing wrk"
  # Wait (bounded) for another apt/dpkg run instead of failing on its lock.
  apt-get -o DPkg::Lock::Timeout=600 install -y wrk >&2 \
    || { apt-get -o DPkg::Lock::Timeout=600 update >&2 && apt-get -o DPkg::Lock::Timeout=600 install -y wrk >&2; }
fi
command -v python3 >/dev/null 2>&1 || die "python3 is needed (it counts the stored rows)"
if [ -n "$pg_url" ]; then command -v psql >/dev/null 2>&1 || die "psql is needed for TOUCHPOINT_BENCH_PG_URL"; fi

if [ "${TOUCHPOINT_BENCH_SKIP_BUILD:-0}" = 1 ]; then
  log "TOUCHPOINT_BENCH_SKIP_BUILD=1: using the release binaries already in $bin"
else
  log "building release binaries"
  (cd "$root" && cargo build --release -p touchpoint-tests --bin tp-server --bin hello-axum >&2)
fi
[ -x "$bin/tp-server" ] && [ -x "$bin/hello-axum" ] || die "release binaries missing in $bin"

# --- helpers --------------------------------------------------------------------------------------
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_ready PORT: until the port accepts connections (at most 30 s), and the server is alive.
wait_ready() {
  local port="$1" i
  for i in $(seq 1 300); do
    kill -0 "$server_pid" 2>/dev/null || die "server exited during start-up (log: $server_log)"
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  die "server on port $port not ready after 30 s"
}

stop_server() {
  # SIGKILL on purpose: the stored rows are counted after a crash, not after a graceful drain.
  kill -9 "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

start_hello() {
  port="$(free_port)"
  server_log="$work/hello.log"
  "$bin/hello-axum" "$port" >"$server_log" 2>&1 &
  server_pid=$!
  wait_ready "$port"
}

# start_touchpoint DATABASE_URL (the per-write-key rate limit is off: all load comes from one key)
start_touchpoint() {
  port="$(free_port)"
  server_log="$work/touchpoint-$port.log"
  DATABASE_URL="$1" TOUCHPOINT_BIND="127.0.0.1:$port" TOUCHPOINT_PLAN="$root/TRACKING_PLAN.md" \
    TOUCHPOINT_SOURCES="web=$write_key" TOUCHPOINT_ADMIN_TOKEN="$admin_token" RUST_LOG=warn \
    TOUCHPOINT_RATE_LIMIT_PER_SECOND=0 \
    "$bin/tp-server" serve >"$server_log" 2>&1 &
  server_pid=$!
  wait_ready "$port"
  local i
  for i in $(seq 1 100); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz"; then return 0; fi
    sleep 0.1
  done
  die "touchpoint not ready (log: $server_log)"
}

# run_wrk OUT LUA PATH RUN_ID PER_REQUEST DURATION: wrk's output in OUT (the BENCH line is ours).
run_wrk() {
  local out="$1" lua="$2" path="$3" run_id="$4" per="$5" dur="$6"
  local auth
  auth="$(printf '%s:' "$write_key" | base64)"
  # wrk stops by itself after DUR; timeout(1) bounds it anyway if the server wedges.
  timeout 120 wrk -t1 -c"$conns" -d"$dur" --latency --timeout 10s \
    -H "Authorization: Basic $auth" -s "$root/scripts/bench/$lua" \
    "http://127.0.0.1:$port$path" -- "$run_id" "$per" "$ids" >"$out" 2>&1 \
    || { cat "$out" >&2; die "wrk failed"; }
  grep -q '^BENCH ' "$out" || { cat "$out" >&2; die "wrk printed no summary"; }
}

# field FILE NAME: a value of the BENCH line.
field() { sed -n "s/^BENCH .*\b$2=\([0-9]*\).*/\1/p" "$1"; }

# count_rows DATABASE_URL RUN_ID: prints "stored not_accepted" for the run's messageIds.
count_rows() {
  local url="$1" run_id="$2"
  case "$url" in
    sqlite://*)
      python3 - "${url#sqlite://}" "$run_id" <<'PY'
import os, sqlite3, sys
# The log is the file next to the state file (`x.db` -> `x-log.db`; one file before the split).
# A read-write open replays the WAL the killed server left behind, as a restart would.
root, ext = os.path.splitext(sys.argv[1])
log = root + "-log" + ext
db = sqlite3.connect(log if os.path.exists(log) else sys.argv[1])
like = sys.argv[2] + "-%"
stored = db.execute("SELECT count(*) FROM messages WHERE message_id LIKE ?", (like,)).fetchone()[0]
other = db.execute("SELECT count(*) FROM messages WHERE message_id LIKE ? AND status <> 'accepted'",
                   (like,)).fetchone()[0]
print(stored, other)
PY
      ;;
    postgres://*)
      psql -tA "$url" -c "SELECT count(*), count(*) FILTER (WHERE status <> 'accepted') FROM messages \
        WHERE message_id LIKE '$run_id-%'" | tr '|' ' '
      ;;
  esac
}

# fresh_db KIND NAME: prints a new, empty database URL.
fresh_db() {
  case "$1" in
    sqlite) echo "sqlite://$work/$2.db" ;;
    postgres)
      local db="tp_bench_$2_$RANDOM$RANDOM"
      psql -q "$pg_url" -c "CREATE DATABASE $db" >/dev/null
      pg_databases+=("$db")
      echo "${pg_url%/*}/$db"
      ;;
  esac
}

rows=()
hello_track_rps=""
hello_batch_rps=""
failed=0

fmt_ms() { python3 -c "import sys; print(f'{int(sys.argv[1])/1000:.2f} ms')" "$1"; }

# scenario LABEL KIND(hello|sqlite|postgres) LUA PATH PER_REQUEST TARGET_EV_S
scenario() {
  local label="$1" kind="$2" lua="$3" path="$4" per="$5" target="$6"
  local name="${path##*/}" url="" run_id
  run_id="bench$RANDOM$RANDOM"
  log "scenario: $label"
  if [ "$kind" = hello ]; then
    start_hello
  else
    url="$(fresh_db "$kind" "$name")"
    start_touchpoint "$url"
  fi
  run_wrk "$work/warm.out" "$lua" "$path" "warm$run_id" "$per" "$warmup"
  local out="$work/$kind-$name.out"
  run_wrk "$out" "$lua" "$path" "$run_id" "$per" "$duration"
  stop_server
  sed -n '/Latency Distribution/,/requests in/p' "$out" >&2

  local requests dur_us status_err conn_err read_err write_err p50 p99
  requests="$(field "$out" requests)"; dur_us="$(field "$out" duration_us)"
  status_err="$(field "$out" status_errors)"; conn_err="$(field "$out" connect_errors)"
  read_err="$(field "$out" read_errors)"; write_err="$(field "$out" write_errors)"
  p50="$(field "$out" p50_us)"; p99="$(field "$out" p99_us)"
  local ok=$((requests - status_err))
  local rps evs
  rps="$(python3 -c "import sys; print(round(int(sys.argv[1])/(int(sys.argv[2])/1e6)))" "$ok" "$dur_us")"
  evs=$((rps * per))

  local ratio check verdict
  if [ "$kind" = hello ]; then
    [ "$name" = track ] && hello_track_rps="$rps" || hello_batch_rps="$rps"
    ratio="1.00"; check="n/a (stores nothing)"; verdict="baseline"
  else
    local base="$hello_track_rps"
    [ "$name" = batch ] && base="$hello_batch_rps"
    ratio="$(python3 -c "import sys; print(f'{int(sys.argv[1])/int(sys.argv[2]):.2f}')" "$rps" "$base")"
    local acked=$((ok * per)) counts stored other
    counts="$(count_rows "$url" "$run_id")" || die "cannot count the stored rows"
    read -r stored other <<<"$counts"
    local in_flight=$(( (conns + conn_err + read_err + write_err) * per ))
    check="acked $acked, stored $stored"
    if [ "$stored" -lt "$acked" ]; then
      check="**FAIL** $check (acknowledged but not stored)"; failed=1
    elif [ "$stored" -gt $((acked + status_err * per + in_flight)) ]; then
      check="**FAIL** $check (more rows than requests sent)"; failed=1
    elif [ "$other" -ne 0 ]; then
      check="**FAIL** $check ($other not 'accepted' by the plan)"; failed=1
    else
      check="ok: $check (+$((stored - acked)) in flight at cut-off)"
    fi
    [ "$status_err" -eq 0 ] || check="$check; $status_err non-2xx"
    local goal="≥ $((target / 1000))k ev/s" p99_ok=1
    if [ "$name" = track ]; then
      goal="$goal, p99 ≤ 10 ms"
      [ "$p99" -le 10000 ] || p99_ok=0
    fi
    if [ "$evs" -ge "$target" ] && [ "$p99_ok" = 1 ]; then
      verdict="met ($goal)"
    else
      verdict="**missed** ($goal)"
    fi
  fi
  rows+=("| $label | $rps | $evs | $(fmt_ms "$p50") | $(fmt_ms "$p99") | $ratio | $check | $verdict |")
}

# --- runs -----------------------------------------------------------------------------------------
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
# The disk's fdatasync rate where the SQLite file lives bounds the group-commit rate: record it.
fsync_rate="$(python3 - "$work" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
n, start = 0, time.monotonic()
while time.monotonic() - start < 1.0:
    os.write(fd, b"x" * 4096)
    os.fdatasync(fd)
    n += 1
os.close(fd)
os.unlink(path)
print(round(n / (time.monotonic() - start)))
PY
)"
scenario "hello-axum POST /v1/track (1 msg)" hello track.lua /v1/track 1 0
scenario "hello-axum POST /v1/batch ($per_batch msgs)" hello batch.lua /v1/batch "$per_batch" 0
# /v1/track's target: 25k events/s for an ingest-only node (the first release), 20k with the pipeline
# running in the same process (issue 13); both with p99 ≤ 10 ms.
track_target=20000
case "${TOUCHPOINT_PROCESS:-true}" in false | 0 | no | off) track_target=25000 ;; esac
scenario "touchpoint SQLite /v1/track (1 msg)" sqlite track.lua /v1/track 1 "$track_target"
scenario "touchpoint SQLite /v1/batch ($per_batch msgs)" sqlite batch.lua /v1/batch "$per_batch" 50000
if [ -n "$pg_url" ]; then
  scenario "touchpoint PostgreSQL (fsync=off?) /v1/track (1 msg)" postgres track.lua /v1/track 1 "$track_target"
  scenario "touchpoint PostgreSQL (fsync=off?) /v1/batch ($per_batch msgs)" postgres batch.lua /v1/batch "$per_batch" 50000
fi

fsync_note=""
if [ -n "$pg_url" ]; then
  fsync="$(psql -tA "$pg_url" -c 'SHOW fsync' 2>/dev/null || echo '?')"
  fsync_note="PostgreSQL server fsync=$fsync"
fi

echo "wrk -t1 -c$conns -d$duration --latency (after a $warmup warm-up), $(nproc) cores shared by wrk and the server;"
echo "load average before the runs: $load_before, fdatasync $fsync_rate/s on the SQLite disk (a busy machine skews both). $fsync_note"
echo
echo "| Scenario | req/s | events/s | p50 | p99 | ratio to hello-world req/s | stored vs acknowledged | target |"
echo "|---|---:|---:|---:|---:|---:|---|---|"
for r in "${rows[@]}"; do
  if [ -n "$pg_url" ]; then r="${r//fsync=off?/fsync=$fsync}"; fi
  echo "$r"
done
[ "$failed" = 0 ] || die "some acknowledged messages were not stored (see the table)"
