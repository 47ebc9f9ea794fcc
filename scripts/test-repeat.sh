#!/usr/bin/env bash
# Runs the whole test suite N times in a row (default 5) on the current checkout, after one setup and
# build, and prints each run's wall time and result; exits non-zero if any run failed. This is the
# flake check: a suite that passes once but not five times in a row has a test that depends on timing.
#
# Usage: scripts/test-repeat.sh [N]     (logs in target/test-repeat/run-K.log)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
scripts/setup.sh
export TOUCHPOINT_TEST_PG_URL="$(scripts/pg.sh start)"
scripts/build-sdk.sh >/dev/null
scripts/build-edge.sh >/dev/null
cargo test --workspace --locked --no-run -q 2>/dev/null
mkdir -p target/test-repeat
failed=0
for k in $(seq 1 "$runs"); do
  start=$(date +%s)
  if cargo test --workspace --locked >"target/test-repeat/run-$k.log" 2>&1; then
    verdict="passed"
  else
    verdict="FAILED"
    failed=$((failed + 1))
  fi
  secs=$(( $(date +%s) - start ))
  tests=$(grep -Eo '[0-9]+ passed; [0-9]+ failed' "target/test-repeat/run-$k.log" |
    awk '{p += $1; f += $3} END {printf "%d passed, %d failed", p, f}')
  echo "run $k/$runs: $verdict in ${secs} s ($tests)"
done
if [ "$failed" -gt 0 ]; then
  echo "$failed of $runs runs failed; see target/test-repeat/"
  exit 1
fi
echo "all $runs runs passed"
