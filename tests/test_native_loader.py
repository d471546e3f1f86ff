"""Building, caching and loading the small C kernels, and every way that can fail (then callers use torch)."""

from __future__ import annotations

import ctypes

import pytest

from mlplab.native import loader as cbuild

SOURCE = "int add_one(int x) { return x + 1; }\n"
needs_cc = pytest.mark.skipif(cbuild.compiler() is None, reason="no C compiler here")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLPLAB_NATIVE", raising=False)


@needs_cc
def test_builds_once_and_loads_from_the_cache(tmp_path):
    lib = cbuild.build(SOURCE, "add_one", [])
    assert lib is not None
    lib.add_one.argtypes, lib.add_one.restype = [ctypes.c_int], ctypes.c_int
    assert lib.add_one(41) == 42
    built = list((tmp_path / "cache" / "mlplab" / "kernels").glob("add_one_*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    assert cbuild.build(SOURCE, "add_one", []) is not None
    assert built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt
    other = cbuild.build(SOURCE, "add_one", ["-DUNUSED=1"])  # other flags: another file
    assert other is not None and len(list(built[0].parent.glob("add_one_*.so"))) == 2


def test_switched_off_or_without_a_compiler_gives_none(monkeypatch):
    monkeypatch.setenv("MLPLAB_NATIVE", "0")
    assert cbuild.build(SOURCE, "add_one", []) is None
    monkeypatch.setenv("MLPLAB_NATIVE", "1")
    monkeypatch.setattr(cbuild, "compiler", lambda: None)
    assert cbuild.build(SOURCE, "add_one", []) is None


@needs_cc
def test_a_source_that_does_not_compile_gives_none_and_leaves_nothing(tmp_path):
    assert cbuild.build("this is not C", "broken", []) is None
    folder = tmp_path / "cache" / "mlplab" / "kernels"
    assert not list(folder.glob("broken_*")) and not [p for p in folder.iterdir() if p.is_dir()]
