"""Reference runs of diffusers' samplers, written as fixtures for the Rust scheduler.

    cd models/train && python -m fchm_train.scheduler_ref --out ../../tests/data/scheduler

Each case builds a diffusers scheduler from a config, sets its timesteps and
steps it from a seeded random sample with seeded random model outputs (no
weights are involved: a scheduler is pure arithmetic on tensors). The fixture
keeps everything the Rust side needs to replay the run and compare every step
(`tests/scheduler_parity.rs`); `tests/python/test_scheduler_fixtures.py`
checks the committed files still equal a fresh run.

Floats are written as the shortest decimal that reads back as the same
float32, so the files stay small without rounding anything. JSON has no
infinities: a non-finite config value (DPM-Solver's `lambda_min_clipped` is
-inf by default) is written as the string Python's json would have printed
bare ("-Infinity"); the bare-token text diffusers' `save_config` writes is
kept verbatim in `scheduler_config_json`.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

SHAPE = [2, 3, 4, 4]

# name -> (scheduler name on the Rust side, diffusers class, config overrides, inference steps, seed)
CASES = {
    # Stable Diffusion's own DDIM settings.
    "ddim_scaled_linear_leading_epsilon": (
        "ddim",
        "DDIMScheduler",
        dict(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            timestep_spacing="leading",
            steps_offset=1,
            prediction_type="epsilon",
            clip_sample=False,
            set_alpha_to_one=False,
        ),
        25,
        1,
    ),
    # 1000/12 is not whole: trailing timesteps and DDIM's `t - T // n` previous step disagree.
    "ddim_linear_trailing_v_prediction": (
        "ddim",
        "DDIMScheduler",
        dict(
            beta_schedule="linear",
            timestep_spacing="trailing",
            prediction_type="v_prediction",
            clip_sample=True,
            clip_sample_range=1.5,
            set_alpha_to_one=True,
        ),
        12,
        2,
    ),
    "ddim_cosine_linspace_sample": (
        "ddim",
        "DDIMScheduler",
        dict(
            beta_schedule="squaredcos_cap_v2",
            timestep_spacing="linspace",
            prediction_type="sample",
            clip_sample=True,
        ),
        6,
        3,
    ),
    "dpmpp2_scaled_linear_linspace_epsilon": (
        "dpm-solver++",
        "DPMSolverMultistepScheduler",
        dict(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            timestep_spacing="linspace",
            prediction_type="epsilon",
            solver_order=2,
        ),
        20,
        4,
    ),
    "dpmpp2_10_steps_lower_order_final": (
        "dpm-solver++",
        "DPMSolverMultistepScheduler",
        dict(
            beta_schedule="linear",
            timestep_spacing="leading",
            steps_offset=1,
            prediction_type="v_prediction",
            solver_order=2,
            lower_order_final=True,
        ),
        10,
        5,
    ),
    # sigma_min final sigma and no lower-order final step: the last step is second order.
    "dpmpp2_cosine_trailing_sample_sigma_min": (
        "dpm-solver++",
        "DPMSolverMultistepScheduler",
        dict(
            beta_schedule="squaredcos_cap_v2",
            timestep_spacing="trailing",
            prediction_type="sample",
            solver_order=2,
            lower_order_final=False,
            final_sigmas_type="sigma_min",
        ),
        8,
        6,
    ),
    "dpmpp1_scaled_linear_linspace_epsilon": (
        "dpm-solver++",
        "DPMSolverMultistepScheduler",
        dict(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            timestep_spacing="linspace",
            prediction_type="epsilon",
            solver_order=1,
        ),
        7,
        7,
    ),
}


def f32(x) -> str:
    """The shortest decimal that reads back (via float64, as serde_json reads it) as the same float32."""
    x = np.float32(x)
    if not np.isfinite(x):
        raise ValueError(f"non-finite value {x} in a fixture")
    s = str(x)
    if np.float32(float(s)) != x:  # double rounding through float64 could land elsewhere
        s = repr(float(x))
    return s


def to_json(value, indent: int = 0) -> str:
    """JSON text with float32 arrays in shortest form; dicts one key a line at the top, lists of dicts one a line."""
    pad = "  " * (indent + 1)
    if isinstance(value, np.ndarray):
        return "[" + ",".join(f32(v) for v in value.reshape(-1)) + "]"
    if isinstance(value, dict):
        if indent > 0:
            return "{" + ",".join(f"{json.dumps(k)}:{to_json(v, indent + 1)}" for k, v in value.items()) + "}"
        items = [f"{pad}{json.dumps(k)}: {to_json(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n}\n"
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return "[\n" + ",\n".join(pad + to_json(v, indent + 1) for v in value) + "\n" + "  " * indent + "]"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v, indent + 1) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(json.dumps(value))  # -inf -> "-Infinity"
    return json.dumps(value, allow_nan=False)


def run_case(name: str) -> dict:
    import diffusers
    import torch

    torch.set_num_threads(1)
    rust_name, class_name, overrides, steps, seed = CASES[name]
    scheduler = getattr(diffusers, class_name)(**overrides)
    config_json = scheduler.to_json_string()
    scheduler.set_timesteps(steps)

    rng = np.random.default_rng(seed)
    sample = rng.standard_normal(SHAPE, dtype=np.float32) * np.float32(scheduler.init_noise_sigma)
    record = {
        "name": name,
        "scheduler": rust_name,
        "diffusers_class": class_name,
        "diffusers_version": diffusers.__version__,
        "config": json.loads(config_json),
        "scheduler_config_json": config_json,
        "num_inference_steps": steps,
        "timesteps": [int(t) for t in scheduler.timesteps],
        "shape": SHAPE,
        "seed": seed,
        "init_noise_sigma": float(scheduler.init_noise_sigma),
        "sample": sample,
        "steps": [],
    }
    x = torch.from_numpy(sample.copy())
    for t in scheduler.timesteps:
        model_output = rng.standard_normal(SHAPE, dtype=np.float32)
        x = scheduler.step(torch.from_numpy(model_output), t, x).prev_sample
        assert x.dtype == torch.float32
        record["steps"].append(
            {"timestep": int(t), "model_output": model_output, "prev_sample": x.numpy().copy()}
        )
    return record


def write_all(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in CASES:
        path = out / f"{name}.json"
        path.write_text(to_json(run_case(name)))
        written.append(path)
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for the fixtures (one JSON file per case)")
    args = ap.parse_args(argv)
    for path in write_all(args.out):
        print(f"{path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
