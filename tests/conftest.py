"""Fixtures shared by several test files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlplab.mnist.data import default_data_dir
from mlplab.mnist.fetch import MNIST_FILES, cached_path


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    """The real MNIST cache; skipped when absent, a failure when MLPLAB_REQUIRE_MNIST=1 (as in CI)."""
    where = default_data_dir()
    if all(cached_path(where, name) for name in MNIST_FILES):
        return where
    if os.environ.get("MLPLAB_REQUIRE_MNIST") == "1":
        pytest.fail(f"MLPLAB_REQUIRE_MNIST=1 but MNIST is not in {where}; run `mlplab data fetch`")
    pytest.skip(f"real MNIST not in {where} (run `mlplab data fetch`)")
