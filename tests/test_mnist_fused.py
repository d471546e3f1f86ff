"""The fused Triton step (`mlplab.mnist.fused_step`) against independent references: one step's loss and
gradients (read from Adam's first moments) against float64 autograd, whole epochs against the torch device step
to float32 rounding, divergence, resume and the warm-up that must change nothing. Without a GPU, Triton's
interpreter runs the kernels on CPU tensors (the root conftest.py sets TRITON_INTERPRET=1); with one, the same
tests run the compiled kernels."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from clusters import gaussian_clusters
from mlplab.mnist.config import resolve_config
from mlplab.mnist.graphed import DeviceEpoch
from mlplab.mnist.train import build_model, make_optimizer

pytest.importorskip("triton")

D = 20
DEV = "cuda" if torch.cuda.is_available() else "cpu"
SHAPES = [
    (32, "[16, 8]", ()),                                # 10 full batches and a last one of 10 rows
    (30, "[16, 8]", ()),                                # no last partial batch
    (64, "[12]", ("model.softmax_output=true",)),       # the softmax-output variant
    (32, "[16, 8]", ("model.dropout_rate=0",)),         # no dropout
    (500, "[16, 8]", ()),                               # one batch of all 330 rows: only the last-batch step
]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread for the torch reference runs."""


def _epoch(batch: int, lr: float, hidden: str, extra: tuple[str, ...] = (), fused: bool = True):
    config = resolve_config(overrides=[f"model.input_size={D}", f"model.hidden_sizes={hidden}",
                                       f"training.batch_size={batch}", f"training.learning_rate={lr}",
                                       "training.flush_denormals=false", *extra])
    data = gaussian_clusters(330, D, 1, centre_seed=99, spread=1.5)
    torch.manual_seed(3)
    model = build_model(config).to(DEV)
    optimizer = make_optimizer("adam", model.parameters(), lr)
    generator = torch.Generator(DEV).manual_seed(5)
    epoch = DeviceEpoch(model, optimizer, data.images.to(DEV), data.labels.to(DEV), generator, batch,
                        capture=False, fused=fused)
    return epoch, model, optimizer, generator


def _reference_loss(model: torch.nn.Module, epoch: DeviceEpoch, n: int) -> torch.Tensor:
    """The first batch's loss in float64 with autograd, through the epoch's own rows and dropout flags."""
    X, y = epoch.X[epoch.perm[:n]].double(), epoch.y[epoch.perm[:n]]
    layers = model.linears()
    a, offset = X, 0
    for layer in layers[:-1]:
        w = layer.out_features
        keep = epoch.masks[n * offset: n * (offset + w)].view(n, w).double() if epoch.p > 0 else 1.0
        a = torch.relu(a @ layer.weight.T + layer.bias) * keep / (1.0 - epoch.p)
        offset += w
    z = a @ layers[-1].weight.T + layers[-1].bias
    return F.cross_entropy(torch.softmax(z, 1) if model.softmax_output else z, y)


@pytest.mark.parametrize("batch, hidden, extra", SHAPES)
def test_one_step_against_float64_autograd(batch, hidden, extra):
    epoch, model, optimizer, _ = _epoch(batch, 0.01, hidden, extra)
    reference = copy.deepcopy(model).double()
    epoch.run(1, max_batches=1)
    n = min(batch, 330)
    loss = _reference_loss(reference, epoch, n)
    loss.backward()
    assert float(epoch.losses[0]) == pytest.approx(loss.item(), rel=1e-6)
    beta1, beta2 = optimizer.param_groups[0]["betas"]
    for p, q in zip(model.parameters(), reference.parameters()):
        state = optimizer.state[p]
        assert float(state["step"]) == 1.0
        # after one step Adam's moments are (1-β1)·g and (1-β2)·g²: the gradient itself, not only its sign
        torch.testing.assert_close(state["exp_avg"].double(), (1 - beta1) * q.grad, rtol=1e-4, atol=1e-8)
        torch.testing.assert_close(state["exp_avg_sq"].double(), (1 - beta2) * q.grad ** 2, rtol=1e-4, atol=1e-12)


@pytest.mark.parametrize("batch, hidden, extra", SHAPES)
def test_epochs_agree_with_the_torch_device_step(batch, hidden, extra):
    fused, m1, o1, g1 = _epoch(batch, 0.01, hidden, extra)
    torch_step, m2, o2, g2 = _epoch(batch, 0.01, hidden, extra, fused=False)
    assert fused.kernel == "triton-device-loop" and torch_step.kernel == "device-loop"
    for epoch in (1, 2, 3):
        (mean1, div1), (mean2, div2) = fused.run(epoch), torch_step.run(epoch)
        assert div1 is None and div2 is None
        assert mean1 == pytest.approx(mean2, rel=1e-6)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-4, atol=1e-5)
    s1, s2 = o1.state_dict()["state"], o2.state_dict()["state"]
    for k in s1:
        assert float(s1[k]["step"]) == float(s2[k]["step"])
        torch.testing.assert_close(s1[k]["exp_avg"], s2[k]["exp_avg"], rtol=1e-3, atol=1e-6)
    assert torch.equal(g1.get_state(), g2.get_state())  # the same draws from the run's generator


def test_divergence_stops_every_later_update():
    extra = ("model.dropout_rate=0.5",)
    fused, m1, o1, _ = _epoch(32, 1e4, "[16, 8]", extra)
    torch_step, *_ = _epoch(32, 1e4, "[16, 8]", extra, fused=False)
    for epoch in (1, 2, 3):
        (_, div1), (_, div2) = fused.run(epoch), torch_step.run(epoch)
        if div1 is not None or div2 is not None:
            break
    assert div1 is not None, "a learning rate of 10^4 should diverge in the first epochs"
    assert (div1["epoch"], div1["batch"]) == (div2["epoch"], div2["batch"])
    cut, m3, o3, _ = _epoch(32, 1e4, "[16, 8]", extra)
    for e in range(1, div1["epoch"]):
        cut.run(e)
    cut.run(div1["epoch"], max_batches=div1["batch"])
    for p1, p3 in zip(m1.parameters(), m3.parameters()):
        torch.testing.assert_close(p1, p3, rtol=0, atol=0, equal_nan=True)
    assert o1.state_dict()["state"][0]["step"] == o3.state_dict()["state"][0]["step"]


def test_resume_from_a_checkpoint_gives_the_same_bits():
    whole, m1, _, _ = _epoch(32, 0.01, "[16, 8]")
    first, m2, o2, g2 = _epoch(32, 0.01, "[16, 8]")
    means = [whole.run(e)[0] for e in (1, 2, 3)]
    first.run(1)
    first.run(2)
    saved = copy.deepcopy((m2.state_dict(), o2.state_dict(), g2.get_state()))
    again, m3, o3, g3 = _epoch(32, 0.01, "[16, 8]")
    m3.load_state_dict(saved[0])
    o3.load_state_dict(saved[1])
    g3.set_state(saved[2])
    again = DeviceEpoch(m3, o3, again.X, again.y, g3, 32, capture=False, fused=True)  # Adam's t read from the state
    assert again.run(3)[0] == means[2]
    for p1, p3 in zip(m1.parameters(), m3.parameters()):
        torch.testing.assert_close(p1, p3, rtol=0, atol=0)


def test_a_step_with_the_divergence_flag_set_changes_nothing():
    """How the CUDA graphs are warmed up before capture: two steps with dead = 1."""
    epoch, model, optimizer, _ = _epoch(32, 0.01, "[16, 8]")
    epoch.run(1, max_batches=2)
    before = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
    epoch.dead.fill_(1.0)
    epoch._full_step()
    epoch._tail_step()
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[0][name])
    for k, state in optimizer.state_dict()["state"].items():
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(state[name], before[1]["state"][k][name])


_COMPILE_FOR_SM90 = r'''
import inspect
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from mlplab.mnist import fused_kernels as fk

if "constexprs" not in inspect.signature(ASTSource).parameters:  # an older Triton names it otherwise
    raise SystemExit("skip: this Triton's ASTSource takes other arguments")
INTS = {"n", "batch", "K", "N", "mask_offset", "H", "C", "n_steps", "O", "I"}
POINTERS = {"perm": "*i64", "step_ptr": "*i64", "labels": "*i64", "powers": "*fp64"}
FLOATS = {"alpha", "inv_n", "threshold", "beta1", "beta2", "eps", "weight_decay"}
CASES = [(fk.forward_kernel, dict(GATHER=True, DROPOUT=True, BM=16, BN=32, BK=64)),
         (fk.forward_kernel, dict(GATHER=False, DROPOUT=False, BM=64, BN=32, BK=64)),
         (fk.loss_kernel, dict(SOFTMAX_OUT=False, ADVANCE=True, BM=16, BC=16, BK=64, BT=16)),
         (fk.loss_kernel, dict(SOFTMAX_OUT=True, ADVANCE=False, BM=64, BC=16, BK=16, BT=16)),
         (fk.backward_kernel, dict(BM=16, BN=32, BK=16)),
         (fk.adam_kernel, dict(DECAY=False, BO=32, BI=64, BR=16)),
         (fk.adam_kernel, dict(DECAY=True, BO=16, BI=64, BR=64))]
for kernel, constants in CASES:
    names = list(inspect.signature(kernel.fn).parameters)
    signature = {a: "constexpr" if a in constants else "i32" if a in INTS else "fp32" if a in FLOATS
                 else POINTERS.get(a, "*fp32") for a in names}
    compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constants),
                              target=GPUTarget("cuda", 90, 32))
    assert compiled.asm["cubin"], kernel.fn.__name__
print("compiled", len(CASES))
'''


def test_the_kernels_compile_for_an_h100():
    """What the interpreter does not check (types, constexpr use, shapes `tl.dot` accepts): Triton compiles every
    kernel to a cubin for sm_90 (H100/H200) without a GPU, with the compiler and ptxas in its wheel."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"TRITON_DEFAULT_FP_FUSION": "1"}
    done = subprocess.run([sys.executable, "-c", _COMPILE_FOR_SM90], env=env, capture_output=True, text=True,
                          timeout=300)
    if "skip:" in done.stderr:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["compiled", "7"]


def test_models_the_kernels_do_not_handle_are_refused():
    epoch, model, optimizer, generator = _epoch(32, 0.01, "[16, 8]")
    model.double()
    with pytest.raises(ValueError, match="float32 MLP"):
        DeviceEpoch(model, optimizer, epoch.X.double(), epoch.y, generator, 32, capture=False, fused=True)


def test_a_fused_step_that_fails_to_build_falls_back_to_torch_kernels(monkeypatch):
    """On CUDA the first replay warms up and captures the step; if the fused kernels fail there (a Triton that
    cannot compile them), the run goes on with torch's step and says so. Capture itself is simulated here: the
    "graphs" run the step functions directly."""
    fused, m1, _, _ = _epoch(32, 0.01, "[16, 8]")
    torch_step, m2, _, _ = _epoch(32, 0.01, "[16, 8]", fused=False)

    def fake_capture():
        if fused.fused is not None:
            raise ValueError("no compiler for this GPU")
        fused.graphs = {"full": type("G", (), {"replay": staticmethod(fused._full_step)})(),
                        "tail": type("G", (), {"replay": staticmethod(fused._tail_step)})()}

    monkeypatch.setattr(fused, "_capture", fake_capture)
    fused.capture, fused.kernel = True, "triton-cuda-graph"
    with pytest.warns(UserWarning, match="fused Triton step failed .*no compiler"):
        mean1, _ = fused.run(1)
    assert fused.fused is None and fused.kernel == "cuda-graph"
    assert mean1 == torch_step.run(1)[0]  # the torch step from the first batch on: the same bits
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2, rtol=0, atol=0)
