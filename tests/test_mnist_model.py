"""The MNIST MLP: structure, parameter counts against the closed form, and the hand-written backward pass
against float64 autograd."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlplab.mnist.backprop import ManualBackprop
from mlplab.mnist.model import MLP, closed_form_parameters, count_parameters, layer_parameters, model_layer_parameters


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch thread."""


@pytest.mark.parametrize("hidden, expected", [([512, 256, 128], 567_434), ([16], 12_730)])
def test_parameter_count_matches_closed_form_and_issue(hidden, expected):
    model = MLP(784, hidden, 10, 0.2)
    assert count_parameters(model) == expected  # the values stated in the issue
    assert closed_form_parameters(784, hidden, 10) == expected
    assert model_layer_parameters(model) == [row["parameters"] for row in layer_parameters(784, hidden, 10)]


def test_layer_rows_by_hand():
    rows = layer_parameters(784, [512, 256, 128], 10)
    assert [(r["inputs"], r["outputs"], r["weights"], r["biases"]) for r in rows] == [
        (784, 512, 401_408, 512), (512, 256, 131_072, 256), (256, 128, 32_768, 128), (128, 10, 1_280, 10)]


def test_structure_and_softmax_option():
    model = MLP(784, [16, 8], 10, 0.2)
    kinds = [type(m) for m in model.layers]
    assert kinds == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    soft = MLP(784, [16, 8], 10, 0.2, softmax_output=True)
    assert type(soft.layers[-1]) is nn.Softmax
    soft.load_state_dict(model.state_dict())
    model.eval()
    soft.eval()
    X = torch.randn(5, 784)
    logits, probs = model(X), soft(X)
    torch.testing.assert_close(probs.sum(1), torch.ones(5), rtol=0, atol=1e-6)
    torch.testing.assert_close(probs, torch.softmax(logits, 1), rtol=0, atol=0)
    assert torch.equal(probs.argmax(1), logits.argmax(1))


def _reference_grads(model, X, y, masks):
    """Float64 autograd on the same functional network with the same dropout masks."""
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    A = X
    for k in range(len(params) // 2 - 1):
        A = torch.relu(A @ params[2 * k].T + params[2 * k + 1])
        if masks:
            A = A * masks[k]
    out = A @ params[-2].T + params[-1]
    if model.softmax_output:
        out = torch.softmax(out, 1)
    loss = F.cross_entropy(out, y)
    loss.backward()
    return loss.detach(), [p.grad for p in params]


@pytest.mark.parametrize("hidden", [[5], [7, 4], [6, 5, 3]])
@pytest.mark.parametrize("p", [0.0, 0.3])
@pytest.mark.parametrize("softmax_output", [False, True])
@pytest.mark.parametrize("n", [9, 4])  # a full batch and a last, partial one
def test_manual_backward_equals_float64_autograd(hidden, p, softmax_output, n):
    torch.manual_seed(len(hidden) + n)
    model = MLP(11, hidden, 4, p, softmax_output).double()
    engine = ManualBackprop(model, batch_size=9, generator=torch.Generator().manual_seed(3))
    X = torch.randn(n, 11, dtype=torch.float64)
    y = torch.randint(0, 4, (n,))
    loss = engine.step(X, y)
    masks = engine.dropout_masks()
    assert len(masks) == (len(hidden) if p > 0 else 0)
    for m in masks:  # inverted dropout: kept units scaled by 1/(1-p)
        assert set(torch.unique(m).tolist()) <= {0.0, 1 / (1 - p)}
    ref_loss, ref_grads = _reference_grads(model, X, y, masks)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    for param, ref in zip(model.parameters(), ref_grads):
        torch.testing.assert_close(param.grad, ref, rtol=1e-10, atol=1e-12)


def test_manual_backward_float32_matches_module_autograd_without_dropout():
    torch.manual_seed(0)
    model = MLP(784, [64, 32], 10, 0.0)
    X, y = torch.randn(16, 784), torch.randint(0, 10, (16,))
    ref = F.cross_entropy(model(X), y)
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    loss = ManualBackprop(model, 16, torch.Generator()).step_indices(X, y, torch.arange(16))
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-5, atol=1e-6)
    for param, g in zip(model.parameters(), ref_grads):
        torch.testing.assert_close(param.grad, g, rtol=1e-4, atol=1e-6)


def test_dropout_keeps_the_expected_fraction():
    model = MLP(20, [4000], 2, 0.2)
    engine = ManualBackprop(model, 50, torch.Generator().manual_seed(0))
    engine.step(torch.randn(50, 20), torch.zeros(50, dtype=torch.long))
    kept = (engine.dropout_masks()[0] > 0).double().mean().item()
    assert abs(kept - 0.8) < 0.005  # 200,000 Bernoulli(0.8) draws: standard error 0.0009
