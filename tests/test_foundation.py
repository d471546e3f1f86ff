"""The foundation: forward(), activations, the problem file, tables, atomic writes, the CLI's error path."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mlplab
from mlplab.cli import main
from mlplab.errors import MlplabError
from mlplab.fsio import atomic_write_text
from mlplab.tables import Table
from mlplab.twolayer.problem import load_problem


def test_public_api_names():
    for name in ("forward", "identity", "relu", "sigmoid", "get_device", "MlplabError"):
        assert name in mlplab.__all__
        assert hasattr(mlplab, name)


def test_forward_unpacks_and_matches_seed_x3():
    p = load_problem().tensors()
    Z1, A1, z2, y_hat = mlplab.forward(p["X"], "identity", p["W1"], p["b1"], "identity", p["W2"], p["b2"])
    assert Z1.shape == (4, 2) and A1.shape == (4, 2) and z2.shape == (4, 1) and y_hat.shape == (4, 1)
    torch.testing.assert_close(y_hat[2, 0], torch.tensor(-4.1, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("b1_shape,w2_shape,b2", [((2,), (2, 1), 0.5), ((1, 2), (2,), [0.5]),
                                                  ((2,), (2,), [[0.5]])])
def test_forward_accepts_bias_and_weight_shapes(b1_shape, w2_shape, b2):
    p = load_problem().tensors()
    ref = mlplab.forward(p["X"], "relu", p["W1"], p["b1"], "sigmoid", p["W2"], p["b2"]).y_hat
    out = mlplab.forward(p["X"], mlplab.relu, p["W1"], p["b1"].reshape(b1_shape), mlplab.sigmoid,
                         p["W2"].reshape(w2_shape), torch.tensor(b2, dtype=torch.float64)).y_hat
    torch.testing.assert_close(out, ref)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 6), d=st.integers(1, 5), h=st.integers(1, 4), seed=st.integers(0, 1000),
       a1=st.sampled_from(["identity", "relu", "sigmoid"]), a2=st.sampled_from(["identity", "relu", "sigmoid"]))
def test_forward_equals_per_sample_inner_products(n, d, h, seed, a1, a2):
    g = torch.Generator().manual_seed(seed)
    X, W1, b1 = (torch.randn(s, generator=g, dtype=torch.float64) for s in ((n, d), (d, h), (h,)))
    W2, b2 = torch.randn(h, 1, generator=g, dtype=torch.float64), torch.randn(1, generator=g, dtype=torch.float64)
    out = mlplab.forward(X, a1, W1, b1, a2, W2, b2)
    s1, s2 = mlplab.get_activation(a1), mlplab.get_activation(a2)
    for i in range(n):
        z1 = torch.stack([sum(X[i, k] * W1[k, j] for k in range(d)) + b1[j] for j in range(h)])
        z2 = sum(s1(z1)[j] * W2[j, 0] for j in range(h)) + b2[0]
        torch.testing.assert_close(out.y_hat[i, 0], s2(z2), rtol=1e-12, atol=1e-12)


def test_forward_autograd_flows():
    p = load_problem().tensors()
    W1 = p["W1"].clone().requires_grad_(True)
    mlplab.forward(p["X"], "sigmoid", W1, p["b1"], "sigmoid", p["W2"], p["b2"]).y_hat.sum().backward()
    assert W1.grad is not None and torch.isfinite(W1.grad).all()


def test_forward_rejects_bad_shapes():
    p = load_problem().tensors()
    with pytest.raises(MlplabError, match="W1 must have shape"):
        mlplab.forward(p["X"], "relu", p["W1"].T, p["b1"], "relu", p["W2"], p["b2"])
    with pytest.raises(MlplabError, match="unknown activation"):
        mlplab.forward(p["X"], "tanhh", p["W1"], p["b1"], "relu", p["W2"], p["b2"])


def test_problem_is_exact():
    p = load_problem()
    assert p.w2[0] == Fraction(1, 10) and p.b2 == Fraction(1, 2) and p.y == [1, 0, 1, 0]


@pytest.mark.parametrize("patch,message", [({"W1": [[1, 2]]}, "W1 has 1 rows"), ({"b2": "x"}, "must be a number"),
                                           ({"y": [1, 0, 2, 0]}, "labels y must be 0 or 1"),
                                           ({"zz": 1}, "unknown keys")])
def test_problem_validation(tmp_path, patch, message):
    raw = load_problem().to_json() | patch
    path = tmp_path / "p.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(MlplabError, match=message):
        load_problem(path)


def test_problem_rejects_nan(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(load_problem().to_json()).replace("0.5", "NaN", 1))
    with pytest.raises(MlplabError, match="finite"):
        load_problem(path)


def test_table_renderings_agree():
    t = Table("T", ["name", "v"], [["a", 1.005], ["b", -0.001]], label="tab:t")
    assert "| a | 1.00 |" in t.to_markdown() or "| a | 1.01 |" in t.to_markdown()
    assert "\\toprule" in t.to_latex() and "$0.00$" in t.to_latex()  # -0.00 is shown as 0.00
    assert json.loads(t.to_json())["rows"][1]["v"] == -0.001


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    with pytest.raises(ZeroDivisionError):
        from mlplab.fsio import atomic_open
        with atomic_open(target) as h:
            h.write("partial")
            1 / 0  # noqa: B018
    assert list(tmp_path.iterdir()) == []
    atomic_write_text(target, "ok")
    assert target.read_text() == "ok"


def test_cli_without_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: mlplab" in capsys.readouterr().out


def test_latex_cell_starting_with_bracket_is_not_an_optional_argument():
    t = Table("Sizes", ["hidden", "params"], [["[512, 256, 128]", 567434], ["[16]", 12730]])
    assert "{}[16] & $12730$ \\\\" in t.to_latex()


def test_atomic_write_gives_the_usual_file_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0)
    os.umask(mask)
    path = atomic_write_text(tmp_path / "r.txt", "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
