"""Stopping rules and the onset of overfitting on constructed curves whose right answer is worked out by hand."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from mlplab.mnist.best_epoch import (
    analyse_curve,
    apply_rule,
    centred_mean,
    generalization_loss,
    overfitting_onset,
    stop_epoch,
    trailing_mean,
    training_progress,
)
from mlplab.mnist.config import StoppingConfig

VAL = [1.0, 0.8, 0.7, 0.72, 0.69, 0.75, 0.80]


def test_gl_by_hand():
    # GL(t) = 100 (E/E_opt - 1): epoch 4 → 100(0.72/0.70 - 1) = 2.86; epoch 6 → 100(0.75/0.69 - 1) = 8.70.
    expected = [Fraction(0), 0, 0, 100 * (Fraction("0.72") / Fraction("0.7") - 1), 0,
                100 * (Fraction("0.75") / Fraction("0.69") - 1), 100 * (Fraction("0.80") / Fraction("0.69") - 1)]
    for got, want in zip(generalization_loss(VAL), expected):
        assert got == pytest.approx(float(want), abs=1e-9)
    assert stop_epoch(VAL, None, rule="gl", gl_alpha=5.0) == 6  # first GL above 5
    assert stop_epoch(VAL, None, rule="gl", gl_alpha=2.0) == 4
    assert apply_rule(VAL, None, "gl", StoppingConfig(gl_alpha=5.0)).best_epoch == 5


def test_smoothed_by_hand():
    # Trailing means of 3: 1, .9, .8333, .74, .70333 (epoch 5, the minimum), .72, .74667.
    S = trailing_mean(VAL, 3)
    assert S[4] == pytest.approx((0.7 + 0.72 + 0.69) / 3) and min(S) == S[4]
    assert stop_epoch(VAL, None, rule="smoothed", window=3, patience=2) == 7  # 2 epochs after epoch 5
    assert stop_epoch(VAL, None, rule="smoothed", window=3, patience=3) is None
    result = apply_rule(VAL, None, "smoothed", StoppingConfig(window=3, patience=2))
    assert (result.stop_epoch, result.best_epoch, result.best_loss) == (7, 5, 0.69)


def test_single_noise_spike_stops_gl_but_not_smoothed():
    curve = [1.0, 0.8, 0.7, 0.78, 0.66, 0.64, 0.63, 0.62, 0.61, 0.60, 0.59, 0.58]  # still improving
    assert stop_epoch(curve, None, rule="gl", gl_alpha=5.0) == 4  # 0.78/0.70 = +11 %
    assert stop_epoch(curve, None, rule="smoothed", window=3, patience=3) is None


def test_pq_by_hand():
    train = [1.0, 0.9, 0.5, 0.45, 0.4, 0.39]
    val = [1.0, 0.8, 0.7, 0.75, 0.8, 0.9]
    # Strips of k = 2 end at epochs 2, 4, 6. Exact GL/P_2 there: 0, 0.129, 2.23.
    def quotient(t):
        strip = [Fraction(str(v)) for v in train[t - 2:t]]
        progress = 1000 * (sum(strip) / (2 * min(strip)) - 1)
        best = min(Fraction(str(v)) for v in val[:t])
        return 100 * (Fraction(str(val[t - 1])) / best - 1) / progress
    assert [float(quotient(t)) for t in (2, 4, 6)] == pytest.approx([0.0, 0.12857142857, 2.2285714286])
    assert training_progress(train, 4, 2) == pytest.approx(float(1000 * (Fraction("0.95") / Fraction("0.9") - 1)))
    assert stop_epoch(val, train, rule="pq", pq_alpha=0.5, strip_length=2) == 6
    assert stop_epoch(val, train, rule="pq", pq_alpha=0.1, strip_length=2) == 4
    with pytest.raises(ValueError):
        stop_epoch(val, None, rule="pq")


def test_up_by_hand():
    val = [1.0, 0.8, 0.6, 0.7, 0.65, 0.72, 0.8, 0.9]
    # Strip ends 2, 4, 6, 8: E(4)=0.70 < E(2)=0.80; E(6)=0.72 > 0.70 (1 rise); E(8)=0.90 > 0.72 (2 rises).
    assert stop_epoch(val, None, rule="up", up_strips=1, strip_length=2) == 6
    assert stop_epoch(val, None, rule="up", up_strips=2, strip_length=2) == 8
    assert stop_epoch(val, None, rule="up", up_strips=3, strip_length=2) is None


def _noisy_u_curve():
    # 0.1 + 0.001 (t - 30)^2, noise -0.02 on even and +0.02 on odd epochs, and one deep dip at epoch 45.
    curve = [0.1 + 0.001 * (t - 30) ** 2 + (-0.02 if t % 2 == 0 else 0.02) for t in range(1, 81)]
    curve[44] -= 0.3
    return curve


def test_onset_from_centred_mean_ignores_a_lucky_dip():
    curve = _noisy_u_curve()
    assert min(range(80), key=lambda i: curve[i]) + 1 == 45  # the raw minimum is the dip
    # Centred means of 5: at 30, base mean 0.102 and noise (3·-0.02 + 2·0.02)/5 = -0.004 → 0.098; at 29 and 31,
    # 0.103 + 0.004 = 0.107; at 28 and 32, 0.106 - 0.004 = 0.102; the dip pulls epoch 45's mean only to ≈ 0.27.
    smooth = centred_mean(curve, 5)
    assert smooth[29] == pytest.approx(0.098) and smooth[28] == pytest.approx(0.107)
    assert overfitting_onset(curve, window=5, patience=10) == 30
    out = analyse_curve(curve, None, StoppingConfig(window=5, patience=10))
    assert out["onset_epoch"] == 30 and out["best_epoch"] == 45 and "pq" not in out["rules"]


def test_no_onset_on_a_decreasing_curve():
    curve = [1.0 / t for t in range(1, 31)]
    train = [1.2 / t for t in range(1, 31)]
    out = analyse_curve(curve, train, StoppingConfig())
    assert out["onset_epoch"] is None and out["best_epoch"] == 30
    assert all(rule["stop_epoch"] is None for rule in out["rules"].values())


def test_minimum_too_close_to_the_end_is_not_an_onset():
    curve = [1.0, 0.8, 0.6, 0.5, 0.45, 0.44, 0.46, 0.5]
    assert overfitting_onset(curve, window=1, patience=3) is None
    assert overfitting_onset(curve, window=1, patience=2) == 6


def test_non_finite_losses_count_as_worst():
    out = analyse_curve([0.5, 0.4, math.nan, math.inf], [1.0, 0.9, math.nan, math.inf], StoppingConfig())
    assert out["best_epoch"] == 2 and out["best_loss"] == 0.4
