"""Train the VFCN on cached detector features.

Loss = bits per (512x512 image) pixel + lambda * 255^2 * MSE on the normalised
feature, with the IVN gain drawn log-uniformly over its range for every
sample, so one model learns every operating point.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import numpy as np
import torch

from .vfcn import Vfcn, VfcnConfig

FEATURE_STRIDE = 4  # P is at 1/4 of the detector input (bpp counts input pixels)


@dataclass
class TrainConfig:
    steps: int = 4000
    batch: int = 8
    crop: int = 64
    lr: float = 5e-4
    lmbda: float = 0.02
    seed: int = 0
    log_every: int = 100


def normalise(p: np.ndarray) -> np.ndarray:
    """Per-frame min-max normalisation of [N, C, H, W] features, centred on 0
    (values in [-0.5, 0.5]): IVN's first half. Centring lets the bias-free
    LeakyReLUs act on the signal instead of on a large constant offset."""
    p = p.astype(np.float32)
    lo = p.min(axis=(1, 2, 3), keepdims=True)
    hi = p.max(axis=(1, 2, 3), keepdims=True)
    return (p - lo) / np.maximum(hi - lo, 1e-6) - 0.5


def batches(feats: np.ndarray, cfg: TrainConfig, rng: np.random.Generator):
    n, _, h, w = feats.shape
    while True:
        idx = rng.integers(0, n, cfg.batch)
        ys = rng.integers(0, h - cfg.crop + 1, cfg.batch)
        xs = rng.integers(0, w - cfg.crop + 1, cfg.batch)
        crops = np.stack([feats[i, :, y : y + cfg.crop, x : x + cfg.crop] for i, y, x in zip(idx, ys, xs)])
        yield torch.from_numpy(crops.astype(np.float32))


def rd_loss(net: Vfcn, pbar: torch.Tensor, gain: torch.Tensor, lmbda: float):
    x_hat, y_lik, z_lik = net(pbar * gain)
    n, _, h, w = pbar.shape
    pixels = n * (h * FEATURE_STRIDE) * (w * FEATURE_STRIDE)
    bpp = (torch.log2(y_lik).sum() + torch.log2(z_lik).sum()) / -pixels
    mse = torch.mean((x_hat / gain - pbar) ** 2)
    return bpp + lmbda * 255**2 * mse, bpp, mse


def train(train_feats: np.ndarray, vcfg: VfcnConfig, cfg: TrainConfig, log=print, init: dict | None = None) -> Vfcn:
    """train_feats: normalised features [N, 24, 128, 128] (float16 or float32).
    `init`: a state dict to continue from (entropy-table buffers removed)."""
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = Vfcn(vcfg)
    if init is not None:
        net.load_state_dict(init, strict=False)
    aux_params = [p for n, p in net.named_parameters() if n.endswith("quantiles")]
    main_params = [p for n, p in net.named_parameters() if not n.endswith("quantiles")]
    opt = torch.optim.Adam(main_params, lr=cfg.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / cfg.steps, 1.0))) * 0.95 + 0.05
    )
    lg_min, lg_max = math.log(vcfg.gain_min), math.log(vcfg.gain_max)
    net.train()
    t0, acc = time.time(), np.zeros(3)
    for step, pbar in zip(range(1, cfg.steps + 1), batches(train_feats, cfg, rng)):
        gain = torch.exp(torch.empty(pbar.shape[0], 1, 1, 1).uniform_(lg_min, lg_max))
        loss, bpp, mse = rd_loss(net, pbar, gain, cfg.lmbda)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        opt.step()
        sched.step()
        aux = net.aux_loss()
        aux_opt.zero_grad()
        aux.backward()
        aux_opt.step()
        acc += (loss.item(), bpp.item(), mse.item())
        if step % cfg.log_every == 0 or step == cfg.steps:
            k = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
            log(
                f"step {step}/{cfg.steps} loss {acc[0] / k:.4f} bpp {acc[1] / k:.4f} "
                f"mse {acc[2] / k:.2e} aux {aux.item():.1f} {(time.time() - t0) / step:.3f}s/step"
            )
            acc[:] = 0
    net.eval()
    return net
