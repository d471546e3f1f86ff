"""Building, caching and loading the small C kernels, and every way that can fail (then callers use torch)."""

from __future__ import annotations

import ctypes
import shutil

import pytest
import torch

from mlplab.mnist import dropout
from mlplab.native import loader
from mlplab.native.loader import NativeBuildWarning

SOURCE = "int add_one(int x) { return x + 1; }\n"
needs_cc = pytest.mark.skipif(loader.compiler() is None, reason="no C compiler here")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLPLAB_NATIVE", raising=False)
    monkeypatch.setattr(loader, "_STATUS", {})
    monkeypatch.setattr(loader, "_WARNED", set())


@pytest.fixture
def add_one(tmp_path):
    path = tmp_path / "add_one.c"
    path.write_text(SOURCE)
    return path


@needs_cc
def test_builds_once_and_loads_from_the_cache(tmp_path, add_one):
    lib = loader.build(add_one, "add_one")
    assert lib is not None
    lib.add_one.argtypes, lib.add_one.restype = [ctypes.c_int], ctypes.c_int
    assert lib.add_one(41) == 42
    built = list((tmp_path / "cache" / "mlplab" / "kernels").glob("add_one_*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    assert loader.build(add_one, "add_one") is not None
    assert built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt
    other = loader.build(add_one, "add_one", {"UNUSED": 1})  # other macros: another file
    assert other is not None and len(list(built[0].parent.glob("add_one_*.so"))) == 2
    add_one.write_text(SOURCE + "/* edited */\n")  # other source text: another file
    assert loader.build(add_one, "add_one") is not None and len(list(built[0].parent.glob("add_one_*.so"))) == 3
    assert loader.status() == {"add_one": "native"}


def test_switched_off_or_without_a_compiler_gives_none(monkeypatch, add_one):
    monkeypatch.setenv("MLPLAB_NATIVE", "0")
    assert loader.build(add_one, "add_one") is None
    assert loader.status()["add_one"] == "torch: switched off by MLPLAB_NATIVE=0"
    monkeypatch.setenv("MLPLAB_NATIVE", "1")
    monkeypatch.setattr(loader, "compiler", lambda: None)
    assert loader.build(add_one, "add_one") is None
    assert loader.status()["add_one"].startswith("torch: no C compiler")


@needs_cc
def test_a_source_that_does_not_compile_gives_none_and_leaves_nothing(tmp_path):
    broken = tmp_path / "broken.c"
    broken.write_text("this is not C")
    with pytest.warns(NativeBuildWarning, match="could not compile broken.c"):
        assert loader.build(broken, "broken") is None
    folder = tmp_path / "cache" / "mlplab" / "kernels"
    assert not list(folder.glob("broken_*")) and not [p for p in folder.iterdir() if p.is_dir()]


@needs_cc
def test_the_compilers_message_is_shown_once_and_recorded(tmp_path, recwarn):
    broken = tmp_path / "broken.c"
    broken.write_text("int f(void) { return undeclared_name; }\n")
    assert loader.build(broken, "broken") is None
    assert loader.build(broken, "broken") is None  # asked for again in the same process: no second warning
    shown = [w for w in recwarn.list if issubclass(w.category, NativeBuildWarning)]
    assert len(shown) == 1
    message = str(shown[0].message)
    assert "the C kernel broken runs on torch instead" in message
    assert "undeclared_name" in message and f"{broken}:1:" in message  # the compiler's own words, file and line
    assert loader.status()["broken"].startswith("torch: ") and "undeclared_name" in loader.status()["broken"]


@needs_cc
def test_a_bad_macro_stops_the_stream_kernel_with_its_reason():
    macros = {"D": 3, "H": 2, "A1": 7, "A2": 2}
    with pytest.warns(NativeBuildWarning, match="A1 and A2 are activation codes"):
        assert loader.build("stream_kernel.c", "mlp_bad", macros) is None
    assert "A1 and A2 are activation codes" in loader.status()["mlp_bad"]


def test_a_source_missing_from_the_package_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "CSRC", tmp_path / "empty")
    if loader.unavailable() is None:
        with pytest.warns(NativeBuildWarning, match="is the package installed whole"):
            assert loader.build("dropout_keep.c", "dropout_keep") is None
    else:
        assert loader.build("dropout_keep.c", "dropout_keep") is None
    assert loader.status()["dropout_keep"].startswith("torch: ")


def test_every_shipped_kernel_source_is_in_the_package():
    names = {p.name for p in loader.CSRC.iterdir()}
    assert {"stream_kernel.c", "mnist_step.c", "mnist_step_rows.h", "dropout_keep.c"} <= names


@needs_cc
def test_a_broken_dropout_kernel_falls_back_to_the_same_masks(tmp_path, monkeypatch):
    """A kernel the compiler refuses warns with the compiler's message and the torch path draws the same flags."""
    native = torch.empty(3, 1000)
    dropout.DropoutStream(torch.Generator().manual_seed(5), 0.3).fill(native)
    csrc = tmp_path / "csrc"
    shutil.copytree(loader.CSRC, csrc)
    (csrc / "dropout_keep.c").write_text((csrc / "dropout_keep.c").read_text().replace("return x;", "return x"))
    monkeypatch.setattr(loader, "CSRC", csrc)
    dropout.load.cache_clear()
    try:
        with pytest.warns(NativeBuildWarning, match=r"dropout_keep\.c:\d+:\d+: error"):
            stream = dropout.DropoutStream(torch.Generator().manual_seed(5), 0.3)
        assert not stream.native
        fallback = torch.empty(3, 1000)
        stream.fill(fallback)
    finally:
        dropout.load.cache_clear()
    torch.testing.assert_close(fallback, native, rtol=0, atol=0)
    assert loader.status()["dropout_keep"].startswith("torch: ")
