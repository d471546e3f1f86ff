"""The section-2 commands: output, files, formats, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import os

import pytest

from mlplab.cli import main
from mlplab.twolayer.problem import load_problem
from mlplab.twolayer.section2 import write_section2


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_losses_command(capsys):
    code, out, _ = _run(capsys, "losses")
    assert code == 0
    assert "Losses for (sigma1, sigma2) = (relu, sigmoid)" in out and "(sigmoid, sigmoid)" in out
    assert "Sensitivity near the decision boundary" in out
    code, out, _ = _run(capsys, "losses", "--format", "json", "--activations", "identity,sigmoid")
    data = json.loads(out)
    assert "Losses for (sigma1, sigma2) = (identity, sigmoid)" in data


def test_classify_and_gradients_commands(capsys, tmp_path):
    code, out, _ = _run(capsys, "classify", "--format", "markdown")
    assert code == 0 and "| relu | sigmoid |" in out
    code, out, err = _run(capsys, "gradients", "--loss", "bce", "--format", "latex", "--out", str(tmp_path))
    assert code == 0 and "\\begin{tabular}" in out and "kink" in out
    assert {p.name for p in tmp_path.iterdir()} == {f"gradients.{s}" for s in ("txt", "md", "tex", "json")}
    assert "wrote" in err


def test_descent_command_writes_curves_figure_and_verdicts(capsys, tmp_path):
    code, out, _ = _run(capsys, "descent", "--steps", "0.01,10", "--epochs", "15", "--loss", "mse",
                        "--activations", "identity,identity", "--out", str(tmp_path))
    assert code == 0 and "diverging" in out
    names = {p.name for p in tmp_path.iterdir()}
    assert {"descent_loss.png", "descent_loss.pdf", "descent_verdicts.json", "descent_curves.json",
            "descent_config.json", "descent.md"} <= names
    verdicts = json.loads((tmp_path / "descent_verdicts.json").read_text())
    assert [v["verdict"] for v in verdicts] == ["converging", "diverging"]
    config = json.loads((tmp_path / "descent_config.json").read_text())
    assert config["step_sizes"] == [0.01, 10.0] and config["epochs"] == 15


def test_errata_command(capsys):
    code, out, _ = _run(capsys, "errata", "--train-epochs", "0")
    assert code == 0 and "eq6-sign" in out and "bengio-twice" in out


def test_write_section2(tmp_path):
    paths = write_section2(load_problem(), tmp_path / "s2", epochs=5)
    assert all(p.exists() for p in paths)
    names = {str(p.relative_to(tmp_path / "s2")) for p in paths}
    for stem in ("classify", "losses", "gradients", "errata"):
        assert {f"{stem}.{s}" for s in ("txt", "md", "tex", "json")} <= names
    assert {"descent_bce/descent_loss.png", "descent_mse/descent_verdicts.json", "section2_config.json"} <= names


@pytest.mark.parametrize("argv,needle", [
    (["descent", "--steps", "0.01,abc"], "--steps must be numbers"),
    (["descent", "--steps", "-1"], "positive"),
    (["descent", "--epochs", "0"], "--epochs must be at least 1"),
    (["descent", "--loss", "hinge"], "unknown loss"),
    (["gradients", "--activations", "relu,tanhh"], "unknown activation"),
    (["gradients", "--loss", "xyz"], "unknown loss"),
    (["losses", "--activations", "relu"], "expected two activations"),
    (["classify", "--problem", "/nonexistent/p.json"], "does not exist"),
    (["errata", "--train-epochs", "-1"], "--train-epochs"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needle):
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err


def test_unwritable_out_folder(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = _run(capsys, "losses", "--out", str(blocker / "sub"))
    assert code == 2 and err.count("\n") == 1
    if os.geteuid() != 0:  # root can write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        code, _, err = _run(capsys, "descent", "--epochs", "2", "--out", str(ro))
        assert code == 2 and not any(ro.iterdir())
