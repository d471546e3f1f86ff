"""`mlplab doctor`: what it prints, and the exit status that tells a healthy installation from a broken one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mlplab.cli import main
from mlplab.doctor import KERNELS
from mlplab.mnist import dropout, native_step
from mlplab.native import loader
from mlplab.stream import native

needs_cc = pytest.mark.skipif(loader.unavailable() is not None, reason="no native kernels here")


def test_prints_versions_kernels_mnist_and_caches(tmp_path, capsys):
    assert main(["doctor", "--data-dir", str(tmp_path / "mnist")]) == 0
    out, err = capsys.readouterr()
    for word in ("torch", "numpy", "python", "mlplab", "device", "threads", "C kernels", "Cache folders",
                 "6bbc9ace898e44ae57da46a324031adb", *(k.name for k in KERNELS), *(k.source for k in KERNELS)):
        assert word in out
    assert out.count("missing") == 4
    assert f"mlplab data fetch --data-dir {tmp_path / 'mnist'}" in err  # missing MNIST: a note, not a fault
    assert err.splitlines()[-1].startswith("mlplab doctor: healthy")


def test_json_names_every_kernel_and_file(tmp_path, capsys):
    assert main(["doctor", "--format", "json", "--data-dir", str(tmp_path)]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["healthy"] is True and found["mnist"]["folder"] == str(tmp_path)
    assert set(found["kernels"]) == {k.name for k in KERNELS}
    assert all(s == "native" or s.startswith("torch: ") for s in found["kernels"].values())
    assert {f["status"] for f in found["mnist"]["files"].values()} == {"missing"}


def test_a_corrupt_mnist_file_is_one_line_and_exit_1(tmp_path, capsys):
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x02\x07\x02")
    assert main(["doctor", "--data-dir", str(tmp_path)]) == 1
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("mlplab doctor: not healthy: MNIST file t10k-labels-idx1-ubyte")
    assert "mlplab data fetch" in last


@needs_cc
def test_strict_fails_when_a_kernel_source_is_missing_from_the_package(tmp_path, monkeypatch, capsys):
    """What CI's installed-wheel check catches: a C file left out of the package."""
    monkeypatch.setattr(loader, "CSRC", tmp_path / "csrc")
    monkeypatch.setattr(loader, "_STATUS", {})
    monkeypatch.setattr(loader, "_WARNED", set())
    loads = (native.load_native, native_step.load, dropout.load)
    for load in loads:
        load.cache_clear()
    try:
        with pytest.warns(loader.NativeBuildWarning, match="is the package installed whole"):
            assert main(["doctor", "--strict", "--data-dir", str(tmp_path)]) == 1
        assert main(["doctor", "--data-dir", str(tmp_path)]) == 0  # without --strict: warnings only
    finally:
        for load in loads:
            load.cache_clear()
    err = capsys.readouterr().err
    assert "mlplab doctor: not healthy: mlp_3x2_relu_sigmoid runs on torch (cannot read its C source" in err
    assert "warning: dropout_keep runs on torch" in err and "mlplab doctor: healthy (with warnings)" in err


def test_mlplab_native_0_is_reported_and_strict_refuses_it(tmp_path):
    env = {**os.environ, "MLPLAB_NATIVE": "0"}
    cmd = [sys.executable, "-c", "import sys; from mlplab.cli import main; sys.exit(main())", "doctor",
           "--strict", "--format", "json", "--data-dir", str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    found = json.loads(done.stdout)
    assert set(found["kernels"].values()) == {"torch: switched off by MLPLAB_NATIVE=0"}
    assert done.stderr.splitlines()[-1].startswith("mlplab doctor: not healthy: ")


def test_names_triton_and_the_step_a_gpu_run_would_use(monkeypatch, capsys):
    from mlplab import doctor

    assert main(["doctor", "--format", "json"]) in (0, 1)
    assert "triton" in json.loads(capsys.readouterr().out)["versions"]
    monkeypatch.setattr(doctor.fused_step, "available", lambda: True)
    assert doctor.gpu_step({"MLPLAB_TRITON": "1"}) == "CUDA graphs of fused Triton kernels (MLPLAB_TRITON=1)"
    monkeypatch.setattr(doctor.fused_step, "available", lambda: False)
    assert "not installed" in doctor.gpu_step({"MLPLAB_TRITON": "1"})
    assert doctor.gpu_step({"MLPLAB_TRITON": "1", "MLPLAB_CUDA_GRAPHS": "0"}).startswith("torch kernels, no CUDA")
