"""The forward pass and summary of one chunk, fused: the native loop when it compiles, else blocked torch.

Both kernels give y_hat within float32 rounding of `mlplab.twolayer.forward` and make a row's y_hat depend on that
row alone (never on where a chunk starts), so summaries are identical for any chunking.

    Z1 = X W1 + b1 (n, h),  A1 = sigma_1(Z1),  z2 = A1 W2 + b2 (n, 1),  y_hat = sigma_2(z2)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mlplab.errors import MlplabError
from mlplab.native.loader import status
from mlplab.stream.native import NativeKernel, NativePool, Stats, kernel_name, load_native, units_from_isums
from mlplab.stream.summary import (
    EXACT_BLOCK_ROWS,
    Summary,
    bad_input_rows,
    summarize_y,
    summarize_y_torch,
)
from mlplab.twolayer.activations import get_activation

POLICIES = {"error": 0, "skip": 1, "keep": 2}
TORCH_BLOCK = 16384  # rows per torch block: X, Z1 and y of a block stay in L2 cache
PAD = 64  # torch blocks are padded to a multiple of this, so vector loops never take a scalar tail
MAX_THREADS = 64  # native worker threads (the C pool's limit)


@dataclass(frozen=True)
class Network:
    """float32 parameters of the d-h-1 network: W1 (d, h), b1 (h,), W2 (h,), b2, and the activations."""

    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: float
    act1: str
    act2: str

    @property
    def d(self) -> int:
        return int(self.W1.shape[0])

    @property
    def h(self) -> int:
        return int(self.W1.shape[1])

    @classmethod
    def from_arrays(cls, W1: object, b1: object, W2: object, b2: object, act1: str, act2: str) -> Network:
        """Build from anything array-like in the assignment's shapes.

        >>> Network.from_arrays([[1.0], [2.0]], [0.0], [1.0], 0.5, "relu", "sigmoid").h
        1
        """
        for name, value in (("W1", W1), ("b1", b1), ("w2", W2), ("b2", b2)):
            _check_float32(name, value)
        W1a = np.asarray(W1, dtype=np.float32)
        if W1a.ndim != 2:
            raise MlplabError(f"W1 must be a (d, h) matrix, got shape {W1a.shape}", hint="check the problem file")
        h = W1a.shape[1]
        b1a = np.ascontiguousarray(np.asarray(b1, dtype=np.float32).reshape(h))
        W2a = np.ascontiguousarray(np.asarray(W2, dtype=np.float32).reshape(h))
        return cls(np.ascontiguousarray(W1a), b1a, W2a, float(np.float32(np.asarray(b2).reshape(-1)[0])),
                   act1, act2)


def _check_float32(name: str, value: object) -> None:
    """The stream computes in float32: a finite weight beyond its range is refused, naming the limit."""
    array = np.asarray(value, dtype=np.float64)
    big = np.isfinite(array) & (np.abs(array) > float(np.finfo(np.float32).max))
    if big.any():
        raise MlplabError(f"{name} holds {float(array[big][0])!r}, beyond float32's largest finite value "
                          f"{float(np.finfo(np.float32).max):.8g} (the stream computes in float32)",
                          hint="scale the weights into float32's range")


def torch_forward(X: torch.Tensor, net: Network) -> torch.Tensor:
    """y_hat (n,) for X (n, d) in torch, without the tiny matmuls: each Z1 column is d fused multiply-adds
    over column views, processed in cache-sized, zero-padded blocks (works on any device).

    >>> net = Network.from_arrays([[1.0, -2.5], [-1.5, -1.0], [0.5, -1.5]], [0.5, 2.0], [0.1, -2.0], 0.5,
    ...                           "identity", "identity")
    >>> round(torch_forward(torch.tensor([[0.0, -2.0, 1.0]]), net).item(), 2)
    -4.1
    """
    n = X.shape[0]
    y = torch.empty(n, dtype=torch.float32, device=X.device)
    block = TORCH_BLOCK if X.device.type == "cpu" else max(n, 1)
    w1, b1, w2 = net.W1.tolist(), net.b1.tolist(), net.W2.tolist()
    sigma1, sigma2 = get_activation(net.act1), get_activation(net.act2)
    for s in range(0, n, block):
        Xb = X[s:s + block]
        m = Xb.shape[0]
        if X.device.type == "cpu" and m % PAD:
            padded = torch.zeros((m + PAD - m % PAD, net.d), dtype=torch.float32)
            padded[:m] = Xb
            Xb = padded
        z2 = torch.full((Xb.shape[0],), net.b2, dtype=torch.float32, device=X.device)
        for j in range(net.h):
            Zj = Xb[:, 0] * w1[0][j]  # (m,) column j of Z1
            for k in range(1, net.d):
                Zj.add_(Xb[:, k], alpha=w1[k][j])
            z2.add_(sigma1(Zj.add_(b1[j])), alpha=w2[j])
        y[s:s + m] = sigma2(z2)[:m]
    return y


class ChunkKernel:
    """Forward + summary of chunks for one network, policy and histogram.

    `kernel`: "auto" (native if it compiles, else torch), "native" or "torch". On CUDA the torch kernel
    runs on the GPU and X arrives through pinned host memory with a non-blocking copy.
    """

    def __init__(self, net: Network, edges: np.ndarray, nonfinite: str = "error", kernel: str = "auto",
                 device: torch.device | str = "cpu", threads: int = 1) -> None:
        if nonfinite not in POLICIES:
            raise MlplabError(f"unknown --nonfinite policy {nonfinite!r}", hint="use error, skip or keep")
        if kernel not in ("auto", "native", "torch"):
            raise MlplabError(f"unknown kernel {kernel!r}", hint="use auto, native or torch")
        self.net, self.edges, self.policy = net, np.ascontiguousarray(edges, dtype=np.float32), nonfinite
        self.device = torch.device(device)
        self.native: NativeKernel | None = None
        if self.device.type == "cpu" and kernel != "torch":
            self.native = load_native(net.d, net.h, net.act1, net.act2)
            if self.native is None and kernel == "native":
                why = status().get(kernel_name(net.d, net.h, net.act1, net.act2), "torch: unknown")
                raise MlplabError(f"the native kernel could not be built here ({why.removeprefix('torch: ')})",
                                  hint="use --kernel torch or set CC; `mlplab doctor` shows every kernel")
        self.name = "native" if self.native is not None else f"torch-{self.device.type}"
        self._staging: torch.Tensor | None = None  # page-locked input copy, for unpinned chunks on CUDA
        self._y_host: torch.Tensor | None = None  # page-locked y_hat coming back
        if not 1 <= threads <= MAX_THREADS:
            raise MlplabError(f"threads must be between 1 and {MAX_THREADS}, got {threads}", hint="e.g. --threads 2")
        # the native kernel runs on its own C worker threads (no GIL), started here and stopped by close()
        self._pool: NativePool | None = None
        self._closed = False
        if self.native is not None:
            self._pool = NativePool(self.native, threads, net.W1, net.b1, net.W2, net.b2, POLICIES[nonfinite],
                                    self.edges)

    def __call__(self, X: np.ndarray, row0: int, y: np.ndarray | None = None) -> tuple[np.ndarray, Summary]:
        """Process X (n, d) float32 whose first row is global row `row0`; returns y_hat (n,) and its summary."""
        y = np.empty(X.shape[0], np.float32) if y is None else y[: X.shape[0]]
        return y, self._run(X, row0, y)

    def summarize(self, X: np.ndarray, row0: int) -> Summary:
        """The summary alone: the native kernel then never writes y_hat to memory (one stream less)."""
        return self.start(X, row0)()

    def start(self, X: np.ndarray, row0: int) -> Callable[[], Summary]:
        """Begin `summarize(X, row0)` on the kernel's threads; returns a function that waits for the summary.

        With several chunks started, a thread that finishes its part goes straight on to the next chunk
        instead of waiting for the others at the end of each one.
        """
        return self._start(X, row0, None)

    def _run(self, X: np.ndarray, row0: int, y: np.ndarray | None) -> Summary:
        return self._start(X, row0, y)()

    def _start(self, X: np.ndarray, row0: int, y: np.ndarray | None) -> Callable[[], Summary]:
        if X.ndim != 2 or X.shape[1] != self.net.d:
            raise MlplabError(f"chunk has shape {X.shape}, the network expects {self.net.d} columns",
                              hint="pass data with d columns")
        if self._closed:
            raise RuntimeError("ChunkKernel used after close(); make a new one")
        X = np.ascontiguousarray(X, dtype=np.float32)
        if self._pool is not None:
            wait_stats = self._pool.submit(X, y)
            return lambda: self._native_summary(wait_stats(), X, row0, y)
        parts = [slice(s, min(X.shape[0], s + EXACT_BLOCK_ROWS)) for s in range(0, X.shape[0], EXACT_BLOCK_ROWS)]
        total = Summary(edges=[float(e) for e in self.edges])
        for p in parts:  # exact merge: the split changes nothing in the result
            total = total.merge(self._torch(X[p], row0 + p.start, None if y is None else y[p]))
        return lambda: total

    def _native_y(self, X: np.ndarray, y: np.ndarray) -> None:
        """y_hat of X into y on the calling thread (the native kernel, in calls of at most 2**21 rows)."""
        assert self.native is not None
        net = self.net
        for s in range(0, X.shape[0], EXACT_BLOCK_ROWS):
            self.native(X[s:s + EXACT_BLOCK_ROWS], net.W1, net.b1, net.W2, net.b2, POLICIES[self.policy],
                        y[s:s + EXACT_BLOCK_ROWS], self.edges)

    def _native_summary(self, stats: Stats, X: np.ndarray, row0: int, y: np.ndarray | None) -> Summary:
        counts, sums, minmax, hist = stats
        nfin, first = int(counts[0]), int(counts[1])
        if nfin and self.policy == "error":
            self._raise_nonfinite(row0 + first)
        if nfin and self.policy == "keep":
            # fast-math code gives no IEEE promise on NaN/inf rows: redo them exactly, summarise in NumPy
            if y is None:  # the caller wanted no y_hat, but this (rare) case needs it
                y = np.empty(X.shape[0], np.float32)
                self._native_y(X, y)
            bad = bad_input_rows(X)
            y[bad] = torch_forward(torch.from_numpy(X[bad]), self.net).numpy()
            return summarize_y(y, self.edges, bad, row0)
        s = Summary(edges=[float(e) for e in self.edges], rows=X.shape[0], nonfinite_rows=nfin,
                    first_nonfinite_row=row0 + first if nfin else None, nonfinite_y_hat=int(counts[2]),
                    counted=int(counts[3]), positives=int(counts[4]), sum_units=units_from_isums(sums),
                    hist=hist.tolist())
        if s.counted:
            s.min_y_hat, s.max_y_hat = float(minmax[0]), float(minmax[1])
        return s

    def _torch(self, X: np.ndarray, row0: int, y: np.ndarray | None) -> Summary:
        if y is None:
            y = np.empty(X.shape[0], np.float32)
        if not X.flags.writeable:  # a mapped chunk; torch wants writable memory behind its tensors
            X = np.array(X)
        if self.device.type != "cpu":
            return self._device(X, row0, y)
        bad = bad_input_rows(X)
        if bad.any() and self.policy == "error":
            self._raise_nonfinite(row0 + int(np.argmax(bad)))
        y[:] = torch_forward(torch.from_numpy(X), self.net).numpy()
        if self.policy == "skip":
            y[bad] = np.nan
        return summarize_y(y, self.edges, bad, row0)

    def _device(self, X: np.ndarray, row0: int, y: np.ndarray) -> Summary:
        """GPU: X comes in page-locked memory (the reader's buffers, else a staging buffer kept here), so the
        copy to the device is asynchronous; y_hat, the non-finite check and the summary are computed there,
        and y_hat comes back into page-locked memory."""
        n = X.shape[0]
        Xt = torch.from_numpy(X)
        if self.device.type == "cuda" and not Xt.is_pinned():
            if self._staging is None or self._staging.shape[0] < n:
                self._staging = torch.empty((n, self.net.d), dtype=torch.float32, pin_memory=True)
            self._staging[:n].copy_(Xt)
            Xt = self._staging[:n]
        Xg = Xt.to(self.device, non_blocking=True)
        bad_g = ~torch.isfinite(Xg).all(dim=1)  # (n,)
        if self.policy == "error":
            bad_idx = torch.nonzero(bad_g)
            if bad_idx.numel():
                self._raise_nonfinite(row0 + int(bad_idx[0, 0]))
        yg = torch_forward(Xg, self.net)
        if self.policy == "skip":
            yg[bad_g] = float("nan")
        if self._y_host is None or self._y_host.shape[0] < n:
            self._y_host = torch.empty(n, dtype=torch.float32, pin_memory=self.device.type == "cuda")
        self._y_host[:n].copy_(yg, non_blocking=True)
        summary = summarize_y_torch(yg, self.edges, bad_g, row0)  # syncs the stream, so y_host is complete
        y[:] = self._y_host[:n].numpy()
        return summary

    def close(self) -> None:
        """Finish the chunks started, then stop the native worker threads. Call it once done: a chunk given
        afterwards raises RuntimeError."""
        self._closed = True
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @staticmethod
    def _raise_nonfinite(row: int) -> None:
        raise MlplabError(f"input row {row} (0-based) holds NaN or inf",
                          hint="clean the data, or pass --nonfinite skip (leave such rows out) or keep")
