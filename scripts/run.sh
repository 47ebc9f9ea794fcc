#!/usr/bin/env bash
# README command 1: builds the browser SDK and runs core on http://127.0.0.1:8080 with the embedded
# SQLite store (./data): Segment-compatible API, SDK under /sdk/, demo page, live debugger, profiles,
# audiences and deliveries pages. Configuration comes from the environment (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
# Out of the box, deliveries go to core's own development webhook receiver, so the deliveries page
# shows real, signed calls; set TOUCHPOINT_WEBHOOK_URL (and the other destinations') to change that.
bind="${TOUCHPOINT_BIND:-127.0.0.1:8080}"
export TOUCHPOINT_DEV_SINK="${TOUCHPOINT_DEV_SINK:-1}"
export TOUCHPOINT_WEBHOOK_URL="${TOUCHPOINT_WEBHOOK_URL:-http://$bind/dev/webhook-sink}"
export TOUCHPOINT_WEBHOOK_SECRET="${TOUCHPOINT_WEBHOOK_SECRET:-dev-webhook-secret}"
scripts/setup.sh --run
scripts/build-sdk.sh
exec cargo run -p touchpoint-core --bin touchpoint -- serve
