"""The IDX reader and writer, on small synthetic files: round trips, and every way a file can be broken."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlplab.errors import MlplabError
from mlplab.mnist.idx import encode_idx, parse_idx, read_idx, write_idx

DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]


def _hand_made(type_code: int, dims: tuple[int, ...], body: bytes) -> bytes:
    """IDX bytes assembled from the format description, independently of `encode_idx`."""
    return bytes([0, 0, type_code, len(dims)]) + b"".join(struct.pack(">I", n) for n in dims) + body


def test_reads_hand_made_uint8_file(tmp_path):
    path = tmp_path / "tiny-idx2-ubyte"
    path.write_bytes(_hand_made(0x08, (2, 3), bytes([0, 1, 2, 253, 254, 255])))
    array = read_idx(path)
    assert array.dtype == np.uint8 and array.shape == (2, 3)
    np.testing.assert_array_equal(array, np.array([[0, 1, 2], [253, 254, 255]], dtype=np.uint8))


def test_reads_big_endian_int32_and_float64(tmp_path):
    ints = _hand_made(0x0C, (3,), struct.pack(">3i", 1, -2, 70000))
    np.testing.assert_array_equal(parse_idx(ints), np.array([1, -2, 70000], dtype=np.int32))
    floats = _hand_made(0x0E, (2,), struct.pack(">2d", 0.5, -1e300))
    result = parse_idx(floats)
    assert result.dtype == np.float64 and result.dtype.isnative
    np.testing.assert_array_equal(result, np.array([0.5, -1e300]))


def test_writer_emits_the_format_bytes_exactly():
    array = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
    assert encode_idx(array) == _hand_made(0x08, (2, 3), bytes([1, 2, 3, 4, 5, 6]))
    assert encode_idx(np.array([258], dtype=np.int16)) == _hand_made(0x0B, (1,), b"\x01\x02")


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(DTYPES).flatmap(lambda dt: hnp.arrays(
    dt, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    elements={"allow_nan": False} if dt.startswith("float") else None)), st.booleans())
def test_round_trip_any_dtype_and_shape(tmp_path_factory, array, compressed):
    path = tmp_path_factory.mktemp("idx") / ("a.idx.gz" if compressed else "a.idx")
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == array.dtype and back.shape == array.shape and back.flags.writeable
    np.testing.assert_array_equal(back, array)


def test_gz_file_is_gzip_on_disk(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "a.gz", array)
    assert gzip.decompress((tmp_path / "a.gz").read_bytes()) == encode_idx(array)


@pytest.mark.parametrize("header,why", [
    (bytes([1, 0, 8, 1]), "not an IDX file"),       # first byte must be zero
    (bytes([0, 0, 0x0A, 1]), "not an IDX file"),    # 0x0A is not a type code
    (bytes([0, 0, 8, 0]), "not an IDX file"),       # zero dimensions
    (b"\x1f\x8b\x08\x00", "gzip-compressed"),       # a .gz saved without its suffix
])
def test_wrong_magic_number_names_file_and_fix(tmp_path, header, why):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(header + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(MlplabError, match=why) as err:
        read_idx(path)
    assert str(path) in str(err.value)
    assert "mlplab data fetch" in str(err.value) or "gunzip" in str(err.value)


@pytest.mark.parametrize("dims,body_len,why", [
    ((3, 3), 6, "truncated"),                       # header promises 9 bytes, 6 present
    ((2, 2), 5, "longer than its header says"),     # one extra byte
    ((60000, 28, 28), 784, "truncated"),            # a cut-off MNIST-sized download
])
def test_dimensions_must_match_file_length(tmp_path, dims, body_len, why):
    path = tmp_path / "x-idx-ubyte"
    path.write_bytes(_hand_made(0x08, dims, bytes(body_len)))
    with pytest.raises(MlplabError, match=why) as err:
        read_idx(path)
    assert str(path) in str(err.value) and "mlplab data fetch" in str(err.value)


def test_truncated_header_and_tiny_file(tmp_path):
    path = tmp_path / "h-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 1]))  # says 3 dims, has only one size
    with pytest.raises(MlplabError, match="truncated inside its header"):
        read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(MlplabError, match="too short"):
        read_idx(path)


def test_truncated_gz_is_reported(tmp_path):
    path = tmp_path / "t-idx1-ubyte.gz"
    write_idx(path, np.arange(200, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(MlplabError, match="not a complete gzip file") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_missing_file_says_to_fetch(tmp_path):
    with pytest.raises(MlplabError, match=r"does not exist.*mlplab data fetch"):
        read_idx(tmp_path / "absent-idx1-ubyte")


@pytest.mark.parametrize("array", [np.zeros(3, dtype=np.int64), np.array(5, dtype=np.uint8)])
def test_writer_rejects_what_idx_cannot_hold(tmp_path, array):
    with pytest.raises(MlplabError, match="cannot write"):
        write_idx(tmp_path / "x", array)
    assert list(tmp_path.iterdir()) == []
