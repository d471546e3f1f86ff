"""Atomic file writes: a file either has its complete new content or does not exist (or keeps its old one).

Everything is written to a temporary name in the same folder, flushed, then renamed into place, so an
interrupted run never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from mlplab.errors import MlplabError

_UMASK = os.umask(0)
os.umask(_UMASK)


def ensure_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` (and parents) if needed and check that it is a writable folder."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MlplabError(f"cannot create output folder {folder}: {exc.strerror}",
                          hint="choose another --out folder") from exc
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise MlplabError(f"output folder {folder} is not writable", hint="choose another --out folder")
    return folder


def check_dir_creatable(path: str | os.PathLike[str]) -> Path:
    """What `ensure_dir` checks, creating nothing (for dry runs): `path` is, or could be made, a writable folder."""
    folder = Path(path)
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.is_dir() and os.access(probe, os.W_OK | os.X_OK):
        return folder
    what = "is not writable" if probe == folder else f"cannot be created: {probe} is not a writable folder"
    raise MlplabError(f"output folder {folder} {what}", hint="choose another --out folder")


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success it is renamed to `path`, on error removed."""
    target = Path(path)
    ensure_dir(target.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _disk_error(exc, target) from exc
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results should get the usual permissions
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _disk_error(exc, target) from exc
        raise


def _disk_error(exc: OSError, target: Path) -> Exception:
    """A full disk (or quota) as one clear line naming the folder and its free space; other errors unchanged."""
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return exc
    try:
        free = f"{shutil.disk_usage(target.parent).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return MlplabError(f"no space left to write {target.name} in {target.parent} ({free}); the previous "
                       "complete files are kept", hint="free some space or choose another output folder")


# What `atomic_open` (mkstemp: 8 random characters) and `tempfile.TemporaryDirectory(prefix=".npm-pack-")` name
# their temporaries; nothing else of ours, and nothing a user would name so, matches.
_TEMP_FILE = re.compile(r"^\.[^/]+\.[a-z0-9_]{8}\.tmp$")
_TEMP_DIR = re.compile(r"^\.npm-pack-[a-z0-9_]{8}$")


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries a killed writer left in `folder` and its direct subfolders; return them.

    Call it only while holding the folder's lock (`mlplab.locks.folder_lock`): then no live writer owns them.
    """
    root = Path(folder)
    removed: list[Path] = []
    try:
        folders = [root, *(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))]
    except OSError:
        return removed
    for sub in folders:
        try:
            entries = list(sub.iterdir())
        except OSError:
            continue
        for entry in entries:
            try:
                if _TEMP_FILE.match(entry.name) and entry.is_file():
                    entry.unlink()
                elif _TEMP_DIR.match(entry.name) and entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    continue
            except OSError:
                continue
            removed.append(entry)
    return removed


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_open(path, "w") as handle:
        handle.write(text)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    import torch

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)
    return Path(path)


def save_figure(fig: Any, out_dir: str | os.PathLike[str], stem: str,
                formats: Iterable[str] = ("png", "pdf"), dpi: int = 150) -> list[Path]:
    """Save a matplotlib figure as `out_dir/stem.{png,pdf}`, each file written atomically."""
    paths = []
    for fmt in formats:
        path = Path(out_dir) / f"{stem}.{fmt}"
        with atomic_open(path, "wb") as handle:
            fig.savefig(handle, format=fmt, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    return paths


def _json_default(obj: Any) -> Any:
    from fractions import Fraction

    if isinstance(obj, Fraction):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
