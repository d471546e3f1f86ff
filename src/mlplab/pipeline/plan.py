"""The reproduce plan: an ordered list of steps, each with an estimated time, run with resume.

A step is a named piece of work (section 1, section 2, the streaming demo, the MNIST data check, one MNIST
experiment, the report) with a *fingerprint* of the settings it depends on. When it finishes, the state file
(`<results>/reproduce-state.json`, written atomically) records its fingerprint, wall time and output files.
Running the plan again skips every step whose record has the same fingerprint and whose outputs all still
exist; anything else runs again (MNIST runs then resume from their own per-epoch checkpoints).
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlplab.errors import MlplabError
from mlplab.fsio import atomic_write_json, atomic_write_text
from mlplab.pipeline.calibrate import Refiner

STATE_FILE = "reproduce-state.json"
STATE_VERSION = 1


class StepUnavailable(Exception):
    """What a step needs is not there (its input is missing, as MNIST with fetching off): skip it, say why."""


@dataclass
class StepOutput:
    """What a finished step reports: files it wrote (paths under the results folder) and small facts."""

    files: list[Path] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Step:
    """One unit of the plan. `run(step)` does the work; `estimate_s` is the expected wall time in seconds."""

    name: str
    title: str
    estimate_s: float
    run: Callable[[], StepOutput]
    settings: dict[str, Any] = field(default_factory=dict)
    always: bool = False  # run even when finished before (the report: cheap, depends on everything)
    needs: tuple[str, ...] = ()  # steps that must have succeeded in this run or before
    tick_s: float | None = None  # how long the bar may creep during the step (default: its estimate)
    finished_s: float | None = None  # finished outside the state file (an MNIST run of an interrupted sweep): its time
    batched: bool = False  # its work is done by the step with `tick_s` before it (runs trained side by side)
    group: str = ""  # steps whose estimates come from one source share a group (the MNIST runs); default: name

    @property
    def kind(self) -> str:
        return self.group or self.name

    @property
    def fingerprint(self) -> str:
        """Hash of the settings this step depends on.

        >>> Step("a", "A", 1.0, StepOutput, {"epochs": 2}).fingerprint == Step("b", "B", 9, StepOutput,
        ...     {"epochs": 2}).fingerprint
        True
        """
        text = json.dumps(self.settings, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Outcome:
    """How a step ended in this run: done, skipped (finished before), unavailable, blocked or failed."""

    name: str
    status: str
    wall_s: float = 0.0
    message: str = ""


class PlanState:
    """The state file: which steps finished, with which settings, producing which files."""

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = Path(results_dir)
        self.path = self.results_dir / STATE_FILE
        self.steps: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                raw = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise MlplabError(f"the reproduce state file {self.path} is unreadable ({exc})",
                                  hint="delete it to start over; finished results stay in place") from exc
            if isinstance(raw, dict) and raw.get("version") == STATE_VERSION and isinstance(raw.get("steps"), dict):
                self.steps = raw["steps"]

    def is_finished(self, step: Step) -> bool:
        """True when `step` finished before with the same settings and all its files still exist."""
        record = self.steps.get(step.name)
        if not record or record.get("status") != "done" or record.get("fingerprint") != step.fingerprint:
            return False
        return all((self.results_dir / f).exists() for f in record.get("files", []))

    def record(self, step: Step, output: StepOutput, wall_s: float) -> None:
        files = []
        for f in output.files:
            p = Path(f)
            try:
                files.append(str(p.resolve().relative_to(self.results_dir.resolve())))
            except ValueError:
                continue  # outside results/ (the report folder): not part of the completeness check
        self.steps[step.name] = {
            "status": "done", "fingerprint": step.fingerprint, "settings": step.settings, "wall_s": round(wall_s, 3),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "files": files,
            "info": output.info}
        self.save()

    def forget(self, name: str) -> None:
        if self.steps.pop(name, None) is not None:
            self.save()

    def info(self, name: str) -> dict[str, Any]:
        return dict(self.steps.get(name, {}).get("info", {}))

    def save(self) -> None:
        atomic_write_json(self.path, {"version": STATE_VERSION, "steps": self.steps})


def format_duration(seconds: float) -> str:
    """Human-readable duration.

    >>> format_duration(4.2), format_duration(75), format_duration(3 * 3600 + 125)
    ('4 s', '1 min 15 s', '3 h 02 min')
    """
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def describe_plan(steps: Sequence[Step], state: PlanState) -> tuple[list[str], float]:
    """The plan as printable lines, and the estimated seconds of the work still to do."""
    width = max([len(s.name) for s in steps] + [4])
    lines = [f"  {'#':>2}  {'step':<{width}}  {'estimate':>10}  {'state':<8}  what"]
    todo = 0.0
    for i, step in enumerate(steps, 1):
        recorded = state.steps[step.name].get("wall_s", 0.0) if state.is_finished(step) else step.finished_s
        finished = recorded is not None and not step.always
        todo += 0.0 if finished else step.estimate_s
        mark = f"done in {format_duration(float(recorded))}" if finished and recorded is not None else "to do"
        lines.append(f"  {i:>2}  {step.name:<{width}}  {format_duration(step.estimate_s):>10}  {mark:<8}  {step.title}")
    return lines, todo


def run_plan(steps: Sequence[Step], state: PlanState, *, progress: bool = True,
             log: Callable[[str], None] = lambda _m: None) -> list[Outcome]:
    """Run the steps in order, skipping finished ones; one failure does not stop the others.

    A progress bar (stderr, weighted by each step's estimate) advances while a step runs and jumps to the
    step's full weight when it ends. Steps whose `needs` did not succeed are reported as "blocked".
    """
    todo = {s.name for s in steps if s.always or not state.is_finished(s)}
    bar, log = _plan_bar(sum(s.estimate_s for s in steps if s.name in todo) or 1.0, progress, log)
    # A need is met by a step finished before (even one left out of this run by --only) or in this run.
    ok: set[str] = {s.name for s in steps if s.name not in todo}
    ok |= {name for name, record in state.steps.items() if record.get("status") == "done"}
    outcomes: list[Outcome] = []
    refiner = Refiner()  # scales what is left by how long the finished steps took against their estimates
    batch_done = False  # the leader of the side-by-side MNIST runs has finished them all
    base = 0.0  # bar position when the current step started: the estimates of the steps before it
    try:
        for i, step in enumerate(steps, 1):
            head = f"[{i}/{len(steps)}] {step.name}"
            if step.name not in todo:
                outcomes.append(Outcome(step.name, "skipped", message="finished before"))
                log(f"{head}: finished before, skipped")
                continue
            missing = [n for n in step.needs if n not in ok]
            if missing:
                outcomes.append(Outcome(step.name, "blocked", message=f"needs {', '.join(missing)}"))
                log(f"{head}: not run, it needs {', '.join(missing)}")
                base += step.estimate_s
                _advance(bar, base)
                continue
            log(f"{head}: {step.title} (estimate {format_duration(step.estimate_s)})")
            bar.set_description_str(step.name)
            outcome = _run_one(step, state, bar, base)
            base += step.estimate_s
            _advance(bar, base)
            outcomes.append(outcome)
            if outcome.status == "done":
                ok.add(step.name)
                if not step.batched:  # a batch leader's estimate is the whole batch's (`tick_s`)
                    refiner.finished(step.kind, step.tick_s if step.tick_s is not None else step.estimate_s,
                                     outcome.wall_s)
                    batch_done = batch_done or step.tick_s is not None
                rest = [(s.kind, s.estimate_s) for s in steps[i:]
                        if s.name in todo and not (s.batched and batch_done)]
                left = f"; about {format_duration(refiner.left(rest))} left" if rest else ""
                log(f"{head}: done in {format_duration(outcome.wall_s)}{left}")
            else:
                ok.discard(step.name)
                state.forget(step.name)  # its old record no longer vouches for its outputs
                log(f"{head}: {outcome.status}: {outcome.message}")
    finally:
        bar.close()
    return outcomes


def _plan_bar(total: float, progress: bool, log: Callable[[str], None]) -> tuple[Any, Callable[[str], None]]:
    """The plan's progress bar (in estimated seconds), and the log to print with while it is shown."""
    from tqdm.auto import tqdm

    bar = tqdm(total=round(total, 1), unit="s", desc="reproduce", disable=not progress, leave=True,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} est. s [{elapsed}<{remaining}]")
    if not progress:
        return bar, log

    def write(message: str) -> None:  # lines printed under a live bar must go through tqdm, or they garble it
        tqdm.write(message, file=sys.stderr)

    return bar, write


def _advance(bar: Any, position: float) -> None:
    # Absolute positions, only forward: a step that ran long never makes the bar go back or pass 100%.
    target = min(round(position, 1), bar.total)
    if target > bar.n:
        bar.update(target - bar.n)


def _run_one(step: Step, state: PlanState, bar: Any, base: float) -> Outcome:
    # A ticker thread moves the bar with elapsed time (capped at 95% of the step's budget) so long steps show life.
    start = time.perf_counter()
    stop = threading.Event()
    budget = 0.95 * (step.tick_s if step.tick_s is not None else step.estimate_s)

    def tick() -> None:
        while not stop.wait(1.0):
            _advance(bar, base + min(time.perf_counter() - start, budget))

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        output = step.run()
    except StepUnavailable as exc:
        return Outcome(step.name, "unavailable", time.perf_counter() - start, str(exc))
    except MlplabError as exc:
        return Outcome(step.name, "failed", time.perf_counter() - start, str(exc))
    except Exception as exc:  # a bug in one part must not cost the others: keep the traceback in a log file
        log_path = state.results_dir / "logs" / f"{step.name}.log"
        atomic_write_text(log_path, traceback.format_exc())
        return Outcome(step.name, "failed", time.perf_counter() - start,
                       f"{type(exc).__name__}: {exc} (traceback in {log_path})")
    finally:
        stop.set()
        ticker.join()
    wall = time.perf_counter() - start
    state.record(step, output, wall)
    return Outcome(step.name, "done", wall)
