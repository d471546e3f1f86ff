"""Flags and output helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mlplab.tables import FORMATS, Table, render_tables
from mlplab.twolayer.problem import Problem, load_problem


def add_format(parser: argparse.ArgumentParser, default: str = "text") -> None:
    parser.add_argument("--format", choices=FORMATS, default=default,
                        help=f"how to print tables (default: {default})")


def add_out(parser: argparse.ArgumentParser, help_text: str = "folder to write files into") -> None:
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help=help_text)


def add_problem(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--problem", type=Path, default=None, metavar="FILE",
                        help="problem file (JSON with X, y, W1, b1, w2, b2); default: the assignment's problem")


def problem_from_args(args: argparse.Namespace) -> Problem:
    return load_problem(getattr(args, "problem", None))


def print_tables(tables: Sequence[Table], fmt: str) -> None:
    print(render_tables(tables, fmt))


def say(message: str) -> None:
    """Progress and file notes go to stderr, so stdout stays clean for tables and JSON."""
    print(message, file=sys.stderr)
