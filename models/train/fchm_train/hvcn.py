"""HVCN, the human layer: ACN (aux stream), fast fusion decoder, FCN + diffusion prior.

Everything works on the detector's 512x512 input frame (the same stretched
resize as the machine layer), so the human view and the machine features
describe the same pixels:

- `Acn` (camera): image + the normalised features P -> aux latent ya
  (ma x 32 x 32), coded with the machine layer's hyperprior machinery
  (`vfcn.code_latent`: integer hyper-synthesis, CompressAI tables). Seeing P
  lets it spend bits only on what the features lack. The rate knob is one
  scalar: the latent is multiplied by `aux_gain` before quantisation and the
  decoder sees ya_hat / aux_gain, a finer or coarser quantiser from one model.
- `FastDecoder` (server): (normalised P_hat, ya_hat) -> image, trained for MSE.
  All its convolutions run at 128x128; a depth-to-space layer makes the pixels.
- `Denoiser` + `Fcn` (server, diffusion path): a small epsilon-predicting
  U-Net over the residual image - fast (space-to-depth 4x4, 48 x 128 x 128,
  scaled to unit variance) is the prior. It is first trained unconditionally;
  then, frozen, it receives the FCN's features through zero-initialised 1x1
  convolutions added to its activations (ControlNet's recipe). The FCN sees
  P_hat, ya_hat and the fast image; unlike ControlNet it does not see x_t, so
  it runs once per picture instead of once per sampling step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional

from .intnet import HyperSynthesis
from .vfcn import FEATURE_CHANNELS, SCALE_LEVELS, code_latent, scale_table

IMAGE_HW = 512
FEATURE_HW = 128
AUX_HW = 32  # stride 16
AUX_Z_HW = 8
PIXEL_BLOCK = 4  # space-to-depth factor between the image and the 128x128 grid
RESIDUAL_CHANNELS = 3 * PIXEL_BLOCK * PIXEL_BLOCK


@dataclass
class HvcnConfig:
    na: int = 64  # ACN width
    ma: int = 32  # aux latent channels
    nza: int = 16  # aux hyper-latent channels
    nha: int = 32  # integer hyper-synthesis width
    nf: int = 64  # fast decoder width
    blocks: int = 4  # fast decoder residual blocks
    nd: int = 64  # denoiser / FCN width
    aux_gain_min: float = 0.25
    aux_gain_max: float = 4.0

    def to_dict(self) -> dict:
        return asdict(self)


def _conv(cin, cout, k=3, s=1, bias=True):
    return nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, bias=bias)


def _act():
    return nn.LeakyReLU(0.1)


class ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(_conv(c, c), _act(), _conv(c, c))

    def forward(self, x):
        return x + self.body(x)


def aux_upsampler(ma: int, width: int) -> nn.Module:
    """ya_hat (32x32) -> features at 128x128, by two sub-pixel steps."""
    return nn.Sequential(
        _conv(ma, 4 * width), nn.PixelShuffle(2), _act(), _conv(width, 4 * width), nn.PixelShuffle(2)
    )


def image_to_unit(img: torch.Tensor) -> torch.Tensor:
    return img / 255.0 - 0.5


class Acn(nn.Module):
    """The camera's aux encoder with its entropy model (same attribute names as Vfcn)."""

    def __init__(self, cfg: HvcnConfig):
        super().__init__()
        self.cfg = cfg
        self.patch = nn.Conv2d(3, 32, PIXEL_BLOCK, stride=PIXEL_BLOCK)  # 512 -> 128
        self.g_a = nn.Sequential(
            _conv(32 + FEATURE_CHANNELS, cfg.na, 3, 2), _act(), _conv(cfg.na, cfg.na), _act(), _conv(cfg.na, cfg.ma, 3, 2)
        )
        self.h_a = nn.Sequential(_conv(cfg.ma, cfg.na, 3, 2), _act(), _conv(cfg.na, cfg.nza, 3, 2))
        self.h_s = HyperSynthesis(cfg.nza, cfg.nha, cfg.ma, SCALE_LEVELS)
        self.entropy_bottleneck = EntropyBottleneck(cfg.nza)
        self.gaussian_conditional = GaussianConditional(None)
        self.register_buffer("log_scales", scale_table().log())

    def scales_from_index(self, idx: torch.Tensor) -> torch.Tensor:
        step = (self.log_scales[-1] - self.log_scales[0]) / (SCALE_LEVELS - 1)
        return torch.exp(self.log_scales[0] + idx * step)

    def analyse(self, img: torch.Tensor, pbar: torch.Tensor) -> torch.Tensor:
        """img: RGB 0..255 (N,3,4h,4w); pbar: centred normalised P (N,24,h,w) -> ya (N,ma,h/4,w/4)."""
        return self.g_a(torch.cat([self.patch(image_to_unit(img)), pbar], 1))

    def forward(self, img, pbar, gain):
        """Returns (ya_hat / gain, y likelihoods, z likelihoods)."""
        y_hat, y_lik, z_lik = code_latent(self, self.analyse(img, pbar) * gain)
        return y_hat / gain, y_lik, z_lik

    def aux_loss(self):
        return self.entropy_bottleneck.loss()


class FastDecoder(nn.Module):
    def __init__(self, cfg: HvcnConfig):
        super().__init__()
        self.a = aux_upsampler(cfg.ma, cfg.nf)
        self.p = _conv(FEATURE_CHANNELS, cfg.nf)
        self.body = nn.Sequential(*[ResBlock(cfg.nf) for _ in range(cfg.blocks)])
        self.out = nn.Sequential(_conv(cfg.nf, RESIDUAL_CHANNELS), nn.PixelShuffle(PIXEL_BLOCK))

    def forward(self, pbar_hat, ya_hat):
        """-> RGB 0..255 (not clipped; the caller clips)."""
        h = F.leaky_relu(self.a(ya_hat) + self.p(pbar_hat), 0.1)
        return (self.out(self.body(h)) + 0.5) * 255.0


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of float timesteps [N] -> [N, dim] (the DDPM one)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], 1)


class TBlock(nn.Module):
    """Residual block with an additive timestep bias."""

    def __init__(self, c: int, tdim: int):
        super().__init__()
        self.c1, self.c2, self.t = _conv(c, c), _conv(c, c), nn.Linear(tdim, c)

    def forward(self, h, temb):
        r = self.c1(F.silu(h)) + self.t(temb)[:, :, None, None]
        return h + self.c2(F.silu(r))


class Denoiser(nn.Module):
    """epsilon(x_t, t) on the 48 x 128 x 128 residual; two levels (128, 64)."""

    def __init__(self, cfg: HvcnConfig):
        super().__init__()
        nd, tdim = cfg.nd, 4 * cfg.nd
        self.nd = nd
        self.temb = nn.Sequential(nn.Linear(nd, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.inp = _conv(RESIDUAL_CHANNELS, nd)
        self.b1 = TBlock(nd, tdim)
        self.down = _conv(nd, 2 * nd, 3, 2)
        self.b2, self.b3 = TBlock(2 * nd, tdim), TBlock(2 * nd, tdim)
        self.up = nn.Sequential(_conv(2 * nd, 4 * nd), nn.PixelShuffle(2))
        self.fuse = _conv(2 * nd, nd, 1)
        self.b4 = TBlock(nd, tdim)
        self.out = _conv(nd, RESIDUAL_CHANNELS)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, t, c1=None, c2=None):
        temb = self.temb(timestep_embedding(t, self.nd))
        h1 = self.inp(x)
        if c1 is not None:
            h1 = h1 + c1
        h1 = self.b1(h1, temb)
        h2 = self.down(F.silu(h1))
        if c2 is not None:
            h2 = h2 + c2
        h2 = self.b3(self.b2(h2, temb), temb)
        h = self.fuse(torch.cat([self.up(F.silu(h2)), h1], 1))
        return self.out(F.silu(self.b4(h, temb)))


class Fcn(nn.Module):
    """Fusion control network: (P_hat, ya_hat, fast image) -> the denoiser's two injections."""

    def __init__(self, cfg: HvcnConfig):
        super().__init__()
        nd = cfg.nd
        self.a = aux_upsampler(cfg.ma, nd)
        self.p = _conv(FEATURE_CHANNELS + RESIDUAL_CHANNELS, nd)
        self.r1 = ResBlock(nd)
        self.down = _conv(nd, 2 * nd, 3, 2)
        self.r2 = ResBlock(2 * nd)
        # Zero convolutions: training starts from the unconditional prior exactly.
        self.z1, self.z2 = _conv(nd, nd, 1), _conv(2 * nd, 2 * nd, 1)
        for z in (self.z1, self.z2):
            nn.init.zeros_(z.weight)
            nn.init.zeros_(z.bias)

    def forward(self, pbar_hat, ya_hat, fast):
        fast_s2d = F.pixel_unshuffle(image_to_unit(fast), PIXEL_BLOCK)
        h = F.leaky_relu(self.a(ya_hat) + self.p(torch.cat([pbar_hat, fast_s2d], 1)), 0.1)
        h = self.r1(h)
        h2 = self.r2(F.leaky_relu(self.down(h), 0.1))
        return self.z1(h), self.z2(h2)


# --- graphs for export ------------------------------------------------------------


class AcnEncoderGraph(nn.Module):
    """(image 0..255, pbar) -> ya, before the gain (`acn_enc`)."""

    def __init__(self, acn: Acn):
        super().__init__()
        self.acn = acn

    def forward(self, image, pbar):
        return self.acn.analyse(image, pbar)


class AcnHyperEncoderGraph(nn.Module):
    """gain * ya -> za (`acn_hyper_enc`)."""

    def __init__(self, acn: Acn):
        super().__init__()
        self.h_a = acn.h_a

    def forward(self, y):
        return self.h_a(y)
