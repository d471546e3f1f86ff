"""The best epoch and the onset of overfitting, from a noisy per-epoch loss curve.

Four stopping rules, each a function of the curves seen so far (epochs are numbered from 1), so the same code
serves early stopping during training and the analysis of a finished run:

- "smoothed" (the default): the trailing mean S_t of the last `window` losses; stop once S has not reached a
  new minimum for `patience` epochs. Averaging w epochs cuts the epoch-to-epoch noise by about √w, so a
  single lucky or unlucky epoch neither stops the run nor resets the wait.
- Prechelt's criteria (L. Prechelt, "Early Stopping — But When?", in Neural Networks: Tricks of the Trade,
  LNCS 1524, Springer, 1998), with E the selection loss and E_opt(t) = min_{t' ≤ t} E(t'):
  GL_α stops at the first t with GL(t) = 100·(E(t)/E_opt(t) − 1) > α;
  PQ_α stops at the first end of a training strip (t a multiple of k) with GL(t)/P_k(t) > α, where
  P_k(t) = 1000·(Σ_{t−k<t'≤t} E_tr(t') / (k·min_{t−k<t'≤t} E_tr(t')) − 1) measures training progress;
  UP_s stops at the end of a strip when E rose over s successive strips (E(t) > E(t−k), E(t−k) > E(t−2k), ...).

After any rule stops at epoch t_stop, the weights kept are those of the epoch with the lowest raw loss up to
t_stop (Prechelt's recommendation). The onset of overfitting reported per run is the minimum of the centred
moving average of the whole curve (no lag); it counts as an onset only if the curve is then higher for at least
`patience` epochs. Why "smoothed" is the default, measured on real runs, is in docs/mnist-training.md.

>>> curve = [1.0, 0.6, 0.5, 0.45, 0.44, 0.46, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75]
>>> stop_epoch(curve, None, rule="gl", gl_alpha=5.0)
7
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mlplab.mnist.config import StoppingConfig


def trailing_mean(values: Sequence[float], window: int) -> list[float]:
    """S_t = mean of the last `window` values up to t (fewer at the start).

    >>> trailing_mean([1.0, 3.0, 5.0, 7.0], 2)
    [1.0, 2.0, 4.0, 6.0]
    """
    out = []
    for t in range(len(values)):
        chunk = values[max(0, t - window + 1): t + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def centred_mean(values: Sequence[float], window: int) -> list[float]:
    """Mean of the `window` values centred on t (shrunk at the ends); no lag, for finished curves.

    >>> centred_mean([1.0, 3.0, 5.0, 7.0], 3)
    [2.0, 3.0, 5.0, 6.0]
    """
    half = window // 2
    out = []
    for t in range(len(values)):
        chunk = values[max(0, t - half): t + half + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def _argmin(values: Sequence[float]) -> int:
    best = 0
    for i, v in enumerate(values):
        if v < values[best] or (math.isnan(values[best]) and not math.isnan(v)):
            best = i
    return best


def generalization_loss(values: Sequence[float]) -> list[float]:
    """GL(t) = 100·(E(t)/E_opt(t) − 1), Prechelt's relative rise above the best loss so far.

    >>> generalization_loss([2.0, 1.0, 1.1])
    [0.0, 0.0, 10.000000000000009]
    """
    out, best = [], math.inf
    for v in values:
        best = min(best, v)
        out.append(100.0 * (v / best - 1.0) if best > 0 else (0.0 if v <= best else math.inf))
    return out


def training_progress(train: Sequence[float], t: int, k: int) -> float:
    """P_k(t) for the strip of k epochs ending at epoch t (1-based), Prechelt's training progress."""
    strip = train[t - k: t]
    low = min(strip)
    return 1000.0 * (sum(strip) / (k * low) - 1.0) if low > 0 else math.inf


def stop_epoch(val: Sequence[float], train: Sequence[float] | None, *, rule: str = "smoothed", window: int = 5,
               patience: int = 10, gl_alpha: float = 5.0, pq_alpha: float = 0.5, up_strips: int = 3,
               strip_length: int = 5) -> int | None:
    """The first epoch (1-based) at which `rule` says stop, or None if it never does on this curve.

    >>> stop_epoch([1.0, 0.5, 0.4, 0.5, 0.6, 0.7], None, rule="smoothed", window=1, patience=3)
    6
    """
    n = len(val)
    if rule == "smoothed":
        S = trailing_mean(val, window)
        best = 0
        for t in range(n):
            if S[t] < S[best]:
                best = t
            if t - best >= patience:
                return t + 1
        return None
    if rule == "gl":
        for t, gl in enumerate(generalization_loss(val)):
            if gl > gl_alpha:
                return t + 1
        return None
    k = strip_length
    if rule == "pq":
        if train is None:
            raise ValueError("the PQ rule needs the training losses")
        gls = generalization_loss(val)
        for t in range(k, n + 1, k):
            progress = training_progress(train, t, k)
            quotient = gls[t - 1] / progress if progress > 0 else (math.inf if gls[t - 1] > 0 else 0.0)
            if quotient > pq_alpha:
                return t
        return None
    if rule == "up":
        rises = 0
        for t in range(2 * k, n + 1, k):
            rises = rises + 1 if val[t - 1] > val[t - 1 - k] else 0
            if rises >= up_strips:
                return t
        return None
    raise ValueError(f"unknown rule {rule!r}")


@dataclass
class RuleResult:
    rule: str
    stop_epoch: int | None  # where the rule stops (None: it would have kept going)
    best_epoch: int  # lowest raw loss up to stop_epoch (or the end): the weights to keep
    best_loss: float


def rule_name(rule: str, cfg: StoppingConfig) -> str:
    """A label with the rule's parameter, e.g. "GL5", "UP3", "smoothed(w=5,p=10)"."""
    return {"smoothed": f"smoothed(w={cfg.window},p={cfg.patience})", "gl": f"GL{cfg.gl_alpha:g}",
            "pq": f"PQ{cfg.pq_alpha:g}", "up": f"UP{cfg.up_strips}"}[rule]


def apply_rule(val: Sequence[float], train: Sequence[float] | None, rule: str, cfg: StoppingConfig) -> RuleResult:
    """Where `rule` stops on the curve and which epoch's weights it keeps.

    >>> apply_rule([1.0, 0.5, 0.4, 0.5, 0.6, 0.7], None, "gl", StoppingConfig()).best_epoch
    3
    """
    stop = stop_epoch(val, train, rule=rule, window=cfg.window, patience=cfg.patience, gl_alpha=cfg.gl_alpha,
                      pq_alpha=cfg.pq_alpha, up_strips=cfg.up_strips, strip_length=cfg.strip_length)
    seen = val[: stop if stop is not None else len(val)]
    best = _argmin(seen)
    return RuleResult(rule_name(rule, cfg), stop, best + 1, float(seen[best]))


def overfitting_onset(val: Sequence[float], window: int, patience: int) -> int | None:
    """Epoch (1-based) of the centred-moving-average minimum, if at least `patience` epochs follow it.

    >>> overfitting_onset([1.0, 0.5, 0.3, 0.35, 0.4, 0.5, 0.6], window=1, patience=3)
    3
    """
    if not val:
        return None
    smooth = centred_mean(val, window)
    low = _argmin(smooth)
    return low + 1 if len(val) - 1 - low >= patience else None


def analyse_curve(val: Sequence[float], train: Sequence[float] | None, cfg: StoppingConfig) -> dict[str, Any]:
    """Every rule on a finished curve, the chosen one (`cfg.rule`) and the onset of overfitting, as plain data.

    >>> out = analyse_curve([1.0, 0.5, 0.3, 0.35, 0.4, 0.5, 0.6], None, StoppingConfig(window=1, patience=3))
    >>> out["best_epoch"], out["onset_epoch"], out["chosen"]["stop_epoch"]
    (3, 3, 6)
    """
    finite = [v if math.isfinite(v) else math.inf for v in val]
    rules = {}
    for rule in ("smoothed", "gl", "pq", "up"):
        if rule == "pq" and train is None:
            continue
        rules[rule] = asdict(apply_rule(finite, train, rule, cfg))
    best = _argmin(finite) + 1 if finite else None
    return {
        "best_epoch": best,
        "best_loss": float(finite[best - 1]) if best else None,
        "onset_epoch": overfitting_onset(finite, cfg.window, cfg.patience),
        "chosen_rule": cfg.rule,
        "chosen": rules.get(cfg.rule),
        "rules": rules,
    }


def selection_curve(rows: Sequence[dict[str, Any]]) -> tuple[str, list[float]]:
    """The loss a run chooses its epoch by, from its per-epoch rows: ("validation", val_loss) when the run holds
    out a validation split, else ("test", test_loss).

    >>> selection_curve([{"val_loss": None, "test_loss": 0.5}, {"val_loss": None, "test_loss": 0.4}])
    ('test', [0.5, 0.4])
    """
    selection = "validation" if rows and rows[0].get("val_loss") is not None else "test"
    key = "val_loss" if selection == "validation" else "test_loss"
    return selection, [r[key] for r in rows]


def analyse_run(rows: Sequence[dict[str, Any]], cfg: StoppingConfig) -> tuple[str, dict[str, Any]]:
    """`analyse_curve` on a run's per-epoch rows, by its selection loss; returns (selection, analysis)."""
    selection, curve = selection_curve(rows)
    return selection, analyse_curve(curve, [r["train_loss"] for r in rows], cfg)
