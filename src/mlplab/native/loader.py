"""Build a small C source into a shared library once, cache it on disk, and load it with ctypes.

Used by the native kernels (the streaming forward pass, the small-batch MNIST training step). The build uses
the system C compiler (`$CC`, else Python's, else `cc`/`gcc`); the cached file's name holds a hash of the
source, the flags and the CPU model, so `-march=native` code is never handed to another kind of CPU. Without a
compiler, or with MLPLAB_NATIVE=0, `build` returns None and callers fall back to torch.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

FLAGS = ["-O3", "-march=native", "-ffast-math", "-fno-finite-math-only", "-fPIC"]
# Compiled with -ffast-math but linked without it: linking a shared object with -ffast-math adds crtfastmath.o,
# which switches on flush-to-zero for the whole process when the library loads (subnormals become 0 in NumPy,
# torch and everything else).
LINK_FLAGS = ["-shared", "-fPIC"]


def compiler() -> str | None:
    for cand in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc"):
        if cand and shutil.which(cand.split()[0]):
            return cand.split()[0]
    return None


def cpu_identity() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return "\n".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags"))}))


def cache_dir() -> Path:
    base = os.environ.get("MLPLAB_CACHE") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlplab" / "kernels"


def enabled() -> bool:
    return os.environ.get("MLPLAB_NATIVE", "1") != "0" and sys.platform.startswith("linux")


def build(source: str, name: str, defines: list[str], flags: list[str] = FLAGS,
          libs: tuple[str, ...] = ("-lm",)) -> ctypes.CDLL | None:
    """Compile `source` with `defines` (once; cached as `name`_<hash>.so) and load it; None if impossible here.

    `libs` are tried as given, then with only -lm (e.g. libmvec may be missing).
    """
    if not enabled():
        return None
    cc = compiler()
    if cc is None:
        return None
    key = hashlib.sha256("\n".join([source, cc, *flags, *LINK_FLAGS, *defines, *libs, cpu_identity()]).encode()
                         ).hexdigest()[:16]
    folder = cache_dir()
    target = folder / f"{name}_{key}.so"
    if not target.exists():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                src = Path(tmp) / "kernel.c"
                src.write_text(source)
                obj, out = Path(tmp) / "kernel.o", Path(tmp) / "kernel.so"
                compile_cmd = [cc, *flags, *defines, "-c", str(src), "-o", str(obj)]
                if subprocess.run(compile_cmd, capture_output=True, timeout=120).returncode != 0:
                    return None
                link = [cc, *LINK_FLAGS, str(obj), "-o", str(out)]
                ok = subprocess.run([*link, *libs], capture_output=True, timeout=120).returncode == 0
                if not ok and subprocess.run([*link, "-lm"], capture_output=True, timeout=120).returncode != 0:
                    return None
                os.replace(out, target)  # atomic: other processes see the whole file or none
        except (OSError, subprocess.SubprocessError):
            return None
    try:
        return ctypes.CDLL(str(target))
    except OSError:
        return None
