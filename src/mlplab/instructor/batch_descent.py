"""Many small full-batch gradient-descent runs at once, in NumPy, for answer keys and mistake diagnosis.

An answer key needs 4 runs of 1000 epochs, a diagnosis some 30 more (each mistake trained its own way),
and a class of 30 students 30 times that. `mlplab.twolayer.descent` runs one `SimpleMLP` per run through torch
autograd (about half a second each on a small CPU), so this module stacks K runs of the same shape along a
leading axis and steps them together: one epoch costs about the same for K = 1 and K = 200.

Per run k, the loop is `mlplab.twolayer.descent.gradient_descent_run` written out with the chain rule of
`mlplab.twolayer.gradients` (tests compare the two):

    Z1 = X W1 + b1   (K, N, h)    A1 = sigma_1(Z1)     z2 = A1 w2 + b2   (K, N)    y_hat = sigma_2(z2)
    loss[k] is recorded before update k; a run whose loss turns NaN or infinite stops there.

Losses: "mse"; "bce" with the clamp of `mlplab.twolayer.losses` (eps = 1e-12, no gradient through a clamped log);
"bce-logits", `F.binary_cross_entropy_with_logits` applied to y_hat (the assignment's example code, which
puts a second sigmoid before the loss). `accumulate=True` steps with the running sum of all gradients so
far, which is what a loop that never zeroes `.grad` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from mlplab.twolayer.losses import BCE_EPS
from mlplab.twolayer.problem import Problem

ACTIVATION_CODES = {"identity": 0, "relu": 1, "sigmoid": 2}
LOSS_CODES = {"mse": 0, "bce": 1, "bce-logits": 2}
EPOCHS = 1000

Vector = tuple[float, ...]


@dataclass(frozen=True)
class DescentSpec:
    """One run: the problem's numbers as float tuples (hashable, so results can be cached), the activations,
    the loss, the step size, the number of epochs and whether gradients accumulate."""

    X: tuple[Vector, ...]
    y: Vector
    W1: tuple[Vector, ...]
    b1: Vector
    w2: Vector
    b2: float
    sigma1: str
    sigma2: str
    loss: str
    step_size: float
    epochs: int = EPOCHS
    accumulate: bool = False

    @staticmethod
    def of(problem: Problem, sigma1: str, sigma2: str, loss: str, step_size: float, epochs: int = EPOCHS,
           accumulate: bool = False) -> DescentSpec:
        """The run of `problem` with these settings.

        >>> from mlplab.twolayer.problem import load_problem
        >>> DescentSpec.of(load_problem(), "relu", "sigmoid", "bce", 0.01).W1[0]
        (1.0, -2.5)
        """
        def vector(v: list[Fraction]) -> Vector:
            return tuple(float(x) for x in v)

        return DescentSpec(tuple(vector(r) for r in problem.X), vector(problem.y), tuple(vector(r) for r in problem.W1),
                           vector(problem.b1), vector(problem.w2), float(problem.b2), sigma1, sigma2, loss,
                           float(step_size), int(epochs), accumulate)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return len(self.X), len(self.W1), len(self.b1), self.epochs


_CACHE: dict[tuple[DescentSpec, str], float] = {}
_CACHE_LIMIT = 200_000


def final_losses(specs: Sequence[DescentSpec], dtype: str = "float64") -> list[float]:
    """The loss recorded at the last epoch of each run (NaN or inf for a run that blew up), cached.

    Runs of the same shape go through one batched loop.

    >>> from mlplab.twolayer.problem import load_problem
    >>> p = load_problem()
    >>> [round(v, 4) for v in final_losses([DescentSpec.of(p, "relu", "sigmoid", "bce", 0.01)])]
    [0.6558]
    """
    todo = list(dict.fromkeys(s for s in specs if (s, dtype) not in _CACHE))
    groups: dict[tuple[int, int, int, int], list[DescentSpec]] = {}
    for s in todo:
        groups.setdefault(s.shape, []).append(s)
    if len(_CACHE) + len(todo) > _CACHE_LIMIT:
        _CACHE.clear()
    for group in groups.values():
        for s, value in zip(group, _run_batch(group, np.dtype(dtype))):
            _CACHE[(s, dtype)] = value
    return [_CACHE[(s, dtype)] for s in specs]


def _activate(code: np.ndarray, t: np.ndarray) -> np.ndarray:
    # sigmoid as 0.5 (1 + tanh(t/2)): no overflow warnings for large |t|
    return np.where(code == 0, t, np.where(code == 1, np.maximum(t, 0), 0.5 * (1 + np.tanh(0.5 * t))))


def _derivative(code: np.ndarray, pre: np.ndarray, post: np.ndarray) -> np.ndarray:
    return np.where(code == 0, 1.0, np.where(code == 1, (pre > 0).astype(pre.dtype), post * (1 - post)))


def _loss_and_grad(code: np.ndarray, p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean loss (K,) and dL/dy_hat (K, N) for each run's loss code."""
    n = p.shape[1]
    mse, d_mse = ((p - y) ** 2).mean(1), 2 * (p - y) / n
    eps = p.dtype.type(BCE_EPS)
    q = 1 - p
    bce = -(y * np.log(np.maximum(p, eps)) + (1 - y) * np.log(np.maximum(q, eps))).mean(1)
    d_bce = (-y / np.maximum(p, eps) * (p >= eps) + (1 - y) / np.maximum(q, eps) * (q >= eps)) / n
    logits = (np.maximum(p, 0) - p * y + np.log1p(np.exp(-np.abs(p)))).mean(1)
    d_logits = (0.5 * (1 + np.tanh(0.5 * p)) - y) / n
    loss = np.where(code == 0, mse, np.where(code == 1, bce, logits))
    grad = np.where(code[:, None] == 0, d_mse, np.where(code[:, None] == 1, d_bce, d_logits))
    return loss, grad


def _run_batch(specs: list[DescentSpec], dtype: np.dtype) -> list[float]:
    def arr(values: object) -> np.ndarray:
        return np.array(values, dtype=dtype)

    X, y = arr([s.X for s in specs]), arr([s.y for s in specs])  # (K, N, d), (K, N)
    W1, b1 = arr([s.W1 for s in specs]), arr([s.b1 for s in specs])  # (K, d, h), (K, h)
    w2, b2 = arr([s.w2 for s in specs]), arr([s.b2 for s in specs])  # (K, h), (K,)
    eta = arr([s.step_size for s in specs])
    acc = arr([1.0 if s.accumulate else 0.0 for s in specs])
    c1 = np.array([ACTIVATION_CODES[s.sigma1] for s in specs])[:, None, None]
    c2 = np.array([ACTIVATION_CODES[s.sigma2] for s in specs])[:, None]
    cl = np.array([LOSS_CODES[s.loss] for s in specs])
    final = np.full(len(specs), np.nan)
    alive = np.ones(len(specs), dtype=bool)
    G = [np.zeros_like(W1), np.zeros_like(b1), np.zeros_like(w2), np.zeros_like(b2)]
    with np.errstate(all="ignore"):  # runs that blow up are expected; they stop at their first non-finite loss
        for _ in range(specs[0].epochs):
            Z1 = X @ W1 + b1[:, None, :]  # (K, N, h)
            A1 = _activate(c1, Z1)
            z2 = (A1 @ w2[:, :, None])[:, :, 0] + b2[:, None]  # (K, N)
            y_hat = _activate(c2, z2)
            loss, dy_hat = _loss_and_grad(cl, y_hat, y)
            final = np.where(alive, loss, final)
            alive &= np.isfinite(loss)
            if not alive.any():
                break
            dz2 = dy_hat * _derivative(c2, z2, y_hat)  # (K, N)
            dZ1 = dz2[:, :, None] * w2[:, None, :] * _derivative(c1, Z1, A1)  # (K, N, h)
            grads = [X.transpose(0, 2, 1) @ dZ1, dZ1.sum(1), (A1 * dz2[:, :, None]).sum(1), dz2.sum(1)]
            for i, g in enumerate(grads):
                shape = (-1,) + (1,) * (g.ndim - 1)
                G[i] = g + acc.reshape(shape) * G[i]
            step = [eta.reshape((-1,) + (1,) * (g.ndim - 1)) * g for g in G]
            W1, b1, w2, b2 = W1 - step[0], b1 - step[1], w2 - step[2], b2 - step[3]
    return [float(v) for v in final]
