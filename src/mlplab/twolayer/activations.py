"""The assignment's three activation functions as torch callables, also reachable by name.

The assignment writes `relu` and `sigmoid` with NumPy (`np.maximum`, `np.exp`); inside a torch graph that
breaks autograd and CUDA, so these are pure torch (see docs/seed-errata.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mlplab.errors import MlplabError

Activation = Callable[[torch.Tensor], torch.Tensor]


def identity(t: torch.Tensor) -> torch.Tensor:
    """sigma_I(t) = t.

    >>> identity(torch.tensor([-1.0, 2.0]))
    tensor([-1.,  2.])
    """
    return t


def relu(t: torch.Tensor) -> torch.Tensor:
    """sigma_ReLU(t) = max(0, t).

    >>> relu(torch.tensor([-1.0, 2.0]))
    tensor([0., 2.])
    """
    return torch.relu(t)


def sigmoid(t: torch.Tensor) -> torch.Tensor:
    """sigma_sigm(t) = 1 / (1 + exp(-t)), computed stably by torch.

    >>> sigmoid(torch.tensor([0.0]))
    tensor([0.5000])
    """
    return torch.sigmoid(t)


ACTIVATIONS: dict[str, Activation] = {"identity": identity, "relu": relu, "sigmoid": sigmoid}
"""Canonical names, in the assignment's order (sigma_I, sigma_ReLU, sigma_sigm)."""

_ALIASES = {"i": "identity", "id": "identity", "linear": "identity", "none": "identity",
            "sigm": "sigmoid", "logistic": "sigmoid"}

SYMBOLS = {"identity": "I", "relu": "ReLU", "sigmoid": "sigm"}
"""Short subscripts as the assignment writes them: sigma_I, sigma_ReLU, sigma_sigm."""


def activation_name(fn: str | Activation) -> str:
    """The canonical name of an activation given by name or as one of the three functions."""
    if isinstance(fn, str):
        key = fn.strip().lower()
        key = _ALIASES.get(key, key)
        if key not in ACTIVATIONS:
            raise MlplabError(f"unknown activation {fn!r}",
                              hint=f"use one of {', '.join(ACTIVATIONS)}")
        return key
    for name, candidate in ACTIVATIONS.items():
        if fn is candidate:
            return name
    return getattr(fn, "__name__", repr(fn))


def get_activation(fn: str | Activation) -> Activation:
    """Resolve an activation given by name ('relu', 'sigm', ...) or pass a callable through.

    >>> get_activation("ReLU") is relu
    True
    """
    if callable(fn):
        return fn
    return ACTIVATIONS[activation_name(fn)]


def activation_pairs() -> list[tuple[str, str]]:
    """All nine (sigma_1, sigma_2) pairs in the assignment's Table 2 order."""
    return [(a, b) for a in ACTIVATIONS for b in ACTIVATIONS]


def parse_pair(text: str) -> tuple[str, str]:
    """Parse 'relu,sigmoid' into canonical names.

    >>> parse_pair("relu, sigm")
    ('relu', 'sigmoid')
    """
    parts = [p for p in text.replace("/", ",").split(",") if p.strip()]
    if len(parts) != 2:
        raise MlplabError(f"expected two activations like 'relu,sigmoid', got {text!r}",
                          hint=f"each one of {', '.join(ACTIVATIONS)}")
    return activation_name(parts[0]), activation_name(parts[1])
