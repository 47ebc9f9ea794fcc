#!/usr/bin/env bash
# Identity-resolution benchmark (release build): pure resolver and the whole processing stage.
# PostgreSQL too when TOUCHPOINT_BENCH_PG_URL points at an empty database.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p touchpoint-tests --bin identity-bench
N="${N:-200000}" "${CARGO_TARGET_DIR:-target}"/release/identity-bench
