"""VFCN: variable-rate feature compression with Implicit Variable Normalisation.

The camera-side feature P (24x128x128, the detector cut after
expanded_conv_2/add) is min-max normalised per frame, multiplied by a gain g,
and coded with a mean-scale hyperprior. The gain is the only rate knob.

Why the analysis and synthesis transforms have no biases and no GDN: a
bias-free conv/LeakyReLU network is positively homogeneous, enc(g*x) =
g*enc(x), so changing g moves every latent relative to the fixed quantiser
step exactly like a finer or coarser quantiser, and the decoder output divided
by g is a consistent estimate of the normalised feature at every gain. GDN
would normalise the gain away again.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from compressai.entropy_models import EntropyBottleneck, GaussianConditional

from .intnet import HyperSynthesis, ste

FEATURE_CHANNELS = 24
# CompressAI's default scale table: 64 log-spaced scales from 0.11 to 256.
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 256.0, 64


def scale_table() -> torch.Tensor:
    return torch.exp(torch.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS))


@dataclass
class VfcnConfig:
    n: int = 48  # analysis width
    m: int = 32  # latent channels (y, at the feature resolution)
    nz: int = 32  # hyper-latent channels (z)
    nh: int = 32  # integer hyper-synthesis width
    nd: int = 64  # synthesis width (server side)
    gain_min: float = 1.0
    gain_max: float = 64.0

    def to_dict(self) -> dict:
        return asdict(self)


def _conv(cin, cout, k=3, s=1, bias=False):
    return nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, bias=bias)


class Vfcn(nn.Module):
    def __init__(self, cfg: VfcnConfig):
        super().__init__()
        self.cfg = cfg
        act = lambda: nn.LeakyReLU(0.1)  # noqa: E731
        # Edge analysis, ~0.2 GMAC at 128x128 (about the detector front's cost).
        # y keeps the feature resolution: the cut-A features are already a
        # linear bottleneck, and with y at a quarter of it an unquantised
        # autoencoder recovered only a third of their variance. The rate is set
        # by the quantiser (the gain), not by spatial reduction.
        self.g_a = nn.Sequential(_conv(FEATURE_CHANNELS, cfg.n, 3, 1), act(), _conv(cfg.n, cfg.m, 1, 1))
        self.h_a = nn.Sequential(_conv(cfg.m, cfg.n, 3, 2, True), act(), _conv(cfg.n, cfg.nz, 3, 2, True))
        self.g_s = nn.Sequential(_conv(cfg.m, cfg.nd, 3), act(), _conv(cfg.nd, FEATURE_CHANNELS, 3))
        self.h_s = HyperSynthesis(cfg.nz, cfg.nh, cfg.m, SCALE_LEVELS)
        self.entropy_bottleneck = EntropyBottleneck(cfg.nz)
        self.gaussian_conditional = GaussianConditional(None)
        self.register_buffer("log_scales", scale_table().log())

    def scales_from_index(self, idx: torch.Tensor) -> torch.Tensor:
        step = (self.log_scales[-1] - self.log_scales[0]) / (SCALE_LEVELS - 1)
        return torch.exp(self.log_scales[0] + idx * step)

    def forward(self, x: torch.Tensor):
        """x = gain * centred normalised feature. Returns (x_hat, likelihoods_y, likelihoods_z)."""
        y = self.g_a(x)
        z = self.h_a(y)
        _, z_lik = self.entropy_bottleneck(z)
        medians = self.entropy_bottleneck._get_medians().detach()
        z_int = ste(z - medians, torch.round(z - medians))
        mean, idx = self.h_s(z_int)
        scales = self.scales_from_index(idx)
        _, y_lik = self.gaussian_conditional(y, scales, means=mean)
        y_hat = ste(y - mean, torch.round(y - mean)) + mean
        return self.g_s(y_hat), y_lik, z_lik

    def aux_loss(self):
        return self.entropy_bottleneck.loss()


class EncoderGraph(nn.Module):
    """x -> y, for ONNX export as `vfcn_enc`."""

    def __init__(self, net: Vfcn):
        super().__init__()
        self.g_a = net.g_a

    def forward(self, x):
        return self.g_a(x)


class HyperEncoderGraph(nn.Module):
    """y -> z, for ONNX export as `vfcn_hyper_enc`."""

    def __init__(self, net: Vfcn):
        super().__init__()
        self.h_a = net.h_a

    def forward(self, y):
        return self.h_a(y)


class DecoderGraph(nn.Module):
    """y_hat -> gain * normalised feature, for ONNX export as `vfcn_dec`."""

    def __init__(self, net: Vfcn):
        super().__init__()
        self.g_s = net.g_s

    def forward(self, y_hat):
        return self.g_s(y_hat)
