"""What `mlplab doctor` checks: versions, the device, threads, every C kernel, and the MNIST cache's checksums.

`diagnose` builds (or loads from the cache) each kernel exactly as the code that uses it would, and verifies the
MNIST files with the checks `mlplab data verify` runs. Missing MNIST is no fault (`mlplab data fetch` gets it); a
corrupt MNIST file is, and so is a kernel on torch when `strict` (CI: a C file missing from an installed wheel).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlplab import __version__
from mlplab.device import get_device
from mlplab.errors import MlplabError
from mlplab.mnist import dropout, fused_step, native_step
from mlplab.mnist.data import default_data_dir
from mlplab.mnist.fetch import MNIST_FILES, FileCheck, verify_mnist
from mlplab.mnist.sweep import available_cores
from mlplab.native import loader
from mlplab.stream.native import kernel_name, load_native
from mlplab.tables import Table


@dataclass(frozen=True)
class Kernel:
    """One compiled kernel: the loader's name for it, its C file, what it does, and how its user loads it."""

    name: str
    source: str
    purpose: str
    load: Callable[[], Any]


# The stream kernel is built per network: this is the one `mlplab reproduce` streams (the seed's 3-2-1, relu, sigmoid).
KERNELS = (
    Kernel(kernel_name(3, 2, "relu", "sigmoid"), "stream_kernel.c", "streaming forward pass (3-2-1, relu, sigmoid)",
           lambda: load_native(3, 2, "relu", "sigmoid")),
    Kernel("mlp_train_step", "mnist_step.c", "MNIST training step, batches of at most 8 rows", native_step.load),
    Kernel("dropout_keep", "dropout_keep.c", "dropout masks (counter hash)", dropout.load),
)


@dataclass
class Diagnosis:
    """Everything `mlplab doctor` found; `problems` make its exit status 1, `warnings` and `notes` do not."""

    versions: dict[str, str]
    device: str
    threads: int
    cores: int
    kernels: dict[str, str]  # name: "native" or "torch: <reason>"
    data_dir: Path
    data: list[FileCheck]
    caches: dict[str, Path]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def tables(self) -> list[Table]:
        """The findings as tables: versions and machine, kernels, MNIST files, cache folders."""
        machine = [[k, v] for k, v in self.versions.items()]
        machine += [["device", self.device], ["threads", f"torch uses {self.threads} of {self.cores} usable cores"]]
        kernels = [[k.name, k.source, self.kernels[k.name].split(":")[0],
                    self.kernels[k.name].partition(": ")[2] or k.purpose] for k in KERNELS]
        expected = {spec.name: spec.md5 for spec in MNIST_FILES.values()}
        data = [[c.name, c.status, c.md5, expected[c.name]] for c in self.data]
        caches = [[name, str(path), _count_files(path)] for name, path in self.caches.items()]
        return [Table("mlplab doctor", ["what", "found"], machine),
                Table("C kernels", ["kernel", "source", "runs", "what it does, or why torch"], kernels),
                Table(f"MNIST in {self.data_dir}", ["file", "status", "md5", "expected md5"], data),
                Table("Cache folders", ["cache", "folder", "files"], caches)]

    def to_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "versions": self.versions, "device": self.device,
                "threads": self.threads, "cores": self.cores, "kernels": self.kernels,
                "mnist": {"folder": str(self.data_dir),
                          "files": {c.name: {"status": c.status, "md5": c.md5,
                                             "expected_md5": MNIST_FILES[c.name].md5} for c in self.data}},
                "caches": {k: str(v) for k, v in self.caches.items()},
                "problems": self.problems, "warnings": self.warnings, "notes": self.notes}


def diagnose(data_dir: Path | None = None, *, strict: bool = False) -> Diagnosis:
    """Check this installation; `strict` counts a kernel that runs on torch as a problem.

    >>> d = diagnose(Path("/nonexistent/mnist"))
    >>> d.healthy, [c.status for c in d.data]
    (True, ['missing', 'missing', 'missing', 'missing'])
    """
    problems: list[str] = []
    device = _device(problems)
    versions = _versions()
    if device.startswith("cuda"):
        versions["GPU step"] = gpu_step()
    kernels = {k.name: _kernel_status(k) for k in KERNELS}
    on_torch = [f"{name} runs on torch ({why.removeprefix('torch: ')})"
                for name, why in kernels.items() if why != "native"]
    folder = data_dir if data_dir is not None else default_data_dir()
    data = verify_mnist(folder)
    diagnosis = Diagnosis(versions, device, torch.get_num_threads(), available_cores(), kernels, folder, data,
                          {"kernels": loader.cache_dir(), "MNIST": folder}, problems)
    (problems if strict else diagnosis.warnings).extend(on_torch)
    bad = [c for c in data if c.status not in ("ok", "missing")]
    problems += [f"MNIST file {c.name} in {folder}: {c.status}{': ' + c.detail if c.detail else ''}; "
                 "run `mlplab data fetch` to fetch it again" for c in bad]
    missing = sum(c.status == "missing" for c in data)
    if missing:
        where = "" if data_dir is None else f" --data-dir {folder}"
        diagnosis.notes.append(f"{missing} of {len(data)} MNIST files are not in {folder}: `mlplab data fetch{where}` "
                               "gets them (`mlplab reproduce` fetches them when needed)")
    return diagnosis


def _kernel_status(kernel: Kernel) -> str:
    """"native" when the kernel loads, else the loader's reason (the load itself is cached by its user)."""
    if kernel.load() is not None:
        return "native"
    said = loader.status().get(kernel.name, "")
    return said if said.startswith("torch: ") else "torch: it did not load (no reason recorded in this process)"


def _versions() -> dict[str, str]:
    cc = loader.compiler()
    said = loader.compiler_version(cc).splitlines() if cc else []
    return {"mlplab": f"{__version__} ({Path(__file__).resolve().parent})",
            "python": f"{platform.python_version()} ({sys.executable})",
            "torch": torch.__version__, "numpy": np.__version__, "triton": _triton_version(),
            "C compiler": f"{cc}: {said[0] if said else '?'}" if cc else "none (the kernels run on torch)",
            "platform": f"{platform.system()} {platform.machine()}"}


def gpu_step(env: Mapping[str, str] | None = None) -> str:
    """What a training run on CUDA steps with, as the environment (`os.environ` by default) chooses; see
    `mlplab.mnist.graphed` and `mlplab.mnist.fused_step`.

    >>> gpu_step({})
    'CUDA graphs of torch kernels (MLPLAB_TRITON=1: fused Triton kernels)'
    >>> gpu_step({"MLPLAB_CUDA_GRAPHS": "0"})
    'torch kernels, no CUDA graphs (MLPLAB_CUDA_GRAPHS=0)'
    """
    env = os.environ if env is None else env
    if env.get("MLPLAB_CUDA_GRAPHS", "1") == "0":
        return "torch kernels, no CUDA graphs (MLPLAB_CUDA_GRAPHS=0)"
    if env.get("MLPLAB_TRITON", "0") != "1":
        return "CUDA graphs of torch kernels (MLPLAB_TRITON=1: fused Triton kernels)"
    if not fused_step.available():
        return "CUDA graphs of torch kernels (MLPLAB_TRITON=1 asks for Triton, which is not installed)"
    return "CUDA graphs of fused Triton kernels (MLPLAB_TRITON=1)"


def _triton_version() -> str:
    try:
        return importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        return "not installed (only the fused GPU step uses it)"


def _device(problems: list[str]) -> str:
    try:
        device = get_device()
    except MlplabError as exc:  # a bad $MLPLAB_DEVICE
        problems.append(str(exc))
        return "unusable: " + str(exc)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "mps: Apple GPU"
    return f"cpu: {_cpu_name()}"


def _cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.machine())


def _count_files(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0
