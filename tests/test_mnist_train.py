"""The trainer on tiny synthetic data: determinism, resume after an interruption, divergence, early stopping,
the run folder, trackers and the CLI."""

from __future__ import annotations

import csv
import json
import math
import time

import pytest
import torch

from clusters import gaussian_clusters
from mlplab.cli import main
from mlplab.errors import MlplabError
from mlplab.mnist.config import config_to_dict, resolve_config
from mlplab.mnist.data import MnistSplit
from mlplab.mnist.runstore import RunStore
from mlplab.mnist.train import build_model, evaluate, split_validation, train_run

D = 20  # features of the synthetic "images"
TIMING = {"epoch_time_s"}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch thread."""


def synthetic(n: int, seed: int) -> MnistSplit:
    return gaussian_clusters(n, D, seed, centre_seed=99, spread=1.5)


TRAIN, TEST = synthetic(330, 1), synthetic(100, 2)


def cfg(*extra: str, epochs: int = 4):
    return resolve_config(overrides=[f"model.input_size={D}", "model.hidden_sizes=[16, 8]", "training.batch_size=32",
                                     "training.learning_rate=0.01",
                                     f"training.num_epochs={epochs}", "training.device=cpu", *extra])


def rows_without_time(store: RunStore):
    with store.metrics_path.open() as handle:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(handle)]


def run(config, folder=None, figures=False, **kw):
    store = RunStore(folder, figures=figures) if folder is not None else None
    return train_run(config, TRAIN, TEST, store, progress=False, **kw), store


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_same_seed_same_metrics(tmp_path, engine):
    config = cfg(f"training.engine={engine}", "training.validation_split=0.1")
    a, sa = run(config, tmp_path / "a")
    b, sb = run(config, tmp_path / "b")
    assert rows_without_time(sa) == rows_without_time(sb)
    assert a["test_accuracy"] == b["test_accuracy"] and a["epochs_run"] == 4
    c, _ = run(cfg(f"training.engine={engine}", "training.validation_split=0.1", "training.seed=1"))
    assert c["test_loss"] != a["test_loss"]  # the seed matters
    assert a["test_accuracy"] > 0.3  # it learns (chance is 0.1)


class StopAfter:
    """A tracker that interrupts training after `k` epochs, as Ctrl-C would."""

    def __init__(self, k: int) -> None:
        self.k, self.calls = k, []

    def start(self, run_name, config, run_dir):
        self.calls.append("start")

    def log_epoch(self, epoch, metrics):
        self.calls.append(epoch)
        if epoch == self.k:
            raise KeyboardInterrupt

    def finish(self, summary):
        self.calls.append("finish")


@pytest.mark.parametrize("engine, extra", [("manual", ()), ("autograd", ()),
                                           ("manual", ("training.validation_split=0.2", "stopping.enabled=true",
                                                       "stopping.patience=2", "stopping.window=2"))])
def test_resume_after_interruption_matches_uninterrupted(tmp_path, engine, extra):
    config = cfg(f"training.engine={engine}", *extra, epochs=6)
    full, full_store = run(config, tmp_path / "full")
    tracker = StopAfter(2)
    with pytest.raises(KeyboardInterrupt):
        run(config, tmp_path / "cut", trackers=[tracker])
    assert tracker.calls == ["start", 1, 2]
    assert len(rows_without_time(RunStore(tmp_path / "cut"))) == 2
    resumed, cut_store = run(config, tmp_path / "cut", resume=True)
    assert rows_without_time(cut_store) == rows_without_time(full_store)
    keys = ("test_accuracy", "test_loss", "best_epoch", "epochs_run", "stopped_early", "restored_epoch")
    assert {k: resumed[k] for k in keys} == {k: full[k] for k in keys}
    again, _ = run(config, tmp_path / "cut", resume=True)  # a finished run resumes to the same summary
    assert {k: again[k] for k in keys} == {k: full[k] for k in keys}


def test_resume_refuses_other_config_and_fresh_run_refuses_existing(tmp_path):
    run(cfg(epochs=1), tmp_path / "r")
    with pytest.raises(MlplabError, match="already holds a run"):
        run(cfg(epochs=1), tmp_path / "r")
    with pytest.raises(MlplabError, match=r"training\.batch_size: 32"):
        run(cfg("training.batch_size=16", epochs=2), tmp_path / "r", resume=True)
    longer, _ = run(cfg(epochs=2), tmp_path / "r", resume=True)  # more epochs is a valid continuation
    assert longer["epochs_run"] == 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(MlplabError, match="unreadable"):
        run(cfg(epochs=1), tmp_path / "bad", resume=True)


@pytest.mark.parametrize("engine", ["manual", "autograd"])
def test_divergence_is_detected_and_recorded(tmp_path, engine):
    summary, store = run(cfg(f"training.engine={engine}", "training.learning_rate=1000", epochs=5), tmp_path)
    assert summary["divergent"] is True
    div = summary["divergence"]
    assert div["epoch"] == summary["epochs_run"] and 1 <= div["batch"] <= 11
    assert div["loss"] is None or div["loss"] > 1e3  # NaN/inf become null in JSON
    saved = json.loads(store.summary_path.read_text())
    assert saved["divergent"] is True and saved["divergence"]["batch"] == div["batch"]
    again, _ = run(cfg(f"training.engine={engine}", "training.learning_rate=1000", epochs=5), tmp_path, resume=True)
    assert again["epochs_run"] == summary["epochs_run"]  # nothing more to do


def test_early_stopping_restores_the_best_weights(tmp_path):
    # A tiny training set, no dropout and a large step overfit quickly; the smoothed rule then stops.
    small = MnistSplit(TRAIN.images[:40], TRAIN.labels[:40])
    config = cfg("model.dropout_rate=0", "training.learning_rate=0.05", "training.batch_size=8",
                 "stopping.enabled=true", "stopping.window=1", "stopping.patience=3", epochs=40)
    store = RunStore(tmp_path, figures=False)
    summary = train_run(config, small, TEST, store, progress=False)
    assert summary["stopped_early"] and summary["epochs_run"] < 40
    losses = [float(r["test_loss"]) for r in rows_without_time(store)]
    best = min(range(len(losses)), key=losses.__getitem__) + 1
    assert summary["restored_epoch"] == best == summary["best_epoch"]
    assert summary["epochs_run"] == best + 3  # patience 3 without a new minimum (window 1: the raw curve)
    # The checkpoint's best weights really are that epoch's: evaluating them gives that row's test metrics.
    state = store.load_checkpoint()
    model = build_model(config)
    model.load_state_dict(state["best"]["model"])
    loss, acc = evaluate(model, TEST.images, TEST.labels, 1000)
    assert loss == pytest.approx(losses[best - 1], rel=1e-6) and acc == summary["test_accuracy"]


def test_run_folder_contents(tmp_path):
    config = cfg("training.validation_split=0.1", epochs=3)
    tick = time.perf_counter()
    summary, store = run(config, tmp_path, figures=True)
    elapsed = time.perf_counter() - tick
    assert summary["train_time_s"] <= summary["wall_time_s"] <= elapsed  # an invariant, not a speed claim
    names = {p.name for p in tmp_path.iterdir()}
    assert {"config.json", "metrics.csv", "summary.json", "checkpoint.pt", "loss.png", "loss.pdf"} <= names
    assert json.loads(store.config_path.read_text()) == config_to_dict(config)
    rows = rows_without_time(store)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] and all(r["val_loss"] for r in rows)
    saved = json.loads(store.summary_path.read_text())
    assert saved["selection"] == "validation" and saved["parameters"] == (D + 1) * 16 + 17 * 8 + 9 * 10
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    assert math.isclose(summary["best_test_loss"], min(float(r["test_loss"]) for r in rows))


def test_validation_split_is_disjoint_and_seeded():
    fit, val = split_validation(TRAIN, 0.2, seed=0)
    assert len(val) == 66 and len(fit) == 264
    rows = {tuple(x.tolist()) for x in TRAIN.images}
    assert {tuple(x.tolist()) for x in fit.images} | {tuple(x.tolist()) for x in val.images} == rows
    assert not {tuple(x.tolist()) for x in fit.images} & {tuple(x.tolist()) for x in val.images}
    assert torch.equal(split_validation(TRAIN, 0.2, seed=0)[1].labels, val.labels)
    with pytest.raises(MlplabError, match="validation_split"):
        split_validation(MnistSplit(TRAIN.images[:2], TRAIN.labels[:2]), 0.1, seed=0)


def test_bad_data_shapes(tmp_path):
    assert RunStore(tmp_path, figures=False).save_figures([], "", {}) == []
    with pytest.raises(MlplabError, match=r"features but model\.input_size"):
        train_run(resolve_config(overrides=["training.device=cpu"]), TRAIN, TEST, progress=False)


def test_trackers_called_in_order(tmp_path):
    tracker = StopAfter(99)
    run(cfg(epochs=2), tmp_path, trackers=[tracker])
    assert tracker.calls == ["start", 1, 2, "finish"]


def test_cli_json_last_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("mlplab.mnist.data.load_mnist", lambda data_dir=None: (TRAIN, TEST))
    argv = ["mnist", "train", "--epochs", "2", "--set", f"model.input_size={D}", "--set", "model.hidden_sizes=[8]",
            "--out", str(tmp_path / "run"), "--device", "cpu", "--format", "json", "--no-progress"]
    assert main(argv) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    for key in ("test_accuracy", "best_test_accuracy", "best_epoch", "best_test_loss", "epochs_run", "divergent",
                "parameters", "wall_time_s"):
        assert key in summary
    assert summary["epochs_run"] == 2 and summary["parameters"] == (D + 1) * 8 + 9 * 10
    assert main(argv) == 2  # the folder holds a run now: one line, exit 2
    assert "already holds a run" in capsys.readouterr().err
    assert main([*argv[:-3], "--resume", "--no-progress"]) == 0


def test_fused_adam_shortcut_equals_optimizer_step():
    from mlplab.mnist.backprop import ManualBackprop
    from mlplab.mnist.epoch import FusedAdamStep
    from mlplab.mnist.train import make_optimizer

    config = cfg()
    models, optimizers = [], []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(build_model(config))
        optimizers.append(make_optimizer("adam", models[-1].parameters(), 0.01))
    engines = [ManualBackprop(m, 32, torch.Generator().manual_seed(5)) for m in models]
    fast = None
    for step in range(4):
        index = torch.arange(step * 32, (step + 1) * 32)
        for engine in engines:
            engine.step_indices(TRAIN.images, TRAIN.labels, index)
        optimizers[0].step()
        if fast is None:
            optimizers[1].step()
            assert FusedAdamStep.applies(optimizers[1])
            fast = FusedAdamStep(optimizers[1])
        else:
            fast()
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    sa, sb = optimizers[0].state_dict()["state"], optimizers[1].state_dict()["state"]
    for i in sa:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(sa[i][key], sb[i][key], rtol=0, atol=0)


def test_cli_best_epoch_table(tmp_path, capsys):
    run(cfg("training.validation_split=0.2", epochs=3), tmp_path / "run")
    assert main(["mnist", "best-epoch", str(tmp_path / "run"), "--format", "json"]) == 0
    tables = json.loads(capsys.readouterr().out)
    table = tables[0] if isinstance(tables, list) else tables
    text = json.dumps(table)
    assert "validation loss" in text and "GL5" in text and "UP3" in text
    assert main(["mnist", "best-epoch", str(tmp_path / "nothing")]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_same_run_with_and_without_the_c_kernels(monkeypatch):
    """MLPLAB_NATIVE=0 (or no compiler) draws the same dropout masks through the torch hash, so the run is the
    same one. Compared with a tolerance: the compiled step and torch's kernels round differently."""
    from mlplab.mnist import dropout, epoch

    config = cfg("model.dropout_rate=0.3", epochs=3)
    with_c, _ = run(config)
    monkeypatch.setattr(dropout, "load", lambda: None)
    monkeypatch.setattr(epoch, "native_applies", lambda *args: False)
    without, _ = run(config)
    assert without["kernel"] == "torch"
    assert math.isclose(with_c["test_loss"], without["test_loss"], rel_tol=1e-4)
    assert math.isclose(with_c["final_train_loss"], without["final_train_loss"], rel_tol=1e-4)


def test_run_killed_in_its_first_epoch_resumes_with_its_thread_count(tmp_path, monkeypatch):
    """The epoch-0 checkpoint records the thread count, so a run interrupted before its first epoch ends goes on
    with the count it started with (not the one the resuming process was given) and ends where an uninterrupted
    run ends, bit for bit (same kernels, same count)."""
    from mlplab.mnist import epoch as epoch_module

    config = cfg("model.dropout_rate=0.2", epochs=2)
    reference, _ = run(config, threads=2)
    original = epoch_module.EpochRunner.run

    def interrupted(self, *args, **kwargs):
        original(self, *args, max_batches=3)
        raise KeyboardInterrupt

    monkeypatch.setattr(epoch_module.EpochRunner, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(config, tmp_path, threads=2)
    monkeypatch.setattr(epoch_module.EpochRunner, "run", original)
    resumed, _ = run(config, tmp_path, resume=True, threads=1)
    assert resumed["threads"] == 2
    assert {k: v for k, v in resumed.items() if "time" not in k} == \
        {k: v for k, v in reference.items() if "time" not in k}


def test_resume_with_other_data_is_refused(tmp_path):
    run(cfg(epochs=1), tmp_path)
    store = RunStore(tmp_path, figures=False)
    other = synthetic(330, 7)
    with pytest.raises(MlplabError, match=r"the train data differ from the data the run .* started with"):
        train_run(cfg(epochs=2), other, TEST, store, resume=True, progress=False)
    assert len(store.load_checkpoint()["metrics"]) == 1
