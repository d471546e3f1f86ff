"""The counter-based dropout masks (mlplab.mnist.dropout) against a Python model of the same hash, and their
statistics."""

from __future__ import annotations

import math

import pytest
import torch

from mlplab.mnist import dropout

needs_c = pytest.mark.skipif(dropout.load() is None, reason="no C compiler here")
M32 = 0xFFFFFFFF


def lowbias32(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def kept(key: int, i: int, p: float) -> bool:
    x = lowbias32((i & M32) ^ (key & M32))
    x = lowbias32(x ^ (key >> 32) ^ (((i >> 32) * 0x9E3779B9) & M32))
    return (x >> 8) / 2**24 >= p  # exact in binary: the 24-bit uniform against the rate


@needs_c
@pytest.mark.parametrize("p", [0.2, 0.5, 0.0, 0.999])
def test_keep_flags_equal_a_python_model_of_the_hash(p):
    key, counter = 0x1234_5678_9ABC_DEF0, 2**32 - 40  # the counter crosses 2**32 inside the block
    out = torch.empty(100)
    dropout.keep_mask(key, counter, p, out)
    assert out.tolist() == [1.0 if kept(key, counter + e, p) else 0.0 for e in range(100)]


@needs_c
def test_keep_rate_and_independence():
    out = torch.empty(1_000_000)
    dropout.keep_mask(7, 0, 0.2, out)
    rate, sigma = out.mean().item(), math.sqrt(0.2 * 0.8 / out.numel())
    assert abs(rate - 0.8) < 5 * sigma
    pairs = out[:-1] * out[1:]  # neighbours: independent flags give 0.64
    assert abs(pairs.mean().item() - 0.64) < 5 * math.sqrt(0.64 * 0.36 / pairs.numel())
    other = torch.empty(1_000_000)
    dropout.keep_mask(8, 0, 0.2, other)  # another key: another, uncorrelated, stream
    assert abs((out * other).mean().item() - 0.64) < 0.005


def test_stream_is_reproducible_and_continues_across_fills():
    a = dropout.DropoutStream(torch.Generator().manual_seed(3), 0.3)
    b = dropout.DropoutStream(torch.Generator().manual_seed(3), 0.3)
    assert a.kind == "counter-hash"
    first, second, whole = torch.empty(4, 10), torch.empty(4, 10), torch.empty(80)
    a.fill(first)
    a.fill(second)
    b.fill(whole)
    assert torch.equal(torch.cat([first.view(-1), second.view(-1)]), whole)
    a.begin_epoch()
    b.begin_epoch()
    again_a, again_b = torch.empty(40), torch.empty(40)
    a.fill(again_a)
    b.fill(again_b)
    assert torch.equal(again_a, again_b) and not torch.equal(again_a, first.view(-1))


@pytest.mark.parametrize("p", [0.2, 0.5, 0.0, 0.999, 0.3])
def test_torch_hash_equals_the_python_model(p):
    key, counter = 0x3FFF_5678_9ABC_DEF0, 2**32 - 40  # the counter crosses 2**32 inside the block
    flags = dropout.keep_flags_torch(key, counter, 100, p)
    assert flags.tolist() == [kept(key, counter + e, p) for e in range(100)]


@needs_c
@pytest.mark.parametrize("p", [0.2, 0.5, 0.1, 0.7])
def test_torch_hash_is_bit_equal_to_the_c_kernel(p):
    for key, counter in [(0, 0), (2**62 - 1, 5), (0x1234_5678_9ABC_DEF0, 2**33 - 70_000)]:
        native, torch_out = torch.empty(200_000), torch.empty(200_000)
        dropout.keep_mask(key, counter, p, native)
        dropout.keep_mask_torch(key, counter, p, torch_out)
        assert torch.equal(native, torch_out)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_torch_hash_on_cuda_equals_cpu():
    key, counter = 0x1234_5678_9ABC_DEF0, 2**32 - 1000
    cpu = dropout.keep_flags_torch(key, counter, 100_000, 0.2)
    assert torch.equal(dropout.keep_flags_torch(key, counter, 100_000, 0.2, "cuda").cpu(), cpu)


def test_stream_without_the_c_kernel_gives_the_same_masks(monkeypatch):
    with_c = dropout.DropoutStream(torch.Generator().manual_seed(5), 0.25)
    masks = [torch.empty(64, 16), torch.empty(7, 16, dtype=torch.float64)]
    for m in masks:
        with_c.fill(m)
    monkeypatch.setattr(dropout, "load", lambda: None)  # as with MLPLAB_NATIVE=0 or no compiler
    without = dropout.DropoutStream(torch.Generator().manual_seed(5), 0.25)
    assert not without.native
    again = [torch.empty(64, 16), torch.empty(7, 16, dtype=torch.float64)]
    for m in again:
        without.fill(m)
    assert all(torch.equal(a, b) for a, b in zip(masks, again))


@pytest.mark.slow
def test_mlplab_native_0_gives_the_same_run(tmp_path):
    """The real switch, in fresh processes: MLPLAB_NATIVE=0 trains the run the C kernels train. With D = 20
    inputs the compiled step does not apply (widths must be multiples of 8), so both runs use torch's kernels and
    one thread, and only the mask source differs: equal bit for bit (before: other masks, another run)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = """if True:
        import json
        from clusters import gaussian_clusters
        from mlplab.mnist import dropout
        from mlplab.mnist.config import resolve_config
        from mlplab.mnist.train import train_run
        config = resolve_config(overrides=["model.input_size=20", "model.hidden_sizes=[16, 8]",
                                           "model.dropout_rate=0.3", "training.num_epochs=3", "training.device=cpu"])
        s = train_run(config, gaussian_clusters(400, 20, 1, 99), gaussian_clusters(100, 20, 2, 99), None,
                      progress=False, threads=1)
        print(json.dumps({"c": dropout.load() is not None, **{k: v for k, v in s.items() if "time" not in k}}))
    """
    runs = []
    for native in ("1", "0"):
        env = {**os.environ, "MLPLAB_NATIVE": native,
               "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root / "tests")])}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    with_c, without = runs
    assert with_c.pop("c") and not without.pop("c")  # the C hash ran in one, the torch hash in the other
    assert with_c["kernel"] == without["kernel"] == "torch"
    assert with_c == without
