"""The fused chunk kernels against the full-batch forward() and the NumPy reference summary."""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mlplab
import mlplab.stream.kernel as kernel_module
from mlplab.errors import MlplabError
from mlplab.stream.kernel import ChunkKernel, Network
from mlplab.stream.native import NativePool, load_native
from mlplab.stream.summary import Summary, default_edges, summarize_y
from mlplab.twolayer.activations import activation_pairs
from mlplab.twolayer.problem import load_problem

KERNELS = ["torch", "native"] if load_native(3, 2, "relu", "sigmoid") is not None else ["torch"]
PAIRS = activation_pairs()


def seed_net(a1: str, a2: str) -> tuple[Network, dict[str, torch.Tensor]]:
    t = load_problem().tensors()
    return Network.from_arrays(t["W1"], t["b1"], t["W2"], t["b2"], a1, a2), t


def reference(X: np.ndarray, a1: str, a2: str, t: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 forward() and a bound on the size of the terms it sums (float32 error scales with it)."""
    X64 = torch.from_numpy(X).double()
    y = mlplab.forward(X64, a1, t["W1"], t["b1"], a2, t["W2"], t["b2"]).y_hat.reshape(-1)
    scale = 1 + (X64.abs() @ t["W1"].abs() + t["b1"].abs()) @ t["W2"].abs().reshape(-1, 1) + t["b2"].abs()
    return y, scale.reshape(-1)


def assert_matches_forward(y: np.ndarray, ref: torch.Tensor, scale: torch.Tensor) -> None:
    err = (torch.from_numpy(y).double() - ref) / scale  # error relative to the terms summed
    torch.testing.assert_close(err, torch.zeros_like(err), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(("a1", "a2"), PAIRS)
def test_kernel_equals_forward_all_pairs(kernel: str, a1: str, a2: str) -> None:
    net, t = seed_net(a1, a2)
    X = np.random.default_rng(0).standard_normal((5003, 3)).astype(np.float32) * 2
    y, s = ChunkKernel(net, default_edges(a2), kernel=kernel)(X, 0)
    ref, scale = reference(X, a1, a2, t)
    assert_matches_forward(y, ref, scale)
    assert s.rows == 5003 and s.counted == 5003


@pytest.mark.parametrize("kernel", KERNELS)
def test_row_result_independent_of_chunking(kernel: str) -> None:
    net, _ = seed_net("sigmoid", "sigmoid")
    k = ChunkKernel(net, default_edges("sigmoid"), kernel=kernel)
    X = np.random.default_rng(1).standard_normal((9000, 3)).astype(np.float32)
    whole, s_whole = k(X, 0)
    for size, n in ((1, 300), (63, 9000), (65, 9000), (4097, 9000)):
        parts = [k(X[i:min(n, i + size)], i) for i in range(0, n, size)]
        y = np.concatenate([p[0].copy() for p in parts])
        np.testing.assert_array_equal(y.view(np.uint32), whole[:n].view(np.uint32))
        merged = Summary(edges=s_whole.edges)
        for _, s in parts:
            merged = merged.merge(s)
        assert merged == (s_whole if n == len(X) else k(X[:n], 0)[1])
    split = ChunkKernel(k.net, k.edges, kernel=kernel, threads=3)  # parts on threads: same bits
    y3, s3 = split(X, 0)
    np.testing.assert_array_equal(y3.view(np.uint32), whole.view(np.uint32))
    assert s3 == s_whole
    assert k.summarize(X, 0) == s_whole and split.summarize(X, 0) == s_whole  # no y_hat kept: same summary
    started = [split.start(X[i:i + 3000], i) for i in range(0, 9000, 3000)]  # several chunks in flight
    merged = Summary(edges=s_whole.edges)
    for wait in started:
        merged = merged.merge(wait())
    assert merged == s_whole


@pytest.mark.skipif("native" not in KERNELS, reason="no C compiler here")
@pytest.mark.parametrize(("a1", "a2"), PAIRS)
@pytest.mark.parametrize("policy", ["skip", "keep"])
def test_native_statistics_equal_numpy_reference(a1: str, a2: str, policy: str) -> None:
    net, _ = seed_net(a1, a2)
    edges = default_edges(a2, bins=7)
    X = np.random.default_rng(2).standard_normal((6000, 3)).astype(np.float32) * 3
    X[[5, 4100, 4101], [0, 2, 1]] = [np.nan, np.inf, -np.inf]
    y, s = ChunkKernel(net, edges, policy, "native")(X, 100)
    bad = ~np.isfinite(X).all(axis=1)
    assert s == summarize_y(y, edges, bad, 100)
    assert ChunkKernel(net, edges, policy, "native").summarize(X, 100) == s  # the kernel keeps no y_hat
    assert s.nonfinite_rows == 3 and s.first_nonfinite_row == 105
    if policy == "skip":
        assert np.isnan(y[bad]).all() and s.counted == 5997


def test_summary_values_by_independent_means() -> None:
    rng = np.random.default_rng(3)
    y = np.concatenate([rng.random(3000).astype(np.float32), np.float32([0.0, 0.5, 1.0, 1e-30, -2.0, 7.0])])
    edges = default_edges("sigmoid", bins=10)
    s = summarize_y(y, edges)
    exact = sum((Fraction(float(v)) for v in y), Fraction(0)) / len(y)
    assert s.mean_y_hat == float(exact)  # the exact mean, correctly rounded
    counts, _ = np.histogram(y, bins=edges.astype(np.float64))  # numpy.histogram: last bin closed
    assert s.hist[1:-1] == counts.tolist() and s.hist[0] == 1 and s.hist[-1] == 1
    assert s.positives == int((y >= 0.5).sum()) and s.min_y_hat == -2.0 and s.max_y_hat == 7.0


@settings(max_examples=8, deadline=None)
@given(d=st.integers(1, 5), h=st.integers(1, 4), pair=st.sampled_from(PAIRS), seed=st.integers(0, 2**16),
       n=st.integers(1, 300))
def test_general_d_h_both_kernels(d: int, h: int, pair: tuple[str, str], seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    W1, b1, W2 = rng.normal(size=(d, h)), rng.normal(size=h), rng.normal(size=h)
    b2 = float(rng.normal())
    net = Network.from_arrays(W1, b1, W2, b2, *pair)
    # the float32 network's own parameters, in float64, for the reference
    t = {"W1": torch.from_numpy(net.W1).double(), "b1": torch.from_numpy(net.b1).double(),
         "W2": torch.from_numpy(net.W2).double(), "b2": torch.tensor([net.b2], dtype=torch.float64)}
    X = rng.normal(size=(n, d)).astype(np.float32)
    ref, scale = reference(X, *pair, t)
    results = [ChunkKernel(net, default_edges(pair[1]), kernel=k)(X, 0) for k in KERNELS]
    for y, _ in results:
        assert_matches_forward(y, ref, scale)
    assert all(s == summarize_y(y, default_edges(pair[1])) for y, s in results)


def test_nonfinite_error_names_first_row() -> None:
    net, _ = seed_net("relu", "sigmoid")
    X = np.zeros((100, 3), np.float32)
    X[42, 1] = np.nan
    for kernel in KERNELS:
        with pytest.raises(MlplabError, match="row 1042"):
            ChunkKernel(net, default_edges("sigmoid"), "error", kernel)(X, 1000)


def test_bad_arguments() -> None:
    net, _ = seed_net("relu", "sigmoid")
    with pytest.raises(MlplabError, match="policy"):
        ChunkKernel(net, default_edges("sigmoid"), "ignore")
    with pytest.raises(MlplabError, match="3 columns"):
        ChunkKernel(net, default_edges("sigmoid"))(np.zeros((4, 2), np.float32), 0)
    with pytest.raises(MlplabError, match="histogram"):
        default_edges("sigmoid", lo=1.0, hi=0.0)
    for threads in (0, 65):
        with pytest.raises(MlplabError, match="between 1 and 64"):
            ChunkKernel(net, default_edges("sigmoid"), threads=threads)


@pytest.mark.parametrize("kernel", KERNELS)
def test_exact_sum_over_the_whole_float32_range(kernel: str) -> None:
    # y_hat = x exactly (1-1-1 identity network), so the kernels must sum raw float32 values exactly
    net = Network.from_arrays([[1.0]], [0.0], [1.0], 0.0, "identity", "identity")
    rng = np.random.default_rng(5)
    special = np.float32([1e-45, -1e-45, 1.2e-38, 3.4e38, -3.4e38, 3.4e38, 0.0, -0.0, 1.0, np.inf, np.nan])
    bits = rng.integers(0, 2**32, 20_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = np.concatenate([special, bits, rng.standard_normal(5000).astype(np.float32)])
    X = np.ascontiguousarray(x.reshape(-1, 1))
    y, s = ChunkKernel(net, default_edges("identity"), "skip", kernel)(X, 0)  # skip: the kernel's own statistics
    finite = x[np.isfinite(x)]
    np.testing.assert_array_equal(y[np.isfinite(x)], finite)
    exact = sum((Fraction(float(v)) for v in finite), Fraction(0))
    assert s.sum_units == exact * 2**149 and s.counted == finite.size
    assert s.mean_y_hat == float(exact / finite.size)
    assert s == summarize_y(y, default_edges("identity"), ~np.isfinite(x), 0)


def test_loading_the_native_kernel_keeps_subnormals() -> None:
    """A -ffast-math shared object can switch on flush-to-zero for the whole process; ours must not."""
    for a1, a2 in PAIRS[:2]:
        load_native(3, 2, a1, a2)
    tiny = np.array([1e-40], dtype=np.float32)  # a float32 subnormal
    assert (tiny * np.float32(1.0))[0] != 0
    assert torch.tensor([1e-40], dtype=torch.float32).mul(1.0).item() != 0


@pytest.mark.skipif("native" not in KERNELS, reason="no C compiler here")
@pytest.mark.parametrize("edges", [default_edges("identity", 20), default_edges("sigmoid", 50),
                                   default_edges("relu", 70), default_edges("sigmoid", 7, lo=0.3, hi=7.0),
                                   default_edges("identity", 10), default_edges("identity", 11),
                                   default_edges("relu", 62, lo=-1.0, hi=3.0),
                                   np.float32([-3.0, -0.1, 0.0, 1e-30, 0.5, 0.51, 2.0])])
@pytest.mark.parametrize("rows", [20000, 20008, 20016, 20024])
def test_native_histogram_any_edges(edges: np.ndarray, rows: int) -> None:
    # the direct class map, its per-edge check and the comparison fallbacks all give the reference counts;
    # bins 10, 11, 20, 50, 62 fill the byte counters' passes (11 thresholds each) exactly, by one more, or
    # partly; the last block of 3616, 3624, 3632 or 3640 rows leaves 0-3 of its vectors of 8 classes over
    net, _ = seed_net("relu", "identity")
    X = np.random.default_rng(11).standard_normal((rows, 3)).astype(np.float32)
    X[:4096] = 0.0  # a whole block of y_hat exactly on one value
    y, s = ChunkKernel(net, edges, "skip", "native")(X, 0)
    assert s == summarize_y(y, edges)


@pytest.mark.skipif("native" not in KERNELS, reason="no C compiler here")
def test_native_counts_y_hat_on_the_top_edge() -> None:
    # the closed last bin takes y_hat == the top edge: the kernel counts those only in blocks whose max
    # reaches it, so blocks that saturate (sigmoid -> exactly 1.0) and blocks that do not must both be right
    net, _ = seed_net("relu", "sigmoid")
    rng = np.random.default_rng(5)
    X = rng.standard_normal((6 * 4096, 3)).astype(np.float32)
    X[4096:3 * 4096] *= 60.0  # two blocks with many y_hat of exactly 1.0
    edges = default_edges("sigmoid")
    y, s = ChunkKernel(net, edges, kernel="native")(X, 0)
    ones = int((y == 1.0).sum())
    assert ones > 100 and not (y[:4096] == 1.0).any()
    assert s == summarize_y(y, edges)
    assert s.hist[-2] >= ones and s.hist[-1] == 0  # 1.0 falls in the last bin, not in the overflow


@pytest.fixture
def small_pool_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Native pool workers take 700 rows at a time (not a multiple of 8 or of a block), so a chunk of a few
    thousand rows is split among the threads at many places."""
    monkeypatch.setattr(kernel_module, "NativePool", functools.partial(NativePool, sub=700))


@pytest.mark.skipif("native" not in KERNELS, reason="no C compiler here")
@pytest.mark.usefixtures("small_pool_parts")
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("policy", ["skip", "keep"])
def test_native_pool_split_gives_the_same_bits(threads: int, policy: str) -> None:
    net, _ = seed_net("relu", "sigmoid")
    edges = default_edges("sigmoid")
    X = np.random.default_rng(12).standard_normal((20011, 3)).astype(np.float32) * 4
    X[[699, 700, 9000, 20010], [0, 1, 2, 0]] = [np.nan, np.inf, -np.inf, np.nan]
    bad = ~np.isfinite(X).all(axis=1)
    k = ChunkKernel(net, edges, policy, "native", threads=threads)
    y_one = np.empty(len(X), np.float32)
    k._native_y(X, y_one)  # the kernel on the calling thread, in one call
    y, s = k(X, 50)  # the pool's workers, each writing its parts of y
    np.testing.assert_array_equal(y.view(np.uint32)[~bad], y_one.view(np.uint32)[~bad])
    assert s == summarize_y(y, edges, bad, 50) == k.summarize(X, 50)
    assert s.nonfinite_rows == 4 and s.first_nonfinite_row == 50 + 699
    waits = [k.start(X[i:i + 5000], i) for i in range(0, 20000, 5000)]  # four chunks in flight at once
    merged = Summary(edges=s.edges)
    for wait in waits:
        merged = merged.merge(wait())
    assert merged == k.summarize(X[:20000], 0)
    k.close()


@pytest.mark.skipif("native" not in KERNELS, reason="no C compiler here")
@pytest.mark.usefixtures("small_pool_parts")
def test_native_pool_names_the_first_bad_row_and_refuses_a_fifth_chunk() -> None:
    net, _ = seed_net("relu", "sigmoid")
    k = ChunkKernel(net, default_edges("sigmoid"), "error", "native", threads=3)
    X = np.random.default_rng(13).standard_normal((12000, 3)).astype(np.float32)
    X[[11000, 3333, 8000], 1] = np.nan  # the first bad row lies in the middle of a worker's part
    with pytest.raises(MlplabError, match="input row 4333 "):
        k.summarize(X, 1000)
    waits = [k.start(X[:100], 0) for _ in range(4)]  # the pool holds four unfinished chunks ...
    with pytest.raises(RuntimeError, match="more chunks"):
        k.start(X[:100], 0)  # ... and says so instead of blocking on a fifth
    assert all(w().rows == 100 for w in waits)
    again = k.start(X[:100], 0)  # a slot used again ...
    with pytest.raises(RuntimeError, match="once"):
        waits[0]()  # ... is not waited for through an old ticket
    assert again().rows == 100
    k.close()
    with pytest.raises(RuntimeError, match="after close"):  # not computed by a fallback kernel instead
        k.summarize(X[:100], 0)
