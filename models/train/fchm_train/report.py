"""Print the README's model tables from a built bundle.

    cd models/train && python -m fchm_train.report --bundle ../centernet-vfcn

1. the uncompressed detector's detections on every validation image (the
   ground truth of the fidelity mAP), and
2. the bundle's rate table (gain -> bits per pixel, fidelity mAP@0.5), as
   measured by the build on the same images.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from . import data, metrics
from .detector import COCO_CLASSES, postprocess, prepare_image
from .refcodec import run, session


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True)
    args = ap.parse_args(argv)
    manifest = json.loads((args.bundle / "manifest.json").read_text())
    full = session(args.bundle / "detector_full.onnx")
    _, val = data.split()
    names = set(manifest.get("validation", {}).get("images", [s.name for s in val]))
    val = [s for s in val if s.name in names]

    print("| validation image | uncompressed detections (score > 0.3) |")
    print("|---|---|")
    for s, im in zip(val, data.load_images(val)):
        dets = postprocess(run(full, prepare_image(im))[0], score_min=metrics.GT_SCORE)
        counts = Counter(COCO_CLASSES[d["class"]] for d in dets)
        best = {}
        for d in dets:
            best[COCO_CLASSES[d["class"]]] = max(best.get(COCO_CLASSES[d["class"]], 0), d["score"])
        text = ", ".join(f"{n}× {c} ({best[c]:.2f})" if n > 1 else f"{c} ({best[c]:.2f})" for c, n in counts.items())
        print(f"| {s.name} | {text or '—'} |")

    rows = manifest["ivn"]["rate_table"]
    print()
    print("| gain | bits per pixel | fidelity mAP@0.5 |")
    print("|---:|---:|---:|")
    for r in rows:
        print(f"| {r['gain']:.2f} | {r['bpp']:.4f} | {r['map50']:.3f} |")
    if rows:
        lo, hi = min(r["bpp"] for r in rows), max(r["bpp"] for r in rows)
        print(f"\nbitrate span of one model: {hi / lo:.1f}x ({lo:.4f} to {hi:.4f} bpp)")


if __name__ == "__main__":
    main()
