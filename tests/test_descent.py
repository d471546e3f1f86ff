"""Gradient descent (the assignment's section 2.4) and the verdict rule on constructed and real curves."""

from __future__ import annotations

import math

import pytest
import torch

from mlplab.fsio import save_figure
from mlplab.twolayer.descent import VerdictRule, descent_curves, descent_figure, gradient_descent_run, verdict
from mlplab.twolayer.gradients import backward
from mlplab.twolayer.problem import load_problem


def test_small_step_reduces_the_loss_every_epoch():
    t = load_problem().tensors()
    run = gradient_descent_run(t, ("relu", "sigmoid"), "bce", 0.01, 60, dtype=torch.float64)
    assert len(run.losses) == 60
    assert all(b < a for a, b in zip(run.losses, run.losses[1:]))
    assert run.verdict == "converging"


def test_first_step_is_the_chain_rule_step():
    """After one epoch the recorded loss is the loss at theta - eta * grad (grad from gradients.py)."""
    t = load_problem().tensors()
    eta = 0.01
    run = gradient_descent_run(t, ("sigmoid", "sigmoid"), "mse", eta, 2, dtype=torch.float64)
    g = backward(t["X"], "sigmoid", t["W1"], t["b1"], "sigmoid", t["W2"], t["b2"], t["y"], "mse")
    from mlplab import forward, mse

    y_hat = forward(t["X"], "sigmoid", t["W1"] - eta * g.W1, t["b1"] - eta * g.b1, "sigmoid",
                    t["W2"] - eta * g.W2, t["b2"] - eta * g.b2).y_hat
    torch.testing.assert_close(run.losses[1], mse(y_hat, t["y"]).item(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("curve,expected", [
    ([1.0 / (1 + 0.1 * k) for k in range(100)], "converging"),
    ([0.7] * 100, "flat"),
    ([0.7 + 1e-6 * (k % 2) for k in range(100)], "flat"),
    ([1.0 - 0.004 * k + 0.05 * (k % 2) for k in range(100)], "oscillating"),
    ([1.0, 2.0, float("nan")], "diverging"),
    ([1.0, 3.0, 9.0, 27.0], "diverging"),
    ([1.0, float("inf")], "diverging"),
    # drop, then float32 rounding jitter on a plateau: still converging, not oscillating
    ([1.0, 0.5, *[0.4 + 1.2e-7 * (k % 2) for k in range(200)]], "converging"),
])
def test_verdicts_on_constructed_curves(curve, expected):
    assert verdict(curve)[0] == expected


def test_verdict_thresholds_are_used():
    curve = [1.0, 0.9995]
    assert verdict(curve)[0] == "flat"
    assert verdict(curve, VerdictRule(flat_tol=1e-4))[0] == "converging"


def test_large_step_diverges_and_stops_on_nan():
    t = load_problem().tensors()
    run = gradient_descent_run(t, ("identity", "identity"), "mse", 10.0, 50)
    assert run.verdict == "diverging"
    assert run.stopped_at is not None and len(run.losses) == run.stopped_at + 1 < 50
    assert math.isnan(run.losses[-1]) or math.isinf(run.losses[-1])


def test_curves_and_figure(tmp_path):
    t = load_problem().tensors()
    runs = descent_curves(t, ("identity", "identity"), "mse", [0.01, 10.0], 20)
    assert [r.step_size for r in runs] == [0.01, 10.0]
    assert runs[0].verdict == "converging" and runs[1].verdict == "diverging"
    fig = descent_figure(runs, "test")
    assert fig.axes[0].get_yscale() == "log"  # the losses span far more than a factor 10
    paths = save_figure(fig, tmp_path, "curves")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
    d = runs[1].to_dict()
    assert d["verdict"] == "diverging" and d["stopped_at"] is not None


def test_large_step_on_relu_sigmoid_is_a_collapse_not_convergence():
    """At eta = 10 both losses end with every ReLU unit dead and one prediction for all samples: the BCE curve
    is flat at 1.044 with b2 jumping between about +-1.78, the MSE curve settles at 0.25 by predicting 0.5."""
    t = load_problem().tensors()
    bce = gradient_descent_run(t, ("relu", "sigmoid"), "bce", 10.0, 1000)
    mse = gradient_descent_run(t, ("relu", "sigmoid"), "mse", 10.0, 1000)
    for run in (bce, mse):
        assert run.verdict == "collapsed" and run.state is not None
        assert run.state.dead_units == run.state.hidden_units == 2 and run.state.constant_output
        assert run.state.accuracy == 0.5  # one label for all four samples, two of each class
    assert bce.state is not None and bce.state.b2_cycle is not None
    assert abs(bce.state.b2_cycle[0] + bce.state.b2_cycle[1]) < 1e-3 and 1.7 < abs(bce.state.b2_cycle[0]) < 1.9
    assert bce.losses[-1] == pytest.approx(1.0444, abs=1e-4) and "b2 alternates" in bce.reason
    assert mse.losses[-1] == pytest.approx(0.25, abs=1e-6)
    small = gradient_descent_run(t, ("relu", "sigmoid"), "bce", 0.01, 1000)
    assert small.verdict == "converging" and small.state is not None and not small.state.collapsed
    assert small.state.accuracy == 0.75 and small.to_dict()["accuracy"] == 0.75


@pytest.mark.parametrize("trace,expected", [
    ([0.0] + [1.5, -1.5] * 6, (1.5, -1.5)),
    ([2.0] * 12, None),                      # a fixed point is not a cycle
    ([1.0 / (k + 1) for k in range(12)], None),
    ([1.0, -1.0, 1.0], None),                # too short to tell
])
def test_two_cycle(trace, expected):
    from mlplab.twolayer.descent import two_cycle

    assert two_cycle(trace) == expected


def test_collapse_sees_dead_units_and_constant_output():
    from mlplab.twolayer.descent import collapse

    t = load_problem().tensors()
    alive = collapse(t, ("relu", "sigmoid"), {k: t[k] for k in ("W1", "b1", "W2", "b2")})
    assert alive.dead_units == 0 and not alive.constant_output and alive.accuracy == 0.25
    one_dead = {**{k: t[k] for k in ("W1", "b1", "W2", "b2")}, "b1": torch.tensor([[0.5, -10.0]])}
    c = collapse(t, ("relu", "sigmoid"), one_dead)
    assert c.dead_units == 1 and not c.collapsed
