#!/usr/bin/env bash
# The whole system in one process: an embedded MQTT broker, the edge daemon
# fchmd on the bundled test scene, and fchm-server with its dashboard. Prints
# the dashboard URL; Ctrl-C stops everything. Extra arguments go to
# `fchm demo` (e.g. --http 0.0.0.0:8080 to open the dashboard to the network).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f models/centernet-vfcn/front.onnx ] && [ -x target/debug/fchm ] || scripts/setup.sh
exec target/debug/fchm demo "$@"
