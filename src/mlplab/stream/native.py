"""An optional compiled kernel: the whole d-h-1 forward and the summary statistics in one pass over a chunk.

Torch runs the network op by op (matmul, add, activation, ...), each op a full pass over memory; for a
3-2-1 network that is far slower than reading the data. The small C kernel `mlplab/native/csrc/stream_kernel.c`,
specialised for (d, h, sigma_1, sigma_2) at compile time (-D macros), works through each chunk in cache-sized
blocks, 8 rows per AVX2 instruction (a plain loop where AVX2/FMA are missing). It is built on first use with the
system C compiler (`$CC`, else `cc`) into a per-user cache and loaded with ctypes (which releases the GIL).
`NativePool` runs it on C worker threads that take parts of the submitted chunks, so no Python runs between
parts. No compiler: `load_native` returns None and the torch kernel is used.

Statistics are computed exactly as `summary.summarize_y` defines them (tests compare the two bit for bit):
finiteness, min/max, positives, the histogram against the float32 edges, and the sum exact, as int64
counts of 2**(16p - 150) per 16-exponent bucket p.
"""

from __future__ import annotations

import ctypes
import weakref
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from mlplab.native.loader import build
from mlplab.stream.summary import EXACT_BLOCK_ROWS

ACT_CODES = {"identity": 0, "relu": 1, "sigmoid": 2}
N_ISUMS = 18  # int64 counts of 2**(16p - 150), p < 18 (see mlp_chunk in stream_kernel.c)
SUB_ROWS = 1 << 17  # rows a pool worker takes at a time (1.5 MB of 3 float32 columns)


Stats = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""What the C functions fill: counts (5), isums (N_ISUMS), minmax (2), hist (nb + 2)."""


def new_stats(nb: int) -> Stats:
    """Zeroed arrays for the statistics of a histogram of nb bins."""
    return (np.zeros(5, np.int64), np.zeros(N_ISUMS, np.int64), np.zeros(2, np.float32),
            np.zeros(nb + 2, np.int64))


class NativeKernel:
    """ctypes wrapper of one compiled (d, h, sigma_1, sigma_2) kernel."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self._fn = lib.mlp_chunk
        p, i64 = ctypes.c_void_p, ctypes.c_int64
        self._fn.argtypes = [p, i64, p, p, p, ctypes.c_float, ctypes.c_int, p, p, ctypes.c_int, p, p, p, p]
        self._fn.restype = None
        lib.pool_new.argtypes = [ctypes.c_int, i64, p, p, p, ctypes.c_float, ctypes.c_int, p, ctypes.c_int]
        lib.pool_new.restype = p
        lib.pool_submit.argtypes = [p, p, i64, p]
        lib.pool_submit.restype = ctypes.c_int
        lib.pool_wait.argtypes = [p, ctypes.c_int, p, p, p, p]
        lib.pool_wait.restype = None
        lib.pool_free.argtypes = [p]
        lib.pool_free.restype = None

    def __call__(self, X: np.ndarray, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: float, policy: int,
                 y: np.ndarray | None, edges: np.ndarray) -> Stats:
        """Run on X (n, d) float32 C-contiguous, n <= 2**21; fills y (n,) unless None (then y_hat is only
        summarised, never written to memory); returns counts, isums, minmax, hist."""
        n = X.shape[0]
        assert n <= EXACT_BLOCK_ROWS and X.flags.c_contiguous and (y is None or y.flags.c_contiguous)
        counts, sums, minmax, hist = new_stats(len(edges) - 1)

        def ptr(a: np.ndarray) -> int:
            return a.ctypes.data

        self._fn(ptr(X), n, ptr(W1), ptr(b1), ptr(W2), b2, policy, None if y is None else ptr(y), ptr(edges),
                 len(edges) - 1, ptr(counts), ptr(sums), ptr(minmax), ptr(hist))
        if counts[3] < 0:
            raise MemoryError("the native kernel could not allocate its histogram edges")
        return counts, sums, minmax, hist


class NativePool:
    """`threads` C worker threads that run the kernel over submitted chunks (see `pool_new` in stream_kernel.c).

    `submit(X, y)` queues a chunk and returns a function that waits for its statistics (counts, isums,
    minmax, hist, as `NativeKernel.__call__` gives them). Up to 4 chunks may be unfinished at a time. The
    workers take `sub` rows at a time from the oldest chunk, so they never wait for each other at a chunk's
    end. X and y must stay alive until the chunk is waited for; `close()` finishes every submitted chunk first.
    """

    def __init__(self, kernel: NativeKernel, threads: int, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray,
                 b2: float, policy: int, edges: np.ndarray, sub: int = SUB_ROWS) -> None:
        self._lib, self.nb = kernel.lib, len(edges) - 1
        arrays = [np.ascontiguousarray(a, np.float32) for a in (W1, b1, W2, edges)]
        self._pool = self._lib.pool_new(threads, sub, *(a.ctypes.data for a in arrays[:3]), b2, policy,
                                        arrays[3].ctypes.data, self.nb)  # copies what it keeps
        if not self._pool:
            raise MemoryError(f"could not start {threads} native worker threads")
        self._held: dict[int, tuple[int, np.ndarray, np.ndarray | None]] = {}  # slot: (ticket, X, y)
        self._tickets = 0
        self._finalizer = weakref.finalize(self, self._lib.pool_free, self._pool)  # if never closed

    def submit(self, X: np.ndarray, y: np.ndarray | None = None) -> Callable[[], Stats]:
        assert X.flags.c_contiguous and X.dtype == np.float32 and (y is None or y.flags.c_contiguous)
        slot = self._lib.pool_submit(self._pool, X.ctypes.data, X.shape[0], None if y is None else y.ctypes.data)
        if slot < 0:
            raise RuntimeError("more chunks submitted to the native pool than it has slots (4)")
        self._tickets += 1
        ticket = self._tickets
        self._held[slot] = (ticket, X, y)  # the arrays stay alive while the workers read and write them

        def wait() -> Stats:
            if self._held.get(slot, (0,))[0] != ticket:  # waited for already: the slot may hold another chunk
                raise RuntimeError("a native pool chunk can be waited for once")
            counts, sums, minmax, hist = new_stats(self.nb)
            self._lib.pool_wait(self._pool, slot, counts.ctypes.data, sums.ctypes.data, minmax.ctypes.data,
                                hist.ctypes.data)
            del self._held[slot]
            return counts, sums, minmax, hist

        return wait

    def close(self) -> None:
        """Finish every submitted chunk, then stop the worker threads."""
        if self._pool:
            self._finalizer()  # pool_free, once
            self._pool = None
            self._held.clear()


def units_from_isums(isums: np.ndarray) -> int:
    """The native kernel's per-bucket int64 counts as one exact int in units of 2**-149."""
    total = sum(int(v) << (16 * p) for p, v in enumerate(isums.tolist()))  # units of 2**-150
    assert total % 2 == 0, "float32 sums are whole multiples of 2**-149"
    return total >> 1


def kernel_name(d: int, h: int, act1: str, act2: str) -> str:
    """The name of the kernel for this network, as the loader's `status()` and its cache files give it."""
    return f"mlp_{d}x{h}_{act1}_{act2}"


@lru_cache(maxsize=32)
def load_native(d: int, h: int, act1: str, act2: str) -> NativeKernel | None:
    """Compile (once, cached on disk) and load the kernel for this network; None if impossible here.

    Set MLPLAB_NATIVE=0 to switch it off.
    """
    macros = {"D": d, "H": h, "A1": ACT_CODES[act1], "A2": ACT_CODES[act2]}
    # libmvec holds the vector expf of the portable (non-AVX2) loop
    lib = build("stream_kernel.c", kernel_name(d, h, act1, act2), macros, libs=("-lmvec", "-lm"))
    return NativeKernel(lib) if lib is not None else None
