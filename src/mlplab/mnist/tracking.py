"""Experiment tracking behind one small interface.

The run folder (config, metrics CSV, summary JSON, checkpoint, figures) is always written; trackers are
optional extras that mirror each epoch's metrics elsewhere (TensorBoard event files, Weights & Biases).
Both are optional installs (`pip install 'mlplab[tensorboard]'`, `pip install 'mlplab[wandb]'`); asking for
one that is missing raises an `MlplabError` that says which extra to install.

Weights & Biases runs in offline mode unless told otherwise: everything stays in `<run>/wandb/` on this
machine, and `wandb sync <run>/wandb/offline-run-*` uploads it later if the user wants to.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from mlplab.errors import MlplabError

TRACKERS = ("tensorboard", "wandb")
WANDB_MODES = ("offline", "online", "disabled")


class Tracker(Protocol):
    """What the trainer calls: once at the start, once per finished epoch, once at the end."""

    def start(self, run_name: str, config: dict[str, Any], run_dir: Path) -> None: ...

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...

    def finish(self, summary: dict[str, Any]) -> None: ...


def _scalars(values: dict[str, Any]) -> dict[str, float]:
    """The entries that are plain numbers (bools and nested values are skipped; NaN is kept, it is a fact)."""
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoardTracker:
    """Writes each epoch's metrics as TensorBoard scalars into `<run_dir>/tensorboard` (or `log_dir`).

    View with `tensorboard --logdir <results folder>`: every run of a sweep shows up as its own curve.

    >>> TensorBoardTracker().log_dir is None
    True
    """

    name = "tensorboard"

    def __init__(self, log_dir: str | Path | None = None) -> None:
        _require("tensorboard", "tensorboard")
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._writer: Any = None

    def start(self, run_name: str, config: dict[str, Any], run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = self.log_dir if self.log_dir is not None else Path(run_dir) / "tensorboard"
        self._writer = SummaryWriter(log_dir=str(folder))
        # Markdown code block so TensorBoard's text tab shows the config verbatim.
        self._writer.add_text("config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```", 0)
        self._writer.add_text("run_name", run_name, 0)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        writer = self._active()
        for key, value in _scalars(metrics).items():
            if key != "epoch":
                writer.add_scalar(key, value, epoch)
        writer.flush()  # an interrupted run still leaves every finished epoch on disk

    def finish(self, summary: dict[str, Any]) -> None:
        writer = self._active()
        text = json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2, default=str)
        writer.add_text("summary", "```\n" + text + "\n```", int(summary.get("epochs_run", 0)))
        writer.close()
        self._writer = None

    def _active(self) -> Any:
        if self._writer is None:
            raise RuntimeError("TensorBoardTracker used before start()")
        return self._writer


class WandbTracker:
    """Logs to Weights & Biases, offline by default: files under `<run_dir>/wandb/`, nothing sent anywhere.

    `mode="online"` sends the run to the W&B server (needs `wandb login`); `wandb sync` uploads an offline
    run later.

    >>> WandbTracker().mode
    'offline'
    """

    name = "wandb"

    def __init__(self, mode: str = "offline", project: str = "mlplab", group: str | None = None) -> None:
        _require("wandb", "wandb")
        if mode not in WANDB_MODES:
            raise MlplabError(f"unknown wandb mode {mode!r}", hint=f"use one of {', '.join(WANDB_MODES)}")
        self.mode = mode
        self.project = project
        self.group = group
        self._run: Any = None

    def start(self, run_name: str, config: dict[str, Any], run_dir: Path) -> None:
        import wandb

        folder = Path(run_dir)
        folder.mkdir(parents=True, exist_ok=True)
        init: Any = wandb.init  # its `mode` is typed as a Literal; ours is checked in __init__
        self._run = init(project=self.project, name=run_name, group=self.group, config=config,
                         dir=str(folder), mode=self.mode, reinit="create_new",
                         settings=wandb.Settings(silent=True, console="off"))

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        run = self._active()
        values = _scalars(metrics)
        values["epoch"] = float(epoch)
        run.log(values, step=int(epoch))

    def finish(self, summary: dict[str, Any]) -> None:
        run = self._active()
        flat: dict[str, Any] = {}
        for key, value in summary.items():
            if isinstance(value, float) and not math.isfinite(value):
                value = str(value)  # W&B's JSON has no NaN
            if isinstance(value, (str, int, float, bool)) or value is None:
                flat[key] = value
        run.summary.update(flat)
        run.finish()
        self._run = None

    def _active(self) -> Any:
        if self._run is None:
            raise RuntimeError("WandbTracker used before start()")
        return self._run


def _require(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MlplabError(f"tracker {extra!r} asked for, but the {module} package is not installed",
                          hint=f"pip install 'mlplab[{extra}]', or drop --tracker {extra}")


def make_trackers(names: Iterable[str], *, wandb_mode: str = "offline", wandb_project: str = "mlplab",
                  wandb_group: str | None = None) -> list[Tracker]:
    """Build trackers by name (`tensorboard`, `wandb`); duplicates are ignored, unknown names are an error.

    >>> make_trackers([])
    []
    >>> make_trackers(["mlflow"])
    Traceback (most recent call last):
    ...
    mlplab.errors.MlplabError: unknown tracker 'mlflow'; use tensorboard or wandb
    """
    trackers: list[Tracker] = []
    seen: set[str] = set()
    for raw in names:
        name = raw.strip().lower()
        if name in seen:
            continue
        seen.add(name)
        if name == "tensorboard":
            trackers.append(TensorBoardTracker())
        elif name == "wandb":
            trackers.append(WandbTracker(mode=wandb_mode, project=wandb_project, group=wandb_group))
        else:
            raise MlplabError(f"unknown tracker {raw!r}", hint="use " + " or ".join(TRACKERS))
    return trackers
