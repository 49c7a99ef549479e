"""Produce the detector reference outputs through the TensorFlow-based route.

Run ONCE, by hand, in a throw-away virtualenv outside the repository (TensorFlow
is never needed by fchm itself).  See README.md beside this file for the exact
commands.  Route: TF.js graph model --tfjs-graph-converter (compat tflite)-->
frozen TF graph --tf2onnx (opset 17)--> ONNX, run with onnxruntime.  TensorFlow
also runs the frozen graph, and the largest TF-vs-onnxruntime difference is
recorded in each file as information.

Preprocessing, the NMS and the class names come from fchm_train.detector so the
references use exactly the inputs the tests feed (their sha256 is stored too).
"""

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "models" / "train"))
from fchm_train.detector import (MODEL_BIN, MODEL_JSON, load_image_512,  # noqa: E402
                                 postprocess, verify_tarball)

PHOTOS = sorted(Path("/usr/share/darknet/data").glob("*.jpg"))
HEAD_ROWS = 20        # raw detection rows kept per photo


def import_tfjs_graph_converter():
    """tensorflowjs 4.22 imports jax, tensorflow_hub and tensorflow_decision_forests
    at module load, though the graph-model path never uses them: stub them, after
    importing the real keras so that keras does not see a fake jax."""
    import tensorflow.keras  # noqa: F401
    for name in ("jax", "jax.experimental", "jax.experimental.jax2tf",
                 "tensorflow_hub", "tensorflow_decision_forests"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["jax"].experimental = sys.modules["jax.experimental"]
    sys.modules["jax.experimental"].jax2tf = sys.modules["jax.experimental.jax2tf"]
    from tfjs_graph_converter import api
    from tfjs_graph_converter.common import CompatMode
    return api, CompatMode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tarball", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True, help="scratch dir outside the repo")
    args = ap.parse_args()
    verify_tarball(args.tarball)
    work = args.work
    (work / "tfjs").mkdir(parents=True, exist_ok=True)
    with tarfile.open(args.tarball) as tar:
        for member in (MODEL_JSON, MODEL_BIN):
            (work / "tfjs" / Path(member).name).write_bytes(tar.extractfile(member).read())

    import tensorflow as tf
    api, CompatMode = import_tfjs_graph_converter()
    pb = work / "centernet_frozen.pb"
    api.graph_model_to_frozen_graph(str(work / "tfjs" / "centernet.json"), str(pb), CompatMode.TFLITE)
    onnx_path = work / "centernet_tf2onnx.onnx"
    subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--graphdef", str(pb),
                    "--inputs", "tower_0/images:0",
                    "--outputs", "tower_0/Sigmoid:0,tower_0/mul:0,tower_0/detections:0",
                    "--rename-inputs", "images", "--rename-outputs", "keypoints,wh,detections",
                    "--opset", "17", "--output", str(onnx_path)], check=True)

    import onnxruntime as ort
    import tf2onnx
    import tfjs_graph_converter
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(pb.read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    tf_sess = tf.compat.v1.Session(graph=graph)

    source = (f"onnxruntime {ort.__version__} on the tf2onnx {tf2onnx.__version__} conversion "
              f"(opset 17) of the frozen graph from tfjs-graph-converter "
              f"{tfjs_graph_converter.__version__} --compat_mode tflite, TensorFlow {tf.__version__}; "
              f"onnx sha256 {hashlib.sha256(onnx_path.read_bytes()).hexdigest()}")
    out_dir = Path(__file__).resolve().parent
    for photo in PHOTOS:
        x = load_image_512(photo)                       # [1,3,512,512]
        nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        kp, wh, det = sess.run(["keypoints", "wh", "detections"], {"images": nhwc})
        tkp, twh, tdet = tf_sess.run(["tower_0/Sigmoid:0", "tower_0/mul:0", "tower_0/detections:0"],
                                     {"tower_0/images:0": nhwc})
        peak = np.unravel_index(int(np.argmax(kp[0])), kp[0].shape)   # (y, x, class)
        ref = {
            "photo": photo.name,
            "source": source,
            "input_sha256": hashlib.sha256(x.tobytes()).hexdigest(),
            "detections_head": det[0, :HEAD_ROWS].astype(float).tolist(),
            "keypoints": {"sum": float(kp.astype(np.float64).sum()), "max": float(kp.max()),
                          "argmax_yxc": [int(v) for v in peak]},
            "wh": {"sum": float(wh.astype(np.float64).sum()),
                   "abs_sum": float(np.abs(wh.astype(np.float64)).sum())},
            "postprocessed": postprocess(det),
            "info_tf_vs_onnxruntime_max_abs_diff": {
                "keypoints": float(np.abs(kp - tkp).max()), "wh": float(np.abs(wh - twh).max()),
                "detections": float(np.abs(det - tdet).max())},
        }
        (out_dir / f"{photo.stem}.json").write_text(json.dumps(ref, indent=1) + "\n")
        print(photo.name, [(d["label"], round(d["score"], 3)) for d in ref["postprocessed"]],
              ref["info_tf_vs_onnxruntime_max_abs_diff"])


if __name__ == "__main__":
    main()
