"""An optional compiled kernel: the whole d-h-1 forward and the summary statistics in one pass over a chunk.

Torch runs the network op by op (matmul, add, activation, ...), each op a full pass over memory; for a
3-2-1 network that is far slower than reading the data. The small C kernel in `native_c.py`, specialised for
(d, h, sigma_1, sigma_2) at compile time, works through each chunk in cache-sized blocks, 8 rows per AVX2
instruction (a plain loop where AVX2/FMA are missing). It is built on first use with the system C compiler
(`$CC`, else `cc`) into a per-user cache and loaded with ctypes (which releases the GIL, so a reader thread
and several compute threads run alongside). No compiler: `load_native` returns None and the torch kernel is
used.

Statistics are computed exactly as `summary.summarize_y` defines them (tests compare the two bit for bit):
finiteness, min/max, positives, the histogram against the float32 edges, and the sum exact, as int64
counts of 2**(16p - 150) per 16-exponent bucket p.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

import numpy as np

from mlplab.cbuild import build
from mlplab.stream.native_c import C_SOURCE
from mlplab.stream.summary import EXACT_BLOCK_ROWS

ACT_CODES = {"identity": 0, "relu": 1, "sigmoid": 2}
N_ISUMS = 18  # int64 counts of 2**(16p - 150), p < 18 (see mlp_chunk in native_c.py)


class NativeKernel:
    """ctypes wrapper of one compiled (d, h, sigma_1, sigma_2) kernel."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._fn = lib.mlp_chunk
        p, i64 = ctypes.c_void_p, ctypes.c_int64
        self._fn.argtypes = [p, i64, p, p, p, ctypes.c_float, ctypes.c_int, p, p, ctypes.c_int, p, p, p, p]
        self._fn.restype = None

    def __call__(self, X: np.ndarray, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, b2: float, policy: int,
                 y: np.ndarray | None, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Run on X (n, d) float32 C-contiguous, n <= 2**21; fills y (n,) unless None (then y_hat is only
        summarised, never written to memory); returns counts, isums, minmax, hist."""
        n = X.shape[0]
        assert n <= EXACT_BLOCK_ROWS and X.flags.c_contiguous and (y is None or y.flags.c_contiguous)
        counts = np.zeros(5, np.int64)
        sums = np.zeros(N_ISUMS, np.int64)
        minmax = np.zeros(2, np.float32)
        hist = np.zeros(len(edges) + 1, np.int64)

        def ptr(a: np.ndarray) -> int:
            return a.ctypes.data

        self._fn(ptr(X), n, ptr(W1), ptr(b1), ptr(W2), b2, policy, None if y is None else ptr(y), ptr(edges),
                 len(edges) - 1, ptr(counts), ptr(sums), ptr(minmax), ptr(hist))
        return counts, sums, minmax, hist


def units_from_isums(isums: np.ndarray) -> int:
    """The native kernel's per-bucket int64 counts as one exact int in units of 2**-149."""
    total = sum(int(v) << (16 * p) for p, v in enumerate(isums.tolist()))  # units of 2**-150
    assert total % 2 == 0, "float32 sums are whole multiples of 2**-149"
    return total >> 1


@lru_cache(maxsize=32)
def load_native(d: int, h: int, act1: str, act2: str) -> NativeKernel | None:
    """Compile (once, cached on disk) and load the kernel for this network; None if impossible here.

    Set MLPLAB_NATIVE=0 to switch it off.
    """
    defines = [f"-DD={d}", f"-DH={h}", f"-DA1={ACT_CODES[act1]}", f"-DA2={ACT_CODES[act2]}"]
    # libmvec holds the vector expf of the portable (non-AVX2) loop
    lib = build(C_SOURCE, f"mlp_{d}x{h}_{act1}_{act2}", defines, libs=("-lmvec", "-lm"))
    return NativeKernel(lib) if lib is not None else None
