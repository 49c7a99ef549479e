"""One command for the human layer: data -> ACN + fast decoder -> diffusion prior -> FCN -> export -> manifest.

    cd models/train && python -m fchm_train.hvcn_build --machine ../centernet-vfcn --out ../centernet-hvcn
    cd models/train && python -m fchm_train.hvcn_build --smoke --machine DIR --out /tmp/hvcn-smoke   # < 2 min

It reads the machine bundle (detector front, exported VFCN) and never its
training state: the features P_hat it trains on are decoded by the reference
codec from real bitstreams at random machine gains, exactly what the server
will see. Stages (each logs its loss):

1. ACN + fast decoder, jointly: bits of the aux latent + lambda * 255^2 * MSE;
2. the diffusion prior: an unconditional epsilon-predicting denoiser over the
   unit-variance residual (image - fast image);
3. the FCN: the prior frozen, zero-convolution injections trained (ControlNet).

The fast stage is saved on its own (models/cache, named by its recipe);
`--resume` reuses it, e.g. to retrain only the diffusion stages.

On a GPU: `--device cuda --steps-scale 20` trains every stage twenty times
longer (docs/human-layer.md; the CUDA path has not been run here).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import data
from .detector import prepare_image
from .device import training_device
from .export import OPSET, bundle_id, entropy_tables, export_onnx, sha256_file
from .hvcn import (
    AUX_HW,
    AUX_Z_HW,
    FEATURE_HW,
    IMAGE_HW,
    PIXEL_BLOCK,
    RESIDUAL_CHANNELS,
    Acn,
    AcnEncoderGraph,
    AcnHyperEncoderGraph,
    Denoiser,
    FastDecoder,
    Fcn,
    HvcnConfig,
)
from .refcodec import AuxCoder, RefCodec, run, session
from .vfcn import FEATURE_CHANNELS

SCHEMA = "fchm-hvcn/1"
CONTAINER_OVERHEAD = 57 + 2 * 11 + 4  # an aux frame: header, two descriptors, CRC (docs/bitstream.md)
PIXELS = IMAGE_HW * IMAGE_HW
EDGE_GRAPHS = ("acn_enc", "acn_hyper_enc")
MACHINE_GAIN = (2.0, 32.0)  # P_hat for training is decoded at gains log-uniform in this range


def scheduler_config() -> dict:
    """The noise schedule, as diffusers' DDIMScheduler config (the Rust sampler reads it)."""
    from diffusers import DDIMScheduler

    s = DDIMScheduler(
        num_train_timesteps=1000, beta_schedule="linear", beta_start=0.0001, beta_end=0.02,
        # x0 clipped to +-3 residual std: a briefly trained denoiser's eps errors at t ~ T are
        # otherwise amplified 1/sqrt(alpha_bar_999) = 157x into saturated pixels (docs/human-layer.md).
        clip_sample=True, clip_sample_range=3.0, set_alpha_to_one=False, timestep_spacing="trailing",
        prediction_type="epsilon",
    )  # fmt: skip
    return {k: v for k, v in dict(s.config).items() if not k.startswith("_")}


def alphas_cumprod(cfg: dict) -> torch.Tensor:
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(cfg).alphas_cumprod.float()


def centred(p: np.ndarray, fmin: float, fmax: float) -> np.ndarray:
    return ((p - np.float32(fmin)) / np.float32(fmax - fmin) - np.float32(0.5)).astype(np.float16)


def prepare(machine: Path, images, augment_k: int, seed: int, log) -> dict:
    """Per view: the 512x512 image (uint8), centred P and centred P_hat at a random machine gain."""
    codec = RefCodec(machine)
    front = session(machine / "front.onnx")
    rng = random.Random(seed)
    xs, ps, phs, gains = [], [], [], []
    t0 = time.time()
    for n, im in enumerate(images):
        for v in [im] + [data.augment(im, rng) for _ in range(augment_k)]:
            x = prepare_image(v)
            p = run(front, x)
            g = math.exp(rng.uniform(math.log(MACHINE_GAIN[0]), math.log(MACHINE_GAIN[1])))
            enc, _ = codec.encode(p, g)
            p_hat, _ = codec.decode(enc)
            xs.append(np.clip(np.round(x[0]), 0, 255).astype(np.uint8))
            ps.append(centred(p[0], enc.fmin, enc.fmax))
            phs.append(centred(p_hat[0], enc.fmin, enc.fmax))
            gains.append(g)
        if (n + 1) % 20 == 0:
            log(f"  prepared {n + 1}/{len(images)} images ({time.time() - t0:.0f}s)")
    return {"x": np.stack(xs), "p": np.stack(ps), "p_hat": np.stack(phs), "machine_gain": np.asarray(gains)}


def crops(d: dict, batch: int, crop: int, rng: np.random.Generator, keys=("x", "p", "p_hat"), device="cpu"):
    """Aligned random crops: `crop` on the 128 grid, 4x that on the image; offsets on the aux grid."""
    n = d["x"].shape[0]
    while True:
        idx = rng.integers(0, n, batch)
        ys = rng.integers(0, (FEATURE_HW - crop) // 4 + 1, batch) * 4
        xs = rng.integers(0, (FEATURE_HW - crop) // 4 + 1, batch) * 4
        out = []
        for k in keys:
            s = PIXEL_BLOCK if d[k].shape[-1] == IMAGE_HW else 1
            out.append(
                torch.from_numpy(
                    np.stack([d[k][i, :, y * s : (y + crop) * s, x * s : (x + crop) * s] for i, y, x in zip(idx, ys, xs)])
                ).float().to(device)
            )
        yield out


def stage_tag(cfg: HvcnConfig, steps: int, batch: int) -> str:
    """A short name for one stage's recipe, so a saved stage is reused only for the same one."""
    blob = json.dumps({"cfg": cfg.to_dict(), "steps": steps, "batch": batch}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def cosine(opt, steps):
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))) * 0.95 + 0.05
    )


def train_fast(d, cfg: HvcnConfig, steps, batch, crop, lmbda, lr, seed, log, device="cpu"):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    acn, dec = Acn(cfg).to(device), FastDecoder(cfg).to(device)
    main = [p for n, p in acn.named_parameters() if not n.endswith("quantiles")] + list(dec.parameters())
    aux_params = [p for n, p in acn.named_parameters() if n.endswith("quantiles")]
    opt, aux_opt = torch.optim.Adam(main, lr=lr), torch.optim.Adam(aux_params, lr=1e-3)
    sched = cosine(opt, steps)
    lg = (math.log(cfg.aux_gain_min), math.log(cfg.aux_gain_max))
    t0, acc = time.time(), np.zeros(3)
    for step, (x, p, ph) in zip(range(1, steps + 1), crops(d, batch, crop, rng, device=device)):
        gain = torch.exp(torch.empty(x.shape[0], 1, 1, 1, device=device).uniform_(*lg))
        ya, y_lik, z_lik = acn(x, p, gain)
        out = dec(ph, ya)
        bpp = (torch.log2(y_lik).sum() + torch.log2(z_lik).sum()) / -(x.shape[0] * x.shape[2] * x.shape[3])
        mse = torch.mean(((out - x) / 255.0) ** 2)
        loss = bpp + lmbda * 255**2 * mse
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main, 1.0)
        opt.step()
        sched.step()
        aux = acn.aux_loss()
        aux_opt.zero_grad()
        aux.backward()
        aux_opt.step()
        acc += (loss.item(), bpp.item(), mse.item())
        if step % 100 == 0 or step == steps:
            k = 100 if step % 100 == 0 else step % 100
            psnr = 10 * math.log10(1 / max(acc[2] / k, 1e-12))
            log(f"fast {step}/{steps} loss {acc[0] / k:.4f} aux-bpp {acc[1] / k:.4f} psnr {psnr:.2f} "
                f"{(time.time() - t0) / step:.3f}s/step")  # fmt: skip
            acc[:] = 0
    # Later stages and the export run on the CPU.
    acn.cpu().eval()
    dec.cpu().eval()
    return acn, dec


@torch.no_grad()
def fast_images(d, acn, dec, cfg: HvcnConfig, seed) -> np.ndarray:
    """The fast decoder's output for every view, with real rounding at a random aux gain."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(d["x"].shape[0]):
        x = torch.from_numpy(d["x"][i : i + 1]).float()
        p = torch.from_numpy(d["p"][i : i + 1]).float()
        ph = torch.from_numpy(d["p_hat"][i : i + 1]).float()
        lg = torch.empty(1).uniform_(math.log(cfg.aux_gain_min), math.log(cfg.aux_gain_max), generator=g)
        gain = float(torch.exp(lg))
        ya = torch.round(acn.analyse(x, p) * gain) / gain  # the model's mean offsets are small; good enough here
        out.append(dec(ph, ya).clamp(0, 255).round().to(torch.uint8).numpy()[0])
    return np.stack(out)


def residual(x: torch.Tensor, fast: torch.Tensor, scale: float) -> torch.Tensor:
    return F.pixel_unshuffle((x - fast) / 255.0 * scale, PIXEL_BLOCK)


def train_diffusion(d, cfg, sched_cfg, scale, steps, batch, crop, lr, seed, log, denoiser=None, acn=None, device="cpu"):
    """Without `denoiser`: train the prior. With it: freeze it and train an FCN (needs `acn`)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    acp = alphas_cumprod(sched_cfg).to(device)
    stage = "prior" if denoiser is None else "fcn"
    if denoiser is None:
        denoiser, fcn = Denoiser(cfg).to(device), None
        params = list(denoiser.parameters())
    else:
        denoiser = denoiser.to(device)
        acn = acn.to(device)
        for q in denoiser.parameters():
            q.requires_grad_(False)
        fcn = Fcn(cfg).to(device)
        params = list(fcn.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sch = cosine(opt, steps)
    lg = (math.log(cfg.aux_gain_min), math.log(cfg.aux_gain_max))
    t0, acc = time.time(), 0.0
    keys = ("x", "p", "p_hat", "fast")
    for step, (x, p, ph, fast) in zip(range(1, steps + 1), crops(d, batch, crop, rng, keys, device)):
        x0 = residual(x, fast, scale)
        t = torch.randint(0, acp.numel(), (x.shape[0],), device=device)
        a = acp[t].view(-1, 1, 1, 1)
        eps = torch.randn_like(x0)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        if fcn is None:
            pred = denoiser(xt, t.float())
        else:
            with torch.no_grad():
                gain = torch.exp(torch.empty(x.shape[0], 1, 1, 1, device=device).uniform_(*lg))
                ya = torch.round(acn.analyse(x, p) * gain) / gain
            c1, c2 = fcn(ph, ya, fast)
            pred = denoiser(xt, t.float(), c1, c2)
        loss = F.mse_loss(pred, eps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sch.step()
        acc += loss.item()
        if step % 100 == 0 or step == steps:
            k = 100 if step % 100 == 0 else step % 100
            log(f"{stage} {step}/{steps} loss {acc / k:.4f} {(time.time() - t0) / step:.3f}s/step")
            acc = 0.0
    denoiser.cpu().eval()
    if fcn is not None:
        fcn.cpu().eval()
        acn.cpu()
    return denoiser, fcn


class _FastGraph(torch.nn.Module):
    def __init__(self, dec):
        super().__init__()
        self.dec = dec

    def forward(self, p_hat, ya_hat):
        return self.dec(p_hat, ya_hat)


class _FcnGraph(torch.nn.Module):
    def __init__(self, fcn):
        super().__init__()
        self.fcn = fcn

    def forward(self, p_hat, ya_hat, fast):
        return self.fcn(p_hat, ya_hat, fast)


def export(out: Path, cfg: HvcnConfig, acn, dec, denoiser, fcn) -> dict:
    img, feat = [1, 3, IMAGE_HW, IMAGE_HW], [1, FEATURE_CHANNELS, FEATURE_HW, FEATURE_HW]
    ya, za = [1, cfg.ma, AUX_HW, AUX_HW], [1, cfg.nza, AUX_Z_HW, AUX_Z_HW]
    res = [1, RESIDUAL_CHANNELS, FEATURE_HW, FEATURE_HW]
    c1, c2 = [1, cfg.nd, FEATURE_HW, FEATURE_HW], [1, 2 * cfg.nd, FEATURE_HW // 2, FEATURE_HW // 2]
    graphs = {
        "acn_enc": (AcnEncoderGraph(acn), {"image": img, "pbar": feat}, {"ya": ya}),
        "acn_hyper_enc": (AcnHyperEncoderGraph(acn), {"ya": ya}, {"za": za}),
        "hvcn_fast": (_FastGraph(dec), {"p_hat": feat, "ya_hat": ya}, {"image": img}),
        "hvcn_fcn": (_FcnGraph(fcn), {"p_hat": feat, "ya_hat": ya, "fast": img}, {"c1": c1, "c2": c2}),
        "hvcn_denoiser": (denoiser, {"x": res, "t": [1], "c1": c1, "c2": c2}, {"eps": res}),
    }
    specs = {}
    with torch.no_grad():
        for key, (module, ins, outs) in graphs.items():
            export_onnx(module, ins, list(outs), out / f"{key}.onnx")
            specs[key] = {"file": f"{key}.onnx", "inputs": ins, "outputs": outs,
                          "role": "edge" if key in EDGE_GRAPHS else "server"}  # fmt: skip
        (out / "aux_entropy.json").write_text(json.dumps(entropy_tables(acn)))
    (out / "aux_hyper_synth.json").write_text(json.dumps(acn.h_s.export()))
    return specs


def aux_rate_table(out: Path, machine: Path, images, gains) -> list:
    """Aux bits per pixel per aux gain, by real coding through the exported files only."""
    coder = AuxCoder(out, machine)
    inputs = [coder.analyse(prepare_image(im)) for im in images]
    rows = []
    for g in gains:
        bits = 0
        for ya in inputs:
            zb, yb, _ = coder.encode(ya, g)
            bits += 8 * (len(zb) + len(yb) + CONTAINER_OVERHEAD)
        rows.append({"gain": round(float(g), 4), "bpp": bits / (len(inputs) * PIXELS)})
        print(f"  aux gain {g:6.3f}: {rows[-1]['bpp']:.4f} bpp", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machine", type=Path, required=True, help="the machine bundle (with its detector graphs)")
    ap.add_argument("--out", type=Path, required=True, help="human-layer bundle directory to write")
    ap.add_argument("--cache", type=Path, default=Path(__file__).resolve().parents[2] / "cache")
    ap.add_argument("--smoke", action="store_true", help="tiny model and data (tests, CI)")
    ap.add_argument("--steps-scale", type=float, default=1.0, help="multiply every stage's steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="torch device for training (cuda on a GPU machine)")
    ap.add_argument("--resume", action="store_true", help="reuse a fast stage saved by an earlier run of the same config")
    args = ap.parse_args(argv)
    try:
        dev = training_device(args.device)
    except ValueError as e:
        ap.error(str(e))
    torch.set_num_threads(args.threads)
    t0 = time.time()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)

    def log(s):
        print(f"[{time.time() - t0:6.0f}s] {s}", flush=True)

    machine_manifest = json.loads((args.machine / "manifest.json").read_text())
    train_s, val_s = data.split()
    if args.smoke:
        cfg = HvcnConfig(na=8, ma=8, nza=4, nha=8, nf=8, blocks=1, nd=8)
        steps, batch, augment_k = (40, 30, 30), 2, 0
        train_s, val_s = train_s[:6], val_s[:2]
    else:
        cfg = HvcnConfig(nf=48, blocks=3)
        steps, batch, augment_k = (18000, 3000, 3000), 8, 1
    steps = tuple(max(1, int(s * args.steps_scale)) for s in steps)

    key = f"hvcn-{'smoke' if args.smoke else 'full'}-{machine_manifest['bundle_id'][:12]}-{augment_k}"
    cache_file = args.cache / f"{key}.npz"
    if cache_file.exists():
        d = dict(np.load(cache_file))
    else:
        log(f"data: {len(train_s)} training images x {augment_k + 1} views, P_hat by the reference codec")
        d = prepare(args.machine, data.load_images(train_s), augment_k, 0, log)
        np.savez(cache_file, **d)
    log(f"training on {d['x'].shape[0]} views")

    # The fast stage is saved on its own so that the diffusion stages can be
    # rerun (--resume) and the fast path evaluated while they train.
    fast_ckpt = args.cache / f"{key}-fast-{stage_tag(cfg, steps[0], batch)}.pt"
    if args.resume and fast_ckpt.exists():
        log(f"fast stage from {fast_ckpt}")
        acn, dec = Acn(cfg), FastDecoder(cfg)
        state = torch.load(fast_ckpt)
        acn.load_state_dict(state["acn"])
        dec.load_state_dict(state["fast"])
        acn.eval()
        dec.eval()
    else:
        acn, dec = train_fast(d, cfg, steps[0], batch, 48 if not args.smoke else 32, 0.01, 5e-4, 0, log, dev)
        torch.save({"acn": acn.state_dict(), "fast": dec.state_dict(), "cfg": cfg.to_dict()}, fast_ckpt)
    d["fast"] = fast_images(d, acn, dec, cfg, 1)
    r = (d["x"].astype(np.float32) - d["fast"].astype(np.float32)) / 255.0
    scale = float(1.0 / max(r.std(), 1e-3))
    log(f"residual std {r.std():.4f} -> scale {scale:.2f}")
    sched_cfg = scheduler_config()
    den, _ = train_diffusion(d, cfg, sched_cfg, scale, steps[1], 2 * batch, 32, 5e-4, 2, log, device=dev)
    den, fcn = train_diffusion(
        d, cfg, sched_cfg, scale, steps[2], 2 * batch, 32, 5e-4, 3, log, denoiser=den, acn=acn, device=dev
    )
    torch.save({"acn": acn.state_dict(), "fast": dec.state_dict(), "denoiser": den.state_dict(),
                "fcn": fcn.state_dict(), "cfg": cfg.to_dict()}, args.cache / f"{key}.pt")  # fmt: skip

    graphs = export(out, cfg, acn, dec, den, fcn)
    log(f"aux rate table on {len(val_s)} validation images")
    gains = list(np.geomspace(cfg.aux_gain_min, cfg.aux_gain_max, 3 if args.smoke else 6))
    rate_table = aux_rate_table(out, args.machine, data.load_images(val_s), gains)
    files = {g["file"]: sha256_file(out / g["file"]) for g in graphs.values()}
    for extra in ("aux_entropy.json", "aux_hyper_synth.json"):
        files[extra] = sha256_file(out / extra)
    manifest = {
        "schema": SCHEMA,
        "name": "centernet-hvcn",
        "version": "1.0.0",
        "bundle_id": bundle_id(files),
        "machine_bundle_id": machine_manifest["bundle_id"],
        "input": machine_manifest["input"],
        "aux": {
            "latent": {"y": [cfg.ma, AUX_HW, AUX_HW], "z": [cfg.nza, AUX_Z_HW, AUX_Z_HW]},
            "gain_min": cfg.aux_gain_min, "gain_max": cfg.aux_gain_max, "rate_table": rate_table,
        },
        "graphs": graphs,
        "entropy": "aux_entropy.json",
        "hyper_synth": "aux_hyper_synth.json",
        "diffusion": {"scheduler": "ddim", "steps": 8, "residual_scale": scale, "scheduler_config": sched_cfg},
        "files": files,
        "hvcn": cfg.to_dict(),
        "training": {"steps": list(steps), "batch": batch, "augment_k": augment_k, "views": int(d["x"].shape[0]),
                     "smoke": args.smoke, "onnx_opset": OPSET},
    }  # fmt: skip
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log(json.dumps({"bundle_id": manifest["bundle_id"]}))


if __name__ == "__main__":
    main()
