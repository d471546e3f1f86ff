"""Variants: deterministic from (seed, index), the requested numbers and shapes, and fair by every rule, checked
with references independent of the generator (Fractions, float64 torch, mlplab.twolayer.decision)."""

from __future__ import annotations

import shutil
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mlplab.errors import MlplabError
from mlplab.instructor import MISTAKES, answer_key, fairness_issues, make_variant, make_variants, mistaken_values
from mlplab.instructor.files import write_variants
from mlplab.instructor.variants import variant_id
from mlplab.report.build import latex_tool, pdf_text
from mlplab.twolayer.decision import classify_pairs
from mlplab.twolayer.forward import forward
from mlplab.twolayer.losses import binary_cross_entropy, mse
from mlplab.twolayer.problem import Problem, load_problem, problem_from_dict

HALF = Fraction(1, 2)


def _distance_to_half_point(v: float) -> float:
    scaled = abs(v) * 100
    return abs(scaled - int(scaled) - 0.5) / 100


def _assert_fair(problem: Problem) -> None:
    # numbers easy by hand
    assert all(v.denominator == 1 and -2 <= v <= 2 for row in problem.X for v in row)
    weights = [*(v for row in problem.W1 for v in row), *problem.b1, *problem.w2, problem.b2]
    assert all((2 * v).denominator == 1 and -3 <= v <= 3 for v in weights)
    assert set(problem.y) == {0, 1}
    # no ReLU kink: Z1 exactly, with Fractions
    Z1 = [[sum(x[k] * problem.W1[k][j] for k in range(problem.d)) + problem.b1[j] for j in range(problem.h)]
          for x in problem.X]
    assert all(z != 0 for row in Z1 for z in row)
    t = problem.tensors()
    for s1 in ("identity", "relu", "sigmoid"):
        for s2 in ("identity", "relu", "sigmoid"):
            out = forward(t["X"], s1, t["W1"], t["b1"], s2, t["W2"], t["b2"])
            assert (out.y_hat - 0.5).abs().min().item() >= 0.01 - 1e-12  # no output near the threshold
            values = [*out.A1.reshape(-1).tolist(), *out.y_hat.reshape(-1).tolist(), mse(out.y_hat, t["y"]).item()]
            if s2 == "sigmoid":
                values.append(binary_cross_entropy(out.y_hat, t["y"]).item())
            # float64 is within 1e-13 of the exact value, so 1e-6 - 1e-12 still proves the exact margin
            assert min(_distance_to_half_point(v) for v in values) > 1e-6 - 1e-12
    decision = classify_pairs(t, [("relu", "sigmoid")])[0]
    assert decision.n_correct < problem.n  # at least one sample misclassified by (ReLU, sigmoid)
    # every named mistake changes at least one answer beyond the tolerance
    key = answer_key(problem).rounded()
    for m in MISTAKES:
        alternatives = mistaken_values(problem)[m.id]
        assert alternatives, m.id
        exact = answer_key(problem).values
        assert any(_graded_wrong(value, exact[name], key[name]) for name, alts in alternatives.items()
                   for _, value in alts), m.id


def _flat(v):
    return [x for e in v for x in _flat(e)] if isinstance(v, list) else [v]


def _graded_wrong(value, exact, rounded_key) -> bool:
    """Whether a student who writes `value` (rounded to two decimals, half away from zero) is marked wrong by
    the grading rule, written out here apart from the checker: a number is right when it rounds to the key's
    two decimals or lies within 0.01 of the exact value; labels must be equal."""
    from decimal import ROUND_HALF_UP, Decimal

    for a, e, r in zip(_flat(value), _flat(exact), _flat(rounded_key)):
        if isinstance(r, int) and not isinstance(r, bool) and isinstance(e, int):
            if a != r:
                return True
            continue
        written = Decimal(float(a)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        if float(written) != float(r) and abs(float(written) - float(e)) > 0.01 + 1e-12:
            return True
    return False


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10**9), index=st.integers(0, 500))
@example(seed=1249, index=499)  # a BCE term rounded early to 0.71 against 0.7229 (key 0.72): wrong by the rule
def test_variants_are_fair_for_any_seed(seed, index):
    v = make_variant(seed, index)
    assert (v.problem.n, v.problem.d, v.problem.h) == (4, 3, 2)
    assert v.problem.name == v.id == variant_id(seed, index)
    _assert_fair(v.problem)
    assert fairness_issues(v.problem) == []


def test_variants_are_deterministic_and_stable_under_a_larger_count():
    first = make_variants(3, 2026)
    again = make_variants(2, 2026)
    assert [v.problem.to_text() for v in first[:2]] == [v.problem.to_text() for v in again]
    assert len({v.problem.to_text() for v in first}) == 3
    other = make_variant(2027, 0)
    assert other.id != first[0].id and other.problem.to_text() != first[0].problem.to_text()


def test_like_keeps_a_given_shape():
    like = Problem(X=[[Fraction(1)] * 4] * 5, y=[Fraction(v) for v in (1, 0, 1, 0, 1)], W1=[[Fraction(1)] * 3] * 4,
                   b1=[Fraction(0)] * 3, w2=[Fraction(1)] * 3, b2=Fraction(0))
    v = make_variant(5, 0, like)
    assert (v.problem.n, v.problem.d, v.problem.h) == (5, 4, 3)
    _assert_fair(v.problem)


def test_the_assignments_problem_is_not_a_fair_variant_and_says_why():
    issues = fairness_issues(load_problem())
    assert any("Z1 is exactly 0" in i for i in issues)
    assert any("within 0.01 of the threshold" in i for i in issues)


@pytest.mark.parametrize("count,seed", [(0, 1), (-3, 1), (2, -1)])
def test_bad_count_or_seed_is_a_user_error(count, seed):
    with pytest.raises(MlplabError, match=r"at least 1|non-negative"):
        make_variants(count, seed)


def test_a_one_sample_template_cannot_hold_both_classes():
    like = Problem(X=[[Fraction(1)]], y=[Fraction(1)], W1=[[Fraction(1)]], b1=[Fraction(0)], w2=[Fraction(1)],
                   b2=Fraction(0))
    with pytest.raises(MlplabError, match="at least 2 samples"):
        make_variant(1, 0, like)


def test_fairness_rejects_a_half_point_mse():
    """A candidate passing rules 1-4 whose (identity, ReLU) MSE is exactly 67/8 = 8.375: a hand calculation rounds
    it to 8.37 or 8.38 depending on the rounding rule, so it is not a fair variant."""
    p = problem_from_dict({"X": [[1, -1, 2], [2, 2, 1], [0, 2, 2], [0, -2, -1]], "y": [0, 1, 0, 0],
                           "W1": [[3, 2], [-2, 2], [2.5, -3]], "b1": [0.5, -1.5], "w2": [-2, -3], "b2": -2})
    assert answer_key(p).values["loss.mse.identity-relu"] == Fraction(67, 8)
    assert fairness_issues(p) == ["loss.mse.identity-relu lies within 1e-6 of a half-point"]


@pytest.mark.latex
@pytest.mark.skipif(latex_tool() is None, reason="no latexmk/pdflatex")
def test_key_pdf_is_built_when_latex_is_installed(tmp_path):
    v = make_variant(9, 0)
    write_variants([v], tmp_path, pdf=True)
    pdf = tmp_path / v.id / "key.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    if shutil.which("pdftotext"):
        text = pdf_text(pdf)
        assert "grad.mse" in text and v.id in text
