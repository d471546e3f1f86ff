"""The archive the assignment asks for: the report PDF, the source files that produced it, and a README.

No downloaded data goes in: only mlplab's own source (`*.py`, `*.c`, `*.json` package data), the project files
that install and test it when run from a checkout (pyproject.toml, Makefile, constraints.txt, tests/), and
report.pdf. Files are added in sorted order with a fixed timestamp, so the same inputs give the same archive.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path

from mlplab.errors import MlplabError
from mlplab.fsio import ensure_dir

SOURCE_SUFFIXES = {".py", ".c", ".h", ".json", ".typed"}
PROJECT_FILES = ("pyproject.toml", "Makefile", "constraints.txt", "README.md")
_STAMP = (2026, 1, 1, 0, 0, 0)

README = """Submission archive written by `mlplab reproduce`.

  report.pdf       the report: every numbered question of the assignment with its answer and the code that answers it
  src/mlplab/      the complete source that computed every number, table and figure in the report
  tests/           the tests that check it against independent references (when run from a checkout)

To regenerate the report from these files (Python 3.10 or newer; MNIST is fetched on first use and is not
included here, as the assignment asks):

  make reproduce                 # or: pip install -e . && mlplab reproduce
  mlplab reproduce --quick       # the same report from shorter runs, in minutes

The command that produced this archive: {command}
"""


def source_files(package_dir: Path) -> list[Path]:
    """mlplab's own files under `package_dir` (no caches, no build products)."""
    return sorted(p for p in Path(package_dir).rglob("*")
                  if p.is_file() and p.suffix in SOURCE_SUFFIXES and "__pycache__" not in p.parts)


def write_submission(zip_path: Path, pdf: Path | None, package_dir: Path, project_root: Path | None,
                     command: str) -> Path:
    """Write the archive atomically; returns its path. `project_root` (a checkout) adds tests and project files."""
    zip_path = Path(zip_path)
    ensure_dir(zip_path.parent)
    entries: list[tuple[str, Path]] = []
    if pdf is not None and pdf.is_file():
        entries.append(("report.pdf", pdf))
    entries += [(f"src/{p.relative_to(Path(package_dir).parent).as_posix()}", p) for p in source_files(package_dir)]
    if project_root is not None:
        entries += [(name, project_root / name) for name in PROJECT_FILES if (project_root / name).is_file()]
        entries += [(p.relative_to(project_root).as_posix(), p) for p in _tests(project_root / "tests")]
    tmp = zip_path.with_name(f".{zip_path.name}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            _add(archive, "README.txt", README.format(command=command).encode())
            for name, path in entries:
                _add(archive, name, path.read_bytes())
        tmp.replace(zip_path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MlplabError(f"cannot write {zip_path}: {exc.strerror or exc}",
                          hint="choose a writable folder with free space for --submission") from exc
    return zip_path


def _tests(folder: Path) -> Iterable[Path]:
    return sorted(p for p in folder.glob("*.py")) if folder.is_dir() else []


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_STAMP)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)
