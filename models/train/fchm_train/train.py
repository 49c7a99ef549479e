"""Train the VFCN on cached detector features.

Loss = bits per (512x512 image) pixel + lambda * 255^2 * MSE on the normalised
feature (+ task_beta * the detector head's distortion, taskhead.py, when
task_beta > 0), with the IVN gain drawn log-uniformly over its range for every
sample, so one model learns every operating point.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .taskhead import TaskHead, task_distortion
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
    # Weight of the detector head's distortion (0: feature MSE alone). The head
    # reads raw P, so the batches carry each frame's range to undo IVN.
    task_beta: float = 0.0


def normalise(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame min-max normalisation of [N, C, H, W] features, centred on 0
    (values in [-0.5, 0.5]): IVN's first half. Centring lets the bias-free
    LeakyReLUs act on the signal instead of on a large constant offset.
    Returns the normalised features and each frame's (min, max - min),
    float32 [N, 1, 1, 1], which undo it."""
    p = p.astype(np.float32)
    lo = p.min(axis=(1, 2, 3), keepdims=True)
    span = np.maximum(p.max(axis=(1, 2, 3), keepdims=True) - lo, 1e-6)
    return (p - lo) / span - 0.5, lo, span


def batches(feats: np.ndarray, frame_ranges, cfg: TrainConfig, rng: np.random.Generator, device="cpu"):
    """Random crops of normalised features, with their frames' (min, span)."""
    lo, span = frame_ranges
    n, _, h, w = feats.shape
    while True:
        idx = rng.integers(0, n, cfg.batch)
        ys = rng.integers(0, h - cfg.crop + 1, cfg.batch)
        xs = rng.integers(0, w - cfg.crop + 1, cfg.batch)
        crops = np.stack([feats[i, :, y : y + cfg.crop, x : x + cfg.crop] for i, y, x in zip(idx, ys, xs)])
        yield (torch.from_numpy(a).to(device) for a in (crops.astype(np.float32), lo[idx], span[idx]))


def rd_loss(net: Vfcn, pbar: torch.Tensor, gain: torch.Tensor, lmbda: float, task=None):
    """task: None, or (head, beta, lo, span) to add beta * the head's distortion
    between raw P and P̂ (the crops' frames' ranges undo the normalisation)."""
    x_hat, y_lik, z_lik = net(pbar * gain)
    n, _, h, w = pbar.shape
    pixels = n * (h * FEATURE_STRIDE) * (w * FEATURE_STRIDE)
    bpp = (torch.log2(y_lik).sum() + torch.log2(z_lik).sum()) / -pixels
    pbar_hat = x_hat / gain
    mse = torch.mean((pbar_hat - pbar) ** 2)
    loss = bpp + lmbda * 255**2 * mse
    d_task = torch.zeros(())
    if task is not None:
        head, beta, lo, span = task
        d_task = task_distortion(head, (pbar + 0.5) * span + lo, (pbar_hat + 0.5) * span + lo)
        loss = loss + beta * d_task
    return loss, bpp, mse, d_task


def train(
    train_feats: np.ndarray,
    vcfg: VfcnConfig,
    cfg: TrainConfig,
    log=print,
    init: dict | None = None,
    task_back: Path | None = None,
    device: torch.device | str = "cpu",
) -> Vfcn:
    """train_feats: raw features [N, 24, 128, 128] (float16 or float32).
    `init`: a state dict to continue from (entropy-table buffers removed).
    `task_back`: the detector back end's graph, needed when cfg.task_beta > 0.
    The model comes back on the CPU, ready to export."""
    pbars, lo, span = normalise(train_feats)
    pbars = pbars.astype(np.float16)
    head = None
    if cfg.task_beta > 0:
        if task_back is None:
            raise ValueError("task_beta > 0 needs the detector's task_back graph")
        head = TaskHead(task_back).to(device)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = Vfcn(vcfg)
    if init is not None:
        net.load_state_dict(init, strict=False)
    net.to(device)
    aux_params = [p for n, p in net.named_parameters() if n.endswith("quantiles")]
    main_params = [p for n, p in net.named_parameters() if not n.endswith("quantiles")]
    opt = torch.optim.Adam(main_params, lr=cfg.lr)
    aux_opt = torch.optim.Adam(aux_params, lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / cfg.steps, 1.0))) * 0.95 + 0.05
    )
    lg_min, lg_max = math.log(vcfg.gain_min), math.log(vcfg.gain_max)
    net.train()
    t0, acc = time.time(), np.zeros(4)
    for step, (pbar, lo_b, span_b) in zip(range(1, cfg.steps + 1), batches(pbars, (lo, span), cfg, rng, device)):
        # drawn on the CPU whatever the device, so a recipe draws the same gains
        gain = torch.exp(torch.empty(pbar.shape[0], 1, 1, 1).uniform_(lg_min, lg_max)).to(device)
        task = (head, cfg.task_beta, lo_b, span_b) if head is not None else None
        loss, bpp, mse, d_task = rd_loss(net, pbar, gain, cfg.lmbda, task)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        opt.step()
        sched.step()
        aux = net.aux_loss()
        aux_opt.zero_grad()
        aux.backward()
        aux_opt.step()
        acc += (loss.item(), bpp.item(), mse.item(), d_task.item())
        if step % cfg.log_every == 0 or step == cfg.steps:
            k = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
            log(
                f"step {step}/{cfg.steps} loss {acc[0] / k:.4f} bpp {acc[1] / k:.4f} "
                f"mse {acc[2] / k:.2e} task {acc[3] / k:.2e} aux {aux.item():.1f} {(time.time() - t0) / step:.3f}s/step"
            )
            acc[:] = 0
    net.cpu().eval()
    return net
