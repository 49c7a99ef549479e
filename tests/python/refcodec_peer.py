"""Peer for tests/python_reference.rs: the Python reference codec on one side of a stream.

    python3 refcodec_peer.py encode BUNDLE IMAGE GAIN OUT.json
    python3 refcodec_peer.py decode BUNDLE IN.json OUT.json

Substreams travel as hex; the Rust test wraps them in (or takes them out of)
the frame container, so this peer exercises tables, rANS and the integer
hyper-synthesis, not the container.
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models" / "train"))

from fchm_train.detector import load_image_512, postprocess  # noqa: E402
from fchm_train.refcodec import Encoded, RefCodec, run, session  # noqa: E402


def detections(bundle: Path, p_hat: np.ndarray) -> list:
    raw = run(session(bundle / "task_back.onnx"), p_hat)[0]
    return [{"class": d["class"], "score": d["score"], "box": d["box"]} for d in postprocess(raw)]


def encode(bundle: Path, image: str, gain: float, out: Path) -> None:
    codec = RefCodec(bundle)
    p = run(session(bundle / "front.onnx"), load_image_512(image))
    enc, sym = codec.encode(p, gain)
    p_hat, _ = codec.decode(enc)
    out.write_text(json.dumps({
        "gain": enc.gain, "fmin": enc.fmin, "fmax": enc.fmax,
        "z_shape": list(enc.z_shape), "y_shape": list(enc.y_shape),
        "z_hex": enc.z.hex(), "y_hex": enc.y.hex(),
        "z_sym": sym["z_sym"].ravel().tolist(), "y_sym": sym["y_sym"].ravel().tolist(),
        "detections": detections(bundle, p_hat),
        "p_hat": p_hat.ravel()[::97].tolist(),
    }))  # fmt: skip


def decode(bundle: Path, inp: Path, out: Path) -> None:
    j = json.loads(inp.read_text())
    codec = RefCodec(bundle)
    enc = Encoded(bytes.fromhex(j["z_hex"]), bytes.fromhex(j["y_hex"]), tuple(j["z_shape"]), tuple(j["y_shape"]),
                  j["gain"], j["fmin"], j["fmax"])  # fmt: skip
    p_hat, sym = codec.decode(enc)
    out.write_text(json.dumps({
        "z_sym": sym["z_sym"].ravel().tolist(), "y_sym": sym["y_sym"].ravel().tolist(),
        "mean_fixed": (sym["mean"] * 256).astype(np.int64).ravel().tolist(),
        "index": sym["idx"].ravel().tolist(),
        "detections": detections(bundle, p_hat),
        "p_hat": p_hat.ravel()[::97].tolist(),
    }))  # fmt: skip


if __name__ == "__main__":
    cmd, bundle = sys.argv[1], Path(sys.argv[2])
    if cmd == "encode":
        encode(bundle, sys.argv[3], float(sys.argv[4]), Path(sys.argv[5]))
    elif cmd == "decode":
        decode(bundle, Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        sys.exit(f"unknown command {cmd!r}")
