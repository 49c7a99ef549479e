"""VFCN: variable-rate feature compression with Implicit Variable Normalisation.

The camera-side feature P (24x128x128, the detector cut after
expanded_conv_2/add) is min-max normalised per frame (centred: values in
[-0.5, 0.5]), multiplied by a gain g, and coded with a mean-scale hyperprior
whose hyper-synthesis is an integer network (intnet.py). The gain is the only
rate knob.

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


class Residual(nn.Module):
    """out = L x + B(x): L a 1x1 linear map initialised to [I; 0] (or [I 0]),
    B a conv3x3 -> LeakyReLU -> conv(k) branch whose last layer starts at zero.
    Bias-free throughout, so positively homogeneous like the rest of IVN."""

    def __init__(self, cin: int, cout: int, width: int, k_out: int):
        super().__init__()
        self.lin = _conv(cin, cout, 1)
        with torch.no_grad():
            self.lin.weight.zero_()
            for c in range(min(cin, cout)):
                self.lin.weight[c, c, 0, 0] = 1.0
        self.branch = nn.Sequential(_conv(cin, width, 3), nn.LeakyReLU(0.1), _conv(width, cout, k_out))
        nn.init.zeros_(self.branch[-1].weight)

    def forward(self, x):
        return self.lin(x) + self.branch(x)


def code_latent(net: nn.Module, y: torch.Tensor):
    """The mean-scale hyperprior with integer hyper-synthesis, as trained.

    `net` has `h_a`, `h_s` (HyperSynthesis), `entropy_bottleneck`,
    `gaussian_conditional` and `scales_from_index`: the machine layer (Vfcn) and
    the aux layer (hvcn.Acn) code their latents with exactly this, so the
    Rust side codes both with one function too. Returns (y_hat, y_lik, z_lik).
    """
    z = net.h_a(y)
    _, z_lik = net.entropy_bottleneck(z)
    medians = net.entropy_bottleneck._get_medians().detach()
    z_int = ste(z - medians, torch.round(z - medians))
    mean, idx = net.h_s(z_int)
    scales = net.scales_from_index(idx)
    _, y_lik = net.gaussian_conditional(y, scales, means=mean)
    y_hat = ste(y - mean, torch.round(y - mean)) + mean
    return y_hat, y_lik, z_lik


class Vfcn(nn.Module):
    def __init__(self, cfg: VfcnConfig):
        super().__init__()
        self.cfg = cfg
        act = lambda: nn.LeakyReLU(0.1)  # noqa: E731
        # y keeps the feature resolution: the cut-A features are already a
        # linear bottleneck, and with y at a quarter of it an unquantised
        # autoencoder recovered only a third of their variance. The rate is set
        # by the quantiser (the gain), not by spatial reduction. Both transforms
        # start as the identity (a linear path initialised to [I; 0] plus a
        # zero-initialised nonlinear branch), so training starts from plain
        # scalar quantisation of the feature and only has to improve on it;
        # from a random start 2000 CPU steps did not get past a third of the
        # variance. Edge cost: ~0.2 GMAC at 128x128, about the detector front's.
        self.g_a = Residual(FEATURE_CHANNELS, cfg.m, cfg.n, 1)
        self.h_a = nn.Sequential(_conv(cfg.m, cfg.n, 3, 2, True), act(), _conv(cfg.n, cfg.nz, 3, 2, True))
        self.g_s = Residual(cfg.m, FEATURE_CHANNELS, cfg.nd, 3)
        self.h_s = HyperSynthesis(cfg.nz, cfg.nh, cfg.m, SCALE_LEVELS)
        self.entropy_bottleneck = EntropyBottleneck(cfg.nz)
        self.gaussian_conditional = GaussianConditional(None)
        self.register_buffer("log_scales", scale_table().log())

    def scales_from_index(self, idx: torch.Tensor) -> torch.Tensor:
        step = (self.log_scales[-1] - self.log_scales[0]) / (SCALE_LEVELS - 1)
        return torch.exp(self.log_scales[0] + idx * step)

    def forward(self, x: torch.Tensor):
        """x = gain * centred normalised feature. Returns (x_hat, likelihoods_y, likelihoods_z)."""
        y_hat, y_lik, z_lik = code_latent(self, self.g_a(x))
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
