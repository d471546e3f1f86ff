"""Tables 1 and 2: Hand equals PyTorch, the assignment's printed x3 values, every rendering, other dimensions."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
import torch

from mlplab.errors import MlplabError
from mlplab.twolayer.activations import activation_pairs
from mlplab.twolayer.byhand import derive_by_hand
from mlplab.twolayer.forward import forward
from mlplab.twolayer.forward_tables import (
    max_abs_difference,
    pytorch_forward,
    resolve_dtype,
    section1_values,
    table1,
    table2,
)
from mlplab.twolayer.problem import load_problem, problem_from_dict

SEED = load_problem()
CUSTOM = problem_from_dict({"X": [[1, 2, 0, -1], [0.5, 0, 1, 1]], "y": [1, 0],
                            "W1": [[1, -1, 0.25], [0.5, 2, -3], [1, 1, 1], [-0.75, 0, 2]],
                            "b1": [0, -1, 0.125], "w2": [1, -0.5, 0.3], "b2": -0.2})

# The only numbers the assignment prints in Table 2: y_hat for x3, in the order of the nine pairs.
SEED_X3_Y_HAT = ["-4.10", "0.00", "0.02", "-4.10", "0.00", "0.02", "-1.25", "0.00", "0.22"]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
@pytest.mark.parametrize("s1,s2", activation_pairs())
def test_hand_equals_pytorch_everywhere(s1, s2, dtype, tol):
    dv = derive_by_hand(SEED, s1, s2)
    out = pytorch_forward(SEED, s1, s2, dtype)
    assert out.y_hat.dtype == dtype
    for key, hand in dv.floats().items():
        torch.testing.assert_close(getattr(out, key).double(), torch.tensor(hand, dtype=torch.float64),
                                   rtol=0, atol=tol)
    assert max_abs_difference(dv, out) <= tol


def test_table2_reproduces_the_seeds_x3_values():
    t = table2(SEED)
    x3 = t.columns.index("x3")
    assert [t.cell(r[x3]) for r in t.rows if r[1] == "y_hat"] == SEED_X3_Y_HAT
    assert [r[0] for r in t.rows if r[0]] == ["(I, I)", "(I, ReLU)", "(I, sigm)", "(ReLU, I)", "(ReLU, ReLU)",
                                              "(ReLU, sigm)", "(sigm, I)", "(sigm, ReLU)", "(sigm, sigm)"]
    assert "| (sigm, sigm) | a1[1] |" in t.to_markdown()


def test_table2_values_are_forward_outputs_and_diff_column_is_small():
    t = table2(SEED, torch.float64)
    h = SEED.h
    p = SEED.tensors()
    for k, (s1, s2) in enumerate(activation_pairs()):
        block = t.rows[k * (h + 1):(k + 1) * (h + 1)]
        out = forward(p["X"], s1, p["W1"], p["b1"], s2, p["W2"], p["b2"])
        got = torch.tensor([r[2:2 + SEED.n] for r in block], dtype=torch.float64)
        torch.testing.assert_close(got, torch.cat([out.A1.T, out.y_hat.T]), rtol=0, atol=0)
        assert float(block[0][-1]) < 1e-12


def test_table1_hand_column_is_exact_and_pytorch_column_close():
    t = table1(SEED)
    assert t.columns == ["Var.", *(f"x{i} {s}" for i in range(1, 5) for s in ("Hand", "PyTorch"))]
    assert [r[0] for r in t.rows] == ["a1[1]", "a1[2]", "y_hat"]
    # Identity network: A1 = X W1 + b1, y_hat = A1 w2 + b2, summed here with Fractions.
    for i in range(SEED.n):
        a1 = [sum(SEED.X[i][k] * SEED.W1[k][j] for k in range(SEED.d)) + SEED.b1[j] for j in range(SEED.h)]
        y = sum(a * w for a, w in zip(a1, SEED.w2)) + SEED.b2
        hand = [t.rows[r][1 + 2 * i] for r in range(3)]
        assert hand == [float(a1[0]), float(a1[1]), float(y)]
        torch.testing.assert_close(torch.tensor([t.rows[r][2 + 2 * i] for r in range(3)]),
                                   torch.tensor(hand), rtol=0, atol=1e-6)
    assert [t.cell(r[5]) for r in t.rows] == ["4.00", "2.50", "-4.10"]  # x3 Hand; -4.10 is printed in the assignment


def test_tables_render_in_all_four_formats():
    for t in (table1(SEED), table2(SEED)):
        latex = t.to_latex()
        assert all(k in latex for k in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}"))
        data = json.loads(t.to_json())
        assert len(data["rows"]) == len(t.rows)
        assert t.to_text().splitlines()[0] == t.title and t.to_markdown().startswith(f"**{t.title}**")
    rows = json.loads(table1(SEED, torch.float64).to_json())["rows"]
    assert rows[2]["x1 Hand"] == float(Fraction(33, 20))  # JSON keeps full precision, not the rounding


def test_custom_dimensions_regenerate_tables():
    t1, t2 = table1(CUSTOM), table2(CUSTOM)
    assert len(t1.columns) == 1 + 2 * CUSTOM.n and len(t1.rows) == CUSTOM.h + 1
    assert len(t2.rows) == 9 * (CUSTOM.h + 1) and t2.columns[2:-1] == ["x1", "x2"]
    assert t2.rules_after == [k * (CUSTOM.h + 1) + CUSTOM.h for k in range(9)]
    for s1, s2 in activation_pairs():
        assert max_abs_difference(derive_by_hand(CUSTOM, s1, s2), pytorch_forward(CUSTOM, s1, s2)) < 1e-6


def test_section1_values_are_json_ready():
    data = json.loads(json.dumps(section1_values(SEED)))
    assert data["pytorch_dtype"] == "float32" and len(data["pairs"]) == 9
    assert data["pairs"][2]["hand"]["y_hat"][2]["value"].startswith("0.0163024993714409")
    assert all(p["max_abs_difference"] < 1e-6 for p in data["pairs"])


def test_dtype_names():
    assert resolve_dtype("float32") is torch.float32
    with pytest.raises(MlplabError, match="unsupported dtype"):
        resolve_dtype("float16")


def test_forward_promotes_integer_inputs():
    # X typed as integers (as a student would) must not break X @ W1.
    out = forward(torch.tensor([[0, -2, 1]]), "identity", torch.tensor([[1.0, -2.5], [-1.5, -1.0], [0.5, -1.5]]),
                  [0.5, 2.0], "identity", [0.1, -2.0], 0.5)
    torch.testing.assert_close(out.y_hat, torch.tensor([[-4.1]]), rtol=0, atol=1e-6)


def test_markdown_rows_have_one_cell_per_column():
    for t in (table1(SEED), table2(SEED)):
        lines = [ln for ln in t.to_markdown().splitlines() if ln.startswith("|")]
        assert {ln.count("|") for ln in lines} == {len(t.columns) + 1}
