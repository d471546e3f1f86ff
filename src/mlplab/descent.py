"""Full-batch gradient descent on the seed problem (seed section 2.4) and a verdict per loss curve.

The loop is the seed's `main()` with its bugs fixed: `compute_gradients`, then `gradient_descent`,
record the loss, stop on NaN. Each curve is then classified from its numbers alone:

1. **diverging**  a loss is NaN or infinite, or the last loss exceeds the first by more than `rise_tol`
   (relative).
2. **flat**       the loss changed by less than `flat_tol` (relative to the first loss) over the run.
3. **oscillating** not a steady descent: among the epoch-to-epoch changes larger than `noise` (relative
   to the loss), at least `flip_frac` go up, or the direction flips (down then up, or up then down) in
   at least `flip_frac` of consecutive pairs.
4. **converging** otherwise: the loss went down, (almost) monotonically.

Defaults: rise_tol = 1e-3, flat_tol = 1e-3, noise = 1e-6, flip_frac = 0.25. The noise level sits above
float32's resolution (1.2e-7 relative), so rounding jitter on a plateau does not count as oscillation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mlplab.activations import activation_name
from mlplab.losses import LossFn, get_loss, loss_name
from mlplab.simple_mlp import SimpleMLP

VERDICTS = ("converging", "flat", "oscillating", "diverging")
DEFAULT_STEPS = (0.01, 10.0)


@dataclass(frozen=True)
class VerdictRule:
    """Thresholds of the verdict rule in the module docstring."""

    rise_tol: float = 1e-3
    flat_tol: float = 1e-3
    noise: float = 1e-6
    flip_frac: float = 0.25


def verdict(losses: Sequence[float], rule: VerdictRule = VerdictRule()) -> tuple[str, str]:
    """Classify a loss curve; returns (verdict, the numbers that decided it).

    >>> verdict([1.0, 0.5, 0.3, 0.2])[0], verdict([1.0, 1.0, 1.0])[0], verdict([1.0, float("nan")])[0]
    ('converging', 'flat', 'diverging')
    >>> verdict([1.0, 0.5, 0.9, 0.4, 0.8, 0.3])[0]
    'oscillating'
    """
    if not losses:
        return "flat", "no epochs"
    if not all(math.isfinite(v) for v in losses):
        first_bad = next(i for i, v in enumerate(losses) if not math.isfinite(v))
        return "diverging", f"loss is {losses[first_bad]} at epoch {first_bad}"
    first, last = losses[0], losses[-1]
    scale = max(abs(first), 1e-300)
    change = (last - first) / scale
    if change > rule.rise_tol:
        return "diverging", f"loss rose from {first:.4g} to {last:.4g} ({change:+.2%})"
    if abs(change) < rule.flat_tol:
        return "flat", f"loss changed by {change:+.2e} (relative) over {len(losses)} epochs"
    steps = [b - a for a, b in itertools.pairwise(losses)]
    signs = [math.copysign(1.0, s) for s, a in zip(steps, losses) if abs(s) > rule.noise * max(abs(a), 1e-300)]
    flips = sum(1 for s, t in itertools.pairwise(signs) if s != t)
    frac = flips / max(len(signs) - 1, 1)
    rises = sum(1 for s in signs if s > 0)
    best = min(range(len(losses)), key=losses.__getitem__)
    if frac >= rule.flip_frac or rises >= rule.flip_frac * max(len(signs), 1):
        return "oscillating", (f"{rises} of {len(signs)} significant steps rose, direction flips in {frac:.0%}; "
                               f"loss {first:.4g} -> {last:.4g}, best {losses[best]:.4g} at epoch {best}")
    settled = next((i for i in range(len(losses)) if all(abs(v - last) <= rule.noise * max(abs(last), 1e-300)
                                                         for v in losses[i:])), len(losses) - 1)
    return "converging", (f"loss {first:.4g} -> {last:.4g} ({change:+.2%}), {rises} of {len(signs)} "
                          f"significant steps rose, {flips} direction flips, within noise of the end from epoch "
                          f"{settled}")


@dataclass
class DescentRun:
    """The loss of every epoch for one step size, and its verdict."""

    step_size: float
    losses: list[float]
    verdict: str = ""
    reason: str = ""
    stopped_at: int | None = None  # epoch of the first NaN, if the run stopped early
    final_weights: dict[str, list[Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"step_size": self.step_size, "epochs_run": len(self.losses), "first_loss": self.losses[0],
                "final_loss": self.losses[-1], "min_loss": min(self.losses), "verdict": self.verdict,
                "reason": self.reason, "stopped_at": self.stopped_at, "final_weights": self.final_weights}


def gradient_descent_run(tensors: dict[str, torch.Tensor], activations: tuple[str, str], loss: str | LossFn,
                         step_size: float, epochs: int, dtype: torch.dtype = torch.float32,
                         device: torch.device | str = "cpu", rule: VerdictRule = VerdictRule()) -> DescentRun:
    """Train a fresh SimpleMLP from the problem's weights for `epochs` full-batch steps.

    `losses[k]` is the loss at the weights before update k (the seed records it the same way).

    >>> from mlplab.gradients import load_seed_tensors
    >>> run = gradient_descent_run(load_seed_tensors(), ("relu", "sigmoid"), "bce", 0.01, 5)
    >>> len(run.losses), run.losses[-1] < run.losses[0]
    (5, True)
    """
    X, y = tensors["X"].to(device=device, dtype=dtype), tensors["y"].to(device=device, dtype=dtype)
    d, h = tensors["W1"].shape
    model = SimpleMLP(input_size=d, hidden_size=h, output_size=1, activ_func1=activation_name(activations[0]),
                      activ_func2=activation_name(activations[1]), dtype=dtype)
    model.set_weights(tensors["W1"], tensors["b1"], tensors["W2"], tensors["b2"])
    model = model.to(device)
    loss_fn = get_loss(loss)
    run = DescentRun(step_size=float(step_size), losses=[])
    for epoch in range(int(epochs)):
        value, _x_grad, gW1, gb1, gW2, gb2 = model.compute_gradients(X, loss_fn, y)
        run.losses.append(value.item())
        if not math.isfinite(run.losses[-1]):
            run.stopped_at = epoch
            break
        model.gradient_descent(step_size, gW1, gb1, gW2, gb2)
    run.verdict, run.reason = verdict(run.losses, rule)
    run.final_weights = {k: v.cpu().tolist() for k, v in model.weights().items()}
    return run


def descent_curves(tensors: dict[str, torch.Tensor], activations: tuple[str, str] = ("relu", "sigmoid"),
                   loss: str = "bce", step_sizes: Sequence[float] = DEFAULT_STEPS, epochs: int = 1000,
                   dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> list[DescentRun]:
    """One run per step size, all from the same starting weights."""
    loss_name(loss)  # fail early on an unknown loss name
    return [gradient_descent_run(tensors, activations, loss, eta, epochs, dtype, device) for eta in step_sizes]


def descent_figure(runs: Sequence[DescentRun], title: str) -> Any:
    """Overlay the loss curves; the y axis is logarithmic when the losses span more than a factor 10."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    finite = [v for r in runs for v in r.losses if math.isfinite(v)]
    for r in runs:
        ax.plot(range(len(r.losses)), r.losses, label=f"step size {r.step_size:g} ({r.verdict})")
        if r.stopped_at is not None:
            ax.axvline(r.stopped_at, linestyle=":", color="grey")
    if finite and min(finite) > 0 and max(finite) / min(finite) > 10:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig
