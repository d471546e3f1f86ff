"""Trackers write real files that the tools themselves can read back: TensorBoard events and offline W&B runs."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch

from mlplab.errors import MlplabError
from mlplab.mnist import tracking
from mlplab.mnist.tracking import TensorBoardTracker, WandbTracker, make_trackers

METRICS = [{"train_loss": 2.0, "test_loss": 1.5, "test_accuracy": 0.25},
           {"train_loss": 1.0, "test_loss": 1.25, "test_accuracy": 0.5},
           {"train_loss": 0.5, "test_loss": 1.375, "test_accuracy": 0.75}]


@pytest.fixture
def wandb_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every W&B file (cache, settings) inside the test's folder and make sure nothing goes online."""
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def _drive(tracker: Any, run_dir: Path) -> None:
    tracker.start("demo", {"training": {"batch_size": 6}, "model": {"hidden_sizes": [16]}}, run_dir)
    for epoch, metrics in enumerate(METRICS, start=1):
        tracker.log_epoch(epoch, {**metrics, "divergent": False})
    tracker.finish({"epochs_run": 3, "best_epoch": 2, "best_test_loss": 1.25, "divergent": False,
                    "history": [1, 2, 3], "final_nan": float("nan")})


def read_tensorboard(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def read_wandb_log(path: Path) -> list[Any]:
    """Decode a `.wandb` transaction log: a 7-byte ':W&B' header, then LevelDB-style records in 32 KiB
    blocks (crc32, length, type; type 1 = whole record, 2/3/4 = first/middle/last piece of one)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, pending, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # the tail of a block too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_tensorboard_tracker_writes_event_files_that_tensorboard_reads(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _drive(TensorBoardTracker(), run_dir)
    scalars = read_tensorboard(run_dir / "tensorboard")
    assert set(scalars) == {"train_loss", "test_loss", "test_accuracy"}
    for key in scalars:
        steps = [s for s, _ in scalars[key]]
        values = [v for _, v in scalars[key]]
        assert steps == [1, 2, 3]
        # TensorBoard stores float32; these values are exact in float32.
        torch.testing.assert_close(torch.tensor(values, dtype=torch.float64),
                                   torch.tensor([m[key] for m in METRICS], dtype=torch.float64), rtol=0, atol=0)


def test_wandb_tracker_writes_an_offline_run_with_config_history_and_summary(tmp_path: Path,
                                                                            wandb_sandbox: None) -> None:
    run_dir = tmp_path / "run"
    _drive(WandbTracker(), run_dir)
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, "offline mode keeps the run on this machine, ready for `wandb sync`"
    assert not list((run_dir / "wandb").glob("run-*")), "an online run folder means something was sent"
    (log,) = offline[0].glob("run-*.wandb")
    records = read_wandb_log(log)
    kinds = [r.WhichOneof("record_type") for r in records]
    assert "run" in kinds and "exit" in kinds
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.display_name == "demo"
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert config["training"] == {"batch_size": 6}
    assert config["model"] == {"hidden_sizes": [16]}
    history = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            history.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item})
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for key in ("train_loss", "test_loss", "test_accuracy"):
        torch.testing.assert_close(torch.tensor([h[key] for h in history], dtype=torch.float64),
                                   torch.tensor([m[key] for m in METRICS], dtype=torch.float64), rtol=0, atol=0)
    summary: dict[str, Any] = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update({"/".join(u.nested_key) or u.key: json.loads(u.value_json) for u in r.summary.update})
    assert summary["best_epoch"] == 2 and summary["epochs_run"] == 3 and summary["divergent"] is False
    assert summary["final_nan"] == "nan"
    assert "history" not in summary


def test_make_trackers_builds_by_name_and_rejects_unknown_names() -> None:
    trackers = make_trackers(["tensorboard", "TensorBoard", "wandb"])
    assert [type(t) for t in trackers] == [TensorBoardTracker, WandbTracker]
    with pytest.raises(MlplabError, match="unknown tracker 'comet'"):
        make_trackers(["comet"])
    with pytest.raises(MlplabError, match="unknown wandb mode"):
        make_trackers(["wandb"], wandb_mode="cloud")


@pytest.mark.parametrize("name", ["tensorboard", "wandb"])
def test_missing_tracker_package_gives_an_install_hint(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def fake_find_spec(module: str, *args: Any) -> Any:
        return None if module == name else real(module, *args)

    monkeypatch.setattr(tracking.importlib.util, "find_spec", fake_find_spec)
    with pytest.raises(MlplabError, match=rf"pip install 'mlplab\[{name}\]'"):
        make_trackers([name])
