"""Subcommands for this part of mlplab (being built)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    """Add this module's subcommands to the `mlplab` parser."""
    del sub
