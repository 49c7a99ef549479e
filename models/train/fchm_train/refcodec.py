"""The Python reference codec: encode -> entropy tables -> decode, on exported files only.

It reads nothing but a bundle directory (ONNX graphs via onnxruntime, the
integer hyper-synthesis, the integer CDF tables) and codes with CompressAI's
own rANS coder, so it is an independent peer of the Rust codec: same tables,
same symbols, same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from compressai.ans import RansDecoder, RansEncoder

from .intnet import IntNet


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]


@dataclass
class Encoded:
    z: bytes
    y: bytes
    z_shape: tuple
    y_shape: tuple
    gain: float
    fmin: float
    fmax: float

    @property
    def nbytes(self) -> int:
        return len(self.z) + len(self.y)


class LatentCoder:
    """Codes one latent y with its hyper-latent z: factorized z, integer
    hyper-synthesis, Gaussian-conditional y. Shared by the machine layer
    (VFCN) and the aux layer (ACN), which differ only in tables and shapes."""

    def __init__(self, entropy: dict, intnet: IntNet):
        ez, ey = entropy["z"], entropy["y"]
        self.intnet = intnet
        self.z_tables = (ez["cdfs"], ez["cdf_lengths"], ez["offsets"])
        self.y_tables = (ey["cdfs"], ey["cdf_lengths"], ey["offsets"])
        self.medians = np.asarray(ez["medians"], np.float32)

    def encode(self, y: np.ndarray, z: np.ndarray) -> tuple[bytes, bytes, dict]:
        z_sym = np.round(z - self.medians[:, None, None]).astype(np.int32)
        z_idx = np.broadcast_to(np.arange(len(self.medians), dtype=np.int32)[:, None, None], z.shape)
        z_bytes = RansEncoder().encode_with_indexes(z_sym.ravel().tolist(), z_idx.ravel().tolist(), *self.z_tables)
        mean, idx = self.intnet.run(z_sym)
        y_sym = np.round(y - mean).astype(np.int32)
        y_bytes = RansEncoder().encode_with_indexes(y_sym.ravel().tolist(), idx.ravel().tolist(), *self.y_tables)
        return z_bytes, y_bytes, {"z_sym": z_sym, "y_sym": y_sym, "mean": mean, "idx": idx}

    def decode(self, z_bytes: bytes, y_bytes: bytes, z_shape: tuple, y_shape: tuple) -> tuple[np.ndarray, dict]:
        z_idx = np.broadcast_to(np.arange(z_shape[0], dtype=np.int32)[:, None, None], z_shape)
        z_sym = np.asarray(
            RansDecoder().decode_with_indexes(z_bytes, z_idx.ravel().tolist(), *self.z_tables), np.int32
        ).reshape(z_shape)
        mean, idx = self.intnet.run(z_sym)
        y_sym = np.asarray(
            RansDecoder().decode_with_indexes(y_bytes, idx.ravel().tolist(), *self.y_tables), np.int32
        ).reshape(y_shape)
        y_hat = (y_sym.astype(np.float32) + mean).astype(np.float32)
        return y_hat, {"z_sym": z_sym, "y_sym": y_sym, "mean": mean, "idx": idx, "y_hat": y_hat}


class RefCodec:
    def __init__(self, bundle: Path):
        self.dir = Path(bundle)
        self.manifest = json.loads((self.dir / "manifest.json").read_text())
        self.entropy = json.loads((self.dir / "entropy.json").read_text())
        self.intnet = IntNet.load(self.dir / "hyper_synth.json")
        self.latent = LatentCoder(self.entropy, self.intnet)
        self.enc = session(self.dir / "vfcn_enc.onnx")
        self.henc = session(self.dir / "vfcn_hyper_enc.onnx")
        self.dec = session(self.dir / "vfcn_dec.onnx")

    @staticmethod
    def normalise(p: np.ndarray, gain: float) -> tuple[np.ndarray, float, float]:
        """IVN: per-frame min-max normalisation centred on 0, then the gain (f32 throughout, as in Rust)."""
        fmin, fmax = np.float32(p.min()), np.float32(p.max())
        # The header carries min and max; both ends use max - min as the span.
        fmax = fmin + max(fmax - fmin, np.float32(1e-6))
        span = fmax - fmin
        half = np.float32(0.5)
        return (((p - fmin) / span - half) * np.float32(gain)).astype(np.float32), float(fmin), float(fmax)

    def encode(self, p: np.ndarray, gain: float) -> tuple[Encoded, dict]:
        x, fmin, fmax = self.normalise(p, gain)
        y = run(self.enc, x)[0]
        z = run(self.henc, y[None])[0]
        z_bytes, y_bytes, info = self.latent.encode(y, z)
        return Encoded(z_bytes, y_bytes, z.shape, y.shape, gain, fmin, fmax), info

    def decode(self, enc: Encoded) -> tuple[np.ndarray, dict]:
        y_hat, info = self.latent.decode(enc.z, enc.y, enc.z_shape, enc.y_shape)
        out = run(self.dec, y_hat[None])
        span = np.float32(np.float32(enc.fmax) - np.float32(enc.fmin))
        p_hat = (out / np.float32(enc.gain) + np.float32(0.5)) * span + np.float32(enc.fmin)
        return p_hat.astype(np.float32), info


class AuxCoder:
    """The aux (human-layer) reference coder, on a human bundle's files: the ACN
    analysis of (image, normalised P) as Rust's `AuxEncoder::analyse` feeds it,
    the aux gain, and `LatentCoder` on the aux tables. `machine` (whose
    `front.onnx` gives P) is needed only to analyse."""

    def __init__(self, human: Path, machine: Path | None = None):
        human = Path(human)
        entropy = json.loads((human / "aux_entropy.json").read_text())
        self.latent = LatentCoder(entropy, IntNet.load(human / "aux_hyper_synth.json"))
        self.enc = session(human / "acn_enc.onnx")
        self.henc = session(human / "acn_hyper_enc.onnx")
        self.front = session(Path(machine) / "front.onnx") if machine is not None else None

    def analyse(self, x: np.ndarray) -> np.ndarray:
        """x: [1,3,512,512] RGB 0..255 -> ya [M,h,w], before the gain (P normalised at gain 1)."""
        pbar, _, _ = RefCodec.normalise(run(self.front, x), 1.0)
        return self.enc.run(None, {"image": x.astype(np.float32), "pbar": pbar})[0][0]

    def encode(self, ya: np.ndarray, gain: float) -> tuple[bytes, bytes, dict]:
        y = (ya * np.float32(gain)).astype(np.float32)
        return self.latent.encode(y, run(self.henc, y[None])[0])

    def decode(self, z_bytes: bytes, y_bytes: bytes, z_shape: tuple, y_shape: tuple,
               gain: float) -> tuple[np.ndarray, dict]:
        """-> ya_hat = y_hat / gain, what the fusion networks take."""
        y_hat, info = self.latent.decode(z_bytes, y_bytes, z_shape, y_shape)
        return (y_hat / np.float32(gain)).astype(np.float32), info
