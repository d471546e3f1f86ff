"""The comparisons on disk: read finished run folders, draw overlaid learning curves, write every table.

The numbers come from `mlplab.mnist.compare` (no I/O there); this module is the report around them.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mlplab.errors import MlplabError
from mlplab.mnist.compare import (
    SOFTMAX_CE_FLOOR,
    RunResult,
    comparison_table,
    logits_and_probabilities,
    observations,
    parameter_table,
    short_number,
    softmax_table,
)
from mlplab.mnist.experiments import Comparison
from mlplab.tables import Table


def comparison_figure(comparison: Comparison, runs: Mapping[str, RunResult]) -> Any:
    """Training (dashed) and test (solid) loss of every run on one log axis, test accuracy beside it; dots
    mark best epochs, and a divergent run ends in a cross and says where it diverged in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    present = [(k, name, label, runs[name]) for k, (name, label) in enumerate(comparison.runs) if name in runs]
    # The axis follows the runs that did not diverge (a divergent loss of 1e7 would flatten everything else);
    # a divergent run's last point is drawn as a cross at the top edge, with its value written beside it.
    calm = [v for _, _, _, r in present if not r.divergent for v in r.series("train_loss") + r.series("test_loss")
            if math.isfinite(v) and v > 0]
    top = 3 * max(calm) if calm else None
    for k, _, label, run in present:
        color = f"C{k}"
        if run.divergent:
            epoch, batch, _ = run.divergence()
            label += f" (diverged: epoch {epoch}, batch {batch})"
        train, test = run.series("train_loss"), run.series("test_loss")
        epochs = list(range(1, len(test) + 1))
        marker = "o" if len(test) <= 2 else None  # a run of one or two epochs would otherwise be invisible
        ax_loss.plot(epochs, test, color=color, marker=marker, label=f"{label}, test")
        ax_loss.plot(list(range(1, len(train) + 1)), train, color=color, linestyle="--", marker=marker,
                     label=f"{label}, train")
        ax_acc.plot(epochs, run.series("test_accuracy"), color=color, marker=marker, label=label)
        if run.best_epoch is not None and 1 <= run.best_epoch <= len(test) and not run.divergent:
            ax_loss.plot([run.best_epoch], [test[run.best_epoch - 1]], "o", color=color, markersize=4)
        if run.divergent and train:
            last = train[-1]
            shown = last if top is None or (math.isfinite(last) and last <= top) else top / 1.5
            ax_loss.plot([len(train)], [shown], "x", color=color, markersize=10, markeredgewidth=2)
            ax_loss.annotate(f"train loss {short_number(last)}", (len(train), shown), textcoords="offset points",
                             xytext=(8, -4), fontsize=7, color=color)
    if comparison.name == "softmax":
        ax_loss.axhline(SOFTMAX_CE_FLOOR, color="grey", linestyle=":", linewidth=1,
                        label=f"floor of cross-entropy on probabilities ({SOFTMAX_CE_FLOOR:.4f})")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title=f"{comparison.title}: loss")
    if calm and top is not None:
        ax_loss.set_ylim(min(calm) / 1.5, top)
    ax_acc.set(xlabel="epoch", ylabel="test accuracy", title=f"{comparison.title}: test accuracy")
    ax_loss.legend(fontsize=7)
    ax_acc.legend(fontsize=7)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def load_run(run_dir: Path) -> RunResult | None:
    """A finished run folder (summary.json and metrics.csv) as a RunResult; None when it is not finished."""
    summary_path, metrics_path = run_dir / "summary.json", run_dir / "metrics.csv"
    if not summary_path.is_file():
        return None
    try:
        summary = json.loads(summary_path.read_text())
        history = []
        if metrics_path.is_file():
            with metrics_path.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    history.append({k: float(v) for k, v in row.items() if k and v not in ("", None)})
    except (OSError, ValueError) as exc:
        raise MlplabError(f"cannot read the run in {run_dir}: {exc}",
                          hint=f"delete {run_dir} and run the experiment again") from exc
    return RunResult(run_dir.name, summary, history)


def load_runs(results_dir: Path) -> dict[str, RunResult]:
    """Every finished run under `results_dir`, keyed by folder name."""
    if not results_dir.is_dir():
        raise MlplabError(f"results folder {results_dir} does not exist",
                          hint="run `mlplab mnist sweep all` first, or pass the --out folder of the sweep")
    runs = {}
    for folder in sorted(p for p in results_dir.iterdir() if p.is_dir()):
        run = load_run(folder)
        if run is not None:
            runs[run.name] = run
    return runs


def _model_from_run(run_dir: Path) -> torch.nn.Module | None:
    """The model of a run's last checkpoint (its final weights), or None when there is no checkpoint."""
    from mlplab.mnist.config import config_from_dict
    from mlplab.mnist.runstore import RunStore
    from mlplab.mnist.train import build_model

    store = RunStore(run_dir)
    if not store.has_checkpoint():
        return None
    state = store.load_checkpoint()
    model = build_model(config_from_dict(state["config"]))
    model.load_state_dict(state["model"])
    return model


def softmax_section(results_dir: Path, data_dir: Path | None, n_images: int) -> tuple[list[Table], list[str]]:
    """Logits against probabilities on the first `n_images` test images, for the trained baseline, and what
    the cross-entropy sees from the model trained with a softmax appended."""
    from mlplab.mnist.data import load_mnist

    baseline, softmaxed = _model_from_run(results_dir / "baseline"), _model_from_run(results_dir / "softmax")
    if baseline is None and softmaxed is None:
        return [], ["No baseline or softmax checkpoint yet: run `mlplab mnist sweep baseline softmax`."]
    try:
        _, test = load_mnist(data_dir)
    except MlplabError as exc:
        return [], [f"Logits table skipped: {exc}"]
    X, labels, idx = test.images[:n_images], test.labels[:n_images], list(range(n_images))
    tables, notes = [], []
    if baseline is not None:
        z, p = logits_and_probabilities(baseline, X)
        tables.append(softmax_table(z, p, labels, idx, "Baseline on test images: logits and softmax(logits)"))
        same = int((z.argmax(1) == p.argmax(1)).sum())
        notes.append(f"baseline: softmax(logits) sums to 1 within {float((p.sum(1) - 1).abs().max()):.1e} on "
                     f"{n_images} images; argmax unchanged on {same} of {n_images}; logits range "
                     f"{float(z.min()):.3g} to {float(z.max()):.3g}.")
    if softmaxed is not None:
        q, seen = logits_and_probabilities(softmaxed, X)  # outputs are already probabilities
        tables.append(softmax_table(q, seen, labels, idx, "Softmax-output model: its outputs and the softmax "
                                    "that cross-entropy applies to them", kinds=("output", "CE softmax")))
        notes.append(f"softmax model: outputs sum to 1 within {float((q.sum(1) - 1).abs().max()):.1e}; the "
                     f"cross-entropy applies a second softmax, whose largest value here is {float(seen.max()):.4f} "
                     f"(at most e/(e+9) = {math.e / (math.e + 9):.4f}).")
    return tables, notes


def write_comparisons(results_dir: Path, out_dir: Path, data_dir: Path | None = None, n_images: int = 5,
                      figure_formats: Sequence[str] = ("png", "pdf"),
                      ) -> tuple[list[Table], dict[str, list[str]], list[Path]]:
    """Read every finished run under `results_dir`; write per comparison a figure (PNG, PDF), all tables
    (txt, md, tex, json) and observations.md into `out_dir`. Returns (tables, observations by title, paths)."""
    import matplotlib.pyplot as plt

    from mlplab.fsio import atomic_write_text, ensure_dir, save_figure
    from mlplab.mnist.experiments import COMPARISONS
    from mlplab.tables import FORMATS, render_tables

    runs = load_runs(Path(results_dir))
    ensure_dir(out_dir)
    tables: list[Table] = []
    notes: dict[str, list[str]] = {}
    paths: list[Path] = []
    for comparison in COMPARISONS.values():
        tables.append(comparison_table(comparison, runs))
        notes[comparison.title] = observations(comparison, runs)
        if any(name in runs for name, _ in comparison.runs):
            fig = comparison_figure(comparison, runs)
            try:
                paths += save_figure(fig, out_dir, comparison.name, formats=figure_formats)
            finally:
                plt.close(fig)
    params = [parameter_table({"default": [512, 256, 128], "[16]": [16]})]
    soft_tables, notes["Logits and softmax"] = softmax_section(Path(results_dir), data_dir, n_images)
    suffix = {"text": "txt", "markdown": "md", "latex": "tex", "json": "json"}
    for stem, group in (("comparisons", tables), ("parameters", params), ("softmax", soft_tables)):
        if group:
            paths += [atomic_write_text(Path(out_dir) / f"{stem}.{suffix[f]}", render_tables(group, f) + "\n")
                      for f in FORMATS]
    lines = ["# Observations (generated from the finished runs)", ""]
    for title, items in notes.items():
        lines += [f"## {title}", "", *(f"- {item}" for item in items), ""]
    paths.append(atomic_write_text(Path(out_dir) / "observations.md", "\n".join(lines)))
    return [*tables, *params, *soft_tables], notes, paths
