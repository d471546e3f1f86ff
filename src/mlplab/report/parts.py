"""The other parts of mlplab, as the reproduce plan calls them.

Each function looks its part up when called, so the plan still runs the parts that exist when another is
missing or broken: a missing part raises `StepUnavailable` with the name of what is missing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlplab.report.plan import StepUnavailable


def lookup(module: str, name: str) -> Callable[..., Any]:
    """`module.name`, or `StepUnavailable` naming it.

    >>> lookup("mlplab.forward", "forward").__name__
    'forward'
    """
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise StepUnavailable(f"{module} is not available ({exc})") from exc
    fn = getattr(mod, name, None)
    if fn is None:
        raise StepUnavailable(f"{module}.{name} is not available in this version of mlplab")
    return fn


def write_section1(problem: Any, out_dir: Path) -> list[Path]:
    return list(lookup("mlplab.cli.forward", "write_section1")(problem, out_dir))


def write_section2(problem: Any, out_dir: Path) -> list[Path]:
    return list(lookup("mlplab.cli.backward", "write_section2")(problem, out_dir))


def mnist_ready(data_dir: Path | None) -> bool:
    """True when all four MNIST files are in the cache with the right checksums (never downloads)."""
    checks = lookup("mlplab.mnist.fetch", "verify_mnist")(data_dir)
    return all(c.ok for c in checks)


def fetch_mnist(data_dir: Path | None, log: Callable[[str], None]) -> Path:
    return Path(lookup("mlplab.mnist.fetch", "fetch_mnist")(data_dir, log=log))
