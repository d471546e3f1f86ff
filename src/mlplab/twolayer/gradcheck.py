"""Three independent gradients side by side: the chain rule (gradients.py), float64 autograd, and
central finite differences, with the relative error as CS231n defines it.

Relative error (CS231n, "Gradient checks"):  |a - b| / max(|a|, |b|), with the denominator floored at
`REL_FLOOR` so that two gradients that are both (almost) zero compare as equal instead of dividing 0 by 0.

Central differences (L(theta + h) - L(theta - h)) / (2h) have error O(h^2) for a smooth loss. At a kink
(a ReLU input or a BCE clamp crossed between theta - h and theta + h) the loss is not differentiable
and the difference quotient is meaningless; such entries are detected, reported as `kink`, and left
out of the finite-difference comparison. The assignment's problem has one: Z1[4,1] = 0 exactly with ReLU.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mlplab.tables import Table
from mlplab.twolayer.activations import activation_name, activation_pairs
from mlplab.twolayer.forward import as_layer_params, forward
from mlplab.twolayer.gradients import PARAMS, backward
from mlplab.twolayer.losses import bce_eps, get_loss, loss_name

REL_FLOOR = 1e-8
"""Floor of the relative-error denominator; below it entries compare absolutely (finite-difference noise is ~1e-10)."""

FD_STEP = 1e-5
"""Central-difference step h. Float64 truncation error ~h^2, round-off ~1e-16 |L| / h; of 1e-4, 1e-5, 3e-6
and 1e-6, h = 1e-5 gave the smallest worst-case relative error on the assignment's problem (1.2e-7)."""


def relative_error(a: float, b: float, floor: float = REL_FLOOR) -> float:
    """CS231n relative error |a - b| / max(|a|, |b|, floor).

    >>> relative_error(1.0, 1.01) < 0.01, relative_error(0.0, 0.0)
    (True, 0.0)
    """
    return abs(a - b) / max(abs(a), abs(b), floor)


@dataclass(frozen=True)
class GradEntry:
    """One scalar entry of one parameter's gradient, computed three ways."""

    param: str
    index: tuple[int, ...]
    chain: float
    autograd: float
    finite_diff: float
    kink: bool  # finite difference invalid here (activation pattern changes within +-h)

    @property
    def err_autograd(self) -> float:
        return relative_error(self.chain, self.autograd)

    @property
    def err_fd(self) -> float | None:
        return None if self.kink else relative_error(self.chain, self.finite_diff)


@dataclass(frozen=True)
class GradCheck:
    """All entries for one (sigma_1, sigma_2, loss) on one problem."""

    sigma1: str
    sigma2: str
    loss: str
    entries: list[GradEntry]

    @property
    def max_err_autograd(self) -> float:
        return max(e.err_autograd for e in self.entries)

    @property
    def max_err_fd(self) -> float:
        errs = [e.err_fd for e in self.entries if e.err_fd is not None]
        return max(errs) if errs else 0.0

    @property
    def n_kink(self) -> int:
        return sum(e.kink for e in self.entries)


def _params64(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    X, W1, b1, W2, b2 = as_layer_params(*(tensors[k].to(torch.float64) for k in ("X", "W1", "b1", "W2", "b2")))
    return {"X": X, "W1": W1, "b1": b1.reshape(1, -1), "W2": W2, "b2": b2,
            "y": tensors["y"].to(torch.float64).reshape(-1, 1)}


def _loss_and_pattern(p: dict[str, torch.Tensor], s1: str, s2: str, loss: str) -> tuple[float, torch.Tensor]:
    """The loss and the 'activation pattern' (which ReLUs are on, which BCE inputs are clamped)."""
    Z1, _, z2, y_hat = forward(p["X"], s1, p["W1"], p["b1"], s2, p["W2"], p["b2"])
    parts = []
    if s1 == "relu":
        parts.append((Z1 > 0).reshape(-1))
    if s2 == "relu":
        parts.append((z2 > 0).reshape(-1))
    if loss == "bce":
        eps = bce_eps()
        parts.append(((y_hat >= eps) & ((1 - y_hat) >= eps)).reshape(-1))
    pattern = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)
    value = get_loss(loss)(y_hat, p["y"]).item()
    return value, pattern


def check_gradients(tensors: dict[str, torch.Tensor], sigma1: str, sigma2: str, loss: str,
                    h: float = FD_STEP) -> GradCheck:
    """Chain rule vs autograd vs central differences for every entry of W1, b1, W2, b2 (all in float64).

    >>> from mlplab.twolayer.gradients import load_seed_tensors
    >>> c = check_gradients(load_seed_tensors(), "sigmoid", "sigmoid", "bce")
    >>> c.max_err_autograd < 1e-12, c.max_err_fd < 1e-7, c.n_kink
    (True, True, 0)
    """
    s1, s2, lname = activation_name(sigma1), activation_name(sigma2), loss_name(loss)
    p = _params64(tensors)
    chain = backward(p["X"], s1, p["W1"], p["b1"], s2, p["W2"], p["b2"], p["y"], lname).as_dict()

    leaves = {k: p[k].clone().requires_grad_(True) for k in PARAMS}
    y_hat = forward(p["X"], s1, leaves["W1"], leaves["b1"], s2, leaves["W2"], leaves["b2"]).y_hat
    auto = dict(zip(PARAMS, torch.autograd.grad(get_loss(lname)(y_hat, p["y"]), [leaves[k] for k in PARAMS])))

    _, base_pattern = _loss_and_pattern(p, s1, s2, lname)
    entries = []
    for name in PARAMS:
        for index in _indices(p[name].shape):
            values, patterns = [], []
            for sign in (1.0, -1.0):
                q = dict(p)
                q[name] = p[name].clone()
                q[name][index] += sign * h
                value, pattern = _loss_and_pattern(q, s1, s2, lname)
                values.append(value)
                patterns.append(pattern)
            kink = not all(torch.equal(pt, base_pattern) for pt in patterns)
            entries.append(GradEntry(name, index, chain[name][index].item(), auto[name][index].item(),
                                     (values[0] - values[1]) / (2 * h), kink))
    return GradCheck(s1, s2, lname, entries)


def _indices(shape: torch.Size) -> list[tuple[int, ...]]:
    return list(itertools.product(*(range(n) for n in shape)))


def check_all(tensors: dict[str, torch.Tensor], pairs: Sequence[tuple[str, str]] | None = None,
              losses: Sequence[str] = ("mse", "bce"), h: float = FD_STEP) -> list[GradCheck]:
    """`check_gradients` for every pair (default: all nine) and every loss."""
    return [check_gradients(tensors, a, b, loss, h) for a, b in (pairs or activation_pairs()) for loss in losses]


def _label(e: GradEntry) -> str:
    # 1-based indices, as the assignment writes W1[i,j]
    return f"{e.param}[{','.join(str(i + 1) for i in e.index)}]"


def gradient_table(check: GradCheck, decimals: int = 6) -> Table:
    """Chain rule, autograd and finite differences side by side, with both relative errors."""
    rows = [[_label(e), e.chain, e.autograd, e.finite_diff, f"{e.err_autograd:.1e}",
             "kink" if e.kink else f"{e.err_fd:.1e}"] for e in check.entries]
    return Table(f"Gradients of L_{check.loss.upper()} for (sigma1, sigma2) = ({check.sigma1}, {check.sigma2})",
                 ["entry", "chain rule", "autograd", "finite diff", "rel err autograd", "rel err FD"], rows,
                 decimals=decimals, label=f"tab:grad-{check.sigma1}-{check.sigma2}-{check.loss}",
                 caption=f"Gradients of L_{check.loss.upper()}, ({check.sigma1}, {check.sigma2}): chain rule vs "
                         "float64 autograd vs central differences (h = 1e-5); relative error |a-b|/max(|a|,|b|,1e-8); "
                         "'kink' = finite difference invalid (ReLU/clamp crossed)")


def summary_table(checks: Sequence[GradCheck]) -> Table:
    """One row per (pair, loss): the largest relative errors and how many entries sat on a kink."""
    rows = [[c.sigma1, c.sigma2, c.loss, f"{c.max_err_autograd:.1e}", f"{c.max_err_fd:.1e}", c.n_kink,
             len(c.entries)] for c in checks]
    return Table("Gradient check summary (largest CS231n relative error over all entries of W1, b1, W2, b2)",
                 ["sigma1", "sigma2", "loss", "max err vs autograd", "max err vs FD", "kink entries", "entries"],
                 rows, label="tab:gradcheck-summary")
