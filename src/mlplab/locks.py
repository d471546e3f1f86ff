"""One writer per folder: an exclusive lock on FOLDER/.lock, held for the life of a run.

Run folders (`mnist train`, each run of a sweep), stream `--out` folders and the MNIST data cache are written
by one process at a time. The lock is `flock` on a small file inside the folder: the kernel releases it when
the holder exits, however it exits (kill -9 included), so a stale lock never blocks the next run. The file
itself stays (it holds the last holder's process id, for the error message) and is harmless.

A second process gets a clear `MlplabError` (one line, exit 2 from the CLI), or waits where `wait=True`
(the data cache: a second `data fetch` simply finds the files the first one fetched).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from mlplab.errors import MlplabError
from mlplab.fsio import ensure_dir, remove_stale_temps

LOCK_NAME = ".lock"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str], what: str = "folder", *, wait: bool = False,
                hint: str = "wait for it to finish, or choose another --out folder") -> Iterator[Path]:
    """Hold the exclusive lock of `folder` (created if needed) inside the `with` block; yield the folder.

    Temporary files that a killed writer left in the folder (`.NAME.*.tmp`, see `fsio.atomic_open`) are
    removed once the lock is held: no other writer can be using them then.

    >>> import tempfile
    >>> with folder_lock(tempfile.mkdtemp()) as held:
    ...     (held / ".lock").is_file()
    True
    """
    root = ensure_dir(folder)
    path = root / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise MlplabError(f"cannot create the lock file {path}: {exc.strerror}", hint=hint) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = _holder(fd)
            raise MlplabError(f"the {what} {root} is in use by another mlplab process{holder}", hint=hint) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        remove_stale_temps(root)
        yield root
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode().strip())
        return f" (process {pid})"
    return ""
