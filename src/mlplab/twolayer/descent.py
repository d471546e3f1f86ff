"""Full-batch gradient descent on the assignment's problem (its section 2.4) and a verdict per loss curve.

The loop is the assignment's `main()` with its bugs fixed: `compute_gradients`, then `gradient_descent`,
record the loss, stop on NaN. Each curve is then classified from its numbers alone:

1. **diverging**  a loss is NaN or infinite, or the last loss exceeds the first by more than `rise_tol`
   (relative).
2. **flat**       the loss changed by less than `flat_tol` (relative to the first loss) over the run.
3. **oscillating** not a steady descent: among the epoch-to-epoch changes larger than `noise` (relative
   to the loss), at least `flip_frac` go up, or the direction flips (down then up, or up then down) in
   at least `flip_frac` of consecutive pairs.
4. **converging** otherwise: the loss went down, (almost) monotonically.

A curve alone cannot tell learning from collapse: a network that predicts the same value for every sample can
have a flat or even a falling loss. So the final weights are examined too (`collapse`), and a run whose
predictions no longer depend on the input is called **collapsed**, whatever its curve did, with the cause:
every ReLU unit dead for every sample (then only b2 reaches the output), predictions constant across samples,
and b2 caught in a 2-cycle (b2 jumping between two values each epoch, as a too large step does on a
one-parameter problem). Its accuracy is reported beside the loss.

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

from mlplab.twolayer.activations import activation_name
from mlplab.twolayer.losses import LossFn, get_loss, loss_name
from mlplab.twolayer.simple_mlp import SimpleMLP

VERDICTS = ("converging", "flat", "oscillating", "diverging", "collapsed")
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


@dataclass(frozen=True)
class Collapse:
    """What the final weights do on the training inputs (see `collapse`)."""

    accuracy: float  # share of samples whose label (y_hat >= threshold) equals y
    dead_units: int  # hidden ReLU units whose pre-activation is <= 0 for every sample
    hidden_units: int
    constant_output: bool  # y_hat is the same for every sample (to `tol`)
    b2_cycle: tuple[float, float] | None  # the two values b2 alternates between over the last epochs, if it does

    @property
    def collapsed(self) -> bool:
        return self.constant_output or (self.hidden_units > 0 and self.dead_units == self.hidden_units)

    def describe(self) -> str:
        parts = []
        if self.hidden_units and self.dead_units == self.hidden_units:
            parts.append(f"all {self.hidden_units} ReLU units dead for every sample")
        if self.constant_output:
            parts.append("the same prediction for every sample")
        if self.b2_cycle is not None:
            parts.append(f"b2 alternates between {self.b2_cycle[0]:.4g} and {self.b2_cycle[1]:.4g}")
        return "; ".join(parts)


def two_cycle(values: Sequence[float], last: int = 10, tol: float = 1e-5) -> tuple[float, float] | None:
    """(a, b) when the last `last` values alternate a, b, a, b, ... (a != b, to `tol` relative); else None.

    >>> two_cycle([0.3] + [1.0, -1.0] * 6)
    (1.0, -1.0)
    >>> two_cycle([1.0, 0.5, 0.25, 0.125] * 3) is None
    True
    """
    tail = list(values[-last:])
    if len(tail) < 4:
        return None
    scale = max(max(abs(v) for v in tail), 1e-12)
    same = all(abs(tail[i] - tail[i - 2]) <= tol * scale for i in range(2, len(tail)))
    apart = all(abs(tail[i] - tail[i - 1]) > 100 * tol * scale for i in range(1, len(tail)))
    return (tail[-2], tail[-1]) if same and apart else None


def collapse(tensors: dict[str, torch.Tensor], activations: tuple[str, str], weights: dict[str, Any],
             b2_trace: Sequence[float] = (), tol: float = 1e-6) -> Collapse:
    """Look at final `weights` (the assignment's shapes) on the problem's X and y; float64 throughout.

    >>> from mlplab.twolayer.gradients import load_seed_tensors
    >>> t = load_seed_tensors()
    >>> c = collapse(t, ("relu", "sigmoid"), {"W1": -t["W1"].abs(), "b1": -t["b1"].abs() - 5, "W2": t["W2"],
    ...                                        "b2": t["b2"]})
    >>> c.dead_units, c.constant_output, c.collapsed
    (2, True, True)
    """
    from mlplab.twolayer.decision import THRESHOLD
    from mlplab.twolayer.forward import forward

    X, y = tensors["X"].double(), tensors["y"].double().flatten()
    w = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in weights.items()}
    res = forward(X, activations[0], w["W1"], w["b1"].reshape(1, -1), activations[1], w["W2"].reshape(-1, 1),
                  w["b2"].reshape(1, 1))
    y_hat = res.y_hat.flatten()
    labels = (y_hat >= THRESHOLD).double()
    dead = int((res.Z1 <= 0).all(dim=0).sum()) if activation_name(activations[0]) == "relu" else 0
    spread = float(y_hat.max() - y_hat.min())
    return Collapse(accuracy=float((labels == y).double().mean()), dead_units=dead,
                    hidden_units=res.Z1.shape[1] if activation_name(activations[0]) == "relu" else 0,
                    constant_output=spread <= tol * max(1.0, float(y_hat.abs().max())),
                    b2_cycle=two_cycle(b2_trace))


@dataclass
class DescentRun:
    """The loss of every epoch for one step size, and its verdict."""

    step_size: float
    losses: list[float]
    verdict: str = ""
    reason: str = ""
    stopped_at: int | None = None  # epoch of the first NaN, if the run stopped early
    final_weights: dict[str, list[Any]] = field(default_factory=dict)
    b2_trace: list[float] = field(default_factory=list)  # b2 before each update (one output unit)
    state: Collapse | None = None  # what the final weights do (accuracy, dead units, constant output, b2 cycle)

    def to_dict(self) -> dict[str, Any]:
        state = self.state
        return {"step_size": self.step_size, "epochs_run": len(self.losses), "first_loss": self.losses[0],
                "final_loss": self.losses[-1], "min_loss": min(self.losses), "verdict": self.verdict,
                "reason": self.reason, "stopped_at": self.stopped_at, "final_weights": self.final_weights,
                "accuracy": state.accuracy if state else None, "dead_units": state.dead_units if state else None,
                "hidden_units": state.hidden_units if state else None,
                "constant_output": state.constant_output if state else None,
                "b2_cycle": list(state.b2_cycle) if state and state.b2_cycle else None}


def gradient_descent_run(tensors: dict[str, torch.Tensor], activations: tuple[str, str], loss: str | LossFn,
                         step_size: float, epochs: int, dtype: torch.dtype = torch.float32,
                         device: torch.device | str = "cpu", rule: VerdictRule = VerdictRule()) -> DescentRun:
    """Train a fresh SimpleMLP from the problem's weights for `epochs` full-batch steps.

    `losses[k]` is the loss at the weights before update k (the assignment's loop records it the same way).

    >>> from mlplab.twolayer.gradients import load_seed_tensors
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
        if model.fc2.bias.numel() == 1:
            run.b2_trace.append(model.fc2.bias.item())
        if not math.isfinite(run.losses[-1]):
            run.stopped_at = epoch
            break
        model.gradient_descent(step_size, gW1, gb1, gW2, gb2)
    run.verdict, run.reason = verdict(run.losses, rule)
    weights = model.weights()
    run.final_weights = {k: v.cpu().tolist() for k, v in weights.items()}
    if run.stopped_at is None and weights["W2"].shape[1] == 1:
        run.state = collapse(tensors, activations, weights, run.b2_trace)
        if run.state.collapsed:
            run.reason = f"{run.state.describe()}; accuracy {run.state.accuracy:.0%} (loss curve: {run.verdict})"
            run.verdict = "collapsed"
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
