"""The two losses of the assignment's section 2.2, per sample and averaged, in pure torch.

    MSE:  L = 1/N sum_i (y_hat_i - y_i)^2                                     (the assignment's eq. 5)
    BCE:  L = -1/N sum_i [ y_i log(y_hat_i) + (1 - y_i) log(1 - y_hat_i) ]     (the assignment's eq. 6, sign corrected)

The assignment prints eq. 6 with a minus between the two logs; the right sign is a plus (docs/seed-errata.md).

`binary_cross_entropy` takes probabilities (the output of a sigmoid). Before each log it clamps its
argument from below at BCE_EPS = 1e-12: log(max(p, eps)) and log(max(1 - p, eps)). So p = 0 or p = 1
gives a finite per-sample term of at most -log(1e-12) = 27.63 instead of inf, and a clamped sample
passes no gradient back (the clamp is flat there). For every p in [1e-12, 1 - 1e-12] the value equals
torch's `F.binary_cross_entropy` (which clamps each log at -100 instead). The eps does not depend on
the dtype, so float32 and float64 training see the same loss surface wherever float32 can resolve it.

`binary_cross_entropy_with_logits` takes the pre-sigmoid value z2 and is what a model without a final
sigmoid should use: it never forms sigmoid(z2) and stays exact for large |z2|. The assignment's example code
calls it on an output that already went through a sigmoid; that is the "double sigmoid" erratum.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mlplab.errors import MlplabError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _pair(y_pred: torch.Tensor, y_true: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    y_pred, y_true = torch.as_tensor(y_pred), torch.as_tensor(y_true)
    if not y_pred.is_floating_point():
        y_pred = y_pred.to(torch.get_default_dtype())
    y_true = y_true.to(dtype=y_pred.dtype, device=y_pred.device)
    if y_pred.numel() != y_true.numel():
        raise MlplabError(f"{what}: {y_pred.numel()} predictions but {y_true.numel()} labels",
                          hint="pass one prediction per label")
    if y_pred.numel() == 0:
        raise MlplabError(f"{what}: no samples", hint="pass at least one prediction and label")
    return y_pred, y_true.reshape(y_pred.shape)


def mse_terms(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """Per-sample squared errors (y_hat_i - y_i)^2, same shape as `y_pred`.

    >>> mse_terms(torch.tensor([0.5, 0.25]), torch.tensor([1.0, 0.0]))
    tensor([0.2500, 0.0625])
    """
    y_pred, y_true = _pair(y_pred, y_true, "mse")
    return (y_pred - y_true) ** 2


def mse(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """Mean squared error, the assignment's eq. 5 (equals `F.mse_loss`).

    >>> round(mse(torch.tensor([0.5, 0.25]), torch.tensor([1.0, 0.0])).item(), 5)
    0.15625
    """
    return mse_terms(y_pred, y_true).mean()


MSE = mse
"""The assignment's name for the MSE loss."""


BCE_EPS = 1e-12
"""Lower clamp of p and 1 - p inside the BCE logs: a per-sample term is at most -log(1e-12) = 27.63."""


def bce_eps(dtype: torch.dtype | None = None) -> float:
    """The clamp used by `binary_cross_entropy` (the same for every dtype; the argument is for symmetry).

    >>> bce_eps()
    1e-12
    """
    del dtype
    return BCE_EPS


def binary_cross_entropy_terms(y_pred: torch.Tensor, y_true: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """Per-sample BCE terms -[y log max(p, eps) + (1 - y) log max(1 - p, eps)], eps = BCE_EPS by default.

    >>> t = binary_cross_entropy_terms(torch.tensor([0.5, 0.0]), torch.tensor([1.0, 1.0]))
    >>> [round(v, 3) for v in t.tolist()]
    [0.693, 27.631]
    """
    y_pred, y_true = _pair(y_pred, y_true, "binary_cross_entropy")
    eps = BCE_EPS if eps is None else float(eps)
    if not 0.0 < eps < 0.5:
        raise MlplabError(f"binary_cross_entropy: eps must lie in (0, 0.5), got {eps}", hint="e.g. eps=1e-12")
    if torch.isnan(y_pred).any():
        raise MlplabError("binary_cross_entropy: a prediction is NaN", hint="check the model output for NaN")
    return -(y_true * torch.log(y_pred.clamp(min=eps)) + (1.0 - y_true) * torch.log((1.0 - y_pred).clamp(min=eps)))


def binary_cross_entropy(y_pred: torch.Tensor, y_true: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """Mean BCE on probabilities (eq. 6 of the assignment, sign corrected); its name, the right maths.

    >>> p, y = torch.tensor([0.9, 0.2]), torch.tensor([1.0, 0.0])
    >>> round(binary_cross_entropy(p, y).item(), 4)
    0.1643
    """
    return binary_cross_entropy_terms(y_pred, y_true, eps).mean()


def binary_cross_entropy_with_logits_terms(z: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """Per-sample BCE from logits z: max(z, 0) - z y + log(1 + exp(-|z|)), stable for any z.

    >>> [round(v, 4) for v in binary_cross_entropy_with_logits_terms(torch.tensor([0.0, 50.0]),
    ...                                                                torch.tensor([1.0, 0.0])).tolist()]
    [0.6931, 50.0]
    """
    z, y_true = _pair(z, y_true, "binary_cross_entropy_with_logits")
    # log(1 + e^z) - z y, rewritten so that exp never overflows
    return z.clamp(min=0) - z * y_true + torch.log1p(torch.exp(-z.abs()))


def binary_cross_entropy_with_logits(z: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """Mean BCE from logits (the pre-sigmoid z2); equals `F.binary_cross_entropy_with_logits`.

    >>> round(binary_cross_entropy_with_logits(torch.tensor([0.0]), torch.tensor([1.0])).item(), 4)
    0.6931
    """
    return binary_cross_entropy_with_logits_terms(z, y_true).mean()


LOSSES: dict[str, LossFn] = {"mse": mse, "bce": binary_cross_entropy}
"""Losses on the network output y_hat, by the short names the CLI uses."""


def get_loss(name: str | LossFn) -> LossFn:
    """Resolve 'mse' / 'bce' (also 'MSE', 'binary_cross_entropy') or pass a callable through.

    >>> get_loss("BCE") is binary_cross_entropy
    True
    """
    if callable(name):
        return name
    key = name.strip().lower().replace("-", "_")
    key = {"binary_cross_entropy": "bce", "mean_squared_error": "mse"}.get(key, key)
    if key not in LOSSES:
        raise MlplabError(f"unknown loss {name!r}", hint="use mse or bce")
    return LOSSES[key]


def loss_name(fn: str | LossFn) -> str:
    """Short name ('mse' or 'bce') of a loss given by name or as one of this module's functions."""
    if isinstance(fn, str):
        fn = get_loss(fn)
    for key, candidate in LOSSES.items():
        if fn is candidate:
            return key
    raise MlplabError(f"loss {fn!r} has no hand-written gradient", hint="use mse or bce")
