#!/usr/bin/env bash
# The aarch64 `fchm` that CI's determinism test runs under qemu (tests/cross_aarch64.rs).
# Prints its path. Usage: cross/build-aarch64.sh [--release]
set -euo pipefail
exec "$(dirname "$0")/build.sh" aarch64 --bin fchm "$@"
