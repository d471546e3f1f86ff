"""The compiled small-batch training step (mlplab.mnist.native_step) against the torch engine and float64."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from clusters import gaussian_clusters
from mlplab.device import flush_denormals, flushing_denormals
from mlplab.mnist import native_step
from mlplab.mnist.backprop import ManualBackprop
from mlplab.mnist.config import resolve_config
from mlplab.mnist.epoch import EpochRunner
from mlplab.mnist.model import MLP
from mlplab.mnist.runstore import RunStore
from mlplab.mnist.train import make_optimizer, train_run

pytestmark = pytest.mark.skipif(native_step.load() is None, reason="no C compiler here")
D = 24


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs on one torch thread."""


TRAIN, TEST = gaussian_clusters(120, D, 1, centre_seed=7), gaussian_clusters(60, D, 2, centre_seed=7)


def reference_step(model: MLP, state: dict, X: torch.Tensor, y: torch.Tensor, masks: list[torch.Tensor],
                   lr: float, betas: tuple[float, float], eps: float, wd: float) -> float:
    """One step in float64: autograd through the MLP with the given 0/1 masks, then Adam by its formula."""
    params = [q for layer in model.linears() for q in (layer.weight, layer.bias)]
    p64 = [q.detach().double().requires_grad_() for q in params]
    s = 1 / (1 - model.dropout_rate)
    A = X.double()
    for k in range(len(p64) // 2):
        A = A @ p64[2 * k].t() + p64[2 * k + 1]
        if 2 * k + 2 < len(p64):
            A = torch.relu(A) * masks[k].double() * s
    loss = torch.nn.functional.cross_entropy(A, y)
    loss.backward()
    t = state["t"] = state.get("t", 0) + 1
    for i, q in enumerate(p64):
        assert q.grad is not None
        g = q.grad + wd * q.detach()
        m = state[("m", i)] = betas[0] * state.get(("m", i), 0) + (1 - betas[0]) * g
        v = state[("v", i)] = betas[1] * state.get(("v", i), 0) + (1 - betas[1]) * g * g
        new = q.detach() - lr / (1 - betas[0] ** t) * m / (v.sqrt() / math.sqrt(1 - betas[1] ** t) + eps)
        with torch.no_grad():
            params[i].copy_(new)
    return float(loss.detach())


@pytest.mark.parametrize("n, p, wd", [(6, 0.2, 0.0), (8, 0.0, 0.0), (3, 0.5, 0.01), (1, 0.2, 0.0)])
def test_steps_match_float64_autograd_and_adam(n, p, wd):
    torch.manual_seed(0)
    model = MLP(D, [16, 8], 10, p)
    reference = copy.deepcopy(model)
    # eps = 1e-3 keeps Adam's map from gradient to update smooth, so float32 rounding of tiny gradients
    # cannot flip an update's sign and the comparison checks the gradients themselves
    lr, betas, eps = 0.01, (0.9, 0.999), 1e-3
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=betas, eps=eps, weight_decay=wd)
    assert native_step.applies(model, optimizer, n)
    step = native_step.NativeStep(model, optimizer, n, torch.Generator().manual_seed(3), TRAIN.images, TRAIN.labels)
    perm = torch.randperm(len(TRAIN.labels), generator=torch.Generator().manual_seed(4))
    losses = torch.zeros(5)
    state: dict = {}
    for b in range(5):
        step.step(perm, b * n, n, losses, b)
        index = perm[b * n:(b + 1) * n]
        masks = [m.view(-1)[: n * m.shape[1]].view(n, -1) for m in step.masks]  # 0/1 keep flags
        expected = reference_step(reference, state, TRAIN.images[index], TRAIN.labels[index], masks, lr, betas,
                                  eps, wd)
        assert losses[b].item() == pytest.approx(expected, rel=1e-5)
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    saved = optimizer.state_dict()["state"]
    assert all(float(saved[i]["step"]) == 5.0 for i in saved)
    for i, q in enumerate(saved.values()):
        torch.testing.assert_close(q["exp_avg"].double(), state[("m", i)], rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(q["exp_avg_sq"].double(), state[("v", i)], rtol=1e-4, atol=1e-9)


def test_masks_and_losses_are_the_torch_engines():
    """Same generator, same dropout masks: the compiled step and ManualBackprop + Adam agree to rounding."""
    torch.manual_seed(1)
    models = [MLP(D, [16, 8], 10, 0.2) for _ in range(1)]
    models.append(copy.deepcopy(models[0]))
    optimizers = [make_optimizer("adam", m.parameters(), 1e-3) for m in models]
    manual = ManualBackprop(models[0], 6, torch.Generator().manual_seed(9))
    native = native_step.NativeStep(models[1], optimizers[1], 6, torch.Generator().manual_seed(9), TRAIN.images,
                                    TRAIN.labels)
    perm = torch.randperm(len(TRAIN.labels))
    losses = torch.zeros(20)
    for b in range(20):
        expected = manual.step_indices(TRAIN.images, TRAIN.labels, perm[b * 6:(b + 1) * 6])
        optimizers[0].step()
        native.step(perm, b * 6, 6, losses, b)
        assert all(torch.equal(k, m) for k, m in zip(native.masks, manual.masks))
        assert losses[b].item() == pytest.approx(expected.item(), rel=1e-5)
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def cfg(*extra: str, epochs: int = 3):
    return resolve_config(overrides=[f"model.input_size={D}", "model.hidden_sizes=[16, 8]", "training.batch_size=6",
                                     "training.learning_rate=0.01", f"training.num_epochs={epochs}",
                                     "training.device=cpu", *extra])


def test_trainer_uses_it_deterministically_and_resumes(tmp_path, monkeypatch):
    first = train_run(cfg(), TRAIN, TEST, progress=False)
    again = train_run(cfg(), TRAIN, TEST, progress=False)
    assert first["kernel"] == "native"
    keys = ("test_accuracy", "test_loss", "final_train_loss", "best_test_loss")
    assert {k: first[k] for k in keys} == {k: again[k] for k in keys}
    short = train_run(cfg(epochs=2), TRAIN, TEST, RunStore(tmp_path / "r", figures=False), progress=False)
    resumed = train_run(cfg(), TRAIN, TEST, RunStore(tmp_path / "r", figures=False), progress=False, resume=True)
    assert short["epochs_run"] == 2 and resumed["epochs_run"] == 3
    assert {k: resumed[k] for k in keys} == {k: first[k] for k in keys}
    monkeypatch.setattr("mlplab.mnist.epoch.native_applies", lambda *a: False)
    torch_kernels = train_run(cfg(epochs=10), TRAIN, TEST, progress=False)
    monkeypatch.undo()
    native = train_run(cfg(epochs=10), TRAIN, TEST, progress=False)
    assert (torch_kernels["kernel"], native["kernel"]) == ("torch", "native")
    assert native["test_accuracy"] == torch_kernels["test_accuracy"] > 0.8  # chance is 0.1
    for key in ("test_loss", "final_train_loss"):
        assert native[key] == pytest.approx(torch_kernels[key], rel=1e-4)


def test_where_it_does_not_apply_the_torch_kernels_run(monkeypatch):
    model = MLP(D, [16, 8], 10, 0.2)
    adam = make_optimizer("adam", model.parameters(), 1e-3)
    assert native_step.applies(model, adam, 8)
    assert not native_step.applies(model, adam, 9)  # beyond MAX_ROWS
    assert not native_step.applies(MLP(20, [16], 10, 0.2), adam, 6)  # an input width not a multiple of 8
    assert not native_step.applies(MLP(D, [16], 10, 0.2, softmax_output=True), adam, 6)
    assert not native_step.applies(model, torch.optim.SGD(model.parameters(), lr=0.1), 6)
    assert not native_step.applies(model, torch.optim.Adam(model.parameters(), amsgrad=True), 6)
    config = cfg("training.batch_size=12")
    runner = EpochRunner(config, model, adam, TRAIN.images, TRAIN.labels, torch.Generator())
    assert runner.kernel == "torch"
    assert train_run(cfg("training.engine=autograd", epochs=1), TRAIN, TEST, progress=False)["kernel"] == "torch"


def test_flush_denormals_is_scoped():
    assert not flushing_denormals()
    with flush_denormals():
        assert flushing_denormals()
        assert float(torch.tensor([1e-39]) * 1.0) == 0.0
    assert not flushing_denormals()
    with flush_denormals(False):
        assert not flushing_denormals()
    assert float(torch.tensor([1e-39]) * 1.0) > 0.0  # subnormals are back after the block
