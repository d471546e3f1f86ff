"""Section 1 subcommands: `problem`, `byhand`, `tables`, `draw` and `section1` (everything at once).

Each command loads the problem (`--problem FILE`, default the assignment's), computes everything in memory,
and only then prints or writes, so a bad input never leaves a half-finished output folder behind.
"""

from __future__ import annotations

import argparse
from typing import Any

from mlplab.cli.common import add_activations, add_format, add_out, add_problem, print_tables, problem_from_args, say
from mlplab.fsio import atomic_write_text, ensure_dir, save_figure
from mlplab.tables import write_tables
from mlplab.twolayer.activations import parse_pair
from mlplab.twolayer.forward_tables import DTYPES, resolve_dtype
from mlplab.twolayer.netdraw import draw_network
from mlplab.twolayer.section1 import byhand_texts, section1_tables, write_section1, write_texts


def register(sub: Any) -> None:
    """Add this module's subcommands to the `mlplab` parser."""
    p = sub.add_parser("problem", help="print the problem (the assignment's by default) as JSON: a template to edit")
    add_problem(p)
    add_out(p, "also write problem.json into this folder")
    p.add_argument("--show", action="store_true", help="print the problem (the default; kept for scripts)")
    p.set_defaults(func=_cmd_problem)

    p = sub.add_parser("byhand", help="the forward pass by hand: every entry as an exact inner product")
    add_problem(p)
    add_activations(p, "activations of the two layers, e.g. relu,sigmoid (default: identity,identity)",
                    default="identity,identity")
    p.add_argument("--all", action="store_true", help="derive all nine activation pairs")
    add_format(p)
    add_out(p, "also write byhand.{txt,md,tex,json} into this folder")
    p.set_defaults(func=_cmd_byhand)

    p = sub.add_parser("tables", help="Table 1 (identity, Hand vs PyTorch) and Table 2 (nine activation pairs)")
    p.add_argument("which", nargs="?", choices=("table1", "table2", "all"), default="all")
    add_problem(p)
    _add_dtype(p)
    add_format(p)
    add_out(p, "also write the tables as .txt/.md/.tex/.json into this folder")
    p.set_defaults(func=_cmd_tables)

    p = sub.add_parser("draw", help="draw the network with every weight and bias (PNG and PDF)")
    add_problem(p)
    add_activations(p, "activations to name in the figure (optional)", default=None)
    add_out(p, "folder for network.png and network.pdf", required=True)
    p.set_defaults(func=_cmd_draw)

    p = sub.add_parser("section1", help="write all of the assignment's section 1: tables, derivations, figure, values")
    add_problem(p)
    _add_dtype(p)
    add_out(p, "folder to write into", required=True)
    p.set_defaults(func=_cmd_section1)


def _add_dtype(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32",
                   help="precision of the PyTorch column (default: float32, as in the assignment's code)")


def _cmd_problem(args: argparse.Namespace) -> int:
    problem = problem_from_args(args)
    text = problem.to_text()
    if args.out is not None:
        say(f"wrote {atomic_write_text(ensure_dir(args.out) / 'problem.json', text)}")
    print(text, end="")
    return 0


def _cmd_byhand(args: argparse.Namespace) -> int:
    texts = byhand_texts(problem_from_args(args), parse_pair(args.activations), every=args.all)
    if args.out is not None:
        for path in write_texts(texts, args.out, "byhand"):
            say(f"wrote {path}")
    print(texts[args.format])
    return 0


def _cmd_tables(args: argparse.Namespace) -> int:
    problem = problem_from_args(args)
    tables = section1_tables(problem, args.which, resolve_dtype(args.dtype))
    if args.out is not None:
        stem = "tables" if args.which == "all" else args.which
        for path in write_tables(tables, ensure_dir(args.out), stem):
            say(f"wrote {path}")
    print_tables(tables, args.format)
    return 0


def _cmd_draw(args: argparse.Namespace) -> int:
    problem = problem_from_args(args)
    labels = parse_pair(args.activations) if args.activations else ("σ1", "σ2")
    fig = draw_network(problem, *labels)
    for path in save_figure(fig, ensure_dir(args.out), "network"):
        say(f"wrote {path}")
    return 0


def _cmd_section1(args: argparse.Namespace) -> int:
    paths = write_section1(problem_from_args(args), args.out, resolve_dtype(args.dtype))
    say(f"wrote {len(paths)} files into {args.out}")
    return 0

