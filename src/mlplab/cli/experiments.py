"""`mlplab mnist experiment|sweep|params` (being built)."""

from __future__ import annotations

from typing import Any


def register(mnist_sub: Any) -> None:
    """Add the experiment subcommands to the `mlplab mnist` sub-parser."""
    del mnist_sub
