"""The torch device a build trains on, checked before any work starts."""

from __future__ import annotations

import torch


def training_device(name: str) -> torch.device:
    """`--device NAME` as a torch device. A device torch cannot use is refused
    here, with the reason, instead of after the data preparation (minutes in)
    when the first tensor moves."""
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"--device {name}: not a torch device ({e})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {name}: torch {torch.__version__} sees no CUDA device "
                f"(built for CUDA {torch.version.cuda or 'none'}; check the driver and CUDA_VISIBLE_DEVICES)"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif dev.type != "cpu":
        raise ValueError(f"--device {name}: the builds train on cpu or cuda")
    return dev
