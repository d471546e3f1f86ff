"""Hand-written backpropagation for the two-layer MLP, built from the local derivatives of the assignment's Table 3.

Forward (forward.py):  Z1 = X W1 + 1 b1,  A1 = sigma_1(Z1),  z2 = A1 W2 + b2 1,  y_hat = sigma_2(z2).
Backward, one local derivative per row of Table 3 (with two rows corrected, see docs/seed-errata.md):

    dL/dy_hat  MSE: 2 (y_hat - y) / N            BCE: ( -y / y_hat + (1 - y) / (1 - y_hat) ) / N
    dy_hat/dz2 identity: 1    ReLU: 1[z2 > 0]    sigmoid: y_hat (1 - y_hat)      (Table 3 writes z2 (1 - z2))
    dz2        = dL/dy_hat * dy_hat/dz2                      (N, 1)
    dW2        = A1^T dz2          db2 = 1^T dz2             (h, 1), (1,)
    dA1        = dz2 W2^T                                     (N, h)
    dZ1        = dA1 * dA1/dZ1    (same three local derivatives, on Z1 and A1)
    dW1        = X^T dZ1           db1 = 1^T dZ1             (d, h), (1, h)

ReLU's derivative at exactly 0 is taken as 0, as torch does (Table 3 agrees: 1 only if Z > 0).
The BCE clamp of losses.py is mirrored: a sample whose log argument was clamped passes no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import mpmath
import torch

from mlplab.twolayer.activations import activation_name
from mlplab.twolayer.forward import ForwardResult, as_layer_params, forward
from mlplab.twolayer.losses import bce_eps, loss_name
from mlplab.twolayer.losses import binary_cross_entropy as bce_loss
from mlplab.twolayer.losses import mse as mse_loss
from mlplab.twolayer.problem import Problem

PARAMS = ("W1", "b1", "W2", "b2")


@dataclass(frozen=True)
class Gradients:
    """Gradients of the mean loss, each the shape of its parameter, plus the backward intermediates."""

    W1: torch.Tensor  # (d, h)
    b1: torch.Tensor  # (1, h)
    W2: torch.Tensor  # (h, 1)
    b2: torch.Tensor  # (1,)
    dy_hat: torch.Tensor  # (N, 1) dL/dy_hat
    dz2: torch.Tensor  # (N, 1) dL/dz2
    dZ1: torch.Tensor  # (N, h) dL/dZ1

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {"W1": self.W1, "b1": self.b1, "W2": self.W2, "b2": self.b2}


def activation_derivative(name: str, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    """d sigma(t)/dt elementwise, from the pre-activation `pre` and the activation `post` = sigma(pre).

    The sigmoid's derivative is written with its output, post (1 - post).

    >>> activation_derivative("relu", torch.tensor([-1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 2.0]))
    tensor([0., 0., 1.])
    """
    kind = activation_name(name)
    if kind == "identity":
        return torch.ones_like(pre)
    if kind == "relu":
        return (pre > 0).to(pre.dtype)  # 0 at the kink, like torch
    if kind == "sigmoid":
        return post * (1 - post)
    raise ValueError(f"no derivative for custom activation {name!r}")


def loss_derivative(loss: str, y_hat: torch.Tensor, y: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """dL/dy_hat of the mean loss, (N, 1): 2(y_hat - y)/N for MSE, (-y/p + (1-y)/(1-p))/N for BCE.

    >>> loss_derivative("mse", torch.tensor([[0.5], [0.0]]), torch.tensor([[1.0], [0.0]]))
    tensor([[-0.5000],
            [ 0.0000]])
    """
    n = y_hat.shape[0]
    if loss_name(loss) == "mse":
        return 2 * (y_hat - y) / n
    eps = bce_eps() if eps is None else eps
    # mirror the clamps of losses.binary_cross_entropy: a clamped log passes no gradient
    d_pos = -y / y_hat.clamp(min=eps) * (y_hat >= eps).to(y_hat.dtype)
    d_neg = (1 - y) / (1 - y_hat).clamp(min=eps) * ((1 - y_hat) >= eps).to(y_hat.dtype)
    return (d_pos + d_neg) / n


def backward(X: torch.Tensor, activ_func1: str, W1: torch.Tensor, b1: torch.Tensor, activ_func2: str,
             W2: torch.Tensor, b2: torch.Tensor, y: torch.Tensor, loss: str = "mse",
             result: ForwardResult | None = None) -> Gradients:
    """Chain-rule gradients of the mean loss w.r.t. W1, b1, W2, b2 (arguments in the assignment's forward order).

    >>> p = load_seed_tensors()
    >>> g = backward(p["X"], "identity", p["W1"], p["b1"], "identity", p["W2"], p["b2"], p["y"], "mse")
    >>> round(g.b2.item(), 4)
    1.45
    """
    X, W1, b1, W2, b2 = as_layer_params(X, W1, b1, W2, b2)
    y = torch.as_tensor(y, dtype=X.dtype).reshape(-1, 1)
    Z1, A1, z2, y_hat = result if result is not None else forward(X, activ_func1, W1, b1, activ_func2, W2, b2)
    dy_hat = loss_derivative(loss, y_hat, y)  # (N, 1)
    dz2 = dy_hat * activation_derivative(activ_func2, z2, y_hat)  # (N, 1)
    dW2 = A1.T @ dz2  # (h, 1)
    db2 = dz2.sum(0)  # (1,)
    dA1 = dz2 @ W2.T  # (N, h)
    dZ1 = dA1 * activation_derivative(activ_func1, Z1, A1)  # (N, h)
    dW1 = X.T @ dZ1  # (d, h)
    db1 = dZ1.sum(0, keepdim=True)  # (1, h)
    return Gradients(dW1, db1, dW2, db2, dy_hat, dz2, dZ1)


def load_seed_tensors() -> dict[str, torch.Tensor]:
    """The assignment's problem as float64 tensors (a shortcut for examples and tests)."""
    from mlplab.twolayer.problem import load_problem

    return load_problem().tensors()


# --- the closed form of dL_MSE/db2 (the assignment's tasks 8-10) -------------------------------------------------

B2_FORMULA = {
    "identity": "dL/db2 = (2/N) sum_i (y_hat_i - y_i)",
    "sigmoid": "dL/db2 = (2/N) sum_i (y_hat_i - y_i) y_hat_i (1 - y_hat_i)",
    "relu": "dL/db2 = (2/N) sum_i (y_hat_i - y_i) 1[z2_i > 0]",
}
"""Per sample: dL_i/db2 = dL_i/dy_hat_i * dy_hat_i/dz2_i * dz2_i/db2 with dz2_i/db2 = 1; then the mean."""


def _exact_act(name: str, t: Fraction, dps: int) -> Fraction | mpmath.mpf:
    if name == "identity":
        return t
    if name == "relu":
        return max(Fraction(0), t)
    with mpmath.workdps(dps):
        return 1 / (1 + mpmath.exp(-mpmath.mpf(t.numerator) / t.denominator))


def b2_gradient_exact(problem: Problem, sigma1: str, sigma2: str, dps: int = 40) -> Fraction | mpmath.mpf:
    """dL_MSE/db2 by the closed form in exact arithmetic: a Fraction when no sigmoid is involved, else mpmath.

    >>> from mlplab.twolayer.problem import load_problem
    >>> b2_gradient_exact(load_problem(), "identity", "identity")
    Fraction(29, 20)
    """
    s1, s2 = activation_name(sigma1), activation_name(sigma2)
    total: Fraction | mpmath.mpf = Fraction(0)
    with mpmath.workdps(dps):
        for x, y in zip(problem.X, problem.y):
            z1 = [sum((xk * problem.W1[k][j] for k, xk in enumerate(x)), Fraction(0)) + problem.b1[j]
                  for j in range(problem.h)]
            a1 = [_exact_act(s1, z, dps) for z in z1]
            z2 = sum((a * w for a, w in zip(a1, problem.w2)), Fraction(0)) + problem.b2
            if isinstance(z2, Fraction):
                y_hat = _exact_act(s2, z2, dps)
            else:  # z2 is already an mpf; only identity/relu/sigmoid of it
                y_hat = z2 if s2 == "identity" else (max(0, z2) if s2 == "relu" else 1 / (1 + mpmath.exp(-z2)))
            local = {"identity": 1, "relu": 1 if z2 > 0 else 0, "sigmoid": y_hat * (1 - y_hat)}[s2]
            total = total + 2 * (y_hat - y) * local
        return total / problem.n


# --- sensitivity near the decision boundary (the assignment's task 7) -------------------------------------------

def loss_sensitivity(y_hat: float, y: float) -> dict[str, float]:
    """One sample (N = 1) with a sigmoid output: each loss, and its gradient w.r.t. y_hat and z2.

    z2 = logit(y_hat); dL/dz2 = dL/dy_hat * y_hat (1 - y_hat) by the chain rule.

    >>> s = loss_sensitivity(0.49, 1.0); round(s["bce_dz2"], 2), round(s["mse_dz2"], 4)
    (-0.51, -0.2549)
    """
    p = torch.tensor([[float(y_hat)]], dtype=torch.float64)
    t = torch.tensor([[float(y)]], dtype=torch.float64)
    z2 = torch.logit(p)
    local = activation_derivative("sigmoid", z2, p)
    out = {"y": float(y), "y_hat": float(y_hat), "z2": z2.item()}
    for name, fn in (("mse", mse_loss), ("bce", bce_loss)):
        d_y_hat = loss_derivative(name, p, t)
        out[name] = fn(p, t).item()
        out[f"{name}_dy_hat"] = d_y_hat.item()
        out[f"{name}_dz2"] = (d_y_hat * local).item()
    return out
