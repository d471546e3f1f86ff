"""Where mlplab keeps files between runs: one rule for the user's cache folder, used for MNIST and the C kernels.

The user cache is `$XDG_CACHE_HOME` (an absolute path; default `~/.cache`) on Linux, `~/Library/Caches` on
macOS and `%LOCALAPPDATA%` on Windows; mlplab's folders sit under `<user cache>/mlplab/`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def user_cache_dir() -> Path:
    """The user's cache folder on this platform.

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"XDG_CACHE_HOME": "/tmp/c"}):
    ...     sys.platform != "linux" or user_cache_dir() == Path("/tmp/c")
    True
    """
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"  # the XDG spec ignores relative paths


def cache_dir(name: str, base: str | Path | None = None) -> Path:
    """`<base>/mlplab/<name>`, where `base` defaults to the user's cache folder.

    >>> cache_dir("kernels", "/tmp/c").as_posix()
    '/tmp/c/mlplab/kernels'
    """
    return Path(base or user_cache_dir()) / "mlplab" / name
