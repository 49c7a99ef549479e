"""onnxruntime's side of `fchm bench inference`: the same graphs, inputs and thread count.

    python3 tests/python/bench_ort.py BUNDLE GRAPH [GRAPH...] --runs 20
Prints one JSON object: graph -> median milliseconds.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ap = argparse.ArgumentParser()
ap.add_argument("bundle", type=Path)
ap.add_argument("graphs", nargs="+")
ap.add_argument("--runs", type=int, default=20)
args = ap.parse_args()
manifest = json.loads((args.bundle / "manifest.json").read_text())
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1  # tract runs on one thread
opts.inter_op_num_threads = 1
out = {}
for key in args.graphs:
    g = manifest["graphs"][key]
    sess = ort.InferenceSession(str(args.bundle / g["file"]), opts, providers=["CPUExecutionProvider"])
    shape = next(iter(g["inputs"].values()))
    x = (np.arange(np.prod(shape)) * 7919 % 256).astype(np.float32).reshape(shape)
    name = sess.get_inputs()[0].name
    sess.run(None, {name: x})
    ms = []
    for _ in range(args.runs):
        t = time.perf_counter()
        sess.run(None, {name: x})
        ms.append((time.perf_counter() - t) * 1e3)
    out[key] = float(np.median(ms))
print(json.dumps(out))
