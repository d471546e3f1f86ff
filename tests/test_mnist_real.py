"""The real MNIST files in the cache: checksums, shapes, labels and the normalization constants.

Skipped when the files are absent, unless MLPLAB_REQUIRE_MNIST=1 (CI sets it after `mlplab data fetch`),
in which case their absence is a failure.
"""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from mlplab.cli import main
from mlplab.mnist.data import MEAN, STD, load_mnist
from mlplab.mnist.fetch import MNIST_FILES, cached_path, verify_mnist
from mlplab.mnist.idx import read_idx

pytestmark = pytest.mark.mnist

# Published values, typed in rather than computed: MD5 of each uncompressed file, and images per digit 0..9.
CANONICAL_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
TRAIN_DIGITS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_DIGITS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def folder(real_mnist_dir):
    return real_mnist_dir


@pytest.fixture(scope="module")
def splits(folder):
    return load_mnist(folder)


def test_files_have_the_canonical_md5(folder):
    assert {name: spec.md5 for name, spec in MNIST_FILES.items()} == CANONICAL_MD5
    for name, expected in CANONICAL_MD5.items():
        path = cached_path(folder, name)
        assert path is not None and path.name == name  # fetch stores them uncompressed
        assert hashlib.md5(path.read_bytes()).hexdigest() == expected
    assert all(check.ok for check in verify_mnist(folder))


def test_reader_matches_a_plain_offset_decode(folder):
    # The IDX header of an idx3 file is 16 bytes, of an idx1 file 8; the rest is the raw uint8 array.
    for name, header, shape in [("train-images-idx3-ubyte", 16, (60000, 28, 28)),
                                ("t10k-labels-idx1-ubyte", 8, (10000,))]:
        array = read_idx(folder / name)
        reference = np.frombuffer((folder / name).read_bytes()[header:], dtype=np.uint8).reshape(shape)
        assert array.dtype == np.uint8
        np.testing.assert_array_equal(array, reference)


def test_shapes_and_labels(splits):
    train, test = splits
    assert train.images.shape == (60000, 784) and train.labels.shape == (60000,)
    assert test.images.shape == (10000, 784) and test.labels.shape == (10000,)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    torch.testing.assert_close(torch.bincount(train.labels, minlength=10), torch.tensor(TRAIN_DIGITS))
    torch.testing.assert_close(torch.bincount(test.labels, minlength=10), torch.tensor(TEST_DIGITS))


def test_normalization_constants_are_the_training_statistics(folder, splits):
    # Exact statistics from the pixel histogram: integer counts of each grey level 0..255, then Fractions.
    counts = np.bincount(read_idx(folder / "train-images-idx3-ubyte").ravel(), minlength=256)
    n = int(counts.sum())
    assert n == 60000 * 784 and counts[0] > 0 and counts[255] > 0
    mean = Fraction(sum(v * int(c) for v, c in enumerate(counts)), n * 255)
    var = Fraction(sum(v * v * int(c) for v, c in enumerate(counts)), n * 255 * 255) - mean * mean
    # MEAN and STD are these statistics rounded to 4 digits, so they agree to within half a unit there.
    assert abs(float(mean) - MEAN) <= 5e-5 and abs(math.sqrt(var) - STD) <= 5e-5
    std_X, mean_X = torch.std_mean(splits[0].images, correction=0)  # normalized once, float32
    torch.testing.assert_close(mean_X, torch.tensor(0.0), rtol=0, atol=1e-3)
    torch.testing.assert_close(std_X, torch.tensor(1.0), rtol=0, atol=1e-3)


def test_cli_verify_passes(folder, capsys):
    assert main(["data", "verify", "--data-dir", str(folder)]) == 0
    assert capsys.readouterr().out.count(" ok ") == 4
