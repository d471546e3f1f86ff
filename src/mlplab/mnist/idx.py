"""The IDX file format that MNIST ships in: a small header, then one big-endian array.

Layout (LeCun et al., "THE MNIST DATABASE of handwritten digits", the format notes on that page):

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     number of dimensions D
    4 .. 4+4D   D sizes, each a big-endian uint32
    rest        prod(sizes) elements, big-endian, C order

Both readers check the magic number, the dimensions and the exact file length, so a truncated or padded
download is caught here instead of producing a silently wrong array. Files ending in `.gz` are
decompressed first.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from mlplab.errors import MlplabError
from mlplab.fsio import atomic_write_bytes

# IDX type byte -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_FIX = "for MNIST, run `mlplab data fetch`, which replaces it (or replace it by hand, see docs/mnist-data.md)"


def read_idx_bytes(path: str | os.PathLike[str]) -> bytes:
    """The IDX content of `path`, decompressed when the name ends in `.gz`."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError as exc:
        raise MlplabError(f"IDX file {file} does not exist", hint="run `mlplab data fetch`") from exc
    except OSError as exc:
        raise MlplabError(f"cannot read IDX file {file}: {exc.strerror}", hint="check its permissions") from exc
    if file.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise MlplabError(f"{file} is not a complete gzip file ({exc})", hint=_FIX) from exc


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of one IDX file into an array in native byte order; `source` names it in errors.

    >>> parse_idx(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])).tolist()
    [[1, 2, 3], [4, 5, 6]]
    """
    if len(data) < 4:
        raise MlplabError(f"{source} is too short to be an IDX file ({len(data)} bytes)", hint=_FIX)
    if data[:2] == _GZIP_MAGIC:
        raise MlplabError(f"{source} is gzip-compressed but its name does not end in .gz",
                          hint="add .gz to its name or decompress it with `gunzip`")
    zero1, zero2, type_code, ndim = data[:4]
    if zero1 != 0 or zero2 != 0 or type_code not in IDX_DTYPES or ndim == 0:
        raise MlplabError(f"{source} is not an IDX file: magic number 0x{data[:4].hex()} "
                          "(expected 0x0000TTDD, TT a type code in 08 09 0B 0C 0D 0E, DD >= 1 dimensions)", hint=_FIX)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MlplabError(f"{source} is truncated inside its header ({len(data)} of {header} bytes)", hint=_FIX)
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[type_code]
    expected = header + math.prod(dims) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise MlplabError(f"{source} is {what}: {len(data)} bytes, expected {expected} for a "
                          f"{'x'.join(map(str, dims))} array of {dtype.name}", hint=_FIX)
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    # astype copies: the result is writable, native-endian and independent of `data`.
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (or `.gz` of one), checking magic number, dimensions and exact length.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "tiny-idx2-ubyte.gz"
    >>> write_idx(p, np.arange(6, dtype=np.uint8).reshape(2, 3))
    >>> read_idx(p).shape
    (2, 3)
    """
    return parse_idx(read_idx_bytes(path), source=str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of `array` (uint8, int8, int16, int32, float32 or float64, at least one dimension)."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None or array.ndim == 0 or array.ndim > 255:
        raise MlplabError(f"cannot write a {array.ndim}-d {array.dtype} array as IDX",
                          hint="use uint8, int8, int16, int32, float32 or float64 with 1 to 255 dimensions")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write `array` as an IDX file, gzip-compressed when `path` ends in `.gz`; written atomically."""
    data = encode_idx(array)
    if Path(path).suffix == ".gz":
        data = gzip.compress(data, mtime=0)  # mtime=0: the same array always gives the same bytes
    atomic_write_bytes(path, data)
