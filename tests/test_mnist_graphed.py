"""The device-counter epoch (`mlplab.mnist.graphed`) against the eager trainer, on CPU tensors: the same
permutations, dropout masks, losses, divergence record and final weights. On CUDA the same steps are captured as
CUDA graphs; that path is checked by benchmarks/gpu_check.sh on a GPU and skipped here without one."""

from __future__ import annotations

import pytest
import torch

from clusters import gaussian_clusters
from mlplab.mnist.config import resolve_config
from mlplab.mnist.epoch import EpochRunner
from mlplab.mnist.graphed import DeviceEpoch, applies, init_adam_state
from mlplab.mnist.train import build_model, make_optimizer, train_run

D = 20


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """One torch thread: the eager and the device loop then split every sum the same way."""


def _setup(batch: int, lr: float, hidden: str = "[16, 8]", extra: tuple[str, ...] = ()):
    config = resolve_config(overrides=[f"model.input_size={D}", f"model.hidden_sizes={hidden}",
                                       f"training.batch_size={batch}", f"training.learning_rate={lr}",
                                       "training.device=cpu", "training.flush_denormals=false", *extra])
    data = gaussian_clusters(330, D, 1, centre_seed=99, spread=1.5)
    torch.manual_seed(3)
    model = build_model(config)
    optimizer = make_optimizer("adam", model.parameters(), lr)
    generator = torch.Generator().manual_seed(5)
    return config, model, optimizer, data.images, data.labels, generator


def _pair(batch: int, lr: float, hidden: str = "[16, 8]", extra: tuple[str, ...] = ()):
    config, m1, o1, X, y, g1 = _setup(batch, lr, hidden, extra)
    _, m2, o2, _, _, g2 = _setup(batch, lr, hidden, extra)
    eager = EpochRunner(config, m1, o1, X, y, g1, allow_native=False)
    device = DeviceEpoch(m2, o2, X, y, g2, batch, capture=False)
    return (eager, m1, o1, g1), (device, m2, o2, g2)


@pytest.mark.parametrize("batch, hidden, extra", [
    (32, "[16, 8]", ()),                                # 10 full batches and a last one of 10 rows
    (30, "[16, 8]", ()),                                # no last partial batch
    (64, "[12]", ("model.softmax_output=true",)),       # the softmax-output variant
    (32, "[16, 8]", ("model.dropout_rate=0",)),         # no dropout
    (500, "[16, 8]", ()),                               # one batch holding all 330 rows
])
def test_device_epoch_equals_the_eager_epoch(batch, hidden, extra):
    (eager, m1, o1, g1), (device, m2, o2, g2) = _pair(batch, 0.01, hidden, extra)
    for epoch in (1, 2, 3):
        mean1, div1 = eager.run(epoch)
        mean2, div2 = device.run(epoch)
        assert div1 is None and div2 is None
        assert mean1 == mean2
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2, rtol=0, atol=0)
    s1, s2 = o1.state_dict()["state"], o2.state_dict()["state"]
    for k in s1:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(s1[k][name], s2[k][name], rtol=0, atol=0)
    assert torch.equal(g1.get_state(), g2.get_state())  # the same draws from the run's generator


def test_divergence_is_found_on_the_device_and_later_steps_change_nothing():
    (eager, _, _, _), (device, m2, o2, _) = _pair(32, 1e4, extra=("model.dropout_rate=0.5",))
    for epoch in (1, 2, 3):
        (mean1, div1), (mean2, div2) = eager.run(epoch), device.run(epoch)
        if div1 is not None:
            break
    assert div1 is not None, "a learning rate of 10^4 should diverge in the first epochs"
    assert div1 == div2 and mean1 == mean2  # same batch, same loss, same mean up to it
    # The eager trainer reads losses every 32 batches and so may update past the divergent batch; the device
    # epoch stops updating right after it: its weights are those of an eager run cut at that batch.
    (cut, m3, o3, _), _ = _pair(32, 1e4, extra=("model.dropout_rate=0.5",))
    for e in range(1, div1["epoch"]):
        cut.run(e)
    cut.run(div1["epoch"], max_batches=div1["batch"])
    for p3, p2 in zip(m3.parameters(), m2.parameters()):
        torch.testing.assert_close(p3, p2, rtol=0, atol=0, equal_nan=True)
    assert o3.state_dict()["state"][0]["step"] == o2.state_dict()["state"][0]["step"]


def test_max_batches_and_init_adam_state():
    (eager, m1, _, _), (device, m2, _, _) = _pair(32, 0.01)
    assert eager.run(1, max_batches=4) == device.run(1, max_batches=4)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2, rtol=0, atol=0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), fused=True)
    init_adam_state(optimizer)
    model(torch.ones(1, 3)).sum().backward()
    reference = torch.nn.Linear(3, 2)
    reference.load_state_dict(model.state_dict())
    ref_opt = torch.optim.Adam(reference.parameters(), fused=True)
    reference(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    ref_opt.step()  # Adam's own lazy initialisation: the pre-made state must give the same first step
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_applies_only_to_cuda_and_the_manual_engine(monkeypatch):
    _, model, optimizer, *_ = _setup(32, 0.01)
    cuda, steps = torch.device("cuda"), 938  # batch 64
    assert not applies(model, optimizer, torch.device("cpu"), "manual", steps)
    assert applies(model, optimizer, cuda, "manual", steps)
    assert not applies(model, optimizer, cuda, "autograd", steps)
    assert not applies(model, torch.optim.SGD(model.parameters(), lr=0.1), cuda, "manual", steps)
    assert not applies(model, optimizer, cuda, "manual", 10)  # batch 6400
    monkeypatch.setenv("MLPLAB_CUDA_GRAPHS", "0")
    assert not applies(model, optimizer, cuda, "manual", steps)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_graphed_run_equals_the_eager_cuda_run(monkeypatch):
    data = gaussian_clusters(2200, D, 1, centre_seed=99, spread=1.5)  # 69 batches: enough for the graphs
    config = resolve_config(overrides=[f"model.input_size={D}", "model.hidden_sizes=[16, 8]",
                                       "training.batch_size=32", "training.num_epochs=3", "training.device=cuda"])
    graphed = train_run(config, data, data, progress=False)
    monkeypatch.setenv("MLPLAB_CUDA_GRAPHS", "0")
    eager = train_run(config, data, data, progress=False)
    assert graphed["kernel"] == "cuda-graph" and eager["kernel"] == "torch"
    assert abs(graphed["test_accuracy"] - eager["test_accuracy"]) <= 0.001


def test_adam_in_small_pieces_gives_the_same_bits(monkeypatch):
    """Adam's tensors handed to the fused kernel as views of 64 entries (16,384 on a GPU, for more blocks; a multiple of
    the CPU kernel's vector width, whose scalar tail loop may round differently)."""
    import mlplab.mnist.graphed as graphed

    monkeypatch.setattr(graphed, "_ADAM_PIECE", 64)
    (eager, m1, _, _), (device, m2, _, _) = _pair(32, 0.01)
    assert len(device.adam_params) == 12  # 320 + 16 + 128 + 8 + 80 + 10 entries in pieces of at most 64
    for epoch in (1, 2):
        assert eager.run(epoch) == device.run(epoch)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2, rtol=0, atol=0)


def test_a_run_on_the_device_epoch_resumes_where_an_uninterrupted_one_ends(tmp_path, monkeypatch):
    """train_run with the device-counter epoch (forced on CPU tensors, run eagerly): the checkpoint holds Adam's
    shared step counter and the generator, so a run stopped after epoch 2 and resumed ends as the run that went
    through, bit for bit, and its summary names the engine."""
    from mlplab.mnist import epoch
    from mlplab.mnist.runstore import RunStore

    monkeypatch.setattr(epoch, "graphed_applies", lambda *args: True)
    data = gaussian_clusters(330, D, 1, centre_seed=99, spread=1.5)
    test = gaussian_clusters(100, D, 2, centre_seed=99, spread=1.5)
    config = resolve_config(overrides=[f"model.input_size={D}", "model.hidden_sizes=[16, 8]",
                                       "training.batch_size=32", "training.learning_rate=0.01",
                                       "training.num_epochs=4", "training.device=cpu"])
    full = train_run(config, data, test, RunStore(tmp_path / "full", figures=False), progress=False)
    assert full["kernel"] == "device-loop"

    class StopAfterTwo:
        def start(self, *args):
            pass

        def log_epoch(self, epoch, metrics):
            if epoch == 2:
                raise KeyboardInterrupt

        def finish(self, summary):
            pass

    with pytest.raises(KeyboardInterrupt):
        train_run(config, data, test, RunStore(tmp_path / "cut", figures=False), progress=False,
                  trackers=[StopAfterTwo()])
    resumed = train_run(config, data, test, RunStore(tmp_path / "cut", figures=False), progress=False, resume=True)
    for key in ("final_train_loss", "test_loss", "test_accuracy", "epochs_run", "best_epoch"):
        assert resumed[key] == full[key], key
