"""Dropout masks: which hidden units a training step keeps, drawn reproducibly from the run's generator.

On a CPU, torch's `uniform_` runs the Mersenne Twister one number after another (about 4-8 ns each here), and
a batch-64 step of the default MLP needs 57,344 of them: some 13 % of the step (torch profiler), more at
batch 6400. So on a CPU with a C compiler the masks come from a counter-based generator instead, like the
Philox generator GPUs use: unit e of the epoch's stream is kept when

    u_e = (h(key, e) >> 8) / 2^24 >= p,        h = two rounds of a 32-bit integer hash (lowbias32) keyed by `key`,

the same 24-bit uniform resolution as torch's float `uniform_`. `key` is drawn from the run's torch generator
at the start of each epoch and e counts the mask entries drawn since, so a run is reproducible from its seed
and resumes exactly from a checkpoint (which holds the generator's state). Each entry costs a few
instructions, eight at a time (AVX2; mlplab/native/csrc/dropout_keep.c). Where the C kernel is absent (no
compiler, MLPLAB_NATIVE=0, macOS) or the mask lives on a GPU, the same hash runs as torch integer operations
(`keep_mask_torch`), bit for bit the same flags (tests/test_mnist_dropout.py), so a seed gives the same masks on
every machine.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from typing import Any

import torch

from mlplab.native.loader import build


@lru_cache(maxsize=1)
def load() -> Any:
    """The C function `dropout_keep` (mlplab/native/csrc/dropout_keep.c); None where it cannot be built here."""
    lib = build("dropout_keep.c", "dropout_keep")
    if lib is None:
        return None
    fn = lib.dropout_keep
    fn.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int64, ctypes.c_float, ctypes.c_void_p]
    fn.restype = None
    return fn


def keep_mask(key: int, counter: int, p: float, out: torch.Tensor) -> None:
    """Fill `out` (contiguous float32, CPU) with the 0/1 keep flags of entries counter.. of stream `key`."""
    fn = load()
    assert fn is not None and out.is_contiguous() and out.dtype == torch.float32 and out.device.type == "cpu"
    fn(key, counter, out.numel(), p, out.data_ptr())


_M32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x · c) mod 2^32 for int64 x < 2^32 without int64 overflow: c split into 16-bit halves (products < 2^48)."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def _lowbias32(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _threshold(p: float) -> int:
    """ceil(p · 2^24) with p rounded to float32 first, as the C kernel receives it."""
    t = float(torch.tensor(p, dtype=torch.float32)) * 16777216.0
    return int(t) + (int(t) < t)


def keep_flags_torch(key: int, counter: int, count: int, p: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """The keep flags of entries counter..counter+count-1 of stream `key` as a bool tensor on `device`, computed
    with int64 torch operations (CPU or CUDA): the C kernel's hash, bit for bit.

    >>> keep_flags_torch(7, 0, 5, 0.0).tolist()
    [True, True, True, True, True]
    """
    i0 = torch.arange(count, dtype=torch.int64, device=device) + counter
    k0, k1 = key & _M32, (key >> 32) & _M32
    k1h = (_mul32(i0 >> 32, 0x9E3779B9)) ^ k1
    x = _lowbias32(_lowbias32((i0 & _M32) ^ k0) ^ k1h)
    return (x >> 8) >= _threshold(p)


def keep_mask_torch(key: int, counter: int, p: float, out: torch.Tensor) -> None:
    """`keep_mask` for any tensor on any device, in torch: `out` gets 1.0 where kept, 0.0 where dropped."""
    flags = keep_flags_torch(key, counter, out.numel(), p, out.device)
    out.copy_(flags.view(out.shape))


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
        self.native = generator.device.type == "cpu" and load() is not None
        self.kind = "counter-hash"  # C kernel or torch integer ops: the same flags
        self.key: int | None = None
        self.counter = 0

    def begin_epoch(self) -> None:
        """Draw this epoch's key from the run's generator and restart the entry counter."""
        self.key = int(torch.randint(0, 2**62, (1,), generator=self.generator, device=self.generator.device))
        self.counter = 0

    def fill(self, mask: torch.Tensor) -> None:
        """Overwrite `mask` with the next 0/1 keep flags (1 keeps a unit, with probability 1 - p)."""
        if self.key is None:
            self.begin_epoch()
        assert self.key is not None
        if not self.native or mask.device.type != "cpu":
            keep_mask_torch(self.key, self.counter, self.p, mask)
        elif mask.dtype == torch.float32 and mask.is_contiguous():
            keep_mask(self.key, self.counter, self.p, mask)
        else:  # e.g. a float64 model in the tests
            flags = torch.empty(mask.shape)
            keep_mask(self.key, self.counter, self.p, flags)
            mask.copy_(flags)
        self.counter += mask.numel()
