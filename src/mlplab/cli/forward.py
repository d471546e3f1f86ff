"""Section 1 subcommands: `problem`, `byhand`, `tables`, `draw` and `section1` (everything at once).

Each command loads the problem (`--problem FILE`, default the assignment's), computes everything in memory,
and only then prints or writes, so a bad input never leaves a half-finished output folder behind.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from mlplab.activations import parse_pair
from mlplab.byhand import derive_all_pairs, derive_by_hand
from mlplab.byhand_render import render_derivations
from mlplab.cli.common import (
    add_activations,
    add_format,
    add_out,
    add_problem,
    print_tables,
    problem_from_args,
    say,
    write_tables,
)
from mlplab.forward_tables import DTYPES, resolve_dtype, section1_values, table1, table2
from mlplab.fsio import atomic_write_json, atomic_write_text, ensure_dir, save_figure
from mlplab.netdraw import draw_network
from mlplab.problem import Problem
from mlplab.tables import Table

_SUFFIX = {"text": "txt", "markdown": "md", "latex": "tex", "json": "json"}


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
    problem = problem_from_args(args)
    s1, s2 = parse_pair(args.activations)
    derivations = derive_all_pairs(problem) if args.all else [derive_by_hand(problem, s1, s2)]
    texts = {fmt: render_derivations(derivations, fmt) for fmt in _SUFFIX}
    if args.out is not None:
        out = ensure_dir(args.out)
        for fmt, suffix in _SUFFIX.items():
            path = atomic_write_text(out / f"byhand.{suffix}", texts[fmt] + "\n")
            say(f"wrote {path}")
    print(texts[args.format])
    return 0


def _tables(problem: Problem, which: str, dtype: torch.dtype) -> list[Table]:
    return [make(problem, dtype) for name, make in (("table1", table1), ("table2", table2))
            if which in (name, "all")]


def _cmd_tables(args: argparse.Namespace) -> int:
    problem = problem_from_args(args)
    tables = _tables(problem, args.which, resolve_dtype(args.dtype))
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


def write_section1(problem: Problem, out_dir: Path, dtype: torch.dtype = torch.float32) -> list[Path]:
    """Write all of section 1 into `out_dir`: Table 1 and Table 2 (.txt/.md/.tex/.json), the identity derivation
    (byhand.*) and all nine pairs (byhand_all_pairs.*), the network figure (PNG, PDF), every raw value
    (section1_values.json) and the problem used (problem.json). Everything is computed before anything is
    written, so bad input leaves no files behind."""
    tables = {"table1": [table1(problem, dtype)], "table2": [table2(problem, dtype)]}
    one, every = [derive_by_hand(problem, "identity", "identity")], derive_all_pairs(problem)
    texts = {f"byhand.{suffix}": render_derivations(one, fmt) for fmt, suffix in _SUFFIX.items()}
    texts |= {f"byhand_all_pairs.{suffix}": render_derivations(every, fmt) for fmt, suffix in _SUFFIX.items()}
    values = section1_values(problem, dtype)
    fig = draw_network(problem)
    out = ensure_dir(out_dir)
    paths: list[Path] = []
    for stem, group in tables.items():
        paths += write_tables(group, out, stem)
    paths += [atomic_write_text(out / name, text + "\n") for name, text in texts.items()]
    paths += save_figure(fig, out, "network")
    paths.append(atomic_write_json(out / "section1_values.json", values))
    paths.append(atomic_write_text(out / "problem.json", problem.to_text()))
    return paths
