"""The section 1 commands, run in-process: output, files written, custom problems, and bad input."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlplab.cli import main
from mlplab.twolayer.problem import load_problem, problem_from_dict
from mlplab.twolayer.section1 import write_section1

CUSTOM = {"name": "wide", "X": [[1, 2, 0, -1], [0.5, 0, 1, 1]], "y": [1, 0],
          "W1": [[1, -1, 0.25], [0.5, 2, -3], [1, 1, 1], [-0.75, 0, 2]],
          "b1": [0, -1, 0.125], "w2": [1, -0.5, 0.3], "b2": -0.2}

SECTION1_FILES = sorted([*(f"{stem}.{ext}" for stem in ("table1", "table2", "byhand", "byhand_all_pairs")
                           for ext in ("txt", "md", "tex", "json")),
                         "network.png", "network.pdf", "section1_values.json", "problem.json"])


def test_problem_prints_a_template_that_loads_back(tmp_path, capsys):
    assert main(["problem"]) == 0
    out = capsys.readouterr().out
    path = tmp_path / "mine.json"
    path.write_text(out)
    assert load_problem(path) == load_problem()
    assert main(["problem", "--show", "--problem", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["W1"][1] == [-1.5, -1.0]


_frac = st.fractions(min_value=-50, max_value=50, max_denominator=64)


@settings(max_examples=40, deadline=None)
@given(W1=st.lists(st.lists(_frac, min_size=2, max_size=2), min_size=1, max_size=3), b2=_frac)
def test_problem_text_round_trips_exactly(tmp_path_factory, W1, b2):
    d = len(W1)
    original = problem_from_dict({"X": [[Fraction(k + 1, 3) for k in range(d)]], "y": [1], "W1": W1,
                                  "b1": [Fraction(1, 7), 0], "w2": [1, Fraction(-1, 1024)], "b2": b2})
    path = tmp_path_factory.mktemp("rt") / "p.json"
    path.write_text(original.to_text())
    assert load_problem(path) == original


def test_fraction_strings_in_a_problem_file_stay_exact(tmp_path, capsys):
    path = tmp_path / "thirds.json"
    path.write_text(json.dumps({**CUSTOM, "b1": ["1/3", -1, 0.125]}))
    assert main(["byhand", "--problem", str(path)]) == 0
    assert "z1[2,1] = x2·W1[:,1] + b1[1] = (1/2)(1) + (0)(1/2) + (1)(1) + (1)(-3/4) + 1/3 = 13/12 ≈ 1.08" in \
        capsys.readouterr().out
    path.write_text(json.dumps({**CUSTOM, "b2": "1/0"}))
    assert main(["byhand", "--problem", str(path)]) == 2
    assert "fraction string" in capsys.readouterr().err


def test_byhand_prints_the_inner_products(capsys):
    assert main(["byhand"]) == 0
    out = capsys.readouterr().out
    assert "z1[1,1] = x1·W1[:,1] + b1[1] = (1)(1) + (0)(-3/2) + (0)(1/2) + 1/2 = 3/2" in out
    assert "y_hat[3] = σ_I(z2[3]) = -41/10 = -4.10" in out
    assert main(["byhand", "--activations", "sigm,sigm", "--format", "latex"]) == 0
    assert "\\frac{1}{1 + e^{-3/2}}" in capsys.readouterr().out
    assert main(["byhand", "--all", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 9


def test_tables_json_has_the_seed_x3_values(capsys):
    assert main(["tables", "table2", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = data["Table 2: all nine activation pairs"]["rows"]
    assert [f"{r['x3']:.2f}" for r in rows if r["Var."] == "y_hat"][-3:] == ["-1.25", "0.00", "0.22"]
    assert main(["tables", "--format", "latex", "--dtype", "float64"]) == 0
    out = capsys.readouterr().out
    assert out.count("\\toprule") == 2 and "float64" in out


def test_section1_writes_everything(tmp_path, capsys):
    assert main(["section1", "--out", str(tmp_path / "s1")]) == 0
    assert sorted(p.name for p in (tmp_path / "s1").iterdir()) == SECTION1_FILES
    values = json.loads((tmp_path / "s1" / "section1_values.json").read_text())
    assert values["pairs"][8]["hand"]["y_hat"][2]["value"].startswith("0.2226858993852")
    assert "wrote 20 files" in capsys.readouterr().err


def test_custom_problem_regenerates_tables_derivation_and_figure(tmp_path):
    problem_file = tmp_path / "wide.json"
    problem_file.write_text(json.dumps(CUSTOM))
    paths = write_section1(load_problem(problem_file), tmp_path / "out")
    assert sorted(p.name for p in paths) == SECTION1_FILES
    out = tmp_path / "out"
    assert "so Z1 is 2×3" in (out / "byhand.txt").read_text()
    assert "x2 PyTorch" in (out / "table1.md").read_text() and "x3" not in (out / "table1.md").read_text()
    assert (out / "network.png").read_bytes()[:4] == b"\x89PNG" and (out / "network.pdf").read_bytes()[:5] == b"%PDF-"
    assert load_problem(out / "problem.json") == load_problem(problem_file)


def test_draw_and_outputs_of_byhand_and_tables(tmp_path, capsys):
    problem_file = tmp_path / "wide.json"
    problem_file.write_text(json.dumps(CUSTOM))
    assert main(["draw", "--problem", str(problem_file), "--activations", "relu,sigmoid",
                 "--out", str(tmp_path / "d")]) == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["network.pdf", "network.png"]
    assert main(["byhand", "--out", str(tmp_path / "b")]) == 0
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["byhand.json", "byhand.md", "byhand.tex",
                                                                  "byhand.txt"]
    assert main(["tables", "table1", "--out", str(tmp_path / "t")]) == 0
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["table1.json", "table1.md", "table1.tex",
                                                                  "table1.txt"]
    capsys.readouterr()


def _bad_inputs(tmp_path):
    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"X": [[1, 0, 0], ')
    nan = tmp_path / "nan.json"
    nan.write_text(json.dumps(CUSTOM).replace("0.125", "NaN"))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = str(tmp_path / "out")
    return {
        "unknown activation": (["byhand", "--activations", "relu,tanh", "--out", out], "unknown activation 'tanh'"),
        "unknown activation in draw": (["draw", "--pair", "relu,soft", "--out", out], "unknown activation"),
        "malformed problem": (["section1", "--problem", str(malformed), "--out", out], "is not valid JSON"),
        "NaN in problem": (["tables", "--problem", str(nan), "--out", out], "NaN"),
        "missing problem": (["byhand", "--problem", str(tmp_path / "nope.json"), "--out", out], "does not exist"),
        "unwritable out": (["section1", "--out", str(blocker / "sub")], "cannot create output folder"),
    }


@pytest.mark.parametrize("case", ["unknown activation", "unknown activation in draw", "malformed problem",
                                  "NaN in problem", "missing problem", "unwritable out"])
def test_bad_input_is_one_line_exit_2_and_no_files(tmp_path, capsys, case):
    argv, message = _bad_inputs(tmp_path)[case]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mlplab: error: ") and message in err[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.latex
def test_section1_latex_compiles(tmp_path):
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed")
    write_section1(load_problem(), tmp_path)
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\\usepackage{amsmath,amssymb,booktabs}\\usepackage[margin=1cm,landscape]{geometry}\n"
        "\\begin{document}\n\\input{table1}\n\\input{table2}\n\\input{byhand_all_pairs}\n\\end{document}\n")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "doc.pdf").read_bytes().startswith(b"%PDF-")
