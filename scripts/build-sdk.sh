#!/usr/bin/env bash
# Builds the browser SDK into collector-wasm/dist (served by core under /sdk/):
#   touchpoint.js + touchpoint_bg.wasm          the small build
#   touchpoint.dev.js + touchpoint.dev_bg.wasm  with tracking-plan validation (feature dev-validate)
#   snippet.js                                  the inline-able stub
# No wasm-bindgen: the glue is the hand-written collector-wasm/js/touchpoint.js (minified), and the
# wasm is cargo's output through `wasm-opt -Oz`.
# Needs: the wasm32 target, npm binaryen + esbuild (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/binaryen/bin:$HOME/.cargo/bin:$PATH"
WASM_OPT=node_modules/binaryen/bin/wasm-opt
ESBUILD=node_modules/.bin/esbuild
for tool in "$WASM_OPT" "$ESBUILD"; do
  command -v "$tool" >/dev/null || { echo "build-sdk: $tool missing: run scripts/setup.sh" >&2; exit 1; }
done
OUT=collector-wasm/dist
TMP=target/sdk-build
rm -rf "$TMP" && mkdir -p "$TMP" "$OUT"
WASM=target/wasm32-unknown-unknown/wasm/touchpoint_collector_wasm.wasm

build() { # NAME [cargo args…]   (NAME.js + NAME_bg.wasm in dist/)
  local name=$1; shift
  cargo build -q -p touchpoint-collector-wasm --target wasm32-unknown-unknown --profile wasm "$@"
  "$WASM_OPT" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --strip-debug --strip-producers "$WASM" -o "$OUT/${name}_bg.wasm"
  sed "s/touchpoint_bg\.wasm/${name}_bg.wasm/" collector-wasm/js/touchpoint.js >"$TMP/$name.js"
  "$ESBUILD" "$TMP/$name.js" --minify --format=esm --target=es2020 --log-level=warning --outfile="$OUT/$name.js"
}

build touchpoint
build touchpoint.dev --features dev-validate
"$ESBUILD" collector-wasm/js/snippet.js --minify --target=es2017 --log-level=warning --outfile="$OUT/snippet.js"
echo "build-sdk: $(cd "$OUT" && ls -l | awk 'NR>1{printf "%s %s B; ", $9, $5}')"
