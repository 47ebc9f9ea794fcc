#!/usr/bin/env bash
# Backend API benchmark (release build): profile lookups/s and p99 at 1M profiles on SQLite through
# GET /v1/profiles/{kind}:{value} (API token) against the admin route, in the same run.
# PROFILES, SECONDS and CONCURRENCY override 1000000, 20 and 16.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p touchpoint-tests --bin api-bench
RUST_LOG=warn "${CARGO_TARGET_DIR:-target}"/release/api-bench
