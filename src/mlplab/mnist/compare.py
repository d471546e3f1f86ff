"""Finished runs side by side: a table and observations per comparison, computed from the numbers only.

Everything here works on `RunResult`s (a run's summary plus its per-epoch history), so it is tested on
constructed runs; `mlplab.mnist.compare_report` reads run folders and writes the figures and files.
Observations are facts read off the curves (who diverged and when, where the test loss turned, which
setting was best), one sentence each, so that a reader does not have to open the CSV files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mlplab.mnist.experiments import Comparison
from mlplab.mnist.model import MLP, closed_form_parameters, count_parameters, layer_parameters, model_layer_parameters
from mlplab.tables import Table

# Cross-entropy applied to probabilities p (in [0, 1]) instead of logits: the smallest value is reached at
# p = one-hot, where it is -log(e / (e + (C - 1))) = log(1 + (C - 1) / e); 1.4612 for C = 10 classes.
SOFTMAX_CE_FLOOR = math.log(1 + 9 / math.e)


@dataclass
class RunResult:
    """One run: its name, the summary of `train_run` and the per-epoch history (one dict per epoch)."""

    name: str
    summary: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def divergent(self) -> bool:
        return bool(self.summary.get("divergent", False))

    @property
    def epochs_run(self) -> int:
        return int(self.summary.get("epochs_run", len(self.history)))

    def series(self, key: str) -> list[float]:
        return [float(row[key]) for row in self.history if key in row]

    def final(self, key: str) -> float | None:
        values = self.series(key)
        return values[-1] if values else None

    @property
    def best_epoch(self) -> int | None:
        value = self.summary.get("best_epoch")
        return int(value) if value is not None else None

    @property
    def best_test_loss(self) -> float | None:
        value = self.summary.get("best_test_loss")
        if value is None and self.series("test_loss"):
            value = min(self.series("test_loss"))
        return None if value is None else float(value)

    @property
    def best_test_accuracy(self) -> float | None:
        value = self.summary.get("best_test_accuracy")
        if value is None and self.series("test_accuracy"):
            value = max(self.series("test_accuracy"))
        return None if value is None else float(value)

    def divergence(self) -> tuple[int | None, int | None, float | None]:
        """(epoch, batch, loss) where the run was stopped as divergent, as far as the summary records them."""
        info = self.summary.get("divergence") or {}
        epoch = info.get("epoch", self.summary.get("divergent_epoch"))
        batch = info.get("batch", self.summary.get("divergent_batch"))
        loss = info.get("loss", self.summary.get("divergent_loss"))
        return (None if epoch is None else int(epoch), None if batch is None else int(batch),
                None if loss is None else float(loss))


COMPARISON_COLUMNS = ["run", "setting", "best epoch", "best test loss", "final test loss", "best test acc",
                      "final test acc", "final train loss", "epochs run", "divergent", "wall time (s)"]


def comparison_table(comparison: Comparison, runs: Mapping[str, RunResult]) -> Table:
    """One row per run of the comparison (runs not finished yet show as `-`); the caption names the best.

    >>> from mlplab.mnist.experiments import get_comparison
    >>> r = RunResult("hidden16", {"best_epoch": 2, "best_test_loss": 0.5, "epochs_run": 3},
    ...               [{"train_loss": 1.0, "test_loss": 0.6, "test_accuracy": 0.8}])
    >>> comparison_table(get_comparison("dropout16"), {"hidden16": r}).rows[0][:4]
    ['hidden16', '[16], dropout 0.2', 2, 0.5]
    """
    rows: list[list[Any]] = []
    for name, label in comparison.runs:
        run = runs.get(name)
        if run is None:
            rows.append([name, label, *([None] * (len(COMPARISON_COLUMNS) - 2))])
            continue
        rows.append([name, label, run.best_epoch, run.best_test_loss, run.final("test_loss"),
                     run.best_test_accuracy, run.final("test_accuracy"), run.final("train_loss"),
                     run.epochs_run, run.divergent, _float(run.summary.get("wall_time_s"))])
    best = best_run(comparison, runs)
    caption = f"{comparison.title}: best configuration {best.name} (lowest best test loss)" if best else ""
    return Table(comparison.title, list(COMPARISON_COLUMNS), rows, decimals=4, caption=caption,
                 label=f"tab:mnist-{comparison.name.replace('_', '-')}")


def best_run(comparison: Comparison, runs: Mapping[str, RunResult]) -> RunResult | None:
    """The non-divergent run with the lowest best test loss (ties: the higher best test accuracy).

    >>> from mlplab.mnist.experiments import get_comparison
    >>> a = RunResult("hidden16", {"best_test_loss": 0.3}); b = RunResult("hidden16_nodropout", {"best_test_loss": 0.2})
    >>> best_run(get_comparison("dropout16"), {"hidden16": a, "hidden16_nodropout": b}).name
    'hidden16_nodropout'
    """
    candidates = [runs[n] for n, _ in comparison.runs
                  if n in runs and not runs[n].divergent and runs[n].best_test_loss is not None
                  and math.isfinite(runs[n].best_test_loss or math.nan)]
    if not candidates:
        return None
    return min(candidates, key=lambda r: (r.best_test_loss, -(r.best_test_accuracy or 0.0)))


def overfitting_onset(run: RunResult) -> int | None:
    """The first epoch after which the test loss never returns to its minimum while the training loss keeps
    falling: the epoch of the lowest test loss, when later epochs exist and the training loss falls after it.

    The trainer's own `onset_epoch` (its documented rule on the noisy curve, `mlplab.mnist.best_epoch`) is
    used when the summary has one.

    >>> h = [{"train_loss": t, "test_loss": v} for t, v in [(1.0, 0.9), (0.8, 0.7), (0.6, 0.75), (0.5, 0.8)]]
    >>> overfitting_onset(RunResult("r", {}, h))
    2
    """
    if "onset_epoch" in run.summary:
        onset = run.summary["onset_epoch"]
        return None if onset is None else int(onset)
    test, train = run.series("test_loss"), run.series("train_loss")
    if len(test) < 2:
        return None
    best = run.best_epoch if run.best_epoch is not None else 1 + min(range(len(test)), key=test.__getitem__)
    if best >= len(test) or len(train) < len(test):
        return None
    if train[-1] < train[best - 1] and test[-1] > test[best - 1]:
        return best
    return None


def observations(comparison: Comparison, runs: Mapping[str, RunResult]) -> list[str]:
    """Sentences read off the numbers: divergence, overfitting, the best setting, and for the softmax run the
    floor that cross-entropy on probabilities cannot go below.

    >>> from mlplab.mnist.experiments import get_comparison
    >>> r = RunResult("lr1", {"divergent": True, "divergence": {"epoch": 1, "batch": 37, "loss": float("nan")}})
    >>> observations(get_comparison("learning_rate"), {"lr1": r})[0]
    'lr1 (lr=1) diverged in epoch 1 at batch 37 (loss nan) and was stopped there.'
    """
    notes: list[str] = []
    labels = dict(comparison.runs)
    present = [runs[n] for n, _ in comparison.runs if n in runs]
    missing = [n for n, _ in comparison.runs if n not in runs]
    for run in present:
        notes += _run_notes(comparison, run, labels[run.name])
    best = best_run(comparison, runs)
    if best is not None and len(present) > 1:
        at = f" at epoch {_argmin(best.series('test_loss'))}" if best.series("test_loss") else ""
        notes.append(f"Lowest test loss: {best.name} ({labels[best.name]}), {short_number(best.best_test_loss)}{at}.")
        by_acc = max((r for r in present if not r.divergent and r.best_test_accuracy is not None),
                     key=lambda r: r.best_test_accuracy or 0.0, default=None)
        if by_acc is not None:
            same = " (the same run)" if by_acc.name == best.name else ""
            notes.append(f"Highest test accuracy: {by_acc.name} ({labels[by_acc.name]}), "
                         f"{short_number(by_acc.best_test_accuracy)}{same}.")
    if missing:
        notes.append("No finished run yet: " + ", ".join(missing) + ".")
    return notes


def _run_notes(comparison: Comparison, run: RunResult, label: str) -> list[str]:
    """One run's sentences: where it diverged, or where it began to overfit (or its best epoch), and the softmax
    run's lowest training loss against the floor."""
    if run.divergent:
        epoch, batch, loss = run.divergence()
        where = f"in epoch {epoch}" if epoch is not None else "during training"
        where += f" at batch {batch}" if batch is not None else ""
        what = f" (loss {short_number(loss)})" if loss is not None else ""
        return [f"{run.name} ({label}) diverged {where}{what} and was stopped there."]
    test = run.series("test_loss")
    if not test:
        return []
    notes: list[str] = []
    onset = overfitting_onset(run)
    if onset is not None and onset <= len(test):
        notes.append(_overfitting_note(run, label, onset))
    elif run.best_epoch is not None:
        notes.append(f"{run.name} ({label}): best epoch {run.best_epoch} of {len(test)}; the test loss did not "
                     f"rise against a falling training loss by the last epoch.")
    if run.summary.get("softmax_output") or (comparison.name == "softmax" and run.name == "softmax"):
        floor = min(run.series("train_loss") or [math.nan])
        notes.append(f"{run.name} ({label}): lowest training loss {short_number(floor)}; cross-entropy applied to "
                     f"probabilities cannot go below log(1 + 9/e) = {SOFTMAX_CE_FLOOR:.4f}.")
    return notes


def _overfitting_note(run: RunResult, label: str, onset: int) -> str:
    """Where the test loss turns up, and whether the training loss kept falling (overfitting) or rose too."""
    test, train = run.series("test_loss"), run.series("train_loss")
    low = _argmin(test)
    trend = "fell" if train[-1] < train[onset - 1] else "rose"
    rule = "minimum of the centred moving average" if "onset_epoch" in run.summary else "rule: lowest test loss"
    n = short_number
    facts = (f"test loss lowest at epoch {low} ({n(test[low - 1])}), {n(test[-1])} at epoch {len(test)}; "
             f"training loss {trend} from {n(train[onset - 1])} to {n(train[-1])}")
    if trend == "fell":
        return f"{run.name} ({label}): overfitting onset at epoch {onset} ({rule}); {facts} after the onset."
    # both losses rise: training itself gets worse, which is not overfitting
    return (f"{run.name} ({label}): test loss turns up at epoch {onset} ({rule}), but the training loss rises too, "
            f"so this is not overfitting; {facts} after that epoch.")


def logits_and_probabilities(model: torch.nn.Module, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw outputs of `model` on X (N, 784) and their softmax (N, 10), in eval mode without gradients.

    A model that already ends in a softmax returns probabilities as its "logits"; the caller decides.

    >>> m = torch.nn.Linear(4, 3); z, p = logits_and_probabilities(m, torch.zeros(2, 4))
    >>> bool(torch.allclose(p.sum(dim=1), torch.ones(2, dtype=torch.float64)))
    True
    """
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        z = model(X).double()  # (N, C)
    model.train(was_training)
    return z, torch.softmax(z, dim=1)


def softmax_table(logits: torch.Tensor, probabilities: torch.Tensor, labels: torch.Tensor,
                  indices: Sequence[int], title: str = "Logits and softmax probabilities",
                  kinds: tuple[str, str] = ("logits", "softmax")) -> Table:
    """Two rows per image: its raw logits, then the probabilities, with their sum and argmax.

    >>> z = torch.tensor([[2.0, 0.0, -1.0]]); t = softmax_table(z, torch.softmax(z, 1), torch.tensor([0]), [0])
    >>> [row[2] for row in t.rows], [row[-1] for row in t.rows]
    (['logits', 'softmax'], [0, 0])
    """
    classes = logits.shape[1]
    rows: list[list[Any]] = []
    for i, idx in enumerate(indices):
        for kind, values in zip(kinds, (logits[i], probabilities[i])):
            total = float(values.sum()) if kind != "logits" else None  # a sum is meaningful for probabilities
            rows.append([int(idx), int(labels[i]), kind, *(float(v) for v in values), total, int(values.argmax())])
    # Two decimals: trained logits reach three digits before the point, and 15 columns must fit a page.
    return Table(title, ["image", "label", "output", *map(str, range(classes)), "sum", "argmax"], rows,
                 decimals=2, rules_after=list(range(1, len(rows), 2)))


def parameter_table(models: Mapping[str, Sequence[int]], input_size: int = 784, num_classes: int = 10,
                    dropout_rate: float = 0.2) -> Table:
    """Per layer and in total: the closed form (n_in + 1)·n_out next to the count read from the built model.

    >>> t = parameter_table({"[16]": [16]})
    >>> t.rows[-1][-2:]
    [12730, 12730]
    """
    rows: list[list[Any]] = []
    rules: list[int] = []
    for name, hidden in models.items():
        model = MLP(input_size, list(hidden), num_classes, dropout_rate)
        closed = layer_parameters(input_size, list(hidden), num_classes)
        own = model_layer_parameters(model)
        for layer, count in zip(closed, own):
            rows.append([name, layer["layer"], f"{layer['inputs']} x {layer['outputs']}", layer["weights"],
                         layer["biases"], layer["parameters"], count])
        rows.append([name, "total", "", sum(int(r["weights"]) for r in closed),
                     sum(int(r["biases"]) for r in closed),
                     closed_form_parameters(input_size, list(hidden), num_classes), count_parameters(model)])
        rules.append(len(rows) - 1)
    return Table("Parameter counts", ["model", "layer", "shape", "weights", "biases", "closed form",
                                      "model count"], rows, rules_after=rules, label="tab:mnist-parameters",
                 caption="Parameters per Linear layer: (n_in + 1) n_out from the sizes, and counted from the model")


def _argmin(values: Sequence[float]) -> int:
    """1-based epoch of the smallest finite value."""
    return 1 + min(range(len(values)), key=lambda i: values[i] if math.isfinite(values[i]) else math.inf)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def short_number(value: float | None) -> str:
    """Four significant digits for sentences; `-` for a missing value.

    >>> short_number(0.067462), short_number(None), short_number(float("nan"))
    ('0.06746', '-', 'nan')
    """
    if value is None:
        return "-"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.4g}"
