#!/usr/bin/env bash
# Prints the browser SDK's transfer sizes (raw, gzip -9, brotli -q 11) against peer SDKs.
# usage: scripts/bench-sdk-size.sh [--build]   (--build runs scripts/build-sdk.sh first)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = --build ] && scripts/build-sdk.sh
D=collector-wasm/dist
[ -f "$D/touchpoint_bg.wasm" ] || { echo "no $D: run scripts/build-sdk.sh" >&2; exit 1; }
have_brotli=0
command -v brotli >/dev/null && have_brotli=1
br() { if [ $have_brotli = 1 ]; then brotli -c -q 11 "$1" | wc -c; else echo "n/a"; fi; }
gz() { gzip -9 -c "$1" | wc -c; }
row() { printf "%-30s %9s %9s %9s\n" "$@"; }
small_gzip=0
total() { # LABEL FILES…   prints one row per file and the total
  local label=$1; shift
  local raw=0 g=0 b=0 r gg bb
  for f in "$@"; do
    r=$(wc -c <"$f"); gg=$(gz "$f"); bb=$(br "$f")
    row "$(basename "$f")" "$r" "$gg" "$bb"
    raw=$((raw + r)); g=$((g + gg)); [ "$bb" = n/a ] || b=$((b + bb))
  done
  [ $have_brotli = 1 ] || b=n/a
  row "= $label" "$raw" "$g" "$b"
  last_gzip=$g
}
row file raw gzip-9 brotli
total "small build (stub+glue+wasm)" "$D/snippet.js" "$D/touchpoint.js" "$D/touchpoint_bg.wasm"
small_gzip=$last_gzip
echo
total "dev build (stub+glue+wasm)" "$D/snippet.js" "$D/touchpoint.dev.js" "$D/touchpoint.dev_bg.wasm"
[ $have_brotli = 1 ] || echo "(brotli CLI not installed: apt-get install brotli for the brotli column)"
awk -v g="$small_gzip" 'BEGIN {
  printf "\nsmall build total gzip -9: %.1f KB (target <= 15 KB); peers: Snowplow browser-tracker 17.4 KB, Segment analytics-next 31.3 KB\n", g/1000
  exit (g/1000 <= 15 ? 0 : 1)
}'
