"""Chain-rule gradients (gradients.py) vs float64 autograd vs central finite differences."""

from __future__ import annotations

from fractions import Fraction

import mpmath
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mlplab
from mlplab.twolayer.activations import activation_pairs
from mlplab.twolayer.gradcheck import FD_STEP, check_all, check_gradients, gradient_table, relative_error, summary_table
from mlplab.twolayer.gradients import activation_derivative, b2_gradient_exact, backward, loss_sensitivity
from mlplab.twolayer.losses import get_loss
from mlplab.twolayer.problem import load_problem

TIGHT = {"rtol": 1e-10, "atol": 1e-12}
NAMES = ("identity", "relu", "sigmoid")


def _autograd(t: dict[str, torch.Tensor], s1: str, s2: str, loss: str) -> dict[str, torch.Tensor]:
    leaves = {k: t[k].clone().requires_grad_(True) for k in ("W1", "b1", "W2", "b2")}
    y_hat = mlplab.forward(t["X"], s1, leaves["W1"], leaves["b1"], s2, leaves["W2"], leaves["b2"]).y_hat
    get_loss(loss)(y_hat, t["y"]).backward()
    return {k: v.grad for k, v in leaves.items()}


@pytest.mark.parametrize("loss", ["mse", "bce"])
@pytest.mark.parametrize("pair", activation_pairs())
def test_chain_rule_equals_autograd_and_finite_differences(pair, loss):
    t = load_problem().tensors()
    g = backward(t["X"], pair[0], t["W1"], t["b1"], pair[1], t["W2"], t["b2"], t["y"], loss).as_dict()
    auto = _autograd(t, pair[0], pair[1], loss)
    for k in g:
        assert g[k].shape == t[k].shape  # a gradient has its parameter's shape
        torch.testing.assert_close(g[k], auto[k], **TIGHT)
    check = check_gradients(t, pair[0], pair[1], loss)
    for e in check.entries:
        torch.testing.assert_close(e.chain, e.autograd, **TIGHT)
        if not e.kink:
            assert relative_error(e.chain, e.finite_diff) < 1e-6, (e.param, e.index, e.chain, e.finite_diff)


def test_seed_relu_kink_is_detected_and_fd_is_invalid_there():
    """Z1[4,1] = 0 exactly in the assignment's problem: W1[2,1], W1[3,1] and b1[1] sit on ReLU's kink."""
    t = load_problem().tensors()
    Z1 = mlplab.forward(t["X"], "relu", t["W1"], t["b1"], "sigmoid", t["W2"], t["b2"]).Z1
    assert Z1[3, 0].item() == 0.0
    check = check_gradients(t, "relu", "sigmoid", "bce")
    kinks = {(e.param, e.index) for e in check.entries if e.kink}
    assert kinks == {("W1", (1, 0)), ("W1", (2, 0)), ("b1", (0, 0))}
    for e in check.entries:
        if e.kink:  # the one-sided slopes differ, so the central quotient is not the (torch) derivative
            assert relative_error(e.chain, e.finite_diff) > 1e-3
    # torch's convention relu'(0) = 0 is what the chain rule uses
    z = torch.tensor([0.0], requires_grad=True)
    torch.relu(z).backward()
    assert z.grad is not None and z.grad.item() == 0.0
    assert activation_derivative("relu", torch.tensor([0.0]), torch.tensor([0.0])).item() == 0.0


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), d=st.integers(1, 4), h=st.integers(1, 3), seed=st.integers(0, 100_000),
       s1=st.sampled_from(NAMES), s2=st.sampled_from(NAMES), loss=st.sampled_from(["mse", "bce"]))
def test_random_problems(n, d, h, seed, s1, s2, loss):
    g = torch.Generator().manual_seed(seed)
    t = {"X": torch.randn(n, d, generator=g, dtype=torch.float64),
         "W1": torch.randn(d, h, generator=g, dtype=torch.float64),
         "b1": torch.randn(1, h, generator=g, dtype=torch.float64),
         "W2": torch.randn(h, 1, generator=g, dtype=torch.float64),
         "b2": torch.randn(1, generator=g, dtype=torch.float64),
         "y": torch.randint(0, 2, (n, 1), generator=g).to(torch.float64)}
    if loss == "bce" and s2 != "sigmoid":
        s2 = "sigmoid"  # BCE needs a probability; other outputs are covered on the assignment's problem
    grads = backward(t["X"], s1, t["W1"], t["b1"], s2, t["W2"], t["b2"], t["y"], loss).as_dict()
    auto = _autograd(t, s1, s2, loss)
    for k in grads:
        torch.testing.assert_close(grads[k], auto[k], **TIGHT)
    for e in check_gradients(t, s1, s2, loss).entries:
        if not e.kink:  # a central difference is good to ~1e-10 absolute here: the floor keeps tiny slopes fair
            assert relative_error(e.chain, e.finite_diff, floor=1e-5) < 1e-5, (e.param, e.index, e.chain,
                                                                               e.finite_diff)


@pytest.mark.parametrize("sigma1", ["identity", "relu"])
def test_b2_closed_form_identity_output_is_exact(sigma1, exact_seed_z2):
    """Task 8-9 of the assignment: dL_MSE/db2 = (2/N) sum (y_hat - y) with sigma2 = identity, in Fractions."""
    p = load_problem()
    y_hat = exact_seed_z2(sigma1)  # sigma2 = identity: y_hat = z2
    expected = 2 * sum((a - b for a, b in zip(y_hat, p.y)), Fraction(0)) / p.n
    assert b2_gradient_exact(p, sigma1, "identity") == expected
    t = p.tensors()
    chain = backward(t["X"], sigma1, t["W1"], t["b1"], "identity", t["W2"], t["b2"], t["y"], "mse").b2
    torch.testing.assert_close(chain.item(), float(expected), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("sigma1", NAMES)
@pytest.mark.parametrize("sigma2", ["identity", "sigmoid"])
def test_b2_closed_form_matches_autograd(sigma1, sigma2):
    p = load_problem()
    exact = b2_gradient_exact(p, sigma1, sigma2)
    auto = _autograd(p.tensors(), sigma1, sigma2, "mse")["b2"]
    torch.testing.assert_close(float(exact), auto.item(), rtol=1e-12, atol=1e-15)


def test_sensitivity_matches_autograd():
    for y in (1.0, 0.0):
        for p in (0.49, 0.51):
            s = loss_sensitivity(p, y)
            for loss in ("mse", "bce"):
                z2 = torch.logit(torch.tensor([[p]], dtype=torch.float64)).requires_grad_(True)
                y_hat = torch.sigmoid(z2)
                y_hat.retain_grad()
                value = get_loss(loss)(y_hat, torch.tensor([[y]], dtype=torch.float64))
                value.backward()
                assert y_hat.grad is not None and z2.grad is not None
                torch.testing.assert_close(s[loss], value.item(), rtol=1e-12, atol=0)
                torch.testing.assert_close(s[f"{loss}_dy_hat"], y_hat.grad.item(), rtol=1e-10, atol=1e-14)
                torch.testing.assert_close(s[f"{loss}_dz2"], z2.grad.item(), rtol=1e-10, atol=1e-14)
    # BCE's gradient w.r.t. z2 near the boundary is about twice MSE's: (y_hat - y) vs 2 (y_hat - y) y_hat (1 - y_hat)
    s = loss_sensitivity(0.49, 1.0)
    assert abs(s["bce_dz2"]) > 1.9 * abs(s["mse_dz2"])
    with mpmath.workdps(30):
        torch.testing.assert_close(s["bce"], float(-mpmath.log(mpmath.mpf("0.49"))), rtol=1e-14, atol=0)


def test_tables_render():
    checks = check_all(load_problem().tensors(), [("relu", "sigmoid")], ["bce"], FD_STEP)
    text = gradient_table(checks[0]).to_text()
    assert "kink" in text and "W1[2,1]" in text
    assert "relu" in summary_table(checks).to_markdown()
