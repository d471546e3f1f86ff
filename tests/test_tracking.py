"""Trackers write real files that the tools themselves can read back: TensorBoard events and offline W&B runs."""

from __future__ import annotations

import csv
import importlib.util
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch

from mlplab.errors import MlplabError
from mlplab.mnist import tracking
from mlplab.mnist.config import resolve_config
from mlplab.mnist.data import MnistSplit
from mlplab.mnist.runstore import RunStore
from mlplab.mnist.tracking import TensorBoardTracker, WandbTracker, make_trackers
from mlplab.mnist.train import train_run

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


def _tiny_data() -> tuple[MnistSplit, MnistSplit]:
    g = torch.Generator().manual_seed(0)
    splits = []
    for n in (192, 96):
        y = torch.randint(0, 10, (n,), generator=g)
        X = 0.5 * torch.randn(n, 784, generator=g)
        X[torch.arange(n), y] += 3.0  # separable: class k lights up pixel k
        splits.append(MnistSplit(X, y))
    return splits[0], splits[1]


def test_a_short_training_run_writes_tensorboard_events_and_an_offline_wandb_run(tmp_path: Path,
                                                                                wandb_sandbox: None) -> None:
    run_dir = tmp_path / "run"
    config = resolve_config(overrides=["model.hidden_sizes=[16]", "training.num_epochs=2", "training.batch_size=32"])
    summary = train_run(config, *_tiny_data(), RunStore(run_dir), progress=False,
                        trackers=make_trackers(["tensorboard", "wandb"]), run_name="tiny")
    with (run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    expected = {key: [float(r[key]) for r in rows] for key in ("train_loss", "test_loss", "test_accuracy")}

    # TensorBoard: one scalar per metric and epoch, as stored in float32.
    scalars = read_tensorboard(run_dir / "tensorboard")
    for key, values in expected.items():
        assert [step for step, _ in scalars[key]] == [1, 2]
        torch.testing.assert_close(torch.tensor([v for _, v in scalars[key]], dtype=torch.float64),
                                   torch.tensor(values, dtype=torch.float64), rtol=1e-6, atol=0)

    # W&B: one offline run on this machine, nothing synced; config, history and summary read back from its log.
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1, "offline mode keeps the run on this machine, ready for `wandb sync`"
    assert not list((run_dir / "wandb").glob("run-*")), "an online run folder means something was sent"
    (log,) = offline[0].glob("run-*.wandb")
    records = read_wandb_log(log)
    kinds = [r.WhichOneof("record_type") for r in records]
    assert "run" in kinds and "exit" in kinds
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.display_name == "tiny"
    logged_config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert logged_config["model"]["hidden_sizes"] == [16] and logged_config["training"]["batch_size"] == 32
    history = [{"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    assert [h["epoch"] for h in history] == [1, 2]
    for key, values in expected.items():
        torch.testing.assert_close(torch.tensor([h[key] for h in history], dtype=torch.float64),
                                   torch.tensor(values, dtype=torch.float64), rtol=1e-12, atol=0)
    logged: dict[str, Any] = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            logged.update({"/".join(u.nested_key) or u.key: json.loads(u.value_json) for u in r.summary.update})
    for key in ("epochs_run", "best_epoch", "divergent", "parameters", "test_accuracy"):
        assert logged[key] == summary[key], key


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
