"""Section 2.1 of the assignment: threshold 0.5 on the sigmoid output, t = 0 before it, labels per pair."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlplab.twolayer.activations import activation_pairs
from mlplab.twolayer.decision import (
    THRESHOLD,
    classification_table,
    classify_pairs,
    predict_labels,
    predict_labels_from_logits,
)
from mlplab.twolayer.problem import load_problem


@settings(max_examples=200, deadline=None)
@given(t=st.floats(-50, 50).filter(lambda v: abs(v) >= 1e-12))
def test_threshold_half_on_sigmoid_is_t_zero(t):
    z = torch.tensor([t], dtype=torch.float64)
    assert predict_labels(torch.sigmoid(z)).item() == predict_labels_from_logits(z).item() == int(t >= 0)


def test_boundary_and_rounding():
    assert torch.sigmoid(torch.tensor(0.0, dtype=torch.float64)).item() == THRESHOLD
    assert predict_labels_from_logits(torch.tensor([0.0])).item() == 1  # on the boundary: class 1
    # sigmoid rounds a tiny negative logit to exactly 0.5; the logit test stays exact
    tiny = torch.tensor([-1e-20], dtype=torch.float64)
    assert torch.sigmoid(tiny).item() == 0.5
    assert predict_labels(torch.sigmoid(tiny)).item() == 1 and predict_labels_from_logits(tiny).item() == 0


@pytest.mark.parametrize("sigma1", ["identity", "relu"])
def test_sigmoid_output_labels_match_exact_sign_of_z2(sigma1, exact_seed_z2):
    p = load_problem()
    d = classify_pairs(p.tensors(), [(sigma1, "sigmoid")])[0]
    expected = [int(z >= 0) for z in exact_seed_z2(sigma1)]
    assert d.labels == expected
    assert d.correct == [lab == int(y) for lab, y in zip(expected, p.y)]
    assert d.probabilistic


def test_all_nine_pairs_and_table_formats():
    p = load_problem()
    decisions = classify_pairs(p.tensors())
    assert [(d.sigma1, d.sigma2) for d in decisions] == activation_pairs()
    for d in decisions:
        if not d.probabilistic:  # thresholding the raw output at 0.5
            assert d.labels == [int(v >= 0.5) for v in d.y_hat]
    table = classification_table(decisions, [int(v) for v in p.y])
    for fmt in ("text", "markdown", "latex"):
        assert "relu" in table.render(fmt)
    rows = json.loads(table.to_json())["rows"]
    assert len(rows) == 9 and rows[5]["labels"] == "1 1 0 1" and rows[5]["correct"] == "1/4"
