"""`mlplab doctor`: versions, the device, each C kernel (native or torch, and why), MNIST's checksums, caches."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mlplab.cli.common import add_data_dir, add_format, print_tables, say


def register(sub: Any) -> None:
    """Add `mlplab doctor` to the `mlplab` parser."""
    p = sub.add_parser(
        "doctor", help="check this installation: versions, device, C kernels, MNIST checksums, caches",
        description="Print the versions, the device torch would use, the thread count, whether each C kernel "
                    "runs native or on torch (and why: it builds each one), the MNIST files' MD5s against the "
                    "expected ones, and the cache folders. Exit status 0 when healthy; 1, with one line saying "
                    "why, when a MNIST file is corrupt (or, with --strict, when a kernel runs on torch).")
    add_data_dir(p)
    p.add_argument("--strict", action="store_true",
                   help="also exit 1 when a C kernel runs on torch (for CI: a C file missing from the package)")
    add_format(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mlplab.doctor import diagnose

    diagnosis = diagnose(args.data_dir, strict=args.strict)
    if args.format == "json":
        print(json.dumps(diagnosis.to_dict(), indent=2))
    else:
        print_tables(diagnosis.tables(), args.format)
    for note in diagnosis.notes:
        say(f"note: {note}")
    for warning in diagnosis.warnings:
        say(f"warning: {warning}")
    if diagnosis.problems:
        say("mlplab doctor: not healthy: " + "; ".join(diagnosis.problems))
        return 1
    say("mlplab doctor: healthy" + (" (with warnings)" if diagnosis.warnings else ""))
    return 0
