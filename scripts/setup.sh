#!/usr/bin/env bash
# Installs everything the test suite needs, skipping what is already there (fast on repeat runs).
# `scripts/setup.sh --run` installs only what running core and building the browser SDK need.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-all}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# PostgreSQL server (real database for the storage tests).
if [ "$MODE" = all ] && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "setup: installing postgresql"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

# Chromium (headless browser tests of the debugger page, driven by playwright-core).
if [ "$MODE" = all ] && [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing chromium"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

# Rust toolchain pinned by rust-toolchain.toml (rustup installs it and the wasm32 target on first use).
rustup show active-toolchain >/dev/null
rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

# Node tools (real Segment client, Chromium driver, uPlot for the console's charts, which
# scripts/vendor-uplot.sh copies into core/assets/vendor/): reinstall only when package.json changed.
if [ ! -f node_modules/.touchpoint-stamp ] || [ package.json -nt node_modules/.touchpoint-stamp ]; then
  echo "setup: npm install"
  npm install --no-audit --no-fund --loglevel=error
  touch node_modules/.touchpoint-stamp
fi

# Python tools (Segment's analytics-python) in a project-local venv.
if [ "$MODE" = all ] && { [ ! -x .tools/venv/bin/python ] || ! .tools/venv/bin/python -c 'import segment.analytics' 2>/dev/null; }; then
  echo "setup: python venv"
  python3 -m venv .tools/venv
  .tools/venv/bin/pip install -q --disable-pip-version-check segment-analytics-python==2.4.0
fi
# OpenAPI validator for docs/openapi.json (tests/tests/integration/backend_api.rs).
if [ "$MODE" = all ] && ! .tools/venv/bin/python -c 'import openapi_spec_validator' 2>/dev/null; then
  echo "setup: openapi-spec-validator"
  .tools/venv/bin/pip install -q --disable-pip-version-check openapi-spec-validator==0.9.0
fi
# DuckDB reads the Parquet warehouse export (tests/warehouse/duckdb_report.py).
if [ "$MODE" = all ] && ! .tools/venv/bin/python -c 'import duckdb' 2>/dev/null; then
  echo "setup: duckdb"
  .tools/venv/bin/pip install -q --disable-pip-version-check duckdb==2.0.1
fi

# Browser SDK build tools: wasm-bindgen-cli equal to the crate's pinned wasm-bindgen (npm's binaryen
# and esbuild come with package.json; never Debian's binaryen, whose wasm fails in Chromium).
if [ "$MODE" = all ] && [ "$(wasm-bindgen --version 2>/dev/null || "$HOME/.cargo/bin/wasm-bindgen" --version 2>/dev/null)" != "wasm-bindgen 0.2.130" ]; then
  echo "setup: cargo install wasm-bindgen-cli 0.2.130 (~3 min)"
  cargo install wasm-bindgen-cli --version 0.2.130
fi

# Edge worker build tool (scripts/build-edge.sh): worker-build, told where wasm-bindgen/esbuild/wasm-opt
# are so it downloads nothing. wrangler, miniflare@4 (workerd tests), Node 22, esbuild and binaryen
# come with package.json.
if [ "$MODE" = all ] && ! { worker-build --version 2>/dev/null || "$HOME/.cargo/bin/worker-build" --version 2>/dev/null; } | grep -qx '\(worker-build \)\?0\.8\.7'; then
  echo "setup: cargo install worker-build 0.8.7 (~5 min)"
  cargo install worker-build --version 0.8.7
fi
