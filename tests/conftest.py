"""Fixtures shared by several test files."""

from __future__ import annotations

import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from mlplab.mnist.fetch import MNIST_FILES, cached_path, default_data_dir
from mlplab.twolayer.problem import load_problem


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    """The real MNIST cache; skipped when absent, a failure when MLPLAB_REQUIRE_MNIST=1 (as in CI)."""
    where = default_data_dir()
    if all(cached_path(where, name) for name in MNIST_FILES):
        return where
    if os.environ.get("MLPLAB_REQUIRE_MNIST") == "1":
        pytest.fail(f"MLPLAB_REQUIRE_MNIST=1 but MNIST is not in {where}; run `mlplab data fetch`")
    pytest.skip(f"real MNIST not in {where} (run `mlplab data fetch`)")


@pytest.fixture
def one_thread():
    """Run a test on one torch thread (small models are faster so, and the results do not depend on the split)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def restore_threads():
    """Give back torch's thread count after a test that lets a run set its own."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _exact_seed_z2(sigma1: str) -> list[Fraction]:
    p = load_problem()
    out = []
    for x in p.X:
        z1 = [sum((xk * p.W1[k][j] for k, xk in enumerate(x)), Fraction(0)) + p.b1[j] for j in range(p.h)]
        a1 = z1 if sigma1 == "identity" else [max(Fraction(0), v) for v in z1]
        out.append(sum((a * w for a, w in zip(a1, p.w2)), Fraction(0)) + p.b2)
    return out


@pytest.fixture
def exact_seed_z2() -> Callable[[str], list[Fraction]]:
    """z2 of the assignment's problem, exactly, for sigma1 in {identity, relu} (the piecewise-linear activations)."""
    return _exact_seed_z2
