"""`reproduce`: show the plan with its time estimate, run it (resuming), write the report, build the PDF.

>>> from mlplab.pipeline.steps import PROFILES
>>> sorted(PROFILES)
['full', 'quick', 'tiny']
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlplab
from mlplab.fsio import check_dir_creatable, ensure_dir
from mlplab.pipeline.plan import Outcome, PlanState, StepOutput, describe_plan, format_duration, run_plan
from mlplab.pipeline.steps import Settings, build_steps
from mlplab.report.build import build_pdf, latex_tool
from mlplab.report.submission import write_submission
from mlplab.report.writer import write_report


@dataclass
class ReproduceResult:
    """What happened: one outcome per step, the plan as printed, and whether report.pdf was built."""

    outcomes: list[Outcome]
    plan_lines: list[str]
    estimate_s: float
    pdf_built: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.status in ("done", "skipped") for o in self.outcomes)


def reproduce(settings: Settings, *, progress: bool = True, log: Callable[[str], None] = print,
              dry_run: bool = False) -> ReproduceResult:
    """Run the plan for `settings`; `log` receives the plan and one line per step (the CLI sends it to stderr)."""
    for folder in (settings.results_dir, settings.report_dir):  # --plan writes nothing, but checks the same
        check_dir_creatable(folder) if dry_run else ensure_dir(folder)
    state = PlanState(settings.results_dir)
    result = ReproduceResult([], [], 0.0)

    def report_step() -> StepOutput:
        stream = _stream_summary(settings)
        files = write_report(settings.results_dir, settings.report_dir, problem_path=settings.problem_path,
                             mnist_rel=settings.mnist_dir.relative_to(settings.results_dir).as_posix(),
                             mnist_epochs=int(settings.value("mnist_epochs")), stream=stream,
                             profile=settings.profile, title=settings.title, author=settings.author,
                             command=settings.command)
        info: dict[str, Any] = {"tables": files.tables, "figures": files.figures, "listings": files.listings,
                                "missing": files.missing}
        if files.missing:
            result.notes.append(f"the report marks {len(files.missing)} item(s) as not yet produced")
        pdf = None
        if settings.pdf and latex_tool() is not None:
            pdf = build_pdf(settings.report_dir)
            result.pdf_built = True
        elif settings.pdf:
            result.notes.append("report.pdf was not built: neither latexmk nor pdflatex is installed; "
                                f"upload {settings.report_dir} to Overleaf or install TeX")
        archive = write_submission(settings.report_dir / settings.submission, pdf,
                                   Path(mlplab.__file__).resolve().parent, _checkout(), settings.command)
        info["submission"] = str(archive)
        return StepOutput(files=[files.tex, files.bib, archive], info=info)

    steps = build_steps(settings, log, report_step)
    lines, todo = describe_plan(steps, state)
    result.plan_lines, result.estimate_s = lines, todo
    log(f"mlplab reproduce ({settings.profile} settings): {len(steps)} steps, estimated "
        f"{format_duration(todo)} for the work left; results in {settings.results_dir}, "
        f"report in {settings.report_dir}")
    for line in lines:
        log(line)
    if dry_run:
        return result
    result.outcomes = run_plan(steps, state, progress=progress, log=log)
    return result


def _checkout() -> Path | None:
    # The project folder when mlplab runs from a source checkout (tests and project files go into the archive).
    root = Path(mlplab.__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def _stream_summary(settings: Settings) -> dict[str, Any] | None:
    path = settings.results_dir / "stream" / "summary.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
