#!/usr/bin/env bash
# Audience evaluation over 1,000,000 profiles (release build), against a naive baseline in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p touchpoint-tests --bin audience-bench
N="${N:-1000000}" "${CARGO_TARGET_DIR:-target}"/release/audience-bench
