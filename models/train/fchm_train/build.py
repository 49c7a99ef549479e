"""One command: detector -> data -> features -> VFCN training -> export -> evaluation -> manifest.

    cd models/train && python -m fchm_train.build --out ../centernet-vfcn          # full (about 1 h on 2 cores)
    cd models/train && python -m fchm_train.build --smoke --out /tmp/smoke-bundle  # tiny, < 3 min

The detector graphs are fetched and converted by `fchm_train.detector` (never
committed); everything else in the bundle is produced here.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import data, metrics
from .detector import postprocess, prepare_image
from .device import training_device
from .export import export_graphs, sha256_file, write_manifest
from .refcodec import RefCodec, run, session
from .train import TrainConfig, train
from .vfcn import VfcnConfig

CONTAINER_OVERHEAD = 57 + 2 * 11 + 4  # frame header, two substream descriptors, CRC (docs/bitstream.md)
PIXELS = 512 * 512
# Entropy-table buffers are rebuilt by export; a state dict from a finished run carries them.
_TABLE_BUFFERS = ("_offset", "_quantized_cdf", "_cdf_length", "scale_table")


def ensure_detector(out: Path, cache: Path) -> None:
    if all((out / f).exists() for f in ("front.onnx", "task_back.onnx", "detector_full.onnx")):
        return
    subprocess.run(
        [sys.executable, "-m", "fchm_train.detector", "--out", str(out), "--cache", str(cache)],
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )


def features(front: Path, images, augment_k: int, seed: int) -> np.ndarray:
    """Front features of the images (plus `augment_k` random crops/flips of each), float16."""
    sess = session(front)
    rng = random.Random(seed)
    out = []
    for im in images:
        views = [im] + [data.augment(im, rng) for _ in range(augment_k)]
        for v in views:
            out.append(run(sess, prepare_image(v))[0].astype(np.float16))
    return np.stack(out)


def evaluate(bundle: Path, images, gains) -> tuple[list, list]:
    """Rate table rows (gain, bpp, fidelity mAP@0.5) with the reference codec, and the uncompressed detections."""
    codec = RefCodec(bundle)
    front = session(bundle / "front.onnx")
    back = session(bundle / "task_back.onnx")
    full = session(bundle / "detector_full.onnx")
    inputs = [prepare_image(im) for im in images]
    gts = [metrics.as_array(postprocess(run(full, x)[0], score_min=metrics.GT_SCORE)) for x in inputs]
    feats = [run(front, x) for x in inputs]
    rows = []
    for g in gains:
        preds, bits = [], 0
        for p in feats:
            enc, _ = codec.encode(p, g)
            p_hat, _ = codec.decode(enc)
            preds.append(metrics.as_array(postprocess(run(back, p_hat)[0], score_min=metrics.PRED_SCORE, max_det=100)))
            bits += 8 * (enc.nbytes + CONTAINER_OVERHEAD)
        rows.append(
            {"gain": round(float(g), 4), "bpp": bits / (len(feats) * PIXELS), "map50": metrics.mean_ap(gts, preds)}
        )
        print(f"  gain {g:7.3f}: {rows[-1]['bpp']:.4f} bpp, fidelity mAP@0.5 {rows[-1]['map50']:.3f}", flush=True)
    return rows, gts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    ap.add_argument("--cache", type=Path, default=Path(__file__).resolve().parents[2] / "cache")
    ap.add_argument("--smoke", action="store_true", help="tiny model and data (tests, CI)")
    ap.add_argument("--steps", type=int, help="override training steps")
    ap.add_argument("--lmbda", type=float, help="override the rate-distortion trade-off")
    ap.add_argument("--init", type=Path, help="start from this state dict (continue a training)")
    ap.add_argument("--lr", type=float, help="override the learning rate")
    ap.add_argument(
        "--task-beta",
        type=float,
        help="weight of the detector head's distortion in the loss (default 0: feature MSE only)",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core machine)")
    ap.add_argument("--device", default="cpu", help="torch device for training (cuda on a GPU machine)")
    args = ap.parse_args(argv)
    try:
        device = training_device(args.device)
    except ValueError as e:
        ap.error(str(e))
    torch.set_num_threads(args.threads)
    t0 = time.time()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)

    ensure_detector(out, args.cache)
    train_s, val_s = data.split()
    if args.smoke:
        vcfg = VfcnConfig(n=8, m=24, nz=4, nh=8, nd=8)
        tcfg = TrainConfig(steps=150, batch=4, log_every=50)
        train_s, val_s, augment_k = train_s[:16], val_s[:4], 0
        gains = [2.0, 8.0, 32.0]
    else:
        vcfg, tcfg, augment_k = VfcnConfig(), TrainConfig(), 3
        gains = list(np.geomspace(vcfg.gain_min, vcfg.gain_max, 8))
    if args.steps:
        tcfg.steps = args.steps
    if args.lmbda:
        tcfg.lmbda = args.lmbda
    if args.lr:
        tcfg.lr = args.lr
    if args.task_beta is not None:
        tcfg.task_beta = args.task_beta

    key = f"{'smoke' if args.smoke else 'full'}-{sha256_file(out / 'front.onnx')[:12]}-{augment_k}"
    cache_file = args.cache / f"features-{key}.npy"
    if cache_file.exists():
        feats = np.load(cache_file)
    else:
        print(f"features: {len(train_s)} training images x {augment_k + 1} views", flush=True)
        feats = features(out / "front.onnx", data.load_images(train_s), augment_k, tcfg.seed)
        np.save(cache_file, feats)
    print(f"training on {feats.shape[0]} feature maps ({time.time() - t0:.0f}s)", flush=True)
    init = None
    if args.init:
        init = {k: v for k, v in torch.load(args.init).items() if not k.endswith(_TABLE_BUFFERS)}
        print(f"continuing from {args.init}", flush=True)
    net = train(
        feats,
        vcfg,
        tcfg,
        log=lambda s: print(s, flush=True),
        init=init,
        task_back=out / "task_back.onnx",
        device=device,
    )

    torch.save(net.state_dict(), args.cache / f"vfcn-{key}.pt")  # before export: a failed export keeps the training
    graphs = export_graphs(net, out)
    # The manifest is written twice: the evaluation reads the bundle through it.
    meta = {"vfcn": vcfg.to_dict(), "training": {**tcfg.__dict__, "smoke": args.smoke}}
    write_manifest(out, "centernet-vfcn", "1.0.0", net, graphs, [], meta)
    print(f"evaluating {len(val_s)} validation images", flush=True)
    rows, gts = evaluate(out, data.load_images(val_s), gains)
    meta["validation"] = {
        "images": [s.name for s in val_s],
        "ground_truth_boxes": int(sum(len(g) for g in gts)),
        "protocol": "fidelity mAP@0.5 against the uncompressed detector (models/README.md)",
    }
    manifest = write_manifest(out, "centernet-vfcn", "1.0.0", net, graphs, rows, meta)
    print(json.dumps({"bundle_id": manifest["bundle_id"], "seconds": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    main()
