"""The `mlplab` command: a thin layer that parses flags and calls library functions.

Each submodule adds its subcommands with `register(subparsers)` and sets `func`, a callable taking the
parsed namespace and returning an exit status. User errors (`MlplabError`) become one line and exit 2.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from mlplab import __version__
from mlplab.cli import backward, data, doctor, forward, instructor, mnist, reproduce, stream
from mlplab.errors import MlplabError

COMMAND_MODULES = (forward, backward, data, mnist, stream, reproduce, instructor, doctor)
"""Each adds its subcommands with `register`, in this order (the order of `mlplab --help`)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlplab",
        description="A two-layer MLP by hand and in PyTorch, streaming forward propagation, and MNIST.",
    )
    parser.add_argument("--version", action="version", version=f"mlplab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    previous = _terminate_as_interrupt()
    try:
        return int(args.func(args) or 0)
    except MlplabError as exc:
        print(f"mlplab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = "with --resume" if "resume" in vars(args) else "again"  # only the commands that have the flag
        print(f"mlplab: interrupted; finished work is saved, run the same command {again} to continue",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # the environment (disk, permissions) rather than a bug: one line, as for MlplabError
        where = f": {exc.filename}" if exc.filename else ""
        print(f"mlplab: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _terminate_as_interrupt() -> Any:
    """SIGTERM (a process manager's stop) takes the Ctrl-C path: workers stopped, finished work kept, exit 130.
    Returns the previous handler (None where signals cannot be set: not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupt)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
