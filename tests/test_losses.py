"""Losses (the assignment's eq. 5-6): against torch's functional losses, exact Fractions and mpmath."""

from __future__ import annotations

from fractions import Fraction

import mpmath
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import mlplab
from mlplab.errors import MlplabError
from mlplab.twolayer.losses import (
    BCE_EPS,
    binary_cross_entropy,
    binary_cross_entropy_terms,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_terms,
    get_loss,
    mse,
    mse_terms,
)
from mlplab.twolayer.problem import load_problem

TOL = {"rtol": 1e-12, "atol": 1e-12}


def _mp_y_hat(sigma1: str) -> list[mpmath.mpf]:
    """y_hat of the assignment's problem with sigma2 = sigmoid, in 40-digit arithmetic from the exact numbers."""
    p = load_problem()
    act = {"relu": lambda t: max(mpmath.mpf(0), t), "sigmoid": lambda t: 1 / (1 + mpmath.exp(-t))}[sigma1]
    out = []
    with mpmath.workdps(40):
        for x in p.X:
            a1 = [act(_to_mpf(sum((xk * p.W1[k][j] for k, xk in enumerate(x)), Fraction(0)) + p.b1[j]))
                  for j in range(p.h)]
            z2 = sum(a * _to_mpf(w) for a, w in zip(a1, p.w2)) + _to_mpf(p.b2)
            out.append(1 / (1 + mpmath.exp(-z2)))
    return out


def _to_mpf(f: Fraction) -> mpmath.mpf:
    return mpmath.mpf(f.numerator) / f.denominator


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 20), seed=st.integers(0, 10_000))
def test_losses_equal_torch_functional(n, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 1, generator=g, dtype=torch.float64) * 4
    y = torch.randint(0, 2, (n, 1), generator=g).to(torch.float64)
    p = torch.sigmoid(z)
    torch.testing.assert_close(mse(p, y), F.mse_loss(p, y), **TOL)
    torch.testing.assert_close(binary_cross_entropy(p, y), F.binary_cross_entropy(p, y), **TOL)
    torch.testing.assert_close(binary_cross_entropy_with_logits(z, y), F.binary_cross_entropy_with_logits(z, y), **TOL)
    # BCE on sigmoid(z) and BCE with logits on z are the same loss
    torch.testing.assert_close(binary_cross_entropy(p, y), binary_cross_entropy_with_logits(z, y), rtol=1e-10,
                               atol=1e-12)


def test_logits_version_is_stable_for_large_inputs():
    z = torch.tensor([-800.0, -50.0, 50.0, 800.0], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    terms = binary_cross_entropy_with_logits_terms(z, y)
    torch.testing.assert_close(terms, F.binary_cross_entropy_with_logits(z, y, reduction="none"), **TOL)
    torch.testing.assert_close(terms, torch.tensor([800.0, 0.0, 0.0, 800.0], dtype=torch.float64), rtol=0, atol=1e-20)


def test_mse_exact_fractions():
    y_hat, y = [Fraction(1, 2), Fraction(1, 4), Fraction(3, 8)], [Fraction(1), Fraction(0), Fraction(1)]
    exact = sum((a - b) ** 2 for a, b in zip(y_hat, y)) / 3
    got = mse(torch.tensor([float(v) for v in y_hat], dtype=torch.float64), torch.tensor([float(v) for v in y]))
    torch.testing.assert_close(got.item(), float(exact), rtol=0, atol=0)  # dyadic numbers: exact in float64
    terms = mse_terms(torch.tensor([0.5, 0.25, 0.375], dtype=torch.float64), torch.tensor([1.0, 0.0, 1.0]))
    torch.testing.assert_close(terms.tolist(), [float((a - b) ** 2) for a, b in zip(y_hat, y)], rtol=0, atol=0)


@pytest.mark.parametrize("sigma1", ["relu", "sigmoid"])
def test_seed_losses_match_mpmath(sigma1):
    """Tasks 2.2 (4)-(5) of the assignment: every term and the mean against a 40-digit evaluation."""
    t = load_problem().tensors()
    y_hat = mlplab.forward(t["X"], sigma1, t["W1"], t["b1"], "sigmoid", t["W2"], t["b2"]).y_hat
    y = [_to_mpf(v) for v in load_problem().y]
    with mpmath.workdps(40):
        ref_hat = _mp_y_hat(sigma1)
        ref_sq = [(a - b) ** 2 for a, b in zip(ref_hat, y)]
        ref_ce = [-(b * mpmath.log(a) + (1 - b) * mpmath.log(1 - a)) for a, b in zip(ref_hat, y)]
    torch.testing.assert_close(mse_terms(y_hat, t["y"]).reshape(-1).tolist(), [float(v) for v in ref_sq],
                               rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(binary_cross_entropy_terms(y_hat, t["y"]).reshape(-1).tolist(),
                               [float(v) for v in ref_ce], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(mse(y_hat, t["y"]).item(), float(sum(ref_sq) / 4), rtol=1e-12, atol=0)
    torch.testing.assert_close(binary_cross_entropy(y_hat, t["y"]).item(), float(sum(ref_ce) / 4), rtol=1e-12, atol=0)


def test_bce_clamp_gives_finite_documented_value_and_gradient():
    p = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    terms = binary_cross_entropy_terms(p, y)
    expected = -mpmath.log(BCE_EPS)
    torch.testing.assert_close(terms.detach()[:2].tolist(), [float(expected)] * 2, rtol=1e-15, atol=0)
    torch.testing.assert_close(terms.detach()[2:].abs().tolist(), [0.0, 0.0], rtol=0, atol=1e-15)
    terms.sum().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()
    # float32 gives the same clamp value
    t32 = binary_cross_entropy_terms(torch.tensor([0.0]), torch.tensor([1.0]))
    torch.testing.assert_close(t32.item(), float(expected), rtol=1e-6, atol=0)


def test_bce_equals_torch_inside_clamp_range_float32():
    p = torch.tensor([1e-9, 1e-3, 0.3, 0.999], dtype=torch.float32)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0])
    torch.testing.assert_close(binary_cross_entropy(p, y), F.binary_cross_entropy(p, y), rtol=1e-6, atol=1e-6)


def test_loss_names_and_bad_input():
    assert get_loss("MSE") is mse and get_loss("binary_cross_entropy") is binary_cross_entropy
    assert mlplab.MSE is mse
    with pytest.raises(MlplabError, match="unknown loss"):
        get_loss("hinge")
    with pytest.raises(MlplabError, match="3 predictions but 2 labels"):
        mse(torch.zeros(3), torch.zeros(2))
    with pytest.raises(MlplabError, match="NaN"):
        binary_cross_entropy(torch.tensor([float("nan")]), torch.tensor([1.0]))
    with pytest.raises(MlplabError, match="eps"):
        binary_cross_entropy(torch.tensor([0.5]), torch.tensor([1.0]), eps=0.7)
