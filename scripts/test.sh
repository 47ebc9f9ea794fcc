#!/usr/bin/env bash
# Installs what the tests need, starts a real PostgreSQL on 127.0.0.1, and runs every gate:
# fmt, clippy -D warnings, the wasm32 build of tracking-plan, and all tests (SQLite and PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export TOUCHPOINT_TEST_PG_URL="$(scripts/pg.sh start)"
echo "== fmt";    cargo fmt --all -- --check
echo "== clippy"; cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== wasm32"; cargo build --locked -p touchpoint-tracking-plan --target wasm32-unknown-unknown
echo "== plan";   cargo run --locked -q -p touchpoint-core --bin touchpoint -- plan check TRACKING_PLAN.md
echo "== sdk";    scripts/build-sdk.sh
echo "== edge";   scripts/build-edge.sh
echo "== deploy"; scripts/check-deploy.sh   # wrangler deploy --dry-run, offline
echo "== tests";  cargo test --workspace --locked
