"""One epoch of the assignment's default model on the real MNIST files: test accuracy at least 0.95.

Skipped when the files are absent, unless MLPLAB_REQUIRE_MNIST=1 (CI sets it after `mlplab data fetch`).
"""

from __future__ import annotations

import json

import pytest

from mlplab.cli import main
from mlplab.mnist.data import load_mnist

pytestmark = [pytest.mark.mnist, pytest.mark.slow]


@pytest.fixture(scope="module")
def folder(real_mnist_dir):
    return real_mnist_dir


def test_one_epoch_of_the_default_model_reaches_95_percent(folder, tmp_path, capsys):
    train, test = load_mnist(folder)
    assert (len(train), len(test)) == (60000, 10000)
    argv = ["mnist", "train", "--epochs", "1", "--data-dir", str(folder), "--out", str(tmp_path / "run"),
            "--device", "cpu", "--format", "json", "--no-progress"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["parameters"] == 567_434 and summary["epochs_run"] == 1 and not summary["divergent"]
    assert summary["test_accuracy"] >= 0.95
    assert (tmp_path / "run" / "loss.png").is_file() and (tmp_path / "run" / "metrics.csv").is_file()
