"""Experiment tracking behind one small interface.

The run folder (config, metrics CSV, summary JSON, checkpoint, figures) is always written; trackers are
optional extras that mirror each epoch's metrics elsewhere (TensorBoard event files, Weights & Biases).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class Tracker(Protocol):
    """What the trainer calls: once at the start, once per finished epoch, once at the end."""

    def start(self, run_name: str, config: dict[str, Any], run_dir: Path) -> None: ...

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None: ...

    def finish(self, summary: dict[str, Any]) -> None: ...
