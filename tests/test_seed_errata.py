"""Every mistake listed in docs/seed-errata.md: the assignment's version and the correct one, computed and compared."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mlplab
from mlplab.twolayer.errata import (
    CODE_ERRATA,
    double_sigmoid_training,
    numeric_errata,
    seed_bce_eq6,
    seed_binary_cross_entropy,
    seed_difference_quotient,
    table3_bce_derivative,
    table3_mse_derivative,
    table3_sigmoid_derivative,
)
from mlplab.twolayer.losses import binary_cross_entropy, binary_cross_entropy_with_logits, mse
from mlplab.twolayer.problem import load_problem
from mlplab.twolayer.simple_mlp import SimpleMLP

SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "000_f9bdabcdfc1c8974.txt"
needs_seed = pytest.mark.skipif(not SEED.exists(), reason="the assignment's text is not beside this checkout")


@pytest.fixture()
def net():
    t = load_problem().tensors()
    z2 = mlplab.forward(t["X"], "relu", t["W1"], t["b1"], "identity", t["W2"], t["b2"]).z2
    return t, z2.clone().requires_grad_(True)


def test_eq6_sign(net):
    t, z2 = net
    y_hat = torch.sigmoid(z2)
    seed, right = seed_bce_eq6(y_hat, t["y"]), F.binary_cross_entropy(y_hat, t["y"])
    torch.testing.assert_close(binary_cross_entropy(y_hat, t["y"]), right, rtol=1e-12, atol=0)
    assert abs(seed.item() - right.item()) > 1.0  # 0.589 vs 1.679 on the assignment's problem
    # with the sign fixed, the assignment's formula is torch's BCE
    fixed = -(t["y"] * torch.log(y_hat) + (1 - t["y"]) * torch.log(1 - y_hat)).mean()
    torch.testing.assert_close(fixed, right, rtol=1e-12, atol=0)


def test_double_sigmoid(net):
    t, z2 = net
    y_hat = torch.sigmoid(z2)
    seed = seed_binary_cross_entropy(y_hat, t["y"])
    # what the assignment computes is BCE of sigmoid(sigmoid(z2)), not of y_hat
    torch.testing.assert_close(seed, F.binary_cross_entropy(torch.sigmoid(y_hat), t["y"]), rtol=1e-12, atol=0)
    right = binary_cross_entropy(y_hat, t["y"])
    torch.testing.assert_close(right, binary_cross_entropy_with_logits(z2, t["y"]), rtol=1e-12, atol=0)
    assert abs(seed.item() - right.item()) > 0.5  # 0.815 vs 1.679
    # the gradient reaching z2 is damped by sigmoid'(y_hat) <= 1/4 and never vanishes for y = 0
    g_seed = torch.autograd.grad(seed, z2, retain_graph=True)[0]
    g_right = torch.autograd.grad(right, z2)[0]
    torch.testing.assert_close(g_right, (y_hat - t["y"]).detach() / 4, rtol=1e-12, atol=1e-15)
    assert (g_seed.abs() < g_right.abs()).all()


def test_double_sigmoid_training_makes_the_true_bce_worse():
    r = double_sigmoid_training(load_problem().tensors(), epochs=100)
    t = load_problem().tensors()
    y_hat = mlplab.forward(t["X"], "relu", t["W1"], t["b1"], "sigmoid", t["W2"], t["b2"]).y_hat
    start = F.binary_cross_entropy(y_hat, t["y"]).item()  # the true BCE at the assignment's weights (1.679)
    assert r["correct_loss_final_bce"] < start < r["seed_loss_final_bce"]
    # the loop exactly as the assignment writes it (also never zeroing the gradients) ends even further off
    assert r["seed_loop_final_bce"] > r["seed_loss_final_bce"]


def test_table3_sigmoid_row(net):
    _, z2 = net
    y_hat = torch.sigmoid(z2)
    auto = torch.autograd.grad(y_hat.sum(), z2)[0]
    torch.testing.assert_close(y_hat.detach() * (1 - y_hat.detach()), auto, rtol=1e-12, atol=0)
    wrong = table3_sigmoid_derivative(z2.detach())
    assert (wrong - auto).abs().max() > 1.0  # z2(1 - z2) = -20.91 at x3, the derivative is 0.016


def test_table3_mse_row(net):
    t, z2 = net
    y_hat = torch.sigmoid(z2.detach()).requires_grad_(True)
    auto = torch.autograd.grad(mse(y_hat, t["y"]), y_hat)[0]
    seed = table3_mse_derivative(y_hat.detach(), t["y"])
    n = t["y"].shape[0]
    torch.testing.assert_close(seed * 2 / n, auto, rtol=1e-12, atol=0)  # the missing factor is 2/N
    assert not torch.allclose(seed, auto)


def test_table3_bce_row(net):
    t, z2 = net
    y_hat = torch.sigmoid(z2.detach()).requires_grad_(True)
    auto = torch.autograd.grad(binary_cross_entropy(y_hat, t["y"]), y_hat)[0]
    y, p, n = t["y"], y_hat.detach(), t["y"].shape[0]
    torch.testing.assert_close((-y / p + (1 - y) / (1 - p)) / n, auto, rtol=1e-12, atol=0)
    seed = table3_bce_derivative(p, y)
    assert (seed > 0).all() and (auto[y == 1] < 0).all()  # the assignment's row even has the wrong sign for y = 1


def test_difference_quotient_is_not_the_gradient_without_the_limit():
    t = load_problem().tensors()

    def loss_at(b2: torch.Tensor) -> torch.Tensor:
        return binary_cross_entropy(mlplab.forward(t["X"], "relu", t["W1"], t["b1"], "sigmoid", t["W2"], b2).y_hat,
                                    t["y"])

    b2 = t["b2"].clone().requires_grad_(True)
    auto = torch.autograd.grad(loss_at(b2), b2)[0].item()
    finite = seed_difference_quotient(loss_at(t["b2"]), loss_at(t["b2"] + 1.0), 1.0)
    small = seed_difference_quotient(loss_at(t["b2"]), loss_at(t["b2"] + 1e-7), 1e-7)
    assert abs(finite - auto) > 0.05
    torch.testing.assert_close(small, auto, rtol=0, atol=1e-6)  # only in the limit does it become dL/db2


def test_table3_dimensions():
    t = load_problem().tensors()
    W1 = t["W1"].clone().requires_grad_(True)
    Z1 = t["X"] @ W1 + t["b1"]
    dZ1 = torch.randn_like(Z1)
    auto = torch.autograd.grad((Z1 * dZ1).sum(), W1)[0]
    assert t["X"].shape != W1.shape
    torch.testing.assert_close(t["X"].T @ dZ1, auto, rtol=1e-12, atol=1e-12)


def test_float_epochs_is_not_iterable():
    num_epochs = 1e3
    with pytest.raises(TypeError, match="not iterable"):
        iter(num_epochs)  # type: ignore[call-overload]
    assert len(range(int(num_epochs))) == 1000


def test_self_model_attribute_does_not_exist():
    model = SimpleMLP(3, 2, 1, "relu", "sigmoid")
    with pytest.raises(AttributeError):
        _ = model.model  # the assignment's gradient_descent writes self.model.fc1_weight
    assert model.fc1.weight.shape == (2, 3)


def test_gw1_is_undefined():
    namespace = {"gW1": 1, "gb1": 2, "gW2": 3, "gb2": 4}
    with pytest.raises(NameError):
        eval("(gw1, gb1, gw2, gb2)", {}, namespace)


def test_numpy_activations_break_the_graph():
    layer = nn.Linear(3, 2)
    z = layer(torch.ones(1, 3))
    with pytest.raises(RuntimeError, match="requires grad"):
        np.maximum(0, z)
    with pytest.raises(RuntimeError, match="requires grad"):
        _ = 1 / (1 + np.exp(-z))
    mlplab.relu(z).sum().backward()  # the torch versions keep autograd working
    assert layer.weight.grad is not None


def test_gradients_accumulate_without_zeroing():
    t = load_problem().tensors(torch.float32)
    model = SimpleMLP(3, 2, 1, "relu", "sigmoid")
    model.set_weights(t["W1"], t["b1"], t["W2"], t["b2"])
    # the assignment's compute_gradients: backward() every call, never zeroed
    for _ in range(2):
        binary_cross_entropy(model(t["X"]), t["y"]).backward()
    assert model.fc1.weight.grad is not None
    accumulated = model.fc1.weight.grad.clone()
    fresh = model.compute_gradients(t["X"], binary_cross_entropy, t["y"])[2]  # fc1.weight.grad
    torch.testing.assert_close(accumulated, 2 * fresh, rtol=1e-6, atol=1e-7)


def test_bias_copy_needs_a_reshape():
    t = load_problem().tensors(torch.float32)
    layer = nn.Linear(3, 2)
    assert t["b1"].shape == (1, 2)  # the assignment defines b1 in R^{1x2}
    with pytest.raises(RuntimeError), torch.no_grad():
        layer.bias.copy_(t["b1"])
    model = SimpleMLP(3, 2, 1, "relu", "sigmoid")
    model.set_weights(t["W1"], t["b1"], t["W2"], t["b2"])
    torch.testing.assert_close(model.fc1.bias, t["b1"].reshape(2), rtol=0, atol=0)


def test_percent_comment_is_a_syntax_error():
    with pytest.raises(SyntaxError):
        compile("% Identity activation function\ndef identity(x):\n    return x\n", "<assignment>", "exec")
    compile("# Identity activation function\ndef identity(x):\n    return x\n", "<fixed>", "exec")


def test_second_main_uses_an_undefined_model():
    with pytest.raises(NameError):
        exec("def main():\n    return model.compute_gradients\nmain()", {})


@needs_seed
def test_reference_names_bengio_twice():
    ref = next(line for line in SEED.read_text().splitlines() if line.startswith("- [2]"))
    authors = ref.split("*")[0]
    assert authors.count("Yoshua Bengio") == 2


@needs_seed
def test_duplicated_question_numbers():
    text = SEED.read_text()
    section3 = text[text.index("MNIST image classification"):]
    numbers = [int(n) for n in re.findall(r"^- \((\d+)\)", section3, flags=re.MULTILINE)]
    repeated = sorted({n for n in numbers if numbers.count(n) > 1})
    assert repeated == [8, 11]


def test_every_erratum_is_documented():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "seed-errata.md").read_text()
    keys = [e.key for e in numeric_errata(load_problem().tensors())] + [row[0] for row in CODE_ERRATA]
    for key in keys:
        assert f"`{key}`" in doc, key
