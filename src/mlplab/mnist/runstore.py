"""A run is a folder: config.json, metrics.csv, summary.json, checkpoint.pt and the loss figure (PNG and PDF).

The trainer does no I/O itself; it hands its state to a `RunStore`, which writes every file atomically, so an
interrupted run leaves either the previous complete file or the new one, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch

from mlplab.errors import MlplabError
from mlplab.fsio import atomic_torch_save, atomic_write_json, atomic_write_text, ensure_dir
from mlplab.locks import folder_lock

METRIC_COLUMNS = ("epoch", "train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy", "epoch_time_s")
SUMMARY_FIELDS = ("test_accuracy", "test_loss", "best_test_accuracy", "best_epoch", "best_test_loss",
                  "test_accuracy_at_best_epoch", "onset_epoch", "selection", "epochs_run", "divergent", "divergence",
                  "stopped_early", "parameters", "device", "engine", "kernel", "wall_time_s", "run_dir")
"""The facts of summary.json that `--format json` prints for a run, in this order."""


class RunStore:
    """The files of one run under `run_dir`.

    >>> import tempfile; store = RunStore(tempfile.mkdtemp())
    >>> store.has_checkpoint(), store.checkpoint_path.name
    (False, 'checkpoint.pt')
    """

    def __init__(self, run_dir: str | Path, *, figures: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.figures = figures  # False skips loss.png/.pdf (matplotlib costs ~1 s per run; tests turn it off)
        self.config_path = self.run_dir / "config.json"
        self.metrics_path = self.run_dir / "metrics.csv"
        self.summary_path = self.run_dir / "summary.json"
        self.checkpoint_path = self.run_dir / "checkpoint.pt"

    def prepare(self) -> None:
        ensure_dir(self.run_dir)

    def lock(self) -> AbstractContextManager[Path]:
        """The folder's one-writer lock (mlplab.locks), held by `train_run` for the whole run."""
        return folder_lock(self.run_dir, "run folder")

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file()

    def save_config(self, config: dict[str, Any]) -> None:
        atomic_write_json(self.config_path, config)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        atomic_torch_save(state, self.checkpoint_path)

    def load_checkpoint(self) -> dict[str, Any]:
        """The saved state; a clear MlplabError if it is missing or unreadable."""
        if not self.has_checkpoint():
            raise MlplabError(f"no checkpoint in {self.run_dir} to resume from",
                              hint="drop --resume to start a new run, or pass the --out folder of the run")
        try:
            state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for a damaged file
            raise MlplabError(f"checkpoint {self.checkpoint_path} is unreadable ({type(exc).__name__})",
                              hint="delete it and start the run again without --resume") from exc
        if not isinstance(state, dict) or state.get("format") != "mlplab-mnist-checkpoint-1":
            raise MlplabError(f"{self.checkpoint_path} is not an mlplab MNIST checkpoint",
                              hint="use another --out folder")
        return state

    def save_metrics(self, rows: Sequence[dict[str, Any]]) -> None:
        atomic_write_text(self.metrics_path, metrics_csv(rows))

    def save_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.summary_path, json_safe(summary))

    def save_figures(self, rows: Sequence[dict[str, Any]], title: str, marks: dict[str, Any]) -> list[Path]:
        if not self.figures:
            return []
        from mlplab.mnist.plots import save_loss_figure

        return save_loss_figure(rows, self.run_dir, "loss", title=title, marks=marks)


def read_run(run_dir: str | Path) -> tuple[Any, list[dict[str, Any]]]:
    """(Config, per-epoch rows) of a run folder, from its config.json and metrics.csv."""
    from mlplab.mnist.config import config_from_dict

    store = RunStore(run_dir)
    try:
        config = config_from_dict(json.loads(store.config_path.read_text()))
        with store.metrics_path.open(newline="") as handle:
            raw = list(csv.DictReader(handle))
    except FileNotFoundError as exc:
        raise MlplabError(f"{run_dir} has no {Path(exc.filename).name}",
                          hint="pass the --out folder of a `mlplab mnist train` run") from exc
    except (OSError, ValueError) as exc:
        raise MlplabError(f"cannot read the run in {run_dir}: {exc}", hint="is it a run folder?") from exc
    return config, _parse_rows(raw, store.metrics_path)


def _parse_rows(raw: list[dict[str, Any]], path: Path) -> list[dict[str, Any]]:
    """metrics.csv's rows as numbers; a damaged file (cut short, edited, other columns) is one clear error."""
    rows: list[dict[str, Any]] = []
    for line, row in enumerate(raw, 2):
        try:
            if None in row or set(row) != set(METRIC_COLUMNS):
                raise ValueError("wrong columns")
            parsed = {k: (int(v) if k == "epoch" else (float(v) if v != "" else None)) for k, v in row.items()}
            if parsed["epoch"] != len(rows) + 1 or parsed["train_loss"] is None or parsed["test_loss"] is None:
                raise ValueError("epochs out of order or losses missing")
        except (TypeError, ValueError) as exc:
            raise MlplabError(f"{path} is damaged at line {line} ({exc})",
                              hint="rerun the training command with --resume to rebuild it from checkpoint.pt") from exc
        rows.append(parsed)
    return rows


def metrics_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Per-epoch rows as CSV text with the columns of METRIC_COLUMNS (empty where a value is absent)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in METRIC_COLUMNS})
    return buffer.getvalue()


def json_safe(obj: Any) -> Any:
    """NaN and ±inf become None, so the JSON is strict (readable by jq and browsers), recursively.

    >>> json.dumps(json_safe({"loss": float("nan"), "x": [1.0, float("inf")]}))
    '{"loss": null, "x": [1.0, null]}'
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
