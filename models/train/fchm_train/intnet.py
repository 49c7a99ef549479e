"""Integer hyper-synthesis: the part of the codec that picks entropy tables.

Why integers: the decoder must choose exactly the same Gaussian table index and
mean for every latent as the encoder did, on a different CPU (ARM camera, x86
server). A float network cannot promise that (CompressAI issues #279, #309,
#320), so this network is trained with fake quantisation and shipped as
integer weights with power-of-two rescaling. Its semantics are defined here
once, executed exactly by `IntNet.run` (numpy, int64) and by the Rust codec
(`fchm_codec::hyper`), and documented in docs/determinism.md.

Semantics of one `conv` layer (input x: int32 [Cin, H, W]):
    acc[o] = bias[o] + sum_{i,dy,dx} w[o,i,dy,dx] * x[i, y+dy-k/2, x+dx-k/2]   (int64, zero padding)
    out[o] = (acc[o] + (1 << (shift[o]-1))) >> shift[o]   if shift[o] > 0  (arithmetic shift)
           = acc[o] << -shift[o]                          if shift[o] <= 0
    out    = max(out, 0) if relu;  out = clamp(out, -2^23, 2^23 - 1)
`upsample2` repeats every value into a 2x2 block (nearest neighbour).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Activations stay within 24 bits so they are exact in f32 too; int64 accumulators
# cannot overflow (|w| <= 127, at most 4096 taps).
ACT_MIN, ACT_MAX = -(1 << 23), (1 << 23) - 1
WEIGHT_MAX = 127
HIDDEN_FRAC = 8  # fractional bits of hidden activations
MEAN_FRAC = 8  # fractional bits of the predicted means


def ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Straight-through: forward q, backward identity."""
    return x + (q - x).detach()


def weight_frac(w: torch.Tensor) -> int:
    """Largest power-of-two exponent keeping every weight within int8."""
    m = float(w.detach().abs().max().clamp_min(1e-8))
    return int(np.floor(np.log2(WEIGHT_MAX / m)))


class QConv(nn.Module):
    """A conv whose forward pass is the integer layer above, in float.

    `in_frac`/`out_frac` are the fixed-point exponents of its input and output;
    `out_frac` may differ per output channel (the last layer emits means with
    fractional bits and table indices without).
    """

    def __init__(self, cin, cout, k, in_frac, out_frac, relu):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)
        self.k, self.in_frac, self.relu = k, in_frac, relu
        of = torch.as_tensor(out_frac, dtype=torch.float32).expand(cout).clone()
        self.register_buffer("out_frac", of)

    def forward(self, x):
        fw = weight_frac(self.conv.weight)
        sw = 2.0**fw
        w = ste(self.conv.weight, torch.round(self.conv.weight * sw).clamp(-WEIGHT_MAX, WEIGHT_MAX) / sw)
        sb = 2.0 ** (self.in_frac + fw)
        b = ste(self.conv.bias, torch.round(self.conv.bias * sb) / sb)
        acc = F.conv2d(x, w, b, padding=self.k // 2)
        so = (2.0**self.out_frac).view(1, -1, 1, 1)
        q = torch.floor(acc * so + 0.5).clamp(ACT_MIN, ACT_MAX) / so
        out = ste(acc, q)
        return F.relu(out) if self.relu else out

    def export(self) -> dict:
        fw = weight_frac(self.conv.weight)
        w = torch.round(self.conv.weight.detach() * 2.0**fw).clamp(-WEIGHT_MAX, WEIGHT_MAX)
        b = torch.round(self.conv.bias.detach() * 2.0 ** (self.in_frac + fw))
        # Negative when the weights' scale is coarser than the output grid (left shift).
        shift = [int(self.in_frac + fw - f) for f in self.out_frac.tolist()]
        if min(shift) < -16:
            raise ValueError(f"shift {shift}: weights far too large for the chosen fixed point")
        cout, cin = w.shape[:2]
        return {
            "op": "conv",
            "cin": int(cin),
            "cout": int(cout),
            "k": self.k,
            "weight": [int(v) for v in w.flatten().tolist()],
            "bias": [int(v) for v in b.tolist()],
            "shift": shift,
            "relu": self.relu,
        }


class HyperSynthesis(nn.Module):
    """z symbols (integers, 8x8) -> (mean, table index) per y element (32x32).

    Nearest upsampling plus convs rather than transposed convs: the integer
    semantics stay trivial to state and to execute identically in Rust.
    """

    def __init__(self, cz: int, hidden: int, m: int, levels: int):
        super().__init__()
        self.m, self.levels = m, levels
        self.l1 = QConv(cz, hidden, 3, 0, HIDDEN_FRAC, relu=True)
        self.l2 = QConv(hidden, hidden, 3, HIDDEN_FRAC, HIDDEN_FRAC, relu=True)
        self.l3 = QConv(hidden, 2 * m, 1, HIDDEN_FRAC, [MEAN_FRAC] * m + [0] * m, relu=False)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, z_int):
        h = self.l1(z_int)
        h = self.l2(self.up(h))
        out = self.l3(self.up(h))
        mean, idx = out[:, : self.m], out[:, self.m :]
        idx = ste(idx, idx.clamp(0, self.levels - 1))
        return mean, idx

    def export(self) -> dict:
        return {
            "format": "fchm-intnet/1",
            "in_channels": self.l1.conv.in_channels,
            "layers": [
                self.l1.export(),
                {"op": "upsample2"},
                self.l2.export(),
                {"op": "upsample2"},
                self.l3.export(),
            ],
            "mean_channels": self.m,
            "mean_frac_bits": MEAN_FRAC,
            "levels": self.levels,
        }


@dataclass
class IntNet:
    """Exact executor of an exported integer network (the Python reference)."""

    spec: dict
    layers: list = field(init=False)

    def __post_init__(self):
        self.layers = []
        for layer in self.spec["layers"]:
            if layer["op"] == "conv":
                w = np.asarray(layer["weight"], dtype=np.int64).reshape(
                    layer["cout"], layer["cin"], layer["k"], layer["k"]
                )
                self.layers.append(
                    ("conv", w, np.asarray(layer["bias"], np.int64), np.asarray(layer["shift"], np.int64), layer["relu"])
                )
            elif layer["op"] == "upsample2":
                self.layers.append(("up",))
            else:
                raise ValueError(f"unknown intnet op {layer['op']!r}")

    @classmethod
    def load(cls, path) -> "IntNet":
        with open(path) as f:
            return cls(json.load(f))

    def run(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """z: int [Cz, h, w] -> (mean float32 [M, 4h, 4w], index int32 [M, 4h, 4w])."""
        x = np.asarray(z, dtype=np.int64)
        for layer in self.layers:
            if layer[0] == "up":
                x = x.repeat(2, axis=1).repeat(2, axis=2)
                continue
            _, w, b, shift, relu = layer
            cout, cin, k, _ = w.shape
            p = k // 2
            c, h, wd = x.shape
            xp = np.pad(x, ((0, 0), (p, p), (p, p)))
            cols = np.empty((cin, k, k, h, wd), dtype=np.int64)
            for dy in range(k):
                for dx in range(k):
                    cols[:, dy, dx] = xp[:, dy : dy + h, dx : dx + wd]
            acc = w.reshape(cout, -1) @ cols.reshape(cin * k * k, h * wd) + b[:, None]
            half = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
            right = (acc + half[:, None]) >> np.maximum(shift, 0)[:, None]
            out = np.where(shift[:, None] > 0, right, acc << np.maximum(-shift, 0)[:, None])
            if relu:
                out = np.maximum(out, 0)
            x = np.clip(out, ACT_MIN, ACT_MAX).reshape(cout, h, wd)
        m = self.spec["mean_channels"]
        mean = (x[:m].astype(np.float32) / np.float32(2 ** self.spec["mean_frac_bits"])).astype(np.float32)
        idx = np.clip(x[m:], 0, self.spec["levels"] - 1).astype(np.int32)
        return mean, idx
