"""Device choice, written once: CUDA, then Apple's MPS, then the CPU, unless told otherwise."""

from __future__ import annotations

import os

import torch

from mlplab.errors import MlplabError


def get_device(override: str | torch.device | None = None) -> torch.device:
    """Pick CUDA, MPS on Apple, or CPU in that order; `override` (or $MLPLAB_DEVICE) wins.

    >>> get_device("cpu")
    device(type='cpu')
    """
    choice = override if override is not None else os.environ.get("MLPLAB_DEVICE") or None
    if choice is None or str(choice) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(choice)
    except (RuntimeError, TypeError) as exc:
        raise MlplabError(f"unknown device {choice!r}", hint="use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MlplabError(f"device {choice!r} asked for, but CUDA is not available here", hint="use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise MlplabError(f"device {choice!r} asked for, but MPS is not available here", hint="use --device cpu")
    return device
