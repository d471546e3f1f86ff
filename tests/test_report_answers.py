"""The report's answer rules, on constructed results whose right answer is known, and on the assignment's problem
against an independent computation."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
import torch

from mlplab.report import answers_backward as ab
from mlplab.report import answers_forward as af
from mlplab.report import answers_mnist as am
from mlplab.twolayer.problem import load_problem


def _rows(test: list[float], train: list[float] | None = None) -> list[dict]:
    train = train or [1.0 / (k + 1) for k in range(len(test))]
    return [{"epoch": k + 1, "train_loss": tr, "test_loss": te} for k, (tr, te) in enumerate(zip(train, test))]


def _summary(name_acc: float, best_loss: float, **extra) -> dict:
    return {"test_accuracy": name_acc, "best_test_loss": best_loss, "test_loss": best_loss, "final_train_loss": 0.1,
            "epochs_run": 100, "best_epoch": 10, "divergent": False, **extra}


# ------------------------------------------------------------------------------------------ section 3 rules


def test_overfitting_named_at_its_onset_epoch():
    test = [1.0, 0.5, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85]
    s = {"best_epoch": 3, "onset_epoch": 3, "epochs_run": len(test)}
    text = am.overfitting_answer(s, _rows(test), asked_epochs=12)
    assert text.startswith("Overfitting begins at epoch 3") and "0.4000 at epoch 3" in text
    assert "reduced run" not in text


def test_flat_curve_is_not_called_overfitting():
    test = [0.5] * 10
    s = {"best_epoch": 1, "onset_epoch": None, "epochs_run": 10}
    text = am.overfitting_answer(s, _rows(test), asked_epochs=100)
    assert text.startswith("No overfitting is detected") and "reduced run of 10 epochs" in text


def test_a_late_rise_that_is_not_sustained_is_named_as_such():
    test = [1.0, 0.5, 0.4, 0.42]
    text = am.overfitting_answer({"best_epoch": 3, "onset_epoch": None, "epochs_run": 4}, _rows(test), 4)
    assert "not sustained" in text and "0.4000" in text


def test_noise_level_reads_jitter_not_trend():
    assert am.noise_level([1.0, 0.8, 0.6, 0.4]) == pytest.approx(0.0, abs=1e-12)
    assert am.noise_level([0.5, 0.6, 0.5, 0.6, 0.5, 0.6]) == pytest.approx(0.1)
    assert am.noise_level([0.5, 0.6]) is None


def test_best_runs_excludes_divergent_and_reports_ties():
    s = {"a": _summary(0.97, 0.10), "b": _summary(0.97, 0.12), "c": _summary(0.99, 0.01, divergent=True)}
    assert am.best_runs(s) == (["a", "b"], ["a"])
    assert am.best_runs({"c": s["c"]}) == ([], [])


def test_batch_answer_gives_updates_and_splits_accuracy_from_loss():
    runs = (("b6", "B=6", 6), ("b64", "B=64", 64), ("b6400", "B=6400", 6400))
    s = {"b6": _summary(0.981, 0.070), "b64": _summary(0.985, 0.065), "b6400": _summary(0.960, 0.130)}
    text = am.batch_answer(runs, s, 60000)
    assert "10{,}000 updates" in text and "938 updates" in text and "10 updates" in text
    assert "B=64 gives both the best test accuracy and the lowest test loss" in text
    s["b6"] = _summary(0.990, 0.080)
    text = am.batch_answer(runs, s, 60000)
    assert "B=6 gives the best test accuracy and B=64 the lowest test loss" in text
    assert am.batch_answer(runs, {}, 60000).startswith("None of the batch-size runs")


def test_lr_answer_names_the_divergent_run():
    runs = (("lr1", "lr=1", 1.0), ("base", "lr=0.001", 1e-3), ("small", "lr=1e-5", 1e-5))
    s = {"lr1": _summary(0.10, math.nan, divergent=True, divergence={"epoch": 1, "batch": 2, "loss": 2.6e7}),
         "base": _summary(0.98, 0.07), "small": _summary(0.90, 0.30)}
    text = am.lr_answer(runs, s)
    assert "lr=1 diverged (batch loss $2.60\\times 10^{7}$ in epoch 1" in text
    assert "lr=0.001 gives both the best test accuracy and the lowest test loss" in text
    everything_diverged = {"lr1": s["lr1"]}
    assert am.lr_answer(runs, everything_diverged).endswith("Every run diverged.")


def test_capacity_and_dropout_answers_follow_the_numbers():
    base = {"test_loss": 0.07, "final_train_loss": 0.01, "test_accuracy": 0.985}
    small = {"test_loss": 0.15, "final_train_loss": 0.12, "test_accuracy": 0.955}
    text = am.capacity_answer(base, small, (567434, 12730))
    assert "12{,}730 parameters against 567{,}434" in text and "overfits less" in text
    with_d = {"test_loss": 0.16, "final_train_loss": 0.20, "test_accuracy": 0.950}
    without = {"test_loss": 0.14, "final_train_loss": 0.10, "test_accuracy": 0.957}
    assert "Removing dropout helps" in am.dropout_answer(with_d, without)
    assert "even though its gap grows" in am.dropout_answer(with_d, without)  # gap 0.04 against -0.04
    tight = {**without, "test_loss": 0.05}  # gap -0.05: no more overfitting than with dropout
    assert "its gap does not grow" in am.dropout_answer(with_d, tight)
    assert "Dropout helps here" in am.dropout_answer(without, with_d)
    assert "missing" in am.dropout_answer({}, without)


def test_params_answer_equals_a_count_of_torch_parameters():
    for sizes in ([784, 512, 256, 128, 10], [784, 16, 10]):
        layers = [torch.nn.Linear(a, b) for a, b in itertools.pairwise(sizes)]
        total = sum(p.numel() for layer in layers for p in layer.parameters())
        assert f"{total:,}".replace(",", "{,}") + "$ parameters" in am.params_answer(sizes)


def test_plural_and_updates():
    assert am.plural(1, "epoch") == "1 epoch" and am.plural(2, "epoch") == "2 epochs"
    assert [am.updates_per_epoch(60000, b) for b in (6, 64, 6400)] == [10000, 938, 10]


# ------------------------------------------------------------------------------------------ sections 1 and 2


def test_bce_and_mse_steps_on_the_assignment_match_float64_torch():
    p = load_problem().tensors()
    from mlplab.twolayer.forward import forward

    y_hat = forward(p["X"], "relu", p["W1"], p["b1"], "sigmoid", p["W2"], p["b2"]).y_hat.flatten()
    y = p["y"].flatten()
    bce = torch.nn.functional.binary_cross_entropy(y_hat, y).item()
    mse = torch.nn.functional.mse_loss(y_hat, y).item()
    assert sum(ab.bce_terms(y_hat.tolist(), y.tolist())) / 4 == pytest.approx(bce, rel=1e-12)
    assert f"= {bce:.4f} \\approx {bce:.2f}$" in ab.bce_steps(y_hat.tolist(), y.tolist())
    assert f"= {mse:.4f} \\approx {mse:.2f}$" in ab.mse_steps(y_hat.tolist(), y.tolist())


def test_compare_answer_names_x3_and_the_ratio():
    p = load_problem().tensors()
    from mlplab.twolayer.forward import forward

    y_hat = forward(p["X"], "relu", p["W1"], p["b1"], "sigmoid", p["W2"], p["b2"]).y_hat.flatten().tolist()
    y = p["y"].flatten().tolist()
    text = ab.compare_answer({("relu", "sigmoid"): y_hat}, y)
    bce3, mse3 = -math.log(y_hat[2]), (y_hat[2] - 1) ** 2
    assert "$\\mathbf{x}_3$ ($y = 1$" in text and f"{bce3:.2f} against an MSE term of {mse3:.2f}" in text
    assert f"{bce3 / mse3:.1f} times as large" in text and "misclassified" in text


def test_boundary_answer_derivatives():
    text = ab.boundary_answer()
    assert "2(\\hat y - 1) = -1.02" in text and "-1/\\hat y = -2.04" in text and "-1/\\hat y = -1.96" in text
    ratio = (math.log(0.51) - math.log(0.49)) / ((0.51 - 1) ** 2 - (0.49 - 1) ** 2)
    assert f"{abs(ratio):.1f} times as much" in text


def test_linear_collapse_equals_the_identity_network_exactly():
    prob = load_problem()
    w, c = af.linear_collapse(prob.W1, prob.b1, prob.w2, Fraction(prob.b2))
    for x in prob.X:
        z1 = [sum((xk * prob.W1[k][j] for k, xk in enumerate(x)), Fraction(0)) + prob.b1[j] for j in range(prob.h)]
        z2 = sum((a * wj for a, wj in zip(z1, prob.w2)), Fraction(0)) + prob.b2
        assert z2 == sum((xk * wk for xk, wk in zip(x, w)), Fraction(0)) + c


def test_num_rounds_half_away_from_zero():
    assert [af.num(v) for v in (0.125, -0.125, 0.135, -0.004)] == ["0.13", "-0.13", "0.14", "0.00"]


def test_descent_answer_calls_a_collapse_a_collapse():
    collapsed = {"step_size": 10.0, "first_loss": 1.679, "final_loss": 1.044, "epochs_run": 1000, "accuracy": 0.5,
                 "verdict": "collapsed", "hidden_units": 2, "dead_units": 2, "constant_output": True,
                 "b2_cycle": [-1.776, 1.776], "reason": "... (loss curve: oscillating)"}
    text = ab.descent_answer([collapsed], "bce")
    assert "not convergence but a collapse" in text and "all 2 ReLU units are dead" in text
    assert "-1.78 and 1.78" in text and "50\\%" in text and "(oscillating)" in text
    good = {**collapsed, "step_size": 0.01, "final_loss": 0.656, "verdict": "converging", "accuracy": 0.75}
    assert "smooth and decreases" in ab.descent_answer([good], "bce")


def test_stream_answer_arithmetic():
    text = af.stream_answer({"rows_per_s": 1e8, "rows": 10**6, "chunk_rows": 125000, "shards": 1}, d=3)
    assert "$12$~TB" in text and "about $2.8$ hours" in text and "$125{,}000$" in text  # 1e12 / 1e8 s = 2.78 h
    no_run = af.stream_answer(None, 3)
    assert "chunks" in no_run and "arithmetic" not in no_run


def test_why_follows_the_numbers_when_the_slow_run_wins_on_loss():
    """After 100 epochs the default lr overfits (test loss 0.10 above its minimum) while lr = 1e-5 is still
    improving: the answer must say so rather than call the small step too slow."""
    runs = (("lr1", "lr=1", 1.0), ("base", "lr=0.001", 1e-3), ("small", "lr=1e-5", 1e-5))
    s = {"lr1": _summary(0.11, math.nan, divergent=True, divergence={"epoch": 1, "batch": 2, "loss": 2.6e7}),
         "base": {**_summary(0.985, 0.060), "test_loss": 0.163, "best_epoch": 8},
         "small": {**_summary(0.983, 0.057), "test_loss": 0.057, "best_epoch": 100}}
    text = am.lr_answer(runs, s)
    assert "lr=0.001 gives the best test accuracy and lr=1e-5 the lowest test loss" in text
    assert "For lr=1e-5: its small steps move slowly and it was still improving at the last epoch" in text
    assert "0.1030 for lr=0.001 (overfitting" in text
