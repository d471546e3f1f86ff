"""`mlplab reproduce`: every section of the assignment and the LaTeX report, from one command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mlplab.cli.common import add_data_dir, add_out, add_problem, say
from mlplab.errors import MlplabError


def register(sub: Any) -> None:
    """Add `mlplab reproduce` to the `mlplab` parser."""
    p = sub.add_parser(
        "reproduce", help="run sections 1-3 and write results/ and the LaTeX report (resumable)",
        description="Run sections 1, 2 and 3 of the assignment (tables, derivations, figures, gradients, the "
                    "streaming demo, every MNIST experiment), write results/ and report/ (a LaTeX project, and "
                    "report.pdf when latexmk or pdflatex is installed). Shows the plan and an estimated time "
                    "first; run it again to resume where it stopped.")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--quick", action="store_true",
                       help="few MNIST epochs and a small stream: the whole picture in minutes")
    speed.add_argument("--tiny", action="store_true",
                       help="the smallest run (1 epoch of two MNIST experiments, 1e5 stream rows), for tests and CI")
    add_out(p, "one folder for everything: DIR/results and DIR/report (default: the current folder)")
    p.add_argument("--results", type=Path, default=None, metavar="DIR",
                   help="where results go (default: results/ inside --out, else ./results)")
    p.add_argument("--report", type=Path, default=None, metavar="DIR",
                   help="where the LaTeX report goes (default: report/ inside --out, else ./report)")
    p.add_argument("--only", nargs="+", default=(), metavar="STEP",
                   help="run only these steps (names as in the plan; 'mnist' for all MNIST steps)")
    p.add_argument("--no-pdf", action="store_true", help="write the LaTeX project but do not build report.pdf")
    p.add_argument("--no-fetch", action="store_true", help="never download MNIST; skip MNIST when not cached")
    add_data_dir(p)
    add_problem(p, "problem file for sections 1-2")
    p.add_argument("--jobs", type=int, default=None, metavar="N", help="MNIST runs at once (default: automatic)")
    p.add_argument("--title", default=None, help="the report's title (default: the assignment's)")
    p.add_argument("--author", default=None, help="the author line of the report (default: a placeholder)")
    p.add_argument("--submission", default="submission.zip", metavar="NAME",
                   help="file name of the archive with report.pdf and the source, written into the report folder "
                        "(default: submission.zip)")
    p.add_argument("--plan", action="store_true", help="print the plan and the estimate, then stop (writes nothing)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mlplab.pipeline.reproduce import reproduce
    from mlplab.pipeline.steps import Settings

    if args.jobs is not None and args.jobs < 1:
        raise MlplabError(f"--jobs must be at least 1, got {args.jobs}", hint="pass --jobs 1 or more")
    profile = "quick" if args.quick else "tiny" if args.tiny else "full"
    base = args.out if args.out is not None else Path()
    results = args.results if args.results is not None else base / "results"
    report = args.report if args.report is not None else base / "report"
    settings = Settings(profile=profile, results_dir=results, report_dir=report, data_dir=args.data_dir,
                        problem_path=args.problem, jobs=args.jobs, fetch=not args.no_fetch, pdf=not args.no_pdf,
                        only=tuple(args.only), title=args.title, author=args.author,
                        submission=_archive_name(args.submission), command=_command(args))
    result = reproduce(settings, progress=not args.no_progress and sys.stderr.isatty(), log=say,
                       dry_run=args.plan)
    if args.plan:
        return 0
    bad = [o for o in result.outcomes if o.status not in ("done", "skipped")]
    for note in result.notes:
        say(f"note: {note}")
    pdf = settings.report_dir / "report.pdf"
    say(f"report: {settings.report_dir / 'report.tex'}" + (f" and {pdf}" if result.pdf_built else ""))
    archive = settings.report_dir / settings.submission
    if any(o.name == "report" and o.status == "done" for o in result.outcomes) and archive.is_file():
        say(f"submission archive: {archive} (report.pdf and the source files, no data)")
    if any(o.name == "mnist-data" and o.status not in ("done", "skipped") for o in result.outcomes):
        say("MNIST is not available, so section 3 is missing from the report; the other sections and the report "
            "were still produced (see the mnist-data line above for how to get MNIST)")
    if bad:
        say(f"{len(bad)} step(s) did not finish: " + "; ".join(f"{o.name} ({o.status}: {o.message})" for o in bad))
        return 1
    return 0


def _archive_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise MlplabError(f"--submission must be a file name, got {name!r}",
                          hint="e.g. --submission my-name-compulsory1.zip (it is written into the report folder)")
    return name if name.endswith(".zip") else name + ".zip"


def _command(args: argparse.Namespace) -> str:
    words = ["mlplab reproduce"] + [flag for flag, on in (("--quick", args.quick), ("--tiny", args.tiny)) if on]
    return " ".join(words)
