"""Flags and output helpers shared by the subcommands: one spelling, one help text and one default per idea."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlplab.tables import FORMATS, Table, render_tables
from mlplab.twolayer.problem import Problem, load_problem

DEVICES = "auto (CUDA, then MPS, then the CPU), cpu, cuda, cuda:N or mps"


def add_format(parser: argparse.ArgumentParser, default: str = "text", choices: Sequence[str] = FORMATS,
               help_text: str = "how to print tables") -> None:
    """`--format`, the one output-format flag: tables as text|markdown|latex|json, summaries as text|json."""
    parser.add_argument("--format", choices=tuple(choices), default=default,
                        help=f"{help_text} (default: {default})")


def add_out(parser: argparse.ArgumentParser, help_text: str = "folder to write files into", *,
            required: bool = False, default: Path | None = None) -> None:
    """`--out DIR`, the folder a command writes into."""
    parser.add_argument("--out", type=Path, default=default, required=required, metavar="DIR", help=help_text)


def add_problem(parser: argparse.ArgumentParser, purpose: str = "problem file") -> None:
    """`--problem FILE`, the network and data of sections 1-2 (default: the assignment's problem)."""
    parser.add_argument("--problem", type=Path, default=None, metavar="FILE",
                        help=f"{purpose} (JSON with X, y, W1, b1, w2, b2); default: the assignment's problem")


def add_data_dir(parser: argparse.ArgumentParser, purpose: str = "MNIST folder") -> None:
    """`--data-dir DIR` for every command that reads MNIST (default: $MLPLAB_DATA, else the user cache)."""
    parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help=f"{purpose} (default: $MLPLAB_DATA if set, else the user cache: "
                             "`mlplab data path` prints it)")


def add_device(parser: argparse.ArgumentParser, default: str | None, default_note: str) -> None:
    """`--device D`, where `auto` means what `mlplab.device.get_device` picks, on every command.
    Not given, a command uses its documented default (`default_note`), the same whatever flags come with it."""
    parser.add_argument("--device", default=default, metavar="D", help=f"{DEVICES}; default: {default_note}")


def add_activations(parser: argparse.ArgumentParser, help_text: str, **kwargs: Any) -> None:
    """`--activations S1,S2`, the (sigma1, sigma2) pair; `--pair` is the same flag under its older name."""
    parser.add_argument("--activations", "--pair", dest="activations", metavar="S1,S2", help=help_text, **kwargs)


def problem_from_args(args: argparse.Namespace) -> Problem:
    return load_problem(getattr(args, "problem", None))


def print_tables(tables: Sequence[Table], fmt: str) -> None:
    print(render_tables(tables, fmt))


def say(message: str) -> None:
    """Progress and file notes go to stderr, so stdout stays clean for tables and JSON."""
    print(message, file=sys.stderr)
