#!/usr/bin/env bash
# Warehouse export benchmark (release build): rows/s and bytes per event of the Parquet export
# against the raw JSON (NDJSON written the same way is the same-run baseline); the PostgreSQL
# warehouse stage too, into a fresh database on the test PostgreSQL server (scripts/pg.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p touchpoint-tests --bin warehouse-bench
if [ -z "${TOUCHPOINT_BENCH_PG_URL:-}" ] && ADMIN_URL="$(scripts/pg.sh start 2>/dev/null)"; then
  DB="tp_wh_bench_$$"
  psql -q "$ADMIN_URL" -c "CREATE DATABASE $DB" >/dev/null
  trap 'psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true' EXIT
  export TOUCHPOINT_BENCH_PG_URL="${ADMIN_URL%/*}/$DB"
fi
N="${N:-100000}" "${CARGO_TARGET_DIR:-target}"/release/warehouse-bench
