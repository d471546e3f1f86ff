"""Section 1 as files: Tables 1 and 2, the forward pass by hand, the network figure and every raw value.

Everything is computed in memory before anything is written, so a bad input never leaves a half-finished
output folder behind.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mlplab.fsio import atomic_write_json, atomic_write_text, ensure_dir, save_figure
from mlplab.tables import SUFFIXES, Table, write_tables
from mlplab.twolayer.byhand import derive_all_pairs, derive_by_hand
from mlplab.twolayer.byhand_render import render_derivations
from mlplab.twolayer.forward_tables import section1_values, table1, table2
from mlplab.twolayer.netdraw import draw_network
from mlplab.twolayer.problem import Problem


def byhand_texts(problem: Problem, pair: tuple[str, str], every: bool = False) -> dict[str, str]:
    """The derivation of `pair` (or of all nine pairs with `every`) in each format: text, markdown, latex, json.

    >>> from mlplab.twolayer.problem import load_problem
    >>> texts = byhand_texts(load_problem(), ("identity", "identity"))
    >>> sorted(texts)
    ['json', 'latex', 'markdown', 'text']
    """
    derivations = derive_all_pairs(problem) if every else [derive_by_hand(problem, *pair)]
    return {fmt: render_derivations(derivations, fmt) for fmt in SUFFIXES}


def write_texts(texts: dict[str, str], out_dir: Path, stem: str) -> list[Path]:
    """Write `stem.{txt,md,tex,json}` from the text of each format, each atomically."""
    out = ensure_dir(out_dir)
    return [atomic_write_text(out / f"{stem}.{SUFFIXES[fmt]}", text + "\n") for fmt, text in texts.items()]


def section1_tables(problem: Problem, which: str = "all", dtype: torch.dtype = torch.float32) -> list[Table]:
    """Table 1, Table 2 or both (`which` is "table1", "table2" or "all")."""
    return [make(problem, dtype) for name, make in (("table1", table1), ("table2", table2))
            if which in (name, "all")]


def write_section1(problem: Problem, out_dir: Path, dtype: torch.dtype = torch.float32) -> list[Path]:
    """Write all of section 1 into `out_dir`: Table 1 and Table 2 (.txt/.md/.tex/.json), the identity derivation
    (byhand.*) and all nine pairs (byhand_all_pairs.*), the network figure (PNG, PDF), every raw value
    (section1_values.json) and the problem used (problem.json). Everything is computed before anything is
    written, so bad input leaves no files behind."""
    tables = {"table1": [table1(problem, dtype)], "table2": [table2(problem, dtype)]}
    texts = {"byhand": byhand_texts(problem, ("identity", "identity")),
             "byhand_all_pairs": byhand_texts(problem, ("identity", "identity"), every=True)}
    values = section1_values(problem, dtype)
    fig = draw_network(problem)
    out = ensure_dir(out_dir)
    paths: list[Path] = []
    for stem, group in tables.items():
        paths += write_tables(group, out, stem)
    for stem, by_format in texts.items():
        paths += write_texts(by_format, out, stem)
    paths += save_figure(fig, out, "network")
    paths.append(atomic_write_json(out / "section1_values.json", values))
    paths.append(atomic_write_text(out / "problem.json", problem.to_text()))
    return paths
