"""The steps of `mlplab reproduce` and their settings: full (the assignment's), quick, and tiny (for tests and CI).

Results go under one folder: `section1/`, `section2/`, `stream/`, `mnist/<profile>/` (each MNIST profile in
its own folder, so a quick run never passes for a full one) and the state file. The report goes elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from mlplab.errors import MlplabError
from mlplab.fsio import atomic_write_json
from mlplab.mnist import fetch, sweep
from mlplab.mnist.compare_report import write_comparisons
from mlplab.mnist.config import config_from_dict
from mlplab.mnist.experiments import select_experiments
from mlplab.pipeline.calibrate import parallel_wall, probe_runs, run_estimate
from mlplab.pipeline.plan import Step, StepOutput, StepUnavailable
from mlplab.stream.run import StreamOptions, run_stream
from mlplab.tables import Table, plural, write_tables
from mlplab.twolayer.problem import load_problem
from mlplab.twolayer.section1 import write_section1
from mlplab.twolayer.section2 import write_section2

PROFILES: dict[str, dict[str, Any]] = {
    # The assignment's settings: 100 epochs, every experiment; streaming at a size that fits one machine.
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
    title: str | None = None
    author: str | None = None
    submission: str = "submission.zip"
    command: str = "mlplab reproduce"

    def value(self, key: str) -> Any:
        return self.overrides.get(key, PROFILES[self.profile][key])

    @property
    def mnist_dir(self) -> Path:
        return self.results_dir / "mnist" / self.profile

    def problem_digest(self) -> str:
        if self.problem_path is None:
            return "seed"
        load_problem(self.problem_path)  # a missing or malformed file is a clear error before anything runs
        return hashlib.sha256(Path(self.problem_path).read_bytes()).hexdigest()[:16]


# Wall times of the short steps, measured on the 2-core development machine (2026-12-04); the MNIST runs,
# which are most of a full run, are estimated on the machine itself (`_probed_costs`).
SECTION1_S = 1.5
SECTION2_S = 4.0
STREAM_ROWS_PER_S = 3.0e7
MNIST_CHECK_S = 1.0
MNIST_FETCH_S = 60.0
REPORT_S = 1.0
PDF_S = 3.0


def build_steps(settings: Settings, log: Callable[[str], None], report_step: Callable[[], StepOutput]) -> list[Step]:
    """The plan for `settings`, in order; `report_step` writes the report (defined by the caller)."""
    problem_key = settings.problem_digest()

    def section(writer: Callable[[Any, Path], list[Path]], sub: str) -> Callable[[], StepOutput]:
        def run() -> StepOutput:
            problem = load_problem(settings.problem_path)
            return StepOutput(files=writer(problem, settings.results_dir / sub))
        return run

    code = source_digest()  # sections 1-2 and the comparisons take seconds: redo them when the code changed
    steps = [
        Step("section1", "Section 1: Tables 1-2, the forward pass by hand, the network figure", SECTION1_S,
             section(write_section1, "section1"), {"problem": problem_key, "code": code}),
        Step("section2", "Section 2: classification, losses, gradients, gradient descent", SECTION2_S,
             section(write_section2, "section2"), {"problem": problem_key, "code": code}),
    ]
    stream_rows = int(settings.value("stream_rows"))
    steps.append(Step("stream", f"Streaming forward pass over {stream_rows:,} synthetic rows",
                      2.0 + stream_rows / _stream_rate(settings.results_dir),
                      lambda: _run_stream(settings, stream_rows),
                      {"rows": stream_rows, "problem": problem_key}))
    ready = _mnist_ready(settings.data_dir)
    steps.append(Step("mnist-data", "MNIST in the cache (fetched when missing)",
                      MNIST_CHECK_S + (0.0 if ready or not settings.fetch else MNIST_FETCH_S),
                      lambda: _mnist_data(settings, log), {"data_dir": str(settings.data_dir or "")}))
    steps += _mnist_steps(settings, log, code)
    steps.append(Step("report", "The LaTeX report" + (" and report.pdf" if settings.pdf else ""),
                      REPORT_S + (PDF_S if settings.pdf else 0.0), report_step, {}, always=True))
    if settings.only:
        known = {s.name for s in steps} | {"mnist"}
        unknown = [n for n in settings.only if n not in known]
        if unknown:
            raise MlplabError(f"unknown step(s) {', '.join(unknown)} for --only",
                              hint="choose from " + ", ".join(s.name for s in steps) + " (or mnist for all MNIST)")
        wanted = set(settings.only)
        steps = [s for s in steps if s.name in wanted or ("mnist" in wanted and s.name.startswith("mnist"))]
    return steps


def source_digest() -> str:
    """A short hash of mlplab's source (Python and C), so steps computed by older code are not taken as finished."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".c", ".h")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _stream_rate(results_dir: Path) -> float:
    # A rate measured here before (on at least a million rows) beats the default guess.
    try:
        data = json.loads((results_dir / "stream" / "summary.json").read_text())
        if int(data.get("rows_done", 0)) >= 10**6 and float(data.get("rows_per_s", 0)) > 0:
            return float(data["rows_per_s"])
    except (OSError, ValueError, TypeError):
        pass
    return STREAM_ROWS_PER_S


def _mnist_ready(data_dir: Path | None) -> bool:
    """True when all four MNIST files are in the cache with the right checksums (never downloads)."""
    return all(c.ok for c in fetch.verify_mnist(data_dir))


def _run_stream(settings: Settings, rows: int) -> StepOutput:
    """The streaming engine over `rows` synthetic rows: its summary, speed and a table for the report."""
    problem = load_problem(settings.problem_path)
    folder = settings.results_dir / "stream"
    chunk_rows = max(1, min(rows // 8, 1 << 20))  # at least eight chunks, so the demonstration really streams
    result = run_stream(f"synthetic:{rows}", StreamOptions(activations=STREAM_ACTIVATIONS, problem=problem,
                                                           chunk_rows=chunk_rows, out=folder / "run", resume=True,
                                                           progress=False))
    data = {**result.to_json(), "activations": ",".join(STREAM_ACTIVATIONS), "chunk_rows": chunk_rows,
            "d": problem.d, "rows_done": result.rows_done,
            "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs, {platform.system()}"}
    summary = atomic_write_json(folder / "summary.json", data)
    rate = round(result.rows_per_s) if result.rows_done else None
    table = Table("Streaming forward pass (synthetic inputs)",
                  ["rows", "chunk rows", "shards", "kernel", "seconds", "rows/s", "positives", "mean y_hat",
                   "min y_hat", "max y_hat"],
                  [[data["rows"], chunk_rows, data["shards"], data["kernel"], result.seconds, rate,
                    data["positives"], data["mean_y_hat"], data["min_y_hat"], data["max_y_hat"]]], decimals=4,
                  caption=f"The network of the problem, {STREAM_ACTIVATIONS}, streamed in chunks over synthetic "
                          "rows; the summary is computed on the fly.", label="tab:stream")
    return StepOutput(files=[summary, *write_tables([table], folder, "stream")],
                      info={k: data[k] for k in ("rows", "rows_per_s", "seconds", "kernel")})


STREAM_ACTIVATIONS = ("relu", "sigmoid")


def _mnist_data(settings: Settings, log: Callable[[str], None]) -> StepOutput:
    if _mnist_ready(settings.data_dir):
        return StepOutput(info={"fetched": False})
    if not settings.fetch:
        raise StepUnavailable("MNIST is not in the cache and fetching was switched off (--no-fetch)")
    folder = Path(fetch.fetch_mnist(settings.data_dir, log=log))
    return StepOutput(info={"fetched": True, "data_dir": str(folder)})


def _mnist_steps(settings: Settings, log: Callable[[str], None], code: str) -> list[Step]:
    epochs = int(settings.value("mnist_epochs"))
    names = list(settings.value("experiments") or ["all"])
    plans = sweep.plan_sweep(select_experiments(names), settings.mnist_dir, epochs=epochs)
    pending = [p for p in plans if p.state != "done"]
    n_jobs, threads, gpu = sweep.schedule(pending, sweep.SweepOptions(), settings.jobs)
    factor = _calibration(settings.results_dir)
    cost = {p.name: RUN_OVERHEAD_S + factor * sweep.estimated_cost(p.config) for p in plans}
    cost.update(_probed_costs(settings, pending, 1 if gpu else n_jobs, threads))  # one GPU: probed one by one
    # Runs side by side: each step's share of the wall time of the whole parallel batch, longest run first.
    wall = parallel_wall([cost[p.name] for p in pending], n_jobs)
    share = wall / max(sum(cost[p.name] for p in pending), 1e-9)
    batch = _MnistBatch([p for p in pending], settings, n_jobs, threads, gpu, log)
    steps = []
    for plan in plans:
        parallel = n_jobs > 1 and plan in pending
        leader = parallel and plan is pending[0]
        steps.append(Step(
            f"mnist-{plan.name}",
            f"MNIST {plan.name}, {plural(epochs, 'epoch')}" + (" (in parallel)" if parallel else ""),
            cost[plan.name] * share if parallel else cost[plan.name], partial(batch.run, plan),
            {"experiment": plan.name, "epochs": epochs, "config": str(plan.config)}, needs=("mnist-data",),
            tick_s=wall if leader else None, batched=parallel and not leader, group="mnist-run",
            finished_s=_recorded_time(plan.run_dir) if plan.state == "done" else None))
    steps.append(Step("mnist-compare", "MNIST comparisons: curves, tables, observations, softmax against logits",
                      MNIST_COMPARE_S, lambda: _mnist_compare(settings),
                      {"epochs": epochs, "runs": names, "finished": sorted(p.name for p in plans if p not in pending),
                       "code": code},
                      needs=("mnist-data",)))
    return steps


def _probed_costs(settings: Settings, pending: list[Any], jobs: int, threads: int) -> dict[str, float]:
    """Seconds per pending run from a few real batches of its configuration on this machine, probed `jobs` at a
    time as the runs will train (see `mlplab.pipeline.calibrate`); empty when MNIST is not in the cache yet (then
    the cost model stands)."""
    wanted = not settings.only or any(n == "mnist" or n.startswith("mnist-") for n in settings.only)
    if not pending or not wanted or not _mnist_ready(settings.data_dir):
        return {}
    probes = probe_runs([p.config for p in pending], settings.data_dir, jobs, threads)
    out = {}
    for plan, probe in zip(pending, probes):
        t = plan.config.training
        n_fit = N_TRAIN - round(N_TRAIN * t.validation_split)
        done = _epochs_done(plan.run_dir) if plan.state == "resume" else 0
        out[plan.name] = run_estimate(probe, max(0, t.num_epochs - done), n_fit, t.batch_size, PROBED_OVERHEAD_S)
    return out


N_TRAIN = 60000  # MNIST's training images


def _epochs_done(run_dir: Path) -> int:
    try:
        return max(0, len((run_dir / "metrics.csv").read_text().strip().splitlines()) - 1)
    except OSError:
        return 0


def _recorded_time(run_dir: Path) -> float | None:
    # A run finished by a sweep that was interrupted before the plan could record it: its own wall time.
    try:
        return float(json.loads((run_dir / "summary.json").read_text())["wall_time_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


MNIST_COMPARE_S = 4.0
PROBED_OVERHEAD_S = 3.0  # per MNIST run on top of its probed batches: a worker starting, loading MNIST
DEFAULT_CALIBRATION = 0.6  # wall seconds per unit of mlplab.mnist.sweep.estimated_cost (2-core CPU)
RUN_OVERHEAD_S = 15.0  # per MNIST run: start-up, loading MNIST, evaluation


def _calibration(results_dir: Path) -> float:
    # Measured speed beats a guess: scale the sweep's cost model by the finished runs found under results/.
    ratios = []
    for summary_path in sorted((results_dir / "mnist").glob("*/*/summary.json"))[:20]:
        try:
            summary = json.loads(summary_path.read_text())
            raw = json.loads((summary_path.parent / "config.json").read_text())
            config = config_from_dict(raw)
            wall = float(summary.get("train_time_s") or 0.0)
            model = sweep.estimated_cost(config) * int(summary.get("epochs_run") or 0) / config.training.num_epochs
        except Exception:  # any unreadable or older run: just not used for calibration
            continue
        if wall > 0 and model > 0:
            ratios.append(wall / model)
    return sorted(ratios)[len(ratios) // 2] if ratios else DEFAULT_CALIBRATION


class _MnistBatch:
    """Runs pending MNIST experiments: one at a time per step, or all at once (`jobs` > 1) on the first step."""

    def __init__(self, pending: list[Any], settings: Settings, jobs: int, threads: int, gpu: bool,
                 log: Callable[[str], None]) -> None:
        self.pending, self.settings = pending, settings
        self.jobs, self.threads, self.gpu, self.log = jobs, threads, gpu, log  # gpu: the runs share one GPU
        self.summaries: dict[str, dict[str, Any]] = {}
        self.error: str | None = None
        self.started = False

    def options(self) -> Any:
        return sweep.SweepOptions(data_dir=self.settings.data_dir, progress=False)

    def run(self, plan: Any) -> StepOutput:
        if self.jobs > 1 and plan in self.pending:
            if not self.started:
                self.started = True
                shared = sweep.describe_schedule(self.jobs, self.threads, self.gpu)
                self.log(f"MNIST: {len(self.pending)} runs, {shared}")
                try:
                    sweep.run_sweep(self.pending, self.options(), jobs=self.jobs, on_done=self._done)
                except MlplabError as exc:
                    self.error = str(exc)
            if plan.name not in self.summaries:
                raise MlplabError(f"MNIST run {plan.name} did not finish: {self.error or 'no summary written'}",
                                  hint="run the same command again; finished runs are kept, others resume")
            summary = self.summaries[plan.name]
        else:
            summary = sweep.execute(plan, self.options(), self.threads)
        files = [plan.run_dir / "summary.json"]
        return StepOutput(files=files, info={k: v for k, v in summary.items() if k not in ("history", "stopping")})

    def _done(self, plan: Any, summary: dict[str, Any]) -> None:
        self.summaries[plan.name] = summary
        if plan.state != "done":
            epochs = plural(int(summary.get("epochs_run") or 0), "epoch")
            self.log(f"MNIST {plan.name} finished: {epochs}, test accuracy {summary.get('test_accuracy')}"
                     + (", divergent" if summary.get("divergent") else ""))


def _mnist_compare(settings: Settings) -> StepOutput:
    out = settings.mnist_dir / "comparisons"
    _tables, _observations, paths = write_comparisons(settings.mnist_dir, out, data_dir=settings.data_dir)
    return StepOutput(files=[Path(p) for p in paths])
