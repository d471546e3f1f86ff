"""Section 2 of the assignment on the command line: classify, losses, gradients, descent, errata, section2.

Each command parses flags, calls one function of `mlplab.twolayer.section2` with explicit arguments, and
prints its tables or the files it wrote.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch

from mlplab.cli.common import add_activations, add_format, add_out, add_problem, print_tables, problem_from_args, say
from mlplab.errors import MlplabError
from mlplab.tables import Table, write_tables
from mlplab.twolayer.activations import activation_pairs, parse_pair
from mlplab.twolayer.gradcheck import FD_STEP
from mlplab.twolayer.losses import get_loss, loss_name
from mlplab.twolayer.section2 import (
    classify_tables,
    errata_tables,
    gradients_tables,
    losses_tables,
    run_descent,
    write_section2,
)

# --- argument parsing ------------------------------------------------------------------------------------

def _steps(text: str) -> list[float]:
    try:
        steps = [float(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise MlplabError(f"--steps must be numbers separated by commas, got {text!r}", hint="e.g. --steps 0.01,10") \
            from exc
    if not steps or not all(math.isfinite(s) and s > 0 for s in steps):
        raise MlplabError(f"--steps must be positive finite numbers, got {text!r}", hint="e.g. --steps 0.01,10")
    return steps


def _epochs(n: int) -> int:
    if n < 1:
        raise MlplabError(f"--epochs must be at least 1, got {n}", hint="e.g. --epochs 1000")
    return n


def _losses(text: str) -> list[str]:
    return ["mse", "bce"] if text == "both" else [loss_name(get_loss(text))]


def _emit(tables: list[Table], fmt: str, out: Path | None, stem: str) -> int:
    print_tables(tables, fmt)
    if out is not None:
        for path in write_tables(tables, out, stem):
            say(f"wrote {path}")
    return 0


def _cmd_classify(args: argparse.Namespace) -> int:
    return _emit(classify_tables(problem_from_args(args)), args.format, args.out, "classify")


def _cmd_losses(args: argparse.Namespace) -> int:
    pairs = [parse_pair(p) for p in args.activations] if args.activations else None
    return _emit(losses_tables(problem_from_args(args), pairs), args.format, args.out, "losses")


def _cmd_gradients(args: argparse.Namespace) -> int:
    detail = activation_pairs() if args.all else [parse_pair(args.activations)]
    if not (args.fd_step > 0 and math.isfinite(args.fd_step)):
        raise MlplabError(f"--fd-step must be a small positive number, got {args.fd_step}", hint="e.g. 1e-5")
    tables = gradients_tables(problem_from_args(args), detail, _losses(args.loss), args.fd_step)
    return _emit(tables, args.format, args.out, "gradients")


def _cmd_descent(args: argparse.Namespace) -> int:
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    loss = loss_name(get_loss(args.loss))
    tables, paths = run_descent(problem_from_args(args), args.out, parse_pair(args.activations), loss,
                                _steps(args.steps), _epochs(args.epochs), dtype)
    print_tables(tables, args.format)
    for path in paths:
        say(f"wrote {path}")
    return 0


def _cmd_errata(args: argparse.Namespace) -> int:
    if args.train_epochs < 0:
        raise MlplabError(f"--train-epochs must be >= 0, got {args.train_epochs}", hint="0 skips the training run")
    return _emit(errata_tables(problem_from_args(args), args.train_epochs), args.format, args.out, "errata")


def _cmd_section2(args: argparse.Namespace) -> int:
    paths = write_section2(problem_from_args(args), args.out, _epochs(args.epochs), tuple(_steps(args.steps)),
                           log=say)
    say(f"wrote {len(paths)} files under {args.out}")
    return 0


def _common(p: argparse.ArgumentParser, out_help: str = "folder to write the tables into") -> None:
    add_problem(p)
    add_format(p)
    add_out(p, out_help)


def register(sub: Any) -> None:
    """Add the section-2 subcommands to the `mlplab` parser."""
    p = sub.add_parser("classify", help="predicted labels (threshold 0.5 / t = 0) for all nine pairs vs y")
    _common(p)
    p.set_defaults(func=_cmd_classify)

    p = sub.add_parser("losses", help="per-sample MSE and BCE terms and means; sensitivity near y_hat = 0.5")
    _common(p)
    add_activations(p, "pair to tabulate (repeatable; default relu,sigmoid and sigmoid,sigmoid)", action="append")
    p.set_defaults(func=_cmd_losses)

    p = sub.add_parser("gradients", help="chain rule vs autograd vs finite differences; dL_MSE/db2 closed form")
    _common(p)
    add_activations(p, "pair shown entry by entry (default relu,sigmoid)", default="relu,sigmoid")
    p.add_argument("--all", action="store_true", help="show every entry for all nine pairs")
    p.add_argument("--loss", default="both", help="mse, bce or both (default both)")
    p.add_argument("--fd-step", type=float, default=FD_STEP, help=f"finite-difference step (default {FD_STEP:g})")
    p.set_defaults(func=_cmd_gradients)

    p = sub.add_parser("descent", help="full-batch gradient descent per step size, loss curves and verdicts")
    _common(p, "folder for curves, verdicts, config and the figure")
    p.add_argument("--steps", default="0.01,10", help="step sizes, comma separated (default 0.01,10)")
    p.add_argument("--epochs", type=int, default=1000, help="epochs per step size (default 1000)")
    p.add_argument("--loss", default="bce", help="bce or mse (default bce, as the assignment's main())")
    add_activations(p, "(sigma1, sigma2) (default relu,sigmoid)", default="relu,sigmoid")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="float32 as in the assignment (default) or float64")
    p.set_defaults(func=_cmd_descent)

    p = sub.add_parser("errata", help="the assignment's mistakes, each with the numbers that show it")
    _common(p)
    p.add_argument("--train-epochs", type=int, default=1000,
                   help="epochs of the double-sigmoid training comparison (0 skips it)")
    p.set_defaults(func=_cmd_errata)

    p = sub.add_parser("section2", help="write every table, gradient check, curve and verdict of section 2")
    add_problem(p)
    add_out(p, "folder to write into", required=True)
    p.add_argument("--epochs", type=int, default=1000, help="gradient-descent epochs (default 1000)")
    p.add_argument("--steps", default="0.01,10", help="step sizes (default 0.01,10)")
    p.set_defaults(func=_cmd_section2)
