"""Build a C kernel from `csrc/` into a shared library once, cache it on disk, load it with ctypes, or say why not.

Used by the native kernels (the streaming forward pass, the small-batch MNIST training step, the dropout hash),
whose C files ship beside this module in `csrc/` as package data; their parameters come in as `-D` macros. The
build uses the system C compiler (`$CC`, else Python's, else `cc`/`gcc`); the cached file's name holds a hash of
the source (and the headers beside it), the macros, the flags, the compiler's version and the CPU model, so
`-march=native` code is never handed to another kind of CPU. Without a compiler, or with MLPLAB_NATIVE=0, `build`
returns None and callers fall back to torch. When the compiler rejects a source, `build` also returns None, and
shows the compiler's message once per kernel as a `NativeBuildWarning`; `status()` says, for every kernel asked
for, whether it runs native or on torch and why (`mlplab doctor` prints it).
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
import warnings
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

from mlplab import caches

CSRC = Path(__file__).with_name("csrc")
FLAGS = ["-O3", "-march=native", "-ffast-math", "-fno-finite-math-only", "-fPIC"]
# Compiled with -ffast-math but linked without it: linking a shared object with -ffast-math adds crtfastmath.o,
# which switches on flush-to-zero for the whole process when the library loads (subnormals become 0 in NumPy,
# torch and everything else).
LINK_FLAGS = ["-shared", "-fPIC"]
TIMEOUT_S = 120
MESSAGE_LINES = 40  # of the compiler's output shown in the warning

_STATUS: dict[str, str] = {}  # kernel name: "native" or "torch: <reason>"
_WARNED: set[str] = set()  # kernels whose failure was shown already (once per process)


class NativeBuildWarning(RuntimeWarning):
    """A C kernel could not be built or loaded, so the torch path runs instead: same results, slower."""


def status() -> dict[str, str]:
    """For every kernel this process asked for: "native", or "torch: <reason>"."""
    return dict(_STATUS)


def compiler() -> str | None:
    for cand in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc"):
        if cand and shutil.which(cand.split()[0]):
            return cand.split()[0]
    return None


@lru_cache(maxsize=8)
def compiler_version(cc: str) -> str:
    """What `cc --version` prints ('' if it says nothing)."""
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=TIMEOUT_S).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_identity() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return "\n".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags"))}))


def cache_dir() -> Path:
    return caches.cache_dir("kernels", os.environ.get("MLPLAB_CACHE"))  # the user cache's rule: mlplab.caches


def unavailable() -> str | None:
    """Why no kernel is built here at all (switched off, not Linux, no compiler); None where they can be."""
    if os.environ.get("MLPLAB_NATIVE", "1") == "0":
        return "switched off by MLPLAB_NATIVE=0"
    if not sys.platform.startswith("linux"):
        return f"native kernels are built on Linux only, this is {sys.platform}"
    if compiler() is None:
        return "no C compiler found (install gcc or set CC)"
    return None


def build(source: str | Path, name: str, macros: Mapping[str, int | str] | None = None,
          flags: Sequence[str] = FLAGS, libs: tuple[str, ...] = ("-lm",)) -> ctypes.CDLL | None:
    """Compile `source` (a file name in csrc/, or a path) with `-Dkey=value` for each of `macros`, once (cached
    as `name`_<hash>.so), and load it; None if impossible here, with the reason in `status()[name]`.

    `libs` are tried as given, then with only -lm (e.g. libmvec may be missing).

    >>> lib = build("dropout_keep.c", "dropout_keep")
    >>> status()["dropout_keep"] == "native" if lib is not None else status()["dropout_keep"].startswith("torch: ")
    True
    """
    reason = unavailable()
    if reason is not None:
        _fall_back(name, reason)
        return None
    cc = compiler()
    assert cc is not None
    path = CSRC / source  # an absolute `source` stays itself
    defines = [f"-D{key}={value}" for key, value in (macros or {}).items()]
    try:  # the headers beside it may be included: they are part of the source
        texts = [path.read_bytes(), *(h.read_bytes() for h in sorted(path.parent.glob("*.h")))]
    except OSError as exc:
        _fall_back(name, f"cannot read its C source {path} ({exc.strerror}); is the package installed whole?")
        return None
    parts = [*texts, *(s.encode() for s in (cc, compiler_version(cc), *flags, *LINK_FLAGS, *defines, *libs,
                                              cpu_identity()))]
    key = hashlib.sha256(b"\n".join(parts)).hexdigest()[:16]
    target = cache_dir() / f"{name}_{key}.so"
    if not target.exists():
        failure = _compile(cc, path, defines, flags, libs, target)
        if failure is not None:
            _fall_back(name, *failure)
            return None
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        _fall_back(name, f"could not load {target}: {exc}")
        return None
    _STATUS[name] = "native"
    return lib


def _compile(cc: str, path: Path, defines: list[str], flags: Sequence[str], libs: tuple[str, ...],
             target: Path) -> tuple[str, str] | None:
    """Compile and link `path` into `target` (atomically); on failure (reason, the compiler's output)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            obj, out = Path(tmp) / "kernel.o", Path(tmp) / "kernel.so"
            done = _run([cc, *flags, *defines, "-c", str(path), "-o", str(obj)])
            if done.returncode != 0:
                return f"{cc} could not compile {path.name}: {_first_error(done.stderr)}", done.stderr
            link = [cc, *LINK_FLAGS, str(obj), "-o", str(out)]
            if _run([*link, *libs]).returncode != 0 and (done := _run([*link, "-lm"])).returncode != 0:
                return f"{cc} could not link {path.name}: {_first_error(done.stderr)}", done.stderr
            os.replace(out, target)  # atomic: other processes see the whole file or none
    except (OSError, subprocess.SubprocessError) as exc:
        return f"could not build {path.name} in {target.parent}: {exc}", ""
    return None


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=TIMEOUT_S)


def _first_error(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    return next((ln for ln in lines if "error" in ln), lines[0] if lines else "no message")


def _fall_back(name: str, reason: str, output: str = "") -> None:
    """Record why `name` runs on torch; warn once per kernel unless native code is merely unavailable here."""
    _STATUS[name] = f"torch: {reason}"
    if unavailable() is None and name not in _WARNED:
        _WARNED.add(name)
        shown = "\n".join(output.rstrip().splitlines()[:MESSAGE_LINES])
        warnings.warn(f"the C kernel {name} runs on torch instead (same results, slower): {reason}"
                      + (f"\n{shown}" if shown else ""), NativeBuildWarning, stacklevel=3)
