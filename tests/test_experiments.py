"""The assignment's experiments as data, the sweep's bookkeeping, and the comparisons computed from run summaries."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from mlplab.errors import MlplabError
from mlplab.mnist.compare import (
    SOFTMAX_CE_FLOOR,
    RunResult,
    best_run,
    comparison_table,
    logits_and_probabilities,
    observations,
    overfitting_onset,
    parameter_table,
    softmax_table,
)
from mlplab.mnist.compare_report import load_run, write_comparisons
from mlplab.mnist.config import MODEL_CONFIG, TRAINING_CONFIG, config_to_dict, resolve_config
from mlplab.mnist.data import MnistSplit
from mlplab.mnist.experiments import (
    COMPARISONS,
    EXPERIMENTS,
    experiment_overrides,
    get_comparison,
    get_experiment,
    select_experiments,
)
from mlplab.mnist.model import MLP
from mlplab.mnist.runstore import RunStore
from mlplab.mnist.sweep import SweepOptions, choose_jobs, plan_sweep, run_state, run_sweep
from mlplab.mnist.train import train_run

# What each experiment must change relative to the assignment's baseline, written out from the assignment's text.
EXPECTED_CHANGES: dict[str, dict[tuple[str, str], Any]] = {
    "baseline": {},
    "batch6": {("training", "batch_size"): 6},
    "batch6400": {("training", "batch_size"): 6400},
    "lr1": {("training", "learning_rate"): 1.0},
    "lr0.00001": {("training", "learning_rate"): 1e-5},
    "hidden16": {("model", "hidden_sizes"): [16]},
    "hidden16_nodropout": {("model", "hidden_sizes"): [16], ("model", "dropout_rate"): 0.0},
    "softmax": {("model", "softmax_output"): True},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_CHANGES))
def test_each_experiment_is_the_baseline_plus_exactly_its_changes(name: str) -> None:
    config = config_to_dict(resolve_config(overrides=get_experiment(name).overrides))
    baseline = {"training": dict(TRAINING_CONFIG), "model": dict(MODEL_CONFIG)}
    for section in ("training", "model"):
        for key, seed_value in baseline[section].items():
            expected = EXPECTED_CHANGES[name].get((section, key), seed_value)
            assert config[section][key] == expected, f"{name}: {section}.{key}"
    assert config["training"]["num_epochs"] == 100


def test_aliases_select_the_baseline_run_once_and_all_is_every_experiment() -> None:
    assert get_experiment("batch64") is get_experiment("lr0.001") is EXPERIMENTS["baseline"]
    assert [e.name for e in select_experiments(["batch64", "lr0.001", "baseline"])] == ["baseline"]
    assert {e.name for e in select_experiments(["all"])} == set(EXPECTED_CHANGES)
    with pytest.raises(MlplabError, match="unknown experiment 'batch7'"):
        select_experiments(["batch7"])
    with pytest.raises(MlplabError, match="--epochs must be at least 1"):
        experiment_overrides(EXPERIMENTS["baseline"], epochs=0)
    assert resolve_config(overrides=experiment_overrides(EXPERIMENTS["lr1"], epochs=2)).training.num_epochs == 2


def test_comparisons_name_existing_experiments_and_the_seeds_sets() -> None:
    for comparison in COMPARISONS.values():
        for run, _ in comparison.runs:
            assert run in EXPERIMENTS
    sizes = [resolve_config(overrides=EXPERIMENTS[r].overrides).training.batch_size
             for r, _ in get_comparison("batch_size").runs]
    rates = [resolve_config(overrides=EXPERIMENTS[r].overrides).training.learning_rate
             for r, _ in get_comparison("learning_rate").runs]
    assert sizes == [6, 64, 6400]
    assert rates == [1.0, 0.001, 0.00001]


def test_choose_jobs_never_oversubscribes_the_cores() -> None:
    for cores in (1, 2, 4, 16):
        for runs in (1, 2, 3, 8):
            for requested in (None, 1, 2, 3, 100):
                jobs, threads = choose_jobs(runs, requested, cores=cores)
                assert 1 <= jobs <= runs
                assert jobs * threads <= max(cores, jobs)
    assert choose_jobs(8, cores=2) == (2, 1)
    with pytest.raises(MlplabError):
        choose_jobs(3, 0, cores=2)


def test_run_state_refuses_a_folder_holding_another_configuration(tmp_path: Path) -> None:
    (plan,) = plan_sweep([EXPERIMENTS["batch6"]], tmp_path, epochs=2)
    assert plan.state == "new"
    plan.run_dir.mkdir()
    stored = config_to_dict(resolve_config(overrides=["training.batch_size=60", "training.num_epochs=2"]))
    (plan.run_dir / "config.json").write_text(json.dumps(stored))
    with pytest.raises(MlplabError, match=r"training.batch_size: 60 -> 6"):
        run_state(plan.run_dir, plan.config)
    (plan.run_dir / "config.json").write_text(json.dumps(config_to_dict(plan.config)))
    assert run_state(plan.run_dir, plan.config) == "new"
    (plan.run_dir / "checkpoint.pt").write_bytes(b"")
    assert run_state(plan.run_dir, plan.config) == "resume"
    (plan.run_dir / "summary.json").write_text('{"epochs_run": 1, "divergent": false}')
    assert run_state(plan.run_dir, plan.config) == "resume", "1 of 2 epochs: extended from the checkpoint"
    (plan.run_dir / "summary.json").write_text('{"epochs_run": 1, "divergent": true}')
    assert run_state(plan.run_dir, plan.config) == "done"
    (plan.run_dir / "summary.json").write_text('{"epochs_run": 2, "divergent": false}')
    assert run_state(plan.run_dir, plan.config) == "done"


# ---- comparisons on constructed runs whose right answers are known by construction ----

def _run(name: str, train: list[float], test: list[float], acc: list[float], **summary: Any) -> RunResult:
    history = [{"epoch": i + 1, "train_loss": a, "test_loss": b, "test_accuracy": c}
               for i, (a, b, c) in enumerate(zip(train, test, acc))]
    best = 1 + min(range(len(test)), key=test.__getitem__) if test else None
    base = {"epochs_run": len(test), "divergent": False, "best_epoch": best,
            "best_test_loss": min(test) if test else None, "best_test_accuracy": max(acc) if acc else None,
            "test_accuracy": acc[-1] if acc else None, "wall_time_s": 10.0 * len(test)}
    return RunResult(name, {**base, **summary}, history)


@pytest.fixture
def lr_runs() -> dict[str, RunResult]:
    return {
        # Diverged in its 3rd epoch at batch 17.
        "lr1": _run("lr1", [2.0, 5.0], [2.1, 9.0], [0.2, 0.1], divergent=True,
                    divergence={"epoch": 3, "batch": 17, "loss": float("nan")}),
        # Test loss bottoms out at epoch 3 and rises while the training loss keeps falling.
        "baseline": _run("baseline", [0.5, 0.3, 0.2, 0.1, 0.05], [0.4, 0.3, 0.25, 0.3, 0.35],
                         [0.90, 0.93, 0.95, 0.96, 0.955]),
        # Still improving at the end: no overfitting.
        "lr0.00001": _run("lr0.00001", [2.0, 1.5, 1.2], [1.9, 1.4, 1.1], [0.5, 0.6, 0.7]),
    }


def test_comparison_table_rows_come_from_the_runs(lr_runs: dict[str, RunResult]) -> None:
    table = comparison_table(get_comparison("learning_rate"), lr_runs)
    rows = {row[0]: dict(zip(table.columns, row)) for row in table.rows}
    assert list(rows) == ["lr1", "baseline", "lr0.00001"]
    b = rows["baseline"]
    assert (b["best epoch"], b["epochs run"], b["divergent"]) == (3, 5, False)
    torch.testing.assert_close([b["best test loss"], b["final test loss"], b["best test acc"],
                                b["final test acc"], b["final train loss"], b["wall time (s)"]],
                               [0.25, 0.35, 0.96, 0.955, 0.05, 50.0], rtol=0, atol=0)
    assert rows["lr1"]["divergent"] is True
    assert "best configuration baseline" in table.caption
    assert best_run(get_comparison("learning_rate"), lr_runs).name == "baseline"


def test_observations_state_divergence_overfitting_and_the_best(lr_runs: dict[str, RunResult]) -> None:
    notes = observations(get_comparison("learning_rate"), lr_runs)
    assert notes[0] == "lr1 (lr=1) diverged in epoch 3 at batch 17 (loss nan) and was stopped there."
    assert ("baseline (lr=0.001): overfitting onset at epoch 3 (rule: lowest test loss); test loss lowest at "
            "epoch 3 (0.25), 0.35 at epoch 5; training loss fell from 0.2 to 0.05 after the onset.") in notes
    assert any(n.startswith("lr0.00001") and "did not rise" in n for n in notes)
    assert "Lowest test loss: baseline (lr=0.001), 0.25 at epoch 3." in notes
    assert "Highest test accuracy: baseline (lr=0.001), 0.96 (the same run)." in notes
    assert overfitting_onset(lr_runs["lr0.00001"]) is None
    partial = observations(get_comparison("learning_rate"), {"baseline": lr_runs["baseline"]})
    assert partial[-1] == "No finished run yet: lr1, lr0.00001."


def test_softmax_observation_reports_the_cross_entropy_floor() -> None:
    runs = {"softmax": _run("softmax", [1.7, 1.5, 1.48], [1.6, 1.49, 1.485], [0.9, 0.95, 0.96])}
    notes = observations(get_comparison("softmax"), runs)
    assert any("lowest training loss 1.48" in n and "1.4612" in n for n in notes)
    # The floor is the cross-entropy of softmax(one-hot): check it against torch on a one-hot input.
    one_hot = torch.zeros(1, 10, dtype=torch.float64)
    one_hot[0, 3] = 1.0
    floor = torch.nn.functional.cross_entropy(one_hot, torch.tensor([3]))
    torch.testing.assert_close(floor.item(), SOFTMAX_CE_FLOOR, rtol=1e-12, atol=0)


def test_parameter_table_matches_a_count_from_plain_torch_layers() -> None:
    table = parameter_table({"default": [512, 256, 128], "[16]": [16]})
    totals = {row[0]: row for row in table.rows if row[1] == "total"}
    for name, widths in (("default", [784, 512, 256, 128, 10]), ("[16]", [784, 16, 10])):
        layers = [torch.nn.Linear(a, b) for a, b in itertools.pairwise(widths)]
        reference = sum(p.numel() for layer in layers for p in layer.parameters())
        assert totals[name][-2:] == [reference, reference]
        per_layer = [row for row in table.rows if row[0] == name and row[1] != "total"]
        assert [row[-1] for row in per_layer] == [sum(p.numel() for p in layer.parameters()) for layer in layers]
    assert totals["default"][-1] == 567434 and totals["[16]"][-1] == 12730  # the values the issue states


def test_softmax_keeps_the_argmax_and_sums_to_one() -> None:
    torch.manual_seed(0)
    model = MLP(784, [16], 10, 0.2)
    X = torch.randn(7, 784) * 3
    z, p = logits_and_probabilities(model, X)
    torch.testing.assert_close(p.sum(dim=1), torch.ones(7, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.equal(z.argmax(dim=1), p.argmax(dim=1))
    # Independent reference: exp(z) / sum exp(z), written out in float64.
    torch.testing.assert_close(p, z.exp() / z.exp().sum(dim=1, keepdim=True), rtol=1e-12, atol=0)
    # Eval mode: dropout is off, so the outputs are deterministic.
    z2, _ = logits_and_probabilities(model, X)
    torch.testing.assert_close(z, z2, rtol=0, atol=0)
    table = softmax_table(z, p, torch.arange(7), list(range(7)))
    assert len(table.rows) == 14
    for row in table.rows[1::2]:
        assert math.isclose(row[-2], 1.0, abs_tol=1e-12)
    assert [r[-1] for r in table.rows[0::2]] == [r[-1] for r in table.rows[1::2]]


# ---- the sweep on tiny synthetic data: resume, skip, divergence, parallel workers ----

def _tiny_split(n: int, generator: torch.Generator) -> MnistSplit:
    """Separable synthetic 'images': class k lights up pixel k, plus noise."""
    y = torch.randint(0, 10, (n,), generator=generator)
    X = 0.5 * torch.randn(n, 784, generator=generator)
    X[torch.arange(n), y] += 3.0
    return MnistSplit(X, y)


class _StopAt:
    """A tracker that interrupts training after the checkpoint of `epoch` is written (like Ctrl-C)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def start(self, run_name: str, config: dict[str, Any], run_dir: Path) -> None:
        pass

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt

    def finish(self, summary: dict[str, Any]) -> None:
        pass


@pytest.mark.usefixtures("restore_threads")
def test_sweep_resumes_skips_and_goes_on_after_a_divergent_run(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    data = (_tiny_split(320, g), _tiny_split(160, g))
    options = SweepOptions(data=data, progress=False)
    wanted = [EXPERIMENTS["hidden16"], EXPERIMENTS["lr1"]]

    # Reference: hidden16 for 3 epochs without interruption (in memory, no files), on two threads.
    (plan,) = plan_sweep(wanted[:1], tmp_path / "out", epochs=3)
    reference = train_run(plan.config, *data, None, progress=False, threads=2)
    assert reference["threads"] == 2

    # The same run interrupted after epoch 2's checkpoint. The sweep below resumes it in a worker that is
    # given one thread (two jobs); the run must go on with the two threads recorded in its checkpoint, since
    # on some CPUs a product summed by two threads differs from one summed by one in the last bit.
    with pytest.raises(KeyboardInterrupt):
        train_run(plan.config, *data, RunStore(plan.run_dir), progress=False, trackers=[_StopAt(2)],
                  run_name="hidden16", threads=2)
    assert not (plan.run_dir / "summary.json").exists()

    plans = plan_sweep(wanted, tmp_path / "out", epochs=3)
    assert [(p.name, p.state) for p in plans] == [("hidden16", "resume"), ("lr1", "new")]
    summaries = run_sweep(plans, options, jobs=2)  # two worker processes
    assert list(summaries) == ["hidden16", "lr1"]

    resumed = load_run(tmp_path / "out" / "hidden16")
    assert resumed is not None and len(resumed.history) == 3
    for key in ("final_train_loss", "test_loss", "best_test_loss", "test_accuracy", "epochs_run", "best_epoch"):
        assert summaries["hidden16"][key] == reference[key], key  # same seed and threads: bit-identical
    assert summaries["hidden16"]["threads"] == 2

    lr1 = summaries["lr1"]
    assert lr1["divergent"] is True and lr1["epochs_run"] < 3
    assert lr1["divergence"]["epoch"] == lr1["epochs_run"] and lr1["divergence"]["batch"] >= 1
    recorded = json.loads((tmp_path / "out" / "lr1" / "summary.json").read_text())
    assert recorded["divergence"] == lr1["divergence"]

    # Everything finished: a second sweep trains nothing and returns the recorded summaries.
    again = plan_sweep(wanted, tmp_path / "out", epochs=3)
    assert [p.state for p in again] == ["done", "done"]
    stamp = (tmp_path / "out" / "hidden16" / "checkpoint.pt").stat().st_mtime_ns
    assert run_sweep(again, options) == summaries
    assert (tmp_path / "out" / "hidden16" / "checkpoint.pt").stat().st_mtime_ns == stamp

    # The comparison files come from these finished folders.
    tables, notes, paths = write_comparisons(tmp_path / "out", tmp_path / "report", figure_formats=("png",))
    assert {p.name for p in paths} >= {"learning_rate.png", "dropout16.png", "capacity.png", "parameters.txt",
                                       "comparisons.md", "observations.md"}
    assert "softmax.png" not in {p.name for p in paths}, "no run of that comparison exists"
    lr_table = next(t for t in tables if t.title == get_comparison("learning_rate").title)
    assert [row[0] for row in lr_table.rows] == ["lr1", "baseline", "lr0.00001"]
    assert lr_table.rows[0][9] is True and lr_table.rows[1][2] is None  # divergent; baseline not run
    assert any("lr1 (lr=1) diverged in epoch" in n for n in notes[lr_table.title])


def test_cli_experiment_json_params_compare_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from mlplab.cli import main

    g = torch.Generator().manual_seed(1)
    data = (_tiny_split(192, g), _tiny_split(96, g))
    monkeypatch.setattr("mlplab.mnist.data.load_mnist", lambda data_dir=None: data)
    out = tmp_path / "runs"
    assert main(["mnist", "experiment", "hidden16", "--epochs", "1", "--out", str(out), "--format", "json",
                 "--no-progress"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summaries = json.loads(last)
    assert list(summaries) == ["hidden16"]
    recorded = json.loads((out / "hidden16" / "summary.json").read_text())
    for key in ("epochs_run", "test_accuracy", "best_test_loss", "divergent", "parameters"):
        assert summaries["hidden16"][key] == recorded[key]
    assert summaries["hidden16"]["parameters"] == 12730

    assert main(["mnist", "params", "--format", "json"]) == 0
    params = json.loads(capsys.readouterr().out)["Parameter counts"]["rows"]
    assert [r["model count"] for r in params if r["layer"] == "total"] == [567434, 12730]

    assert main(["mnist", "compare", "--from", str(out), "--format", "markdown"]) == 0
    text = capsys.readouterr().out
    assert "| hidden16 | [16], dropout 0.2 | 1 |" in text and "No finished run yet: hidden16_nodropout." in text
    assert (out / "comparisons" / "dropout16.pdf").is_file()

    assert main(["mnist", "sweep", "batch7", "--out", str(out)]) == 2
    assert "unknown experiment 'batch7'" in capsys.readouterr().err
    assert main(["mnist", "compare", "--from", str(tmp_path / "none")]) == 2


@pytest.mark.usefixtures("restore_threads")
def test_runs_sharing_one_gpu_in_threads_equal_runs_one_at_a_time(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-GPU schedule (every run at once in threads of this process) on CPU tensors: each run's numbers
    equal the same run trained alone, so the runs share nothing (global RNG draws at initialisation included)."""
    import mlplab.mnist.sweep as sweep

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    data = (_tiny_split(320, g), _tiny_split(160, g))
    wanted = [EXPERIMENTS["hidden16"], EXPERIMENTS["batch6400"], EXPERIMENTS["hidden16_nodropout"]]
    alone = run_sweep(plan_sweep(wanted, tmp_path / "alone", epochs=2), SweepOptions(data=data, progress=False),
                      jobs=1)
    monkeypatch.setattr(sweep, "on_one_gpu", lambda plans, options: len(plans) > 1)
    plans = plan_sweep(wanted, tmp_path / "threads", epochs=2)
    assert sweep.schedule(plans, SweepOptions(data=data)) == (3, 1, True)
    together = run_sweep(plans, SweepOptions(data=data, progress=False))
    for name in alone:
        for key in ("final_train_loss", "test_loss", "test_accuracy", "epochs_run", "best_epoch"):
            assert together[name][key] == alone[name][key], (name, key)
