"""Where the rows come from: `.npy` files, raw little-endian float32 files, or a seeded synthetic source.

Every source answers `read(start, stop, out)`: rows [start, stop) as float32 (rows, d) written into a
caller-owned buffer, so memory stays at the buffers the engine owns whatever N is. float32 files also
answer `mapped(start, stop)`: the same rows as a read-only view of a memory map of the file, no copy at all
(rows not in the page cache are first faulted in, 48 MB at a time, on the caller's thread);
`drop(start, stop)` unmaps them again once used, so mapped pages never pile up in the resident set over a
12 TB run (and a fresh map every GiB lets the old one go whole, with the page tables that mapped it).
Elsewhere (float64 files, a range across two files: `spans` splits at file boundaries, systems without
madvise, cold rows on Linux before 5.14) files are read with `os.preadv` into the buffer.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import functools
import glob
import hashlib
import mmap
import os
import re
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlplab.errors import MlplabError

SYNTHETIC_BLOCK = 1 << 16
"""Synthetic rows are generated in blocks of this many; block b comes from (seed, b) alone."""


@dataclass
class _File:
    path: Path
    offset: int  # bytes before the first row
    rows: int
    dtype: np.dtype


class Source:
    """Base class: `rows`, `d`, a `name`, `read` and a JSON `fingerprint` for the manifest."""

    name: str = "source"
    rows: int = 0
    d: int = 0

    def read(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def spans(self, start: int, stop: int) -> list[tuple[int, int]]:
        """[start, stop) cut where the rows' storage changes (file boundaries)."""
        return [(start, stop)]

    def mapped(self, start: int, stop: int) -> np.ndarray | None:
        """Rows [start, stop) without a copy, where the storage allows it; else None (then use `read`)."""
        return None

    def drop(self, start: int, stop: int) -> None:
        """Done with the rows [start, stop) that `mapped` gave: free what holds them."""

    def close(self) -> None:
        """Let go of open files and maps (the source opens them again if read later)."""

    def fingerprint(self) -> dict[str, Any]:
        raise NotImplementedError


class FileSource(Source):
    """One or many files of float rows read back to back, as one table of `rows` x `d`."""

    def __init__(self, files: list[_File], d: int, kind: str) -> None:
        self.files, self.d, self.kind = files, d, kind
        self.rows = sum(f.rows for f in files)
        self.starts = np.cumsum([0] + [f.rows for f in files]).tolist()
        self.name = str(files[0].path) if len(files) == 1 else f"{files[0].path} (+{len(files) - 1} files)"
        self._fds: dict[int, int] = {}
        self._maps: dict[int, tuple[mmap.mmap, int]] = {}  # file: (its map now, the byte it began serving at)
        self._served: dict[int, mmap.mmap] = {}  # the first row of each chunk handed out: the map it came from

    def read(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Rows [start, stop) into out[: stop - start] (float32)."""
        view = out[: stop - start]
        for i, f in enumerate(self.files):
            lo, hi = max(start, self.starts[i]), min(stop, self.starts[i + 1])
            if lo >= hi:
                continue
            dest = view[lo - start: hi - start]
            first = lo - self.starts[i]
            if f.dtype == np.float32:
                self._pread(i, f, first, dest)
            else:  # float64 files are read then rounded to float32
                tmp = np.empty((hi - lo, self.d), f.dtype)
                self._pread(i, f, first, tmp)
                _check_float32_range(tmp, f.path, lo)
                dest[...] = tmp
        return view

    def spans(self, start: int, stop: int) -> list[tuple[int, int]]:
        cuts = [c for c in self.starts[1:-1] if start < c < stop]
        return list(zip([start, *cuts], [*cuts, stop]))

    def mapped(self, start: int, stop: int) -> np.ndarray | None:
        """Rows [start, stop) of one float32 file as a read-only view of a map of the whole file (None if
        the range crosses files, the file holds float64, or the system has no madvise). Rows not yet in the
        page cache are read in first, here, by one sequential pass of page faults (MADV_POPULATE_READ), which
        the kernel's read-ahead serves like a plain sequential read of a map; where that is not available
        (Linux before 5.14) such rows give None, and `read` copies them. `drop` lets the pages go again."""
        i = bisect.bisect_right(self.starts, start) - 1
        f = self.files[i]
        if stop > self.starts[i + 1] or f.dtype != np.float32 or not hasattr(mmap, "MADV_DONTNEED"):
            return None
        pos, size = f.offset + (start - self.starts[i]) * self.d * 4, (stop - start) * self.d * 4
        file_size = os.fstat(self._fd(i)).st_size
        if file_size < pos + size:  # reading a mapped page past the end would be a SIGBUS
            return None  # `read` reports the truncated file
        now = self._maps.get(i)
        if now is None or not now[1] <= pos < now[1] + REMAP_BYTES:
            # unmapping pages (`drop`) leaves the page tables that mapped them on kernels that do not reclaim
            # them: 12 TB through one map would leave ~23 GB of them. A fresh map now and then lets the old one
            # go whole once its chunks are dropped and their views gone.
            now = self._maps[i] = (mmap.mmap(self._fd(i), 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ), pos)
        m = now[0]
        X = np.frombuffer(m, np.float32, (stop - start) * self.d, pos).reshape(stop - start, self.d)
        # not in the page cache: fault it in now, on the reader's thread, in order, and READ_AHEAD bytes at
        # least (the next chunks then find theirs resident); page faults from the compute threads at once,
        # or in pieces of a few MB, keep fewer reads in flight, which the storage serves worse (measured:
        # docs/streaming.md)
        if not (_resident(X.ctypes.data, size)
                or _populate(X.ctypes.data, min(max(size, READ_AHEAD), file_size - pos))):
            return None
        self._served[start] = m
        return X

    def drop(self, start: int, stop: int) -> None:
        """Unmap the pages of rows [start, stop) (of one file) that `mapped` handed out: they leave this
        process's resident set (the page cache keeps them). A page shared with later rows stays."""
        i = bisect.bisect_right(self.starts, start) - 1
        m = self._served.pop(start, None)
        if m is None:
            return
        f, page = self.files[i], mmap.PAGESIZE
        lo = (f.offset + (start - self.starts[i]) * self.d * 4) // page * page
        hi = (f.offset + (stop - self.starts[i]) * self.d * 4) // page * page
        if stop == self.starts[i + 1]:
            hi = len(m)
        if hi > lo:
            _madvise(m, lo, hi - lo, mmap.MADV_DONTNEED)

    def _fd(self, i: int) -> int:
        fd = self._fds.get(i)
        if fd is None:
            fd = self._fds[i] = _open(self.files[i].path)
        return fd

    def _pread(self, i: int, f: _File, first_row: int, dest: np.ndarray) -> None:
        fd = self._fd(i)
        buf = memoryview(dest).cast("B")  # type: ignore[arg-type]
        pos, got = f.offset + first_row * self.d * f.dtype.itemsize, 0
        while got < len(buf):  # a single read may return fewer bytes (Linux caps one at ~2 GiB)
            n = os.preadv(fd, [buf[got:]], pos + got)
            if n <= 0:
                raise MlplabError(f"{f.path} ended early: read {got} of {len(buf)} bytes at offset {pos}",
                                  hint="the file is truncated or changed during the run")
            got += n

    def fingerprint(self) -> dict[str, Any]:
        """The files' identity for the manifest: path, size, modification time and a hash of sampled blocks, so
        a --resume on a file rewritten in place (same size, other numbers) is noticed, not mixed in."""
        blocks = max(2, min(16, 256 // len(self.files)))
        size = max(4096, min(_SAMPLE_BYTES, (16 << 20) // (blocks * len(self.files))))  # at most ~16 MiB read
        return {"kind": self.kind, "d": self.d, "rows": self.rows,
                "files": [_identity(f.path, blocks, size) for f in self.files]}

    def close(self) -> None:
        for m in [m for m, _ in self._maps.values()] + list(self._served.values()):
            with contextlib.suppress(BufferError):  # an array still views it: the map goes with the last one
                m.close()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._maps.clear()
        self._served.clear()

    def __getstate__(self) -> dict[str, Any]:  # file descriptors and maps do not travel to Dask workers
        state = self.__dict__.copy()
        state["_fds"], state["_maps"], state["_served"] = {}, {}, {}
        return state


class SyntheticSource(Source):
    """`rows` x `d` standard-normal float32 rows (scaled by 2), block b drawn from (seed, b) alone.

    >>> s = SyntheticSource(10, 3, seed=1); a = s.read(2, 5, np.empty((8, 3), np.float32))
    >>> bool(np.array_equal(a, s.read(0, 10, np.empty((10, 3), np.float32))[2:5]))
    True
    """

    def __init__(self, rows: int, d: int, seed: int = 0) -> None:
        self.rows, self.d, self.seed = rows, d, seed
        self.name = f"synthetic:{rows} (seed {seed})"

    def block(self, b: int, out: np.ndarray | None = None) -> np.ndarray:
        """Block b's rows, drawn into `out` (n, d) float32 if given."""
        rng = np.random.default_rng([self.seed, b])  # independent stream per block: any order, any worker
        n = min(SYNTHETIC_BLOCK, self.rows - b * SYNTHETIC_BLOCK)
        out = np.empty((n, self.d), np.float32) if out is None else out
        rng.standard_normal(out=out, dtype=np.float32)
        out *= np.float32(2.0)
        return out

    def read(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Rows [start, stop) into out; whole blocks are drawn in place, several at once on a few threads
        (NumPy's generators let go of the GIL), which is what limits this source."""
        view = out[: stop - start]

        def fill(b: int) -> None:
            b0 = b * SYNTHETIC_BLOCK
            lo, hi = max(start, b0), min(stop, b0 + SYNTHETIC_BLOCK)
            if hi - lo == min(SYNTHETIC_BLOCK, self.rows - b0) and view.flags.c_contiguous:
                self.block(b, view[lo - start: hi - start])
            else:  # part of a block: draw it whole, keep the part
                view[lo - start: hi - start] = self.block(b)[lo - b0: hi - b0]

        blocks = range(start // SYNTHETIC_BLOCK, (stop - 1) // SYNTHETIC_BLOCK + 1)
        if len(blocks) > 1 and _generator_threads() > 1:
            list(_generator_pool().map(fill, blocks))
        else:
            for b in blocks:
                fill(b)
        return view

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "synthetic", "rows": self.rows, "d": self.d, "seed": self.seed}


def _generator_threads() -> int:
    return min(4, os.cpu_count() or 1)


@functools.lru_cache(maxsize=1)
def _generator_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(_generator_threads(), thread_name_prefix="mlplab-synthetic")


if hasattr(os, "register_at_fork"):  # a forked child has none of the parent's threads: it starts its own pool
    os.register_at_fork(after_in_child=_generator_pool.cache_clear)


def parse_count(text: str) -> int:
    """'1e9', '1_000_000' or '10**6' as a positive int.

    >>> parse_count("1e9"), parse_count("2**20")
    (1000000000, 1048576)
    """
    t = text.strip().replace("_", "")
    try:
        if "**" in t:
            base, exp = t.split("**")
            value = int(base) ** int(exp)
        else:
            f = float(t)
            value = int(f)
            if value != f:
                raise ValueError
    except (ValueError, OverflowError) as exc:
        raise MlplabError(f"cannot read {text!r} as a row count", hint="write e.g. 1000000, 1e9 or 2**30") from exc
    if value <= 0:
        raise MlplabError(f"row count must be positive, got {text!r}", hint="e.g. synthetic:1e6")
    return value


def open_source(spec: str, d: int, columns: int | None = None, seed: int = 0) -> Source:
    """Open SOURCE: `synthetic:N[:SEED]`, a `.npy` file or glob, or raw float32 file(s) with `columns`.

    `d` is the network's input size; a source with another number of columns is an error.

    >>> open_source("synthetic:1e3", d=3).rows
    1000
    """
    if spec.startswith("synthetic:"):
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise MlplabError(f"bad synthetic source {spec!r}", hint="write synthetic:N or synthetic:N:SEED")
        if len(parts) == 3:
            if not parts[2].isdigit():
                raise MlplabError(f"bad seed in {spec!r}", hint="write synthetic:N:SEED with an integer seed")
            seed = int(parts[2])
        return SyntheticSource(parse_count(parts[1]), d, seed)
    paths = sorted(Path(p) for p in glob.glob(spec)) if re.search(r"[*?\[]", spec) else [Path(spec)]
    if not paths:
        raise MlplabError(f"no file matches {spec!r}", hint="check the pattern (quote it so the shell keeps it)")
    npy = [p.suffix == ".npy" for p in paths]
    if any(npy) and not all(npy):
        raise MlplabError(f"{spec!r} mixes .npy and raw files", hint="stream one kind at a time")
    if all(npy):
        files = [_npy_file(p) for p in paths]
        cols = {c for _, c in files}
        if len(cols) != 1:
            raise MlplabError(f"the .npy files have different column counts {sorted(cols)}",
                              hint="every file needs the same d columns")
        got = cols.pop()
        if columns is not None and columns != got:
            raise MlplabError(f"--columns {columns} but the .npy files have {got} columns", hint="drop --columns")
        _check_d(got, d, spec)
        return FileSource([f for f, _ in files], got, "npy")
    width = columns if columns is not None else d
    if width <= 0:
        raise MlplabError(f"--columns must be positive, got {width}", hint="the number of float32 values per row")
    _check_d(width, d, spec)
    return FileSource([_raw_file(p, width) for p in paths], width, "raw-float32-le")


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_float32_range(rows: np.ndarray, path: Path, first_row: int) -> None:
    """Finite float64 values beyond float32's range would become inf when rounded: name the row and the limit."""
    with np.errstate(invalid="ignore"):
        big = np.abs(rows) > _FLOAT32_MAX  # NaN compares False: the non-finite policy handles NaN and inf
    big &= np.isfinite(rows)
    if big.any():
        r, c = (int(v) for v in np.argwhere(big)[0])
        raise MlplabError(f"{path}: input row {first_row + r} (0-based) holds {float(rows[r, c])!r}, beyond float32's "
                          f"largest finite value {_FLOAT32_MAX:.8g} (the stream computes in float32)",
                          hint="scale the data into float32's range")


def _check_d(got: int, d: int, spec: str) -> None:
    if got != d:
        raise MlplabError(f"{spec} has {got} columns but the network takes d = {d} inputs",
                          hint="use data with d columns, or a problem file whose W1 has that many rows")


def _resident(addr: int, size: int) -> bool:
    """Are the first, middle and last pages of [addr, addr + size) in memory (mincore)? True if unknown.

    Linux answers for the page cache only on files the caller owns or may write; elsewhere unmapped pages
    read as absent, and the caller then faults in pages that were cached already (which costs only the
    mapping)."""
    if _libc is None or size <= 0:
        return True
    page = mmap.PAGESIZE
    flag = ctypes.c_ubyte()
    for a in (addr, addr + size // 2, addr + size - 1):
        if _libc.mincore(ctypes.c_void_p(a // page * page), ctypes.c_size_t(page), ctypes.byref(flag)) != 0:
            return True
        if not flag.value & 1:
            return False
    return True


def _madvise(m: mmap.mmap, offset: int, length: int, advice: int) -> None:
    """m.madvise, but through ctypes, which lets go of the GIL: unmapping 12 MB of pages takes a while, and
    the reader thread needs the GIL meanwhile."""
    if _libc is None:
        m.madvise(advice, offset, length)
        return
    _madvise_at(np.frombuffer(m, np.uint8, 1).ctypes.data + offset, length, advice)  # the map's address + offset


def _madvise_at(addr: int, length: int, advice: int) -> bool:
    """madvise on [addr, addr + length), addr rounded down to its page, without the GIL; True if it worked."""
    assert _libc is not None
    lo = addr // mmap.PAGESIZE * mmap.PAGESIZE
    return _libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(addr + length - lo), ctypes.c_int(advice)) == 0


MADV_POPULATE_READ = 22  # Linux 5.14+
REMAP_BYTES = 1 << 30
"""How much of a file `FileSource.mapped` serves from one map before it starts a fresh one."""
READ_AHEAD = 48 << 20
"""Bytes of a file that `FileSource.mapped` faults in at once when it meets rows not in the page cache."""


def _populate(addr: int, size: int) -> bool:
    """Fault in the pages of [addr, addr + size) of a file map, reading them from storage (without the GIL);
    False where the kernel cannot (then nothing happened)."""
    if _libc is None or not sys.platform.startswith("linux"):
        return False
    return _madvise_at(addr, size, MADV_POPULATE_READ)


def _load_libc() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc if hasattr(libc, "mincore") and hasattr(libc, "madvise") else None
    except (OSError, AttributeError):
        return None


_libc = _load_libc()


def _open(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise MlplabError(f"cannot read {path}: {exc.strerror}", hint="check the path and its permissions") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise MlplabError(f"SOURCE {path} is {kind}", hint=f"pass a file, or a quoted glob such as '{path}/*.npy'")
    return fd


_SAMPLE_BYTES = 1 << 16


def _identity(path: Path, blocks: int, block_bytes: int = _SAMPLE_BYTES) -> dict[str, Any]:
    """Path, size, mtime (ns) and the SHA-256 of `blocks` evenly spaced blocks (first and last included)."""
    fd = _open(path)
    try:
        info = os.fstat(fd)
        size = info.st_size
        digest = hashlib.sha256()
        last = max(0, size - block_bytes)
        for offset in sorted({last * k // (blocks - 1) for k in range(blocks)}):
            digest.update(os.pread(fd, block_bytes, offset))
    finally:
        os.close(fd)
    return {"path": str(path.resolve()), "bytes": size, "mtime_ns": info.st_mtime_ns,
            "sample_sha256": digest.hexdigest()[:32]}


def _npy_file(path: Path) -> tuple[_File, int]:
    fd = _open(path)
    try:
        with os.fdopen(os.dup(fd), "rb") as fh:
            try:
                version = np.lib.format.read_magic(fh)
                read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                               (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read_header is None:
                    raise ValueError(f"unsupported .npy version {version}")
                shape, fortran, dtype = read_header(fh)
            except (ValueError, OSError, SyntaxError) as exc:
                raise MlplabError(f"{path} is not a readable .npy file ({exc})",
                                  hint="write it with numpy.save, or pass raw float32 with --columns") from exc
            offset = fh.tell()
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if dtype.str not in ("<f4", "<f8") or fortran or len(shape) != 2:
        raise MlplabError(f"{path} holds {dtype.str} {'Fortran ' if fortran else ''}array of shape {shape}",
                          hint="need a C-order 2-D float32 (or float64) array of shape (N, d)")
    need = offset + shape[0] * shape[1] * dtype.itemsize
    if size < need:
        raise MlplabError(f"{path} is truncated: {size} bytes, its header promises {need}",
                          hint="write the file again")
    return _File(path, offset, int(shape[0]), dtype), int(shape[1])


def _raw_file(path: Path, columns: int) -> _File:
    os.close(_open(path))
    size = path.stat().st_size
    row_bytes = 4 * columns
    if size % row_bytes:
        raise MlplabError(f"{path} has {size} bytes, not a whole number of {columns}-column float32 rows",
                          hint="check --columns (raw files hold little-endian float32, row after row)")
    return _File(path, 0, size // row_bytes, np.dtype("<f4"))
