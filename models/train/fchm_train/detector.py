"""The COCO detector: fetch it, convert it to ONNX, split it, and use it.

The detector is CenterNet with a MobileNetV3 backbone, shipped in TF.js format
inside the npm package ``@vladmandic/human`` 3.3.6.  Its weights' licence is
unstated upstream, so the repository never carries them: this module is the
setup step that fetches the pinned tarball and converts it (without TensorFlow,
see :mod:`fchm_train.tfjs2onnx`) into three ONNX graphs:

* ``detector_full.onnx``: ``image`` [1,3,512,512] -> ``detections`` [1,100,6]
  (plus ``keypoints`` [1,80,128,128] and ``wh`` [1,4,128,128], NCHW, for checks);
* ``front.onnx``: ``image`` -> ``P`` [1,24,128,128], the output of
  ``MobilenetV3/expanded_conv_2/add`` (runs on the camera);
* ``task_back.onnx``: ``P`` -> ``detections`` (runs on the server).

Conventions: ``image`` is RGB, float32, 0..255, NCHW, the whole frame resized
to 512x512 (no letterbox; see :func:`load_image_512`).  ``detections`` rows are
x1, y1, x2, y2 (in 512x512 input pixels), score, class (0-based COCO-80 index,
see :data:`COCO_CLASSES`), sorted by score; :func:`postprocess` turns them into
the final boxes the way the upstream package does.

Usage (from ``models/train/``)::

    python -m fchm_train.detector --out ../detector            # fetch with npm, convert
    python -m fchm_train.detector --out DIR --tarball X.tgz    # use a tarball you have
    python -m fchm_train.detector --bench DIR                  # time the graphs (onnxruntime)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

NPM_SPEC = "@vladmandic/human@3.3.6"
TARBALL_NAME = "vladmandic-human-3.3.6.tgz"
# sha256 of `npm pack @vladmandic/human@3.3.6` (the registry tarball).
TARBALL_SHA256 = "425e9c51dbbca0c8934362b170cb0d54c2529c11c654b3c03092b16e9d6ad3f7"
MODEL_JSON = "package/models/centernet.json"
MODEL_BIN = "package/models/centernet.bin"

INPUT_SIZE = 512
# TF tensor names in centernet.json.
TF_IMAGE = "tower_0/images"
TF_CUT = "tower_0/MobilenetV3/expanded_conv_2/add"   # cut A: [1,128,128,24], ~17 % of the MACs
TF_DETECTIONS = "tower_0/detections"
TF_KEYPOINTS = "tower_0/keypoints"
TF_WH = "tower_0/wh"

# file name -> (inputs, outputs), TF tensor name -> ONNX name.
GRAPHS = {
    "detector_full.onnx": ({TF_IMAGE: "image"},
                           {TF_DETECTIONS: "detections", TF_KEYPOINTS: "keypoints", TF_WH: "wh"}),
    "front.onnx": ({TF_IMAGE: "image"}, {TF_CUT: "P"}),
    "task_back.onnx": ({TF_CUT: "P"}, {TF_DETECTIONS: "detections"}),
}

DEFAULT_CACHE = Path(__file__).resolve().parents[2] / "cache"   # models/cache (git-ignored)

# COCO-80 class names, in the model's 0-based class order (0 = person).
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
assert len(COCO_CLASSES) == 80


class DetectorSetupError(Exception):
    """Fetching, verifying or converting the detector failed."""


# --------------------------------------------------------------------------
# Setup: fetch, verify, convert
# --------------------------------------------------------------------------

def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_tarball(cache: Path) -> Path:
    """The pinned npm tarball in ``cache``; runs ``npm pack`` if it is not there."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / TARBALL_NAME
    if not path.exists():
        cmd = ["npm", "pack", NPM_SPEC, "--pack-destination", str(cache), "--ignore-scripts"]
        print("fetching:", " ".join(cmd), file=sys.stderr)
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as e:
            detail = getattr(e, "stderr", "") or ""
            raise DetectorSetupError(f"`{' '.join(cmd)}` failed ({e}) {detail[-500:]}; fetch "
                                     f"{NPM_SPEC} yourself and pass it with --tarball") from e
        if not path.exists():
            raise DetectorSetupError(f"npm pack did not produce {path}")
    return path


def verify_tarball(path: Path) -> None:
    got = sha256_file(path)
    if got != TARBALL_SHA256:
        raise DetectorSetupError(f"{path}: sha256 {got} does not match the pinned "
                                 f"{TARBALL_SHA256} of {NPM_SPEC}; refusing to convert it")


def read_model(tarball: Path):
    """Verify the tarball and decode the TF.js model straight from it (no extraction)."""
    from . import tfjs2onnx

    verify_tarball(tarball)
    with tarfile.open(tarball, "r:gz") as tar:
        def member(name: str) -> bytes:
            try:
                return tar.extractfile(name).read()
            except (KeyError, AttributeError) as e:
                raise DetectorSetupError(f"{tarball} has no {name}") from e
        graph_json = member(MODEL_JSON)
        shards = {"centernet.bin": member(MODEL_BIN)}
    return tfjs2onnx.load_tfjs(graph_json, lambda p: shards[p])


def convert_graphs(tarball: Path) -> dict[str, bytes]:
    """The three ONNX graphs as bytes, file name -> serialised model."""
    from . import tfjs2onnx

    model = read_model(tarball)
    out = {}
    for fname, (inputs, outputs) in GRAPHS.items():
        doc = (f"CenterNet/MobileNetV3 from npm {NPM_SPEC} ({MODEL_JSON}), "
               f"converted by fchm_train.tfjs2onnx; {fname}")
        out[fname] = tfjs2onnx.convert_subgraph(model, inputs, outputs, doc=doc)
    return out


def check_manifest(out_dir: Path, hashes: dict[str, str]) -> None:
    """If ``out_dir/manifest.json`` pins these files, the hashes must match."""
    manifest = out_dir / "manifest.json"
    if not manifest.exists():
        return
    pinned = json.loads(manifest.read_text()).get("files", {})
    for fname, got in hashes.items():
        want = pinned.get(fname)
        if want is not None and want != got:
            raise DetectorSetupError(f"{fname}: produced sha256 {got} but {manifest} pins {want}")


def setup(out_dir: Path, tarball: Path | None = None, cache: Path = DEFAULT_CACHE) -> dict[str, str]:
    """Fetch (if needed), verify, convert, check against the manifest, write.

    Nothing is written if a manifest pin does not match.  Returns name -> sha256.
    """
    tarball = tarball or fetch_tarball(cache)
    graphs = convert_graphs(tarball)
    hashes = {name: sha256_bytes(data) for name, data in graphs.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    check_manifest(out_dir, hashes)
    for name, data in graphs.items():
        tmp = out_dir / (name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, out_dir / name)
    return hashes


# --------------------------------------------------------------------------
# Using the detector
# --------------------------------------------------------------------------

def prepare_image(img) -> np.ndarray:
    """A PIL image -> the model input [1,3,512,512] float32, RGB 0..255.

    The whole image is resized to 512x512 with PIL's bilinear filter (aspect
    ratio not kept, no letterbox), as the upstream package feeds the model.
    PIL's bilinear filter widens its support when shrinking (it averages, i.e.
    antialiases) where tf.image.resizeBilinear would not; detections hardly
    differ, but use this function everywhere so that all our numbers agree.
    EXIF orientation is not applied.
    """
    from PIL import Image

    rgb = img.convert("RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR)
    arr = np.asarray(rgb, dtype=np.float32)                 # H, W, 3
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None])


def load_image_512(path) -> np.ndarray:
    """Read an image file -> [1,3,512,512] float32 RGB 0..255 (see :func:`prepare_image`)."""
    from PIL import Image

    with Image.open(path) as img:
        return prepare_image(img)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two x1,y1,x2,y2 boxes (corners in any order); 0 for empty boxes."""
    ax1, ax2 = sorted((a[0], a[2]))
    ay1, ay2 = sorted((a[1], a[3]))
    bx1, bx2 = sorted((b[0], b[2]))
    by1, by2 = sorted((b[1], b[3]))
    area_a = (ax2 - ax1) * (ay2 - ay1)
    area_b = (bx2 - bx1) * (by2 - by1)
    if area_a <= 0 or area_b <= 0:
        return 0.0
    iw = max(min(ax2, bx2) - max(ax1, bx1), 0.0)
    ih = max(min(ay2, by2) - max(ay1, by1), 0.0)
    inter = iw * ih
    return float(inter / (area_a + area_b - inter))


def postprocess(detections: np.ndarray, score_min: float = 0.2, iou: float = 0.4,
                max_det: int = 10, image_size: tuple[int, int] | None = None) -> list[dict]:
    """Final boxes from the raw ``detections`` [1,100,6] (or [100,6]).

    Same rule as the upstream package (human 3.3.6, ``src/object/centernet.ts``
    with its default config), which calls tf.image.nonMaxSuppression:

    * class-agnostic greedy NMS: a box is dropped when its IoU with an already
      kept box (of any class) is >= ``iou`` (0.4);
    * only boxes with score > ``score_min`` (0.2, strict) are candidates;
    * candidates in descending score order, ties in row order; at most
      ``max_det`` (10) boxes; rows with a NaN class are skipped.

    Boxes stay in 512x512 input pixels unless ``image_size=(width, height)`` is
    given, then they are scaled to that image (the input is a plain resize).
    Returns a list of ``{"box": [x1,y1,x2,y2], "score", "class", "label"}``.
    """
    det = np.asarray(detections, dtype=np.float64).reshape(-1, 6)
    cand = [i for i in range(len(det)) if det[i, 4] > score_min]
    cand.sort(key=lambda i: -det[i, 4])          # stable: equal scores keep row order
    kept: list[int] = []
    for i in cand:
        if len(kept) >= max_det:
            break
        if all(_iou(det[i, :4], det[j, :4]) < iou for j in kept):
            kept.append(i)
    sx, sy = (1.0, 1.0) if image_size is None else (image_size[0] / INPUT_SIZE,
                                                    image_size[1] / INPUT_SIZE)
    out = []
    for i in kept:
        if np.isnan(det[i, 5]):
            continue
        cls = int(det[i, 5])
        x1, y1, x2, y2 = det[i, :4]
        out.append({"box": [float(x1 * sx), float(y1 * sy), float(x2 * sx), float(y2 * sy)],
                    "score": float(det[i, 4]), "class": cls, "label": COCO_CLASSES[cls]})
    return out


def ort_session(path, threads: int = 1):
    """An onnxruntime session (CPU, ``threads`` intra-op threads, sequential)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------

BENCH_IMAGE = Path("/usr/share/darknet/data/dog.jpg")


def bench(graph_dir: Path, runs: int = 25, warmup: int = 3) -> dict[str, float]:
    """Median onnxruntime time (ms, 1 thread) of front, task_back and the full graph."""
    import onnxruntime as ort

    if BENCH_IMAGE.exists():
        image = load_image_512(BENCH_IMAGE)
    else:   # any input will do for timing
        image = np.random.default_rng(0).uniform(0, 255, (1, 3, 512, 512)).astype(np.float32)
    p = ort_session(graph_dir / "front.onnx").run(None, {"image": image})[0]
    cases = {"front.onnx": {"image": image}, "task_back.onnx": {"P": p},
             "detector_full.onnx": {"image": image}}
    result = {}
    for name, feed in cases.items():
        sess = ort_session(graph_dir / name)
        outs = None if name != "detector_full.onnx" else ["detections"]
        for _ in range(warmup):
            sess.run(outs, feed)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            sess.run(outs, feed)
            times.append((time.perf_counter() - t0) * 1e3)
        result[name] = statistics.median(times)
    print(f"onnxruntime {ort.__version__}, 1 thread, median of {runs} runs "
          f"(after {warmup} warm-up), input {BENCH_IMAGE.name if BENCH_IMAGE.exists() else 'random'}:")
    for name, ms in result.items():
        print(f"  {name:20s} {ms:7.1f} ms")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fchm_train.detector", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="write detector_full.onnx, front.onnx, task_back.onnx here")
    ap.add_argument("--tarball", type=Path, help=f"the `npm pack {NPM_SPEC}` tarball (default: fetch it)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where a fetched tarball is kept")
    ap.add_argument("--bench", type=Path, metavar="DIR", help="time the three graphs in DIR")
    ap.add_argument("--runs", type=int, default=25, help="timed runs per graph for --bench")
    args = ap.parse_args(argv)
    if not args.out and not args.bench:
        ap.error("give --out DIR and/or --bench DIR")
    try:
        if args.out:
            for name, digest in setup(args.out, args.tarball, args.cache).items():
                print(f"{digest}  {args.out / name}")
        if args.bench:
            bench(args.bench, runs=args.runs)
    except DetectorSetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
