#!/usr/bin/env bash
# Starts (or reuses) a throwaway PostgreSQL server on 127.0.0.1 for the tests and prints its URL.
# Usage: scripts/pg.sh start|stop|url    (port: TOUCHPOINT_TEST_PG_PORT, default 54329)
set -euo pipefail
port="${TOUCHPOINT_TEST_PG_PORT:-54329}"
dir="${TOUCHPOINT_TEST_PG_DIR:-/tmp/touchpoint-pg-$port}"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
url="postgres://touchpoint@127.0.0.1:$port/postgres"

as_pg() {
  # PostgreSQL refuses to run as root; use the postgres system user the Debian package creates.
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-start}" in
  start)
    [ -n "$bin" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
    if as_pg "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" 2>/dev/null; then echo "$url"; exit 0; fi
    if [ ! -f "$dir/PG_VERSION" ]; then
      mkdir -p "$dir"
      [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
      as_pg "$bin/initdb" -D "$dir" -U touchpoint --auth=trust -E UTF8 >/dev/null
    fi
    # Tests want speed, not crash safety of the throwaway cluster: fsync off here only (benchmarks that
    # want the database to be the limit set TOUCHPOINT_TEST_PG_FSYNC=on, with their own port and dir).
    as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-h 127.0.0.1 -p $port -k $dir -c fsync=${TOUCHPOINT_TEST_PG_FSYNC:-off} -c max_connections=300" start >/dev/null
    echo "$url"
    ;;
  stop)
    as_pg "$bin/pg_ctl" -D "$dir" -m fast stop >/dev/null 2>&1 || true
    ;;
  url) echo "$url" ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
