"""Both builds check --device before any work: a device torch cannot use is an
argument error that says why, and nothing is written."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

TRAIN = Path(__file__).resolve().parents[2] / "models" / "train"


def build(module: str, device: str, out: Path) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", f"fchm_train.{module}", "--smoke", "--device", device, "--out", str(out)]
    if module == "hvcn_build":
        args += ["--machine", str(out.parent / "no-machine-needed")]
    return subprocess.run(args, cwd=TRAIN, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", ["build", "hvcn_build"])
@pytest.mark.parametrize(
    "device,message",
    [
        pytest.param(
            "cuda",
            "sees no CUDA device",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here"),
        ),
        ("bogus", "not a torch device"),
        ("meta", "train on cpu or cuda"),
    ],
)
def test_an_unusable_device_is_refused_before_any_work(module, device, message, tmp_path):
    out = tmp_path / "bundle"
    r = build(module, device, out)
    assert r.returncode == 2, r.stderr
    assert f"--device {device}: " in r.stderr and message in r.stderr, r.stderr
    assert not out.exists()
