"""The steps of `mlplab reproduce` and their settings: full (the seed's), quick, and tiny (for tests and CI).

Results go under one folder: `section1/`, `section2/`, `stream/`, `mnist/<profile>/` (each MNIST profile in
its own folder, so a quick run never passes for a full one) and the state file. The report goes elsewhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlplab.report import parts
from mlplab.report.plan import Step, StepOutput, StepUnavailable

PROFILES: dict[str, dict[str, Any]] = {
    # The seed's settings: 100 epochs, every experiment; streaming at a size that fits one machine.
    "full": {"mnist_epochs": 100, "experiments": None, "stream_rows": 10**9},
    # The whole picture in minutes.
    "quick": {"mnist_epochs": 2, "experiments": None, "stream_rows": 10**6},
    # For the test suite and CI: one epoch of two experiments, a small stream.
    "tiny": {"mnist_epochs": 1, "experiments": ("baseline", "hidden16"), "stream_rows": 10**5},
}


@dataclass(frozen=True)
class Settings:
    """Everything `mlplab reproduce` was asked to do."""

    profile: str = "full"
    results_dir: Path = Path("results")
    report_dir: Path = Path("report")
    data_dir: Path | None = None
    problem_path: Path | None = None
    jobs: int | None = None
    fetch: bool = True
    pdf: bool = True
    only: tuple[str, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)

    def value(self, key: str) -> Any:
        return self.overrides.get(key, PROFILES[self.profile][key])

    @property
    def mnist_dir(self) -> Path:
        return self.results_dir / "mnist" / self.profile

    def problem_digest(self) -> str:
        if self.problem_path is None:
            return "seed"
        return hashlib.sha256(Path(self.problem_path).read_bytes()).hexdigest()[:16]


# Rough wall times on a 2-core laptop-class CPU; good enough to plan a coffee break.
SECTION1_S = 8.0
SECTION2_S = 25.0
STREAM_ROWS_PER_S = 2.0e7
MNIST_CHECK_S = 5.0
MNIST_FETCH_S = 60.0
REPORT_S = 10.0
PDF_S = 40.0


def build_steps(settings: Settings, log: Callable[[str], None], report_step: Callable[[], StepOutput]) -> list[Step]:
    """The plan for `settings`, in order; `report_step` writes the report (defined by the caller)."""
    from mlplab.problem import load_problem

    problem_key = settings.problem_digest()

    def section(writer: Callable[[Any, Path], list[Path]], sub: str) -> Callable[[], StepOutput]:
        def run() -> StepOutput:
            problem = load_problem(settings.problem_path)
            return StepOutput(files=writer(problem, settings.results_dir / sub))
        return run

    steps = [
        Step("section1", "Section 1: Tables 1-2, the forward pass by hand, the network figure", SECTION1_S,
             section(parts.write_section1, "section1"), {"problem": problem_key}),
        Step("section2", "Section 2: classification, losses, gradients, gradient descent", SECTION2_S,
             section(parts.write_section2, "section2"), {"problem": problem_key}),
    ]
    stream_rows = int(settings.value("stream_rows"))
    steps.append(Step("stream", f"Streaming forward pass over {stream_rows:,} synthetic rows",
                      2.0 + stream_rows / STREAM_ROWS_PER_S, lambda: _run_stream(settings, stream_rows),
                      {"rows": stream_rows, "problem": problem_key}))
    ready = _safe_ready(settings.data_dir)
    steps.append(Step("mnist-data", "MNIST in the cache (fetched when missing)",
                      MNIST_CHECK_S + (0.0 if ready or not settings.fetch else MNIST_FETCH_S),
                      lambda: _mnist_data(settings, log), {"data_dir": str(settings.data_dir or "")}))
    steps += _mnist_steps(settings)
    steps.append(Step("report", "The LaTeX report" + (" and report.pdf" if settings.pdf else ""),
                      REPORT_S + (PDF_S if settings.pdf else 0.0), report_step, {}, always=True))
    if settings.only:
        known = {s.name for s in steps} | {"mnist"}
        unknown = [n for n in settings.only if n not in known]
        if unknown:
            from mlplab.errors import MlplabError

            raise MlplabError(f"unknown step(s) {', '.join(unknown)} for --only",
                              hint="choose from " + ", ".join(s.name for s in steps) + " (or mnist for all MNIST)")
        wanted = set(settings.only)
        steps = [s for s in steps if s.name in wanted or ("mnist" in wanted and s.name.startswith("mnist"))]
    return steps


def _safe_ready(data_dir: Path | None) -> bool:
    try:
        return parts.mnist_ready(data_dir)
    except StepUnavailable:
        return False


def _run_stream(settings: Settings, rows: int) -> StepOutput:
    raise StepUnavailable("the streaming engine (mlplab.stream) is not available in this version of mlplab")


def _mnist_data(settings: Settings, log: Callable[[str], None]) -> StepOutput:
    if parts.mnist_ready(settings.data_dir):
        return StepOutput(info={"fetched": False})
    if not settings.fetch:
        raise StepUnavailable("MNIST is not in the cache and fetching was switched off (--no-fetch)")
    folder = parts.fetch_mnist(settings.data_dir, log)
    return StepOutput(info={"fetched": True, "data_dir": str(folder)})


def _mnist_steps(settings: Settings) -> list[Step]:
    return []
