"""A summary of y_hat computed on the fly, mergeable across chunks and shards, bit-identical for any chunking.

Counts (rows, positives, histogram, non-finite rows) are exact integers. The sum behind `mean_y_hat` is
exact too: every float32 is an integer multiple of 2**-149, so the sum is kept as a Python int in those
units. Chunks reach it through float64 partial sums taken per exponent bucket (8 float32 exponents per
bucket): a bucket's values are multiples of its smallest ulp and below 2**31 of them, so up to 2**21 of
them add up in float64 without rounding (see `EXACT_BLOCK_ROWS`). Merging adds ints and takes min/max, so
it is associative and commutative: any chunking, any shard order, any engine gives the same bits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from mlplab.errors import MlplabError

SUM_UNIT_EXP = 149
"""float32 values are integer multiples of 2**-149 (the smallest subnormal)."""

N_BUCKETS = 32
EXACT_BLOCK_ROWS = 1 << 21
"""At most this many values go into one float64 bucket sum before it is turned into an exact int."""


def default_edges(activation2: str, bins: int = 20, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Fixed histogram edges (float32, bins + 1 of them), chosen before any data is seen.

    sigmoid outputs lie in [0, 1]; identity and ReLU outputs are unbounded, so [-10, 10] and [0, 10]
    are defaults with under/overflow counts beside them. `lo`/`hi` override.

    >>> default_edges("sigmoid", bins=4).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if bins < 1:
        raise MlplabError(f"histogram needs at least one bin, got {bins}", hint="pass --bins 20")
    dlo, dhi = {"sigmoid": (0.0, 1.0), "relu": (0.0, 10.0)}.get(activation2, (-10.0, 10.0))
    lo = dlo if lo is None else lo
    hi = dhi if hi is None else hi
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise MlplabError(f"histogram range must be finite with lo < hi, got [{lo}, {hi}]",
                          hint="pass --hist-range LO,HI")
    return np.linspace(lo, hi, bins + 1, dtype=np.float64).astype(np.float32)


@dataclass
class Summary:
    """Mergeable statistics of y_hat; `hist` has bins + 2 counts: underflow, the bins, overflow."""

    edges: list[float]
    rows: int = 0  # rows read
    nonfinite_rows: int = 0  # rows whose input holds NaN or +-inf
    first_nonfinite_row: int | None = None  # global index of the first such row
    nonfinite_y_hat: int = 0  # rows whose y_hat is not finite (left out of the statistics below)
    counted: int = 0  # rows in the statistics
    positives: int = 0  # y_hat >= 0.5
    sum_units: int = 0  # exact sum of y_hat in units of 2**-149
    min_y_hat: float = float("inf")
    max_y_hat: float = float("-inf")
    hist: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.hist:
            self.hist = [0] * (len(self.edges) + 1)

    @property
    def mean_y_hat(self) -> float | None:
        """Correctly rounded mean of the counted y_hat (the exact sum divided by the count)."""
        if self.counted == 0:
            return None
        return float(Fraction(self.sum_units, self.counted << SUM_UNIT_EXP))

    def merge(self, other: Summary) -> Summary:
        """Combine two summaries (order does not matter).

        >>> a, b = Summary([0.0, 1.0], rows=2, counted=2), Summary([0.0, 1.0], rows=3, counted=3)
        >>> a.merge(b).rows
        5
        """
        if list(self.edges) != list(other.edges):
            raise MlplabError("cannot merge summaries with different histogram edges",
                              hint="resume with the same --bins and --hist-range")
        firsts = [r for r in (self.first_nonfinite_row, other.first_nonfinite_row) if r is not None]
        return Summary(
            edges=list(self.edges), rows=self.rows + other.rows,
            nonfinite_rows=self.nonfinite_rows + other.nonfinite_rows,
            first_nonfinite_row=min(firsts) if firsts else None,
            nonfinite_y_hat=self.nonfinite_y_hat + other.nonfinite_y_hat,
            counted=self.counted + other.counted, positives=self.positives + other.positives,
            sum_units=self.sum_units + other.sum_units,
            min_y_hat=min(self.min_y_hat, other.min_y_hat), max_y_hat=max(self.max_y_hat, other.max_y_hat),
            hist=[a + b for a, b in zip(self.hist, other.hist)])

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (the exact sum as a decimal string, since it may exceed 2**53)."""
        finite = self.counted > 0
        return {"rows": self.rows, "positives": self.positives, "mean_y_hat": self.mean_y_hat,
                "min_y_hat": self.min_y_hat if finite else None, "max_y_hat": self.max_y_hat if finite else None,
                "counted": self.counted, "nonfinite_rows": self.nonfinite_rows,
                "first_nonfinite_row": self.first_nonfinite_row, "nonfinite_y_hat": self.nonfinite_y_hat,
                "hist_edges": [float(e) for e in self.edges], "hist_underflow": self.hist[0],
                "hist_counts": self.hist[1:-1], "hist_overflow": self.hist[-1],
                "sum_y_hat_units_2^-149": str(self.sum_units)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Summary:
        finite = obj["counted"] > 0
        return cls(edges=list(obj["hist_edges"]), rows=obj["rows"], nonfinite_rows=obj["nonfinite_rows"],
                   first_nonfinite_row=obj["first_nonfinite_row"], nonfinite_y_hat=obj["nonfinite_y_hat"],
                   counted=obj["counted"], positives=obj["positives"],
                   sum_units=int(obj["sum_y_hat_units_2^-149"]),
                   min_y_hat=obj["min_y_hat"] if finite else float("inf"),
                   max_y_hat=obj["max_y_hat"] if finite else float("-inf"),
                   hist=[obj["hist_underflow"], *obj["hist_counts"], obj["hist_overflow"]])


def units_from_bucket_sums(bucket_sums: np.ndarray) -> int:
    """Exact int (units of 2**-149) from float64 bucket sums that are themselves exact."""
    total = 0
    for s in bucket_sums.ravel().tolist():
        if s:
            num, den = float(s).as_integer_ratio()  # den is a power of two <= 2**149
            total += num * ((1 << SUM_UNIT_EXP) // den)
    return total


def bad_input_rows(X: np.ndarray) -> np.ndarray:
    """Boolean (n,) mask of rows holding NaN or +-inf."""
    return ~np.isfinite(X).all(axis=1)


def summarize_y(y_hat: np.ndarray, edges: np.ndarray, bad_rows: np.ndarray | None = None,
                row0: int = 0) -> Summary:
    """Reference summary of a float32 y_hat chunk in NumPy (the native kernel must agree bit for bit).

    `bad_rows` marks rows whose input was not finite (counted in `nonfinite_rows`); `row0` is the
    chunk's first global row.

    >>> s = summarize_y(np.array([0.25, 0.75], np.float32), default_edges("sigmoid", 2))
    >>> s.rows, s.positives, s.mean_y_hat, s.hist
    (2, 1, 0.5, [0, 1, 1, 0])
    """
    y = np.ascontiguousarray(y_hat, dtype=np.float32).reshape(-1)
    edges = np.asarray(edges, dtype=np.float32)
    s = Summary(edges=[float(e) for e in edges], rows=int(y.size))
    if bad_rows is not None and bad_rows.any():
        s.nonfinite_rows = int(bad_rows.sum())
        s.first_nonfinite_row = row0 + int(np.argmax(bad_rows))
    finite = np.isfinite(y)
    v = y[finite]
    s.nonfinite_y_hat = int(y.size - v.size)
    s.counted = int(v.size)
    if v.size == 0:
        return s
    s.positives = int(np.count_nonzero(v >= np.float32(0.5)))
    s.min_y_hat, s.max_y_hat = float(v.min()), float(v.max())
    idx = np.searchsorted(edges, v, side="right")  # number of edges <= v: 0 = underflow
    idx[v == edges[-1]] = len(edges) - 1  # the last bin is closed on the right, as in numpy.histogram
    s.hist = np.bincount(idx, minlength=len(edges) + 1).tolist()
    bucket = (v.view(np.uint32) >> 26) & 31  # 8 float32 exponents per bucket
    for start in range(0, v.size, EXACT_BLOCK_ROWS):
        part = slice(start, start + EXACT_BLOCK_ROWS)
        sums = np.bincount(bucket[part], weights=v[part].astype(np.float64), minlength=N_BUCKETS)
        s.sum_units += units_from_bucket_sums(sums)
    return s


def summarize_y_torch(y_hat: torch.Tensor, edges: np.ndarray, bad_rows: torch.Tensor | None = None,
                      row0: int = 0) -> Summary:
    """`summarize_y` for a float32 tensor on any device (the GPU path), with the same bits as the NumPy one.

    >>> s = summarize_y_torch(torch.tensor([0.25, 0.75]), default_edges("sigmoid", 2))
    >>> s == summarize_y(np.array([0.25, 0.75], np.float32), default_edges("sigmoid", 2))
    True
    """
    y = y_hat.reshape(-1).to(torch.float32)
    e = torch.as_tensor(np.asarray(edges, np.float32), device=y.device)
    s = Summary(edges=[float(x) for x in np.asarray(edges, np.float32)], rows=int(y.numel()))
    if bad_rows is not None:
        bad_idx = torch.nonzero(bad_rows)
        if bad_idx.numel():
            s.nonfinite_rows = int(bad_idx.shape[0])
            s.first_nonfinite_row = row0 + int(bad_idx[0, 0])
    v = y[torch.isfinite(y)]
    s.nonfinite_y_hat = int(y.numel() - v.numel())
    s.counted = int(v.numel())
    if v.numel() == 0:
        return s
    s.positives = int((v >= 0.5).sum())
    s.min_y_hat, s.max_y_hat = float(v.min()), float(v.max())
    idx = torch.searchsorted(e, v, right=True)  # number of edges <= v
    idx[v == e[-1]] = len(edges) - 1
    s.hist = torch.bincount(idx, minlength=len(edges) + 1).tolist()
    bucket = ((v.view(torch.int32) >> 26) & 31).long()
    for start in range(0, v.numel(), EXACT_BLOCK_ROWS):  # each bucket sum exact in any order (module doc)
        part = slice(start, start + EXACT_BLOCK_ROWS)
        sums = torch.zeros(N_BUCKETS, dtype=torch.float64, device=y.device)
        sums.index_add_(0, bucket[part], v[part].double())
        s.sum_units += units_from_bucket_sums(sums.cpu().numpy())
    return s
