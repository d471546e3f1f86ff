"""Instructor mode on the command line: `variants` (problems and keys for a class) and `check` (grading)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mlplab.cli.common import add_format, add_out, add_problem, print_tables, problem_from_args, say
from mlplab.errors import MlplabError
from mlplab.instructor.check import answer_template, check_answers, check_class
from mlplab.instructor.files import read_answers, read_class, sheet_text, write_class_report, write_variants
from mlplab.instructor.variants import make_variants
from mlplab.twolayer.problem import load_problem


def register(sub: Any) -> None:
    """Add `variants` and `check` to the `mlplab` parser."""
    p = sub.add_parser("variants", help="a fair variant of the problem for every student, each with its answer key")
    p.add_argument("--count", type=int, required=True, help="how many variants")
    p.add_argument("--seed", type=int, required=True, help="random seed; (seed, index) fixes each variant")
    add_out(p, "folder for DIR/<id>/problem.json, key.*", required=True)
    p.add_argument("--like", type=Path, default=None, metavar="FILE",
                   help="problem file whose shape (inputs, features, hidden units) the variants keep")
    p.add_argument("--no-pdf", action="store_true", help="skip key.pdf even when LaTeX is installed")
    p.set_defaults(func=_cmd_variants)

    p = sub.add_parser("check", help="grade answers against the key and name the mistake behind each wrong one")
    p.add_argument("answers", nargs="?", type=Path, default=None, metavar="ANSWERS",
                   help="the student's answers: JSON with the key's names, or CSV rows name,value")
    add_problem(p)
    p.add_argument("--template", action="store_true", help="print an empty answer sheet (JSON, nulls) for --problem")
    p.add_argument("--class", dest="class_dir", type=Path, default=None, metavar="DIR",
                   help="grade every answer file in DIR (named by student or variant id)")
    p.add_argument("--variants", type=Path, default=None, metavar="DIR",
                   help="with --class: the `mlplab variants` folder holding each variant's problem.json")
    add_format(p)
    add_out(p, "with --class: folder for class.csv, class.json and mistakes.png (default DIR/report)")
    p.set_defaults(func=_cmd_check)


def _cmd_variants(args: argparse.Namespace) -> int:
    like = load_problem(args.like) if args.like is not None else None
    variants = make_variants(args.count, args.seed, like)
    paths, notes = write_variants(variants, args.out, pdf=not args.no_pdf)
    built = sum(n.startswith("built") for n in notes)
    if built:
        say(f"key.pdf built for {built} variants")
    for note in dict.fromkeys(n for n in notes if not n.startswith("built")):
        say(note)
    print(f"{len(variants)} variants (random seed {args.seed}) under {args.out}: "
          + ", ".join(v.id for v in variants[:5]) + (", ..." if len(variants) > 5 else ""))
    say(f"wrote {len(paths) + built} files")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    if args.template:
        print(sheet_text(answer_template(problem_from_args(args))))
        return 0
    if args.class_dir is not None:
        return _check_class(args)
    if args.answers is None:
        raise MlplabError("no answer file given",
                          hint="mlplab check --problem FILE ANSWERS (or --template, or --class DIR)")
    result = check_answers(problem_from_args(args), read_answers(args.answers))
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print_tables([result.table()], args.format)
    return 0


def _check_class(args: argparse.Namespace) -> int:
    report = check_class(read_class(args.class_dir, args.variants, args.problem))
    out = args.out if args.out is not None else args.class_dir / "report"
    for path in write_class_report(report, out):
        say(f"wrote {path}")
    if args.format == "json":
        print(json.dumps({s: r.score for s, r in zip(report.students, report.results)}, indent=2))
    else:
        for student, result in zip(report.students, report.results):
            named = ", ".join(f"{m} ({n})" for m, n in result.mistakes().most_common())
            print(f"{student}: score {result.score:.2f}" + (f"; mistakes: {named}" if named else ""))
        counts = report.mistake_counts()
        print("most common: " + (", ".join(f"{m} {n}/{len(report.students)}" for m, n in counts.items())
                                 if counts else "no mistake diagnosed"))
    return 0
