"""Run named experiments into one results folder: resumable, several at once where cores allow.

Each experiment trains into `<out>/<name>/` (the run folder of `mlplab.mnist.train`). Before a run starts
its folder is inspected: a finished run is skipped, an interrupted one (checkpoint, no summary) resumes from
its checkpoint, one finished with fewer epochs than asked for is extended from its checkpoint, and a folder
holding a different configuration is an error rather than something silently overwritten. A divergent run
is a finished run like any other: the trainer stops it and records where, and the sweep goes on.

Parallelism: a run of this small MLP keeps one core busy only part of the time (Python overhead and small
matrix products at batch 64), so on a machine with C cores `jobs=None` runs min(C, runs) experiments side by
side with C // jobs threads each, longest first; see docs/mnist-experiments.md for the measurement. On CUDA
every run trains at once in a thread of one process, each on its own CUDA stream: their small kernels overlap
on the GPU, where separate processes would take turns (docs/mnist-training.md has the timings).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from mlplab.errors import MlplabError
from mlplab.mnist.config import Config, config_to_dict, resolve_config
from mlplab.mnist.experiments import Experiment, experiment_overrides
from mlplab.mnist.model import closed_form_parameters

# Keys that may differ between the stored and the requested config without making them different runs:
# the device, and the number of epochs (a shorter run can be extended from its checkpoint).
_IGNORED_KEYS = {("training", "device"), ("training", "num_epochs")}


@dataclass(frozen=True)
class RunPlan:
    """One experiment ready to run: where, with which config, and whether it is new, to resume, or done."""

    name: str
    run_dir: Path
    config: Config
    state: str  # "new", "resume" or "done"


@dataclass
class SweepOptions:
    """Everything a worker needs besides the plan (picklable, so it can cross into a worker process)."""

    data_dir: Path | None = None
    trackers: tuple[str, ...] = ()
    wandb_mode: str = "offline"
    device: str | None = None
    progress: bool = True
    data: Any = None  # (train, test) already in memory, e.g. tiny synthetic data in tests


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def _check_jobs(requested: int | None) -> None:
    if requested is not None and requested < 1:
        raise MlplabError(f"--jobs must be at least 1, got {requested}", hint="pass --jobs 1 to run one at a time")


def choose_jobs(n_runs: int, requested: int | None = None, cores: int | None = None) -> tuple[int, int]:
    """(parallel runs, threads per run). By default as many runs as cores, one thread each.

    >>> choose_jobs(8, cores=2), choose_jobs(1, cores=2), choose_jobs(8, requested=1, cores=2)
    ((2, 1), (1, 2), (1, 2))
    """
    cores = cores or available_cores()
    _check_jobs(requested)
    jobs = max(1, min(n_runs, requested if requested is not None else cores))
    return jobs, max(1, cores // jobs)


def estimated_cost(config: Config, n_train: int = 60000) -> float:
    """A rough relative cost (seconds on a ~10 GFLOP/s core) used only to start the longest runs first.

    >>> estimated_cost(resolve_config(overrides=["training.batch_size=6"])) > estimated_cost(Config())
    True
    """
    t, m = config.training, config.model
    params = closed_form_parameters(m.input_size, m.hidden_sizes, m.num_classes)
    steps = math.ceil(n_train / t.batch_size)
    return t.num_epochs * (steps * 150e-6 + 6 * params * n_train / 1e10)


def run_state(run_dir: Path, config: Config) -> str:
    """"new", "resume" (checkpoint but not finished) or "done" (summary of a finished run); a folder holding a
    different configuration is an error. A finished run with fewer epochs than asked for is extended."""
    stored = run_dir / "config.json"
    if not stored.exists():
        return "new"
    try:
        old = json.loads(stored.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MlplabError(f"cannot read {stored}: {exc}", hint=f"delete {run_dir} to start that run again") from exc
    new = config_to_dict(config)
    diffs = [f"{s}.{k}: {old.get(s, {}).get(k)!r} -> {v!r}" for s, values in new.items() for k, v in values.items()
             if (s, k) not in _IGNORED_KEYS and old.get(s, {}).get(k) != v]
    if diffs:
        raise MlplabError(f"{run_dir} holds a run with another configuration ({'; '.join(diffs)})",
                          hint="use another --out folder, or delete that run folder to redo it")
    has_checkpoint = (run_dir / "checkpoint.pt").exists()
    if (run_dir / "summary.json").exists():
        summary = load_summary(run_dir)
        finished = (summary.get("divergent") or summary.get("stopped_early")
                    or int(summary.get("epochs_run") or 0) >= config.training.num_epochs)
        if finished or not has_checkpoint:
            return "done"
    return "resume" if has_checkpoint else "new"


def plan_sweep(experiments: Sequence[Experiment], out_dir: Path, epochs: int | None = None,
               overrides: Sequence[str] = ()) -> list[RunPlan]:
    """Resolve each experiment's config and look at its run folder; no training happens here."""
    plans = []
    for exp in experiments:
        config = resolve_config(overrides=experiment_overrides(exp, epochs, overrides))
        run_dir = Path(out_dir) / exp.name
        plans.append(RunPlan(exp.name, run_dir, config, run_state(run_dir, config)))
    return plans


def load_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise MlplabError(f"cannot read {path}: {exc}", hint=f"delete {run_dir} to run it again") from exc


def execute(plan: RunPlan, options: SweepOptions, threads: int | None = None) -> dict[str, Any]:
    """Train one planned run (or read back its summary when it is done) and return the summary."""
    if plan.state == "done":
        return load_summary(plan.run_dir)
    import torch

    from mlplab.mnist.data import load_mnist
    from mlplab.mnist.runstore import RunStore
    from mlplab.mnist.tracking import make_trackers
    from mlplab.mnist.train import train_run

    if threads is not None:
        torch.set_num_threads(threads)
    train, test = options.data if options.data is not None else load_mnist(options.data_dir)
    trackers = make_trackers(options.trackers, wandb_mode=options.wandb_mode, wandb_group=plan.run_dir.parent.name)
    summary = train_run(plan.config, train, test, RunStore(plan.run_dir), resume=plan.state == "resume",
                        progress=options.progress, trackers=trackers, device=options.device, run_name=plan.name)
    return dict(summary)


def _worker(plan: RunPlan, options: SweepOptions, threads: int) -> dict[str, Any]:
    return execute(plan, options, threads)


def _gpu_worker(plan: RunPlan, options: SweepOptions) -> dict[str, Any]:
    """A run in a thread of this process, on a CUDA stream of its own (kernels of different runs overlap)."""
    import torch

    with torch.cuda.stream(torch.cuda.Stream() if torch.cuda.is_available() else None):  # None: no-op (tests)
        return execute(plan, options)


def _stop_workers(pool: Executor) -> None:
    """Cancel the runs not started and end the running ones (they resume from their checkpoints next time)."""
    if isinstance(pool, ThreadPoolExecutor):
        from mlplab.mnist.train import STOP

        STOP.set()  # each run stops at its next epoch boundary, after its last checkpoint
        pool.shutdown(wait=True, cancel_futures=True)
        STOP.clear()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(10)


def on_one_gpu(plans: Sequence[RunPlan], options: SweepOptions) -> bool:
    """Whether the runs train on CUDA: then they all run at once in threads of this process, one CUDA stream
    each, sharing the GPU (a GPU has room for many small models; processes would take turns on it)."""
    from mlplab.device import get_device  # (imports torch: kept out of this module's import, as in `execute`)

    choices = {options.device or p.config.training.device for p in plans}
    return len(plans) > 1 and all(get_device(c).type == "cuda" for c in choices)  # CUDA only where available


def schedule(todo: Sequence[RunPlan], options: SweepOptions, jobs: int | None = None) -> tuple[int, int, bool]:
    """(runs at a time, CPU threads per run, whether they share one GPU) for the runs still to do."""
    if on_one_gpu(todo, options):
        _check_jobs(jobs)
        return min(len(todo), jobs or len(todo)), 1, True
    return (*choose_jobs(max(1, len(todo)), jobs), False)


def describe_schedule(jobs: int, threads: int, gpu: bool) -> str:
    """How runs share the machine, as the sweep and the reproduce plan log it (see `schedule`).

    >>> describe_schedule(2, 1, False), describe_schedule(8, 1, True)
    ('2 at a time with 1 thread(s) each', '8 at a time on one GPU, a CUDA stream each')
    """
    return f"{jobs} at a time " + ("on one GPU, a CUDA stream each" if gpu else f"with {threads} thread(s) each")


def run_sweep(plans: Sequence[RunPlan], options: SweepOptions, jobs: int | None = None,
              on_done: Callable[[RunPlan, dict[str, Any]], None] | None = None) -> dict[str, dict[str, Any]]:
    """Run every plan (done ones are read back), `jobs` at a time; return summaries keyed by run name, in the
    order of `plans`. A run that fails with an error does not stop the others; the errors are raised together
    at the end. On CUDA every run trains at once (`jobs` caps it), each in a thread with its own stream."""
    todo = [p for p in plans if p.state != "done"]
    results: dict[str, dict[str, Any]] = {}
    for plan in plans:
        if plan.state == "done":
            results[plan.name] = load_summary(plan.run_dir)
            if on_done:
                on_done(plan, results[plan.name])
    todo.sort(key=lambda p: estimated_cost(p.config), reverse=True)
    failures: list[str] = []

    def finish(plan: RunPlan, run: Callable[[], dict[str, Any]]) -> None:
        try:
            results[plan.name] = run()
        except MlplabError as exc:
            failures.append(f"{plan.name}: {exc}")
            return
        if on_done:
            on_done(plan, results[plan.name])

    n_jobs, threads, gpu = schedule(todo, options, jobs)
    if n_jobs == 1:
        for plan in todo:
            finish(plan, partial(execute, plan, options, None if gpu else threads))
    else:
        quiet = replace(options, progress=False)  # several progress bars at once would garble each other
        if gpu and quiet.data is None:  # read the files once; each run copies the tensors to the device
            from mlplab.mnist.data import load_mnist

            quiet = replace(quiet, data=load_mnist(options.data_dir))
        pool: Executor = (ThreadPoolExecutor(max_workers=n_jobs) if gpu else
                          ProcessPoolExecutor(max_workers=n_jobs, mp_context=get_context("spawn")))
        with pool:
            pending: dict[Future[dict[str, Any]], RunPlan] = {
                (pool.submit(_gpu_worker, plan, quiet) if gpu else pool.submit(_worker, plan, quiet, threads)): plan
                for plan in todo}
            try:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        finish(pending.pop(future), future.result)
            except BaseException:  # Ctrl-C or SIGTERM to this process alone: no new run starts, workers stop
                _stop_workers(pool)
                raise
    if failures:
        raise MlplabError("some runs failed: " + " | ".join(failures),
                          hint="fix the cause and run the same command again; finished runs are kept")
    return {p.name: results[p.name] for p in plans}
