"""The learning-curve figure of a run: training and test (and validation) loss together, accuracy beside it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlplab.fsio import save_figure


def save_loss_figure(rows: Sequence[dict[str, Any]], out_dir: Path, stem: str, *, title: str = "",
                     marks: dict[str, Any] | None = None) -> list[Path]:
    """Write `stem.png` and `stem.pdf`: losses per epoch (left), accuracies per epoch (right).

    `marks` may hold `best_epoch`, `onset_epoch` (vertical lines) and `divergent` (a note in the title).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    marks = marks or {}
    epochs = [int(r["epoch"]) for r in rows]

    def series(key: str) -> list[float]:
        return [float(r[key]) if r.get(key) is not None and math.isfinite(float(r[key])) else math.nan
                for r in rows]

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(epochs, series("train_loss"), label="training loss (dropout on)")
    ax_loss.plot(epochs, series("test_loss"), label="test loss")
    if any(r.get("val_loss") is not None for r in rows):
        ax_loss.plot(epochs, series("val_loss"), label="validation loss")
        ax_acc.plot(epochs, series("val_accuracy"), label="validation accuracy", color="tab:green")
    ax_acc.plot(epochs, series("test_accuracy"), label="test accuracy", color="tab:orange")
    for key, style, label in (("best_epoch", "--", "best epoch"), ("onset_epoch", ":", "overfitting onset")):
        if marks.get(key):
            for ax in (ax_loss, ax_acc):
                ax.axvline(marks[key], color="grey", linestyle=style, linewidth=1,
                           label=f"{label} ({marks[key]})" if ax is ax_loss else None)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_loss.legend(fontsize=8)
    ax_acc.legend(fontsize=8)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    note = " — divergent" if marks.get("divergent") else ""
    fig.suptitle(f"{title}{note}")
    fig.tight_layout()
    try:
        return save_figure(fig, out_dir, stem)
    finally:
        plt.close(fig)
