"""SimpleMLP: the assignment's constructor, set_weights, compute_gradients and gradient_descent."""

from __future__ import annotations

import pytest
import torch

import mlplab
from mlplab import SimpleMLP, binary_cross_entropy, get_device, relu, sigmoid
from mlplab.errors import MlplabError
from mlplab.twolayer.gradients import backward
from mlplab.twolayer.problem import load_problem

TIGHT = {"rtol": 1e-10, "atol": 1e-12}


def _model(dtype=torch.float64, a1="relu", a2="sigmoid") -> SimpleMLP:
    t = load_problem().tensors(dtype)
    model = SimpleMLP(input_size=3, hidden_size=2, output_size=1, activ_func1=a1, activ_func2=a2, dtype=dtype)
    model.set_weights(t["W1"], t["b1"], t["W2"], t["b2"])
    return model


def test_used_like_the_seed_main():
    """The assignment's main(): callables, weights in its shapes (b1 is 1x2), .to(device), six return values."""
    t = load_problem().tensors(torch.float32)
    X, y_gt = t["X"], t["y"]
    device = get_device("cpu")
    model = SimpleMLP(input_size=3, hidden_size=2, output_size=1, activ_func1=relu, activ_func2=sigmoid)
    model.set_weights(t["W1"], t["b1"], t["W2"], t["b2"])
    model = model.to(device)
    loss, x_grad, fc1_weight_grad, fc1_bias_grad, fc2_weight_grad, fc2_bias_grad = model.compute_gradients(
        X.to(device), binary_cross_entropy, y_gt.to(device))
    t64 = load_problem().tensors()
    g = backward(t64["X"], "relu", t64["W1"], t64["b1"], "sigmoid", t64["W2"], t64["b2"], t64["y"], "bce")
    loose = {"rtol": 1e-5, "atol": 1e-6}  # float32, as in the assignment
    torch.testing.assert_close(fc1_weight_grad.double(), g.W1.T, **loose)
    torch.testing.assert_close(fc1_bias_grad.double(), g.b1.reshape(-1), **loose)
    torch.testing.assert_close(fc2_weight_grad.double(), g.W2.T, **loose)
    torch.testing.assert_close(fc2_bias_grad.double(), g.b2, **loose)
    assert x_grad.shape == X.shape and loss.ndim == 0
    assert not X.requires_grad  # the caller's X is left alone


@pytest.mark.parametrize("loss", ["mse", "bce"])
@pytest.mark.parametrize("a1", ["identity", "relu", "sigmoid"])
def test_gradients_equal_chain_rule_float64(a1, loss):
    t = load_problem().tensors()
    model = _model(a1=a1)
    loss_fn = mlplab.mse if loss == "mse" else binary_cross_entropy
    value, x_grad, gW1, gb1, gW2, gb2 = model.compute_gradients(t["X"], loss_fn, t["y"])
    g = backward(t["X"], a1, t["W1"], t["b1"], "sigmoid", t["W2"], t["b2"], t["y"], loss)
    torch.testing.assert_close(gW1, g.W1.T, **TIGHT)
    torch.testing.assert_close(gb1, g.b1.reshape(-1), **TIGHT)
    torch.testing.assert_close(gW2, g.W2.T, **TIGHT)
    torch.testing.assert_close(gb2, g.b2, **TIGHT)
    # x.grad against autograd through the functional forward
    X = t["X"].clone().requires_grad_(True)
    y_hat = mlplab.forward(X, a1, t["W1"], t["b1"], "sigmoid", t["W2"], t["b2"]).y_hat
    ref = torch.autograd.grad(loss_fn(y_hat, t["y"]), X)[0]
    torch.testing.assert_close(x_grad, ref, **TIGHT)
    torch.testing.assert_close(value, loss_fn(y_hat, t["y"]).detach(), **TIGHT)


def test_repeated_calls_do_not_accumulate():
    t = load_problem().tensors()
    model = _model()
    first = model.compute_gradients(t["X"], binary_cross_entropy, t["y"])
    second = model.compute_gradients(t["X"], binary_cross_entropy, t["y"])
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_gradient_descent_step_is_theta_minus_eta_grad():
    t = load_problem().tensors()
    model = _model()
    before = model.weights()
    _, _, gW1, gb1, gW2, gb2 = model.compute_gradients(t["X"], binary_cross_entropy, t["y"])
    model.gradient_descent(0.5, gW1, gb1, gW2, gb2)
    after = model.weights()
    g = backward(t["X"], "relu", t["W1"], t["b1"], "sigmoid", t["W2"], t["b2"], t["y"], "bce")
    for k in ("W1", "b1", "W2", "b2"):
        torch.testing.assert_close(after[k], before[k] - 0.5 * getattr(g, k).reshape(before[k].shape), **TIGHT)


def test_forward_equals_functional_forward_and_names_work():
    t = load_problem().tensors()
    model = _model(a1="sigm", a2="identity")
    ref = mlplab.forward(t["X"], "sigmoid", t["W1"], t["b1"], "identity", t["W2"], t["b2"]).y_hat
    torch.testing.assert_close(model(t["X"]), ref, **TIGHT)


def test_bad_input():
    with pytest.raises(MlplabError, match="hidden_size must be a positive integer"):
        SimpleMLP(3, 0, 1, "relu", "sigmoid")
    with pytest.raises(MlplabError, match="unknown activation"):
        SimpleMLP(3, 2, 1, "tanhh", "sigmoid")
    model = _model()
    t = load_problem().tensors()
    with pytest.raises(MlplabError, match=r"W1 must have shape \(3, 2\)"):
        model.set_weights(t["W1"].T, t["b1"], t["W2"], t["b2"])
    with pytest.raises(MlplabError, match="b1 must hold 2 numbers"):
        model.set_weights(t["W1"], torch.zeros(3), t["W2"], t["b2"])
    with pytest.raises(MlplabError, match="NaN"):
        model.set_weights(t["W1"], t["b1"], t["W2"] * float("nan"), t["b2"])
    with pytest.raises(MlplabError, match=r"x must have shape \(N, 3\)"):
        model.compute_gradients(torch.zeros(4, 2, dtype=torch.float64), binary_cross_entropy, t["y"])
    with pytest.raises(MlplabError, match="fc1_weight_grad has shape"):
        model.gradient_descent(0.1, torch.zeros(3, 2), torch.zeros(2), torch.zeros(1, 2), torch.zeros(1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_seed_main_on_cuda_matches_cpu_chain_rule():
    """The assignment's main() with device = get_device(): everything stays torch, so CUDA works."""
    t = load_problem().tensors()
    device = get_device()
    assert device.type == "cuda"
    model = _model().to(device)
    out = model.compute_gradients(t["X"].to(device), binary_cross_entropy, t["y"].to(device))
    assert all(v.device.type == "cuda" for v in out)
    g = backward(t["X"], "relu", t["W1"], t["b1"], "sigmoid", t["W2"], t["b2"], t["y"], "bce")
    torch.testing.assert_close(out[2].cpu(), g.W1.T, **TIGHT)
    torch.testing.assert_close(out[5].cpu(), g.b2, **TIGHT)
    from mlplab.twolayer.descent import gradient_descent_run

    cpu = gradient_descent_run(t, ("relu", "sigmoid"), "bce", 0.01, 200, dtype=torch.float64)
    gpu = gradient_descent_run(t, ("relu", "sigmoid"), "bce", 0.01, 200, dtype=torch.float64, device=device)
    torch.testing.assert_close(gpu.losses, cpu.losses, rtol=1e-10, atol=1e-12)
