#!/usr/bin/env bash
# Code a photo's machine features at three rates (within the bundle's rate
# table) and decode them: prints the payload size and the detections found on
# the decoded features each time.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=models/centernet-vfcn
img=${1:-/usr/share/darknet/data/dog.jpg}
[ -f "$bundle/front.onnx" ] && [ -x target/debug/fchm ] || scripts/setup.sh
fchm=target/debug/fchm
out=$(mktemp -d)
for bpp in 0.6 1.2 3.0; do
  "$fchm" encode --bundle "$bundle" --bpp "$bpp" "$img" -o "$out/frame.fchm"
  "$fchm" decode "$out/frame.fchm" --bundle "$bundle" --detections "$out/dets.json"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('   ', ', '.join(f\"{x['class']} {x['score']:.2f}\" for x in d['detections']) or 'no detections')" "$out/dets.json"
done
