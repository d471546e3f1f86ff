"""Dropout masks: which hidden units a training step keeps, drawn reproducibly from the run's generator.

On a CPU, torch's `uniform_` runs the Mersenne Twister one number after another (about 4-8 ns each here), and
a batch-64 step of the default MLP needs 57,344 of them: some 13 % of the step (torch profiler), more at
batch 6400. So on a CPU with a C compiler the masks come from a counter-based generator instead, like the
Philox generator GPUs use: unit e of the epoch's stream is kept when

    u_e = (h(key, e) >> 8) / 2^24 >= p,        h = two rounds of a 32-bit integer hash (lowbias32) keyed by `key`,

the same 24-bit uniform resolution as torch's float `uniform_`. `key` is drawn from the run's torch generator
at the start of each epoch and e counts the mask entries drawn since, so a run is reproducible from its seed
and resumes exactly from a checkpoint (which holds the generator's state). Each entry costs a few
instructions, eight at a time (AVX2). On a GPU, or without a compiler (or MLPLAB_NATIVE=0), the masks are
`uniform_(generator) >= p` as before; the two sources give statistically equal, not identical, masks.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from typing import Any

import torch

from mlplab.cbuild import build

C_SOURCE = r"""
#include <stdint.h>
static inline uint32_t lowbias32(uint32_t x) {  /* C. Wellons' 32-bit integer hash (xorshift-multiply) */
    x ^= x >> 16; x *= 0x7feb352du; x ^= x >> 15; x *= 0x846ca68bu; x ^= x >> 16;
    return x;
}
/* out[e] = 1.0f if unit counter + e is kept (its 24-bit uniform >= p), else 0.0f, e < count */
void dropout_keep(uint64_t key, uint64_t counter, int64_t count, float p, float *restrict out) {
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    double t = (double)p * 16777216.0;
    uint32_t threshold = (uint32_t)t + ((double)(uint32_t)t < t);  /* ceil(p * 2^24): u >= p <=> x >= it */
    for (int64_t e = 0; e < count;) {  /* runs where the counter's high word is constant (a vector loop) */
        uint64_t i0 = counter + (uint64_t)e;
        uint32_t lo = (uint32_t)i0, k1h = k1 ^ ((uint32_t)(i0 >> 32) * 0x9e3779b9u);
        int64_t run = count - e, room = (int64_t)(0x100000000ull - lo);
        run = run < room ? run : room;
        float *o = out + e;
        for (int64_t r = 0; r < run; r++) {
            uint32_t x = lowbias32(lowbias32((lo + (uint32_t)r) ^ k0) ^ k1h);
            o[r] = (x >> 8) >= threshold ? 1.0f : 0.0f;
        }
        e += run;
    }
}
"""


@lru_cache(maxsize=1)
def _load() -> Any:
    lib = build(C_SOURCE, "dropout_keep", [])
    if lib is None:
        return None
    fn = lib.dropout_keep
    fn.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int64, ctypes.c_float, ctypes.c_void_p]
    fn.restype = None
    return fn


def keep_mask(key: int, counter: int, p: float, out: torch.Tensor) -> None:
    """Fill `out` (contiguous float32, CPU) with the 0/1 keep flags of entries counter.. of stream `key`."""
    fn = _load()
    assert fn is not None and out.is_contiguous() and out.dtype == torch.float32 and out.device.type == "cpu"
    fn(key, counter, out.numel(), p, out.data_ptr())


class DropoutStream:
    """The 0/1 keep masks of one run, drawn in order from `generator` (see the module's docstring).

    >>> stream = DropoutStream(torch.Generator().manual_seed(0), 0.5)
    >>> mask = torch.empty(2, 1000)
    >>> stream.fill(mask)
    >>> 0.4 < mask.mean().item() < 0.6 and set(mask.unique().tolist()) == {0.0, 1.0}
    True
    """

    def __init__(self, generator: torch.Generator, p: float) -> None:
        self.generator, self.p = generator, float(p)
        self.counted = generator.device.type == "cpu" and _load() is not None
        self.kind = "counter-hash" if self.counted else "uniform"
        self.key: int | None = None
        self.counter = 0

    def begin_epoch(self) -> None:
        """Draw this epoch's key from the generator (only the counter-based source uses the generator here)."""
        if self.counted:
            self.key = int(torch.randint(0, 2**62, (1,), generator=self.generator))
            self.counter = 0

    def fill(self, mask: torch.Tensor) -> None:
        """Overwrite `mask` with the next 0/1 keep flags (1 keeps a unit, with probability 1 - p)."""
        if not self.counted or mask.device.type != "cpu":
            mask.uniform_(generator=self.generator).ge_(self.p)
            return
        if self.key is None:
            self.begin_epoch()
        assert self.key is not None
        if mask.dtype == torch.float32 and mask.is_contiguous():
            keep_mask(self.key, self.counter, self.p, mask)
        else:  # e.g. a float64 model in the tests
            flags = torch.empty(mask.shape)
            keep_mask(self.key, self.counter, self.p, flags)
            mask.copy_(flags)
        self.counter += mask.numel()
