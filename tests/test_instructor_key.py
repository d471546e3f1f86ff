"""The answer key against independent references: Fractions, 80-digit mpmath, float64 torch, mlplab.twolayer.descent;
the rounding rule at the half-points; the batched descent engine against torch autograd loops."""

from __future__ import annotations

from fractions import Fraction

import mpmath
import pytest
import torch
import torch.nn.functional as F

from mlplab.instructor import agrees, answer_key, make_variant, round2
from mlplab.instructor.batch_descent import DescentSpec, final_losses
from mlplab.instructor.key import describe
from mlplab.twolayer.descent import gradient_descent_run
from mlplab.twolayer.errata import seed_binary_cross_entropy
from mlplab.twolayer.forward import forward
from mlplab.twolayer.problem import load_problem
from mlplab.twolayer.simple_mlp import SimpleMLP

PIECEWISE = ("identity", "relu")


def _ref_forward(p, s1, s2):
    """Exact forward pass for identity/ReLU, written independently of mlplab."""
    def act(name, t):
        return t if name == "identity" else max(t, Fraction(0))

    Z1 = [[sum(x[k] * p.W1[k][j] for k in range(p.d)) + p.b1[j] for j in range(p.h)] for x in p.X]
    A1 = [[act(s1, z) for z in row] for row in Z1]
    y_hat = [act(s2, sum(a * w for a, w in zip(row, p.w2)) + p.b2) for row in A1]
    return A1, y_hat


def _problems():
    return [load_problem(), make_variant(11, 0).problem, make_variant(11, 1).problem]


@pytest.mark.parametrize("problem", _problems(), ids=["assignment", "variant-11-0", "variant-11-1"])
def test_piecewise_linear_items_equal_exact_rational_arithmetic(problem):
    key = answer_key(problem).values
    for s1 in PIECEWISE:
        for s2 in PIECEWISE:
            A1, y_hat = _ref_forward(problem, s1, s2)
            assert key[f"table2.{s1}-{s2}.a1"] == A1
            assert key[f"table2.{s1}-{s2}.y_hat"] == y_hat
            terms = [(p - t) ** 2 for p, t in zip(y_hat, problem.y)]
            assert key[f"loss.mse.{s1}-{s2}.terms"] == terms
            assert key[f"loss.mse.{s1}-{s2}"] == sum(terms) / problem.n
            assert key[f"classes.{s1}-{s2}"] == [int(v >= Fraction(1, 2)) for v in y_hat]
    _, y_hat = _ref_forward(problem, "relu", "identity")
    assert key["grad.mse_b2.identity"] == Fraction(2, problem.n) * sum(p - t for p, t in zip(y_hat, problem.y))


@pytest.mark.parametrize("problem", _problems(), ids=["assignment", "variant-11-0", "variant-11-1"])
def test_sigmoid_items_equal_80_digit_mpmath_and_float64_torch(problem):
    key = answer_key(problem).values
    t = problem.tensors()
    with mpmath.workdps(80):
        def sig(q):
            return 1 / (1 + mpmath.exp(-q))

        def mp(q):
            return mpmath.mpf(q.numerator) / q.denominator

        for s1 in ("identity", "relu", "sigmoid"):
            act = {"identity": lambda v: v, "relu": lambda v: max(v, 0), "sigmoid": sig}[s1]
            A1 = [[act(sum(mp(x[k]) * mp(problem.W1[k][j]) for k in range(problem.d)) + mp(problem.b1[j]))
                   for j in range(problem.h)] for x in problem.X]
            z2 = [sum(a * mp(w) for a, w in zip(row, problem.w2)) + mp(problem.b2) for row in A1]
            p = [sig(z) for z in z2]
            bce = [-(mpmath.log(q) if y == 1 else mpmath.log(1 - q)) for q, y in zip(p, problem.y)]
            for got, want in zip(key[f"table2.{s1}-sigmoid.y_hat"], p):
                assert abs(mp(got) - want) < mpmath.mpf(10) ** -40
            assert abs(mp(key[f"loss.bce.{s1}-sigmoid"]) - sum(bce) / len(bce)) < mpmath.mpf(10) ** -40
    # and float64 torch through the package's own forward and torch's losses
    for s1 in ("identity", "relu", "sigmoid"):
        out = forward(t["X"], s1, t["W1"], t["b1"], "sigmoid", t["W2"], t["b2"])
        torch.testing.assert_close(float(key[f"loss.bce.{s1}-sigmoid"]),
                                   F.binary_cross_entropy(out.y_hat, t["y"]).item(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(float(key[f"loss.mse.{s1}-sigmoid"]), F.mse_loss(out.y_hat, t["y"]).item(),
                                   rtol=1e-12, atol=1e-12)
    y_hat = forward(t["X"], "relu", t["W1"], t["b1"], "sigmoid", t["W2"], t["b2"]).y_hat
    b2_grad = (2 * (y_hat - t["y"]) * y_hat * (1 - y_hat)).mean().item()
    torch.testing.assert_close(float(key["grad.mse_b2.sigmoid"]), b2_grad, rtol=1e-12, atol=1e-12)


def test_key_of_the_assignment_matches_its_printed_table2_column():
    rounded = answer_key(load_problem()).rounded()
    # the assignment prints the third input's outputs: -4.10, 0.00, 0.02, -4.10, 0.00, 0.02, -1.25, 0.00, 0.22
    third = [rounded[f"table2.{a}-{b}.y_hat"][2] for a in ("identity", "relu", "sigmoid")
             for b in ("identity", "relu", "sigmoid")]
    assert third == [-4.1, 0.0, 0.02, -4.1, 0.0, 0.02, -1.25, 0.0, 0.22]
    assert len(rounded) == 57 and all(describe(n) != n for n in rounded)


@pytest.mark.parametrize("text,expected", [
    ("0.125", "0.13"), ("-0.125", "-0.13"), ("0.135", "0.14"), ("-0.135", "-0.14"), ("2.675", "2.68"),
    ("1.005", "1.01"), ("-0.005", "-0.01"), ("0.004999", "0"), ("0.1249999", "0.12"), ("7.625", "7.63"),
])
def test_round2_is_half_away_from_zero_exactly(text, expected):
    assert round2(Fraction(text)) == Fraction(expected)


@pytest.mark.parametrize("given,exact,right", [
    ("0.13", "0.135", True),    # key 0.14; a student who rounds half down is within 0.01
    ("0.145", "0.135", True),   # exactly 0.01 away counts as right
    ("0.1451", "0.135", False),
    ("0.1249", "0.135", False),
    ("0.145", "0.1549", True),  # rounds to the key's 0.15 (half away from zero)
    ("0.165", "0.1549", False),  # rounds to 0.17 and is 0.0101 away
    ("-0.145", "-0.1549", True),
    ("-0.165", "-0.1549", False),
])
def test_grading_rule_at_the_half_points(given, exact, right):
    assert agrees(Fraction(given), Fraction(exact)) is right


def test_descent_items_equal_mlplab_descent_in_float64():
    problem = load_problem()
    key = answer_key(problem).values
    for loss, eta in (("bce", 0.01), ("mse", 10.0)):
        run = gradient_descent_run(problem.tensors(), ("relu", "sigmoid"), loss, eta, 1000, dtype=torch.float64)
        torch.testing.assert_close(float(key[f"descent.{loss}.eta-{eta:g}.final_loss"]), run.losses[-1],
                                   rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("pair,loss,eta", [(("sigmoid", "sigmoid"), "mse", 0.5), (("identity", "sigmoid"), "bce", 1.0),
                                           (("relu", "relu"), "mse", 0.05)])
def test_batched_engine_equals_gradient_descent_run(pair, loss, eta):
    problem = make_variant(3, 0).problem
    run = gradient_descent_run(problem.tensors(), pair, loss, eta, 150, dtype=torch.float64)
    got = final_losses([DescentSpec.of(problem, *pair, loss, eta, epochs=150)])[0]
    torch.testing.assert_close(got, run.losses[-1], rtol=1e-9, atol=1e-12)


def _torch_loop(problem, loss_fn, eta, epochs, zero_grad):
    t = problem.tensors()
    model = SimpleMLP(problem.d, problem.h, 1, "relu", "sigmoid", dtype=torch.float64)
    model.set_weights(t["W1"], t["b1"], t["W2"], t["b2"])
    last = float("nan")
    for _ in range(epochs):
        if zero_grad:
            model.zero_grad()
        value = loss_fn(model(t["X"]), t["y"])
        value.backward()
        last = value.item()
        with torch.no_grad():
            for param in model.parameters():
                param -= eta * param.grad
    return last


def test_batched_engine_double_sigmoid_and_accumulated_gradients_equal_torch_loops():
    problem = load_problem()
    logits = final_losses([DescentSpec.of(problem, "relu", "sigmoid", "bce-logits", 0.5, epochs=120)])[0]
    torch.testing.assert_close(logits, _torch_loop(problem, seed_binary_cross_entropy, 0.5, 120, True),
                               rtol=1e-9, atol=1e-12)
    acc = final_losses([DescentSpec.of(problem, "relu", "sigmoid", "mse", 0.01, epochs=120, accumulate=True)])[0]
    torch.testing.assert_close(acc, _torch_loop(problem, F.mse_loss, 0.01, 120, False), rtol=1e-9, atol=1e-12)
