"""Bad input, full disks, damaged files, Ctrl-C and SIGTERM: one line on stderr and exit 2 (or 130), never a
traceback, and nothing half-written (issue 15, item 4, 6 and 7)."""

from __future__ import annotations

import errno
import json
import os
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest

from clusters import gaussian_clusters
from mlplab.cli import main
from mlplab.errors import MlplabError
from mlplab.pipeline.plan import PlanState, Step, StepOutput, describe_plan
from mlplab.tables import round_decimal

SEED_PROBLEM = json.loads((Path(__file__).resolve().parents[1] / "src/mlplab/data/seed_problem.json").read_text())


def one_line_error(capsys: pytest.CaptureFixture[str], code: int, expected: int = 2) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == expected and "Traceback" not in err and len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------- finite but huge values


def test_round_decimal_of_huge_finite_values():
    assert round_decimal(1e30) == "1000000000000000000000000000000.00"
    largest = round_decimal(-1.7976931348623157e308)
    assert largest.startswith("-17976931348623157") and largest.endswith(".00") and len(largest) == 313


@pytest.mark.parametrize("command", ["tables", "byhand", "classify"])
def test_problem_with_a_huge_bias_is_printed(tmp_path, capsys, command):
    path = tmp_path / "big.json"
    path.write_text(json.dumps({**SEED_PROBLEM, "b2": 1e30}))  # used to raise decimal.InvalidOperation
    assert main([command, "--problem", str(path)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "1000000000000000000000000000000.00" in captured.out


def test_float64_input_beyond_float32_names_the_limit(tmp_path, capsys):
    X = np.ones((10, 3))
    X[3, 1] = 1e39  # finite in float64, inf in float32: used to be "NaN or inf" with a raw NumPy warning
    np.save(tmp_path / "big.npy", X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code = main(["stream", str(tmp_path / "big.npy"), "--activations", "relu,sigmoid", "--no-progress"])
    line = one_line_error(capsys, code)
    assert "row 3" in line and "1e+39" in line and "3.4028235e+38" in line


def test_stream_weight_beyond_float32_names_the_limit(tmp_path, capsys):
    W1 = [row[:] for row in SEED_PROBLEM["W1"]]
    W1[0][0] = 1e39
    path = tmp_path / "bigw.json"
    path.write_text(json.dumps({**SEED_PROBLEM, "W1": W1}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # it used to print NumPy's "overflow encountered in cast" and go on with inf
        code = main(["stream", "synthetic:100", "--problem", str(path), "--activations", "relu,sigmoid",
                     "--no-progress"])
    line = one_line_error(capsys, code)
    assert "W1 holds 1e+39" in line and "3.4028235e+38" in line


# ---------------------------------------------------------------- a full disk


@pytest.fixture
def full_disk(monkeypatch):
    """Every atomic write fails as on a full disk (the data reach the page cache, fsync reports ENOSPC)."""
    import mlplab.fsio

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(mlplab.fsio.os, "fsync", no_space)


def _no_litter(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_full_disk_section1(tmp_path, capsys, full_disk):
    code = main(["section1", "--out", str(tmp_path / "s1")])
    line = one_line_error(capsys, code)
    assert "no space left" in line and str(tmp_path / "s1") in line and "MiB free" in line
    assert not _no_litter(tmp_path)


def test_full_disk_stream_predictions(tmp_path, capsys, full_disk):
    code = main(["stream", "synthetic:5000", "--activations", "relu,sigmoid", "--no-progress", "--out",
                 str(tmp_path / "s"), "--write-predictions", "--shard-rows", "2000"])
    line = one_line_error(capsys, code)
    assert "no space left" in line and "MiB free" in line
    assert not _no_litter(tmp_path) and not list((tmp_path / "s").rglob("*.npy"))


def test_full_disk_training(tmp_path, full_disk):
    from mlplab.mnist.config import resolve_config
    from mlplab.mnist.runstore import RunStore
    from mlplab.mnist.train import train_run

    config = resolve_config(overrides=["model.input_size=20", "model.hidden_sizes=[8]", "training.num_epochs=1",
                                       "training.device=cpu"])
    data = gaussian_clusters(200, 20, 1, 99), gaussian_clusters(50, 20, 2, 99)
    with pytest.raises(MlplabError, match=r"no space left to write config\.json in .* MiB free"):
        train_run(config, *data, RunStore(tmp_path, figures=False), progress=False)
    assert not _no_litter(tmp_path) and not (tmp_path / "config.json").exists()


# ---------------------------------------------------------------- a damaged metrics.csv


@pytest.mark.parametrize("damage", ["cut", "garbage", "columns"])
def test_damaged_metrics_is_one_line_and_resume_rebuilds_it(tmp_path, capsys, damage):
    from mlplab.mnist.config import resolve_config
    from mlplab.mnist.runstore import RunStore
    from mlplab.mnist.train import train_run

    config = resolve_config(overrides=["model.input_size=20", "model.hidden_sizes=[8]", "training.num_epochs=3",
                                       "training.device=cpu"])
    data = gaussian_clusters(200, 20, 1, 99), gaussian_clusters(50, 20, 2, 99)
    train_run(config, *data, RunStore(tmp_path, figures=False), progress=False, threads=1)
    good = (tmp_path / "metrics.csv").read_text()
    bad = {"cut": good[: len(good) - 25], "garbage": good.replace("0.", "x.", 3),
           "columns": good.replace("epoch,", "", 1)}[damage]
    (tmp_path / "metrics.csv").write_text(bad)
    line = one_line_error(capsys, main(["mnist", "best-epoch", str(tmp_path)]))
    assert "metrics.csv is damaged at line" in line and "--resume" in line
    train_run(config, *data, RunStore(tmp_path, figures=False), progress=False, resume=True)
    assert (tmp_path / "metrics.csv").read_text() == good
    assert main(["mnist", "best-epoch", str(tmp_path)]) == 0


# ---------------------------------------------------------------- Ctrl-C and SIGTERM


def test_interrupt_hint_names_a_flag_the_command_has(tmp_path, capsys, monkeypatch):
    import mlplab.cli.data
    import mlplab.cli.stream

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mlplab.cli.data, "fetch_mnist", interrupted)
    line = one_line_error(capsys, main(["data", "fetch", "--data-dir", str(tmp_path)]), 130)
    assert "--resume" not in line and "run the same command again" in line
    monkeypatch.setattr(mlplab.cli.stream, "run_stream", interrupted)
    line = one_line_error(capsys, main(["stream", "synthetic:10", "--activations", "relu,sigmoid"]), 130)
    assert "with --resume" in line


def test_sigterm_takes_the_ctrl_c_path(capsys, monkeypatch):
    import mlplab.cli.stream

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # as a process manager stops a service
        raise AssertionError("SIGTERM did not stop the command")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(mlplab.cli.stream, "run_stream", terminated)
    line = one_line_error(capsys, main(["stream", "synthetic:10", "--activations", "relu,sigmoid"]), 130)
    assert "interrupted" in line and signal.getsignal(signal.SIGTERM) is before


# ---------------------------------------------------------------- reproduce --plan


def test_plan_writes_nothing(tmp_path, capsys):
    code = main(["reproduce", "--tiny", "--no-fetch", "--no-progress", "--plan", "--results",
                 str(tmp_path / "r"), "--report", str(tmp_path / "p")])
    assert code == 0 and list(tmp_path.iterdir()) == []  # used to create results/ and report/


def test_plan_shows_finished_steps_with_their_time(tmp_path):
    steps = [Step("a", "first", 5.0, StepOutput), Step("mnist-x", "an MNIST run", 60.0, StepOutput, finished_s=42.0),
             Step("b", "second", 7.0, StepOutput)]
    state = PlanState(tmp_path)
    state.record(steps[0], StepOutput(), 3.2)
    lines, todo = describe_plan(steps, state)
    assert "done in 3 s" in lines[1] and "done in 42 s" in lines[2] and "to do" in lines[3] and todo == 7.0


def test_resume_with_nothing_to_resume_says_so(tmp_path, capsys):
    args = ["stream", "synthetic:1000", "--activations", "relu,sigmoid", "--no-progress", "--out",
            str(tmp_path / "typo"), "--resume"]
    assert main(args) == 0
    assert "holds no run to resume" in capsys.readouterr().err  # it used to start from scratch silently
    assert main(args) == 0
    assert "holds no run to resume" not in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    code = main(["mnist", "train", "--out", str(tmp_path / "typo2"), "--resume", "--data-dir", str(tmp_path / "empty"),
                 "--no-progress"])  # stops at the missing MNIST files, after the note
    assert code == 2 and "typo2 holds no run to resume" in capsys.readouterr().err


def test_bad_source_leaves_no_output_folder(tmp_path, capsys):
    code = main(["stream", str(tmp_path / "missing.npy"), "--activations", "relu,sigmoid", "--no-progress", "--out",
                 str(tmp_path / "out")])
    assert "cannot read" in one_line_error(capsys, code) and not (tmp_path / "out").exists()


def test_data_that_do_not_fit_the_model_leave_no_run_folder(tmp_path):
    from mlplab.mnist.config import resolve_config
    from mlplab.mnist.runstore import RunStore
    from mlplab.mnist.train import train_run

    config = resolve_config(overrides=["model.input_size=784", "training.num_epochs=1", "training.device=cpu"])
    data = gaussian_clusters(50, 20, 1, 99), gaussian_clusters(10, 20, 2, 99)
    with pytest.raises(MlplabError, match=r"images have 20 features but model\.input_size is 784"):
        train_run(config, *data, RunStore(tmp_path / "run", figures=False), progress=False)
    assert not (tmp_path / "run").exists()
