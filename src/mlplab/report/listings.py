"""The code beside each question: short listings cut from mlplab's own source, as the report runs it.

A listing is one function, class or block of a module, found by name (`inspect`) or by the line that starts it;
it is written under `report/code/` and shown with `\\lstinputlisting`. The complete source goes into the
submission archive as files (`mlplab.report.submission`), not into the PDF.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from mlplab.fsio import atomic_write_text
from mlplab.report.latex import listing_source, tex


def object_source(module: str, name: str) -> str:
    """The source of `module.name` (a function or class), dedented.

    >>> object_source("mlplab.twolayer.losses", "mse").splitlines()[0].startswith("def mse(")
    True
    """
    obj = getattr(importlib.import_module(module), name)
    return _dedent(inspect.getsource(obj))


def block_source(module: str, first: str) -> str:
    """The lines of `module`'s file from the first line starting with `first` to the next blank line.

    >>> block_source("mlplab.mnist.config", "MODEL_CONFIG").splitlines()[0]
    'MODEL_CONFIG: dict[str, Any] = {'
    """
    path = inspect.getsourcefile(importlib.import_module(module))
    assert path is not None
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return "\n".join(lines[start:end])


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).rstrip() + "\n"


class Listings:
    """Writes listings into `report_dir/code/` and returns the LaTeX that shows each."""

    def __init__(self, report_dir: Path) -> None:
        self.folder = Path(report_dir) / "code"
        self.count = 0

    def show(self, module: str, name: str | None = None, first: str | None = None, caption: str = "") -> str:
        """A listing of `module.name`, or of the block starting with `first`; `caption` says where it lives."""
        text = object_source(module, name) if name else block_source(module, first or "")
        stem = f"{module.removeprefix('mlplab.')}.{name or first}"
        dest = self.folder / f"{stem}.py.txt"
        atomic_write_text(dest, listing_source(text))
        self.count += 1
        where = caption or f"{name or first} in {module}"
        return (f"\\lstinputlisting[language=Python,caption={{{tex(where)}}}]"
                f"{{{dest.relative_to(self.folder.parent).as_posix()}}}\n")
