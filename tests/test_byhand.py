"""The exact by-hand derivation, checked against independent Fraction arithmetic, mpmath and float64 torch."""

from __future__ import annotations

import re
from fractions import Fraction

import mpmath
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlplab.errors import MlplabError
from mlplab.twolayer.activations import activation_pairs
from mlplab.twolayer.byhand import apply_activation, derive_all_pairs, derive_by_hand
from mlplab.twolayer.byhand_render import inner_product_line, render_derivations
from mlplab.twolayer.forward import forward
from mlplab.twolayer.problem import Problem, load_problem, problem_from_dict

SEED = load_problem()
CUSTOM = problem_from_dict({"X": [[1, 2, 0, -1], [0.5, 0, 1, 1]], "y": [1, 0],
                            "W1": [[1, -1, 0.25], [0.5, 2, -3], [1, 1, 1], [-0.75, 0, 2]],
                            "b1": [0, -1, 0.125], "w2": [1, -0.5, 0.3], "b2": -0.2})


def _exact_forward(p: Problem, s1: str, s2: str) -> tuple[list[list[Fraction]], list[Fraction]]:
    """Z1 by the textbook sum, and (for identity/ReLU) A1 and y_hat, all in Fractions."""
    act = {"identity": lambda t: t, "relu": lambda t: max(Fraction(0), t)}
    Z1 = [[sum(p.X[i][k] * p.W1[k][j] for k in range(p.d)) + p.b1[j] for j in range(p.h)] for i in range(p.n)]
    if s1 not in act or s2 not in act:
        return Z1, []
    A1 = [[act[s1](z) for z in row] for row in Z1]
    y_hat = [act[s2](sum(a * w for a, w in zip(row, p.w2)) + p.b2) for row in A1]
    return Z1, y_hat


@pytest.mark.parametrize("problem", [SEED, CUSTOM], ids=["seed", "custom-4-3-1"])
@pytest.mark.parametrize("s1,s2", activation_pairs())
def test_inner_products_match_independent_fractions(problem, s1, s2):
    dv = derive_by_hand(problem, s1, s2)
    Z1, y_hat = _exact_forward(problem, s1, s2)
    assert len(dv.Z1) == problem.n and all(len(row) == problem.h for row in dv.Z1)
    for i in range(problem.n):
        for j in range(problem.h):
            e = dv.Z1[i][j]
            assert (e.i, e.j) == (i + 1, j + 1)
            expected = [(problem.X[i][k], problem.W1[k][j]) for k in range(problem.d)]
            assert [(a.exact, b) for a, b in e.factors] == expected
            assert e.bias == problem.b1[j] and e.value.exact == Z1[i][j]
    if y_hat:  # identity and ReLU keep everything rational
        assert [e.value.exact for e in dv.y_hat] == y_hat


def test_seed_identity_values_by_hand():
    # The assignment's Section 1.1 numbers, worked out on paper: Z1 rows and y_hat = z2.
    dv = derive_by_hand(SEED)
    assert [[e.value.exact for e in row] for row in dv.Z1] == [
        [Fraction(3, 2), Fraction(-1, 2)], [Fraction(7, 2), -1], [4, Fraction(5, 2)], [0, -2]]
    assert [e.value.exact for e in dv.y_hat] == [Fraction(33, 20), Fraction(57, 20), Fraction(-41, 10), Fraction(9, 2)]


def test_sigmoid_is_high_precision_and_agrees_with_float64_torch():
    dv = derive_by_hand(SEED, "sigmoid", "sigmoid")
    with mpmath.workdps(60):
        for row in dv.A1:
            for e in row:
                t = mpmath.mpf(e.argument.exact.numerator) / e.argument.exact.denominator
                reference = mpmath.mpf(1) / (1 + mpmath.e ** (-t))
                assert abs(e.value.approx - reference) < mpmath.mpf(10) ** -45
    a1 = torch.tensor([[float(e.value) for e in row] for row in dv.A1], dtype=torch.float64)
    z1 = torch.tensor([[float(e.argument) for e in row] for row in dv.A1], dtype=torch.float64)
    torch.testing.assert_close(a1, torch.sigmoid(z1), rtol=1e-15, atol=1e-16)


def test_sigmoid_of_zero_is_exactly_one_half_and_relu_is_exact():
    dv = derive_by_hand(SEED, "sigmoid", "relu")
    assert dv.Z1[3][0].value.exact == 0 and dv.A1[3][0].value.exact == Fraction(1, 2)
    assert apply_activation("relu", dv.Z1[0][1].value).exact == 0


@pytest.mark.parametrize("s1,s2", activation_pairs())
def test_hand_equals_float64_forward(s1, s2):
    dv = derive_by_hand(SEED, s1, s2)
    t = SEED.tensors()
    out = forward(t["X"], s1, t["W1"], t["b1"], s2, t["W2"], t["b2"])
    for key, hand in dv.floats().items():
        torch.testing.assert_close(torch.tensor(hand, dtype=torch.float64), getattr(out, key), rtol=1e-13, atol=1e-13)


_rational = st.fractions(min_value=-3, max_value=3, max_denominator=8)


@settings(max_examples=25, deadline=None)
@given(data=st.data(), n=st.integers(1, 4), d=st.integers(1, 4), h=st.integers(1, 3),
       pair=st.sampled_from(activation_pairs()))
def test_random_problems_hand_equals_float64_forward(data, n, d, h, pair):
    def mat(r, c):
        return [[data.draw(_rational) for _ in range(c)] for _ in range(r)]

    p = problem_from_dict({"X": mat(n, d), "y": [0] * n, "W1": mat(d, h), "b1": mat(1, h)[0],
                           "w2": mat(1, h)[0], "b2": data.draw(_rational)})
    dv = derive_by_hand(p, *pair)
    t = p.tensors()
    out = forward(t["X"], pair[0], t["W1"], t["b1"], pair[1], t["W2"], t["b2"])
    for key, hand in dv.floats().items():
        torch.testing.assert_close(torch.tensor(hand, dtype=torch.float64), getattr(out, key), rtol=1e-12, atol=1e-12)


def test_printed_line_for_z1_11_has_the_issue_shape():
    line = inner_product_line(derive_by_hand(SEED).Z1[0][0])
    assert line.startswith("z1[1,1] = x1·W1[:,1] + b1[1] = (1)(1) + (0)(-3/2) + (0)(1/2) + 1/2 = 3/2")


_PRODUCT = re.compile(r"\(([-0-9/]+)\)\(([-0-9/]+)\)")


@pytest.mark.parametrize("problem", [SEED, CUSTOM], ids=["seed", "custom"])
def test_every_printed_inner_product_adds_up(problem):
    """Re-read each printed line and redo its arithmetic: the products, the bias and the stated result."""
    text = render_derivations([derive_by_hand(problem, "identity", "relu")], "text")
    lines = [ln.strip() for ln in text.splitlines() if re.match(r"\s+z[12]\[", ln)]
    assert len(lines) == problem.n * problem.h + problem.n
    for line in lines:
        parts = line.split(" = ")  # lhs, definition, products and bias, result (then its rounding)
        definition, rhs = parts[1], parts[2]
        assert definition.startswith(("x", "A1["))
        products = _PRODUCT.findall(rhs)
        assert len(products) == (problem.d if line.startswith("z1") else problem.h)
        bias_match = re.search(r"\) ([+-]) ([-0-9/]+)$", rhs)
        assert bias_match is not None
        bias = Fraction(bias_match.group(2)) * (1 if bias_match.group(1) == "+" else -1)
        result = Fraction(parts[3].split(" ≈ ")[0])
        assert sum(Fraction(a) * Fraction(b) for a, b in products) + bias == result


def test_dimensions_and_rounding_are_stated():
    text = render_derivations([derive_by_hand(SEED, "sigmoid", "identity")], "text")
    for phrase in ("so Z1 is 4×2", "so A1 is 4×2", "so z2 is 4×1", "so y_hat is 4×1",
                   "A1 (4×2) = [", "y_hat (4×1) = ["):
        assert phrase in text
    line = next(ln for ln in text.splitlines() if "a1[1,1] =" in ln)
    assert "1/(1 + e^(-3/2))" in line and line.endswith("≈ 0.82")
    digits = re.search(r"≈ (0\.\d+) ≈", line)
    assert digits is not None and len(digits.group(1)) - 2 >= 29  # 30 significant digits
    with mpmath.workdps(40):
        assert abs(mpmath.mpf(digits.group(1)) - 1 / (1 + mpmath.exp(mpmath.mpf(-1.5)))) < mpmath.mpf(10) ** -29


def test_custom_problem_dimensions():
    text = render_derivations([derive_by_hand(CUSTOM)], "text")
    assert "(2×4)(4×3) + (2×1)(1×3), so Z1 is 2×3" in text and "so y_hat is 2×1" in text
    assert "z1[2,3] = x2·W1[:,3] + b1[3]" in text


@pytest.mark.parametrize("fmt", ["markdown", "latex"])
def test_markdown_and_latex_are_well_formed(fmt):
    text = render_derivations(derive_all_pairs(SEED), fmt)
    if fmt == "latex":
        assert text.count("{") == text.count("}")
        assert text.count("\\begin{align*}") == text.count("\\end{align*}") == 4 * 9
        assert "(\\mathbf{Z}_1)_{1,1} &= \\mathbf{x}_{1}\\cdot(\\mathbf{W}_1)_{:,1}" in text
    else:
        assert text.count("```") % 2 == 0 and text.count("### Forward pass by hand") == 9
        assert "z1[1,1] = x1·W1[:,1] + b1[1] = (1)(1) + (0)(-3/2) + (0)(1/2) + 1/2 = 3/2" in text


def test_json_rendering_keeps_exact_values():
    import json

    data = json.loads(render_derivations([derive_by_hand(SEED, "relu", "sigmoid")], "json"))
    assert data[0]["Z1"][0][0]["exact"] == "3/2" and data[0]["y_hat"][0]["exact"] is None
    assert data[0]["lines"][0].startswith("z1[1,1] = ")


def test_unknown_activation_is_refused():
    with pytest.raises(MlplabError, match="unknown activation"):
        derive_by_hand(SEED, "tanh", "identity")
    with pytest.raises(MlplabError, match="knows identity, relu and sigmoid"):
        derive_by_hand(SEED, torch.tanh, "identity")
