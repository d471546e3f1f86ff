"""The `mlplab` command: a thin layer that parses flags and calls library functions.

Each submodule adds its subcommands with `register(subparsers)` and sets `func`, a callable taking the
parsed namespace and returning an exit status. User errors (`MlplabError`) become one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mlplab import __version__
from mlplab.errors import MlplabError

COMMAND_MODULES = (
    "mlplab.cli.forward",
    "mlplab.cli.backward",
    "mlplab.cli.data",
    "mlplab.cli.mnist",
    "mlplab.cli.stream",
    "mlplab.cli.reproduce",
    "mlplab.cli.instructor",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlplab",
        description="A two-layer MLP by hand and in PyTorch, streaming forward propagation, and MNIST.",
    )
    parser.add_argument("--version", action="version", version=f"mlplab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MlplabError as exc:
        print(f"mlplab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlplab: interrupted; finished work is saved, run the same command with --resume to continue",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
