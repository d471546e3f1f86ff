"""How long do all of the seed's MNIST experiments take, and how should a sweep use the cores?

Part 1 (`--part jobs`): the same work, two 1-epoch runs of one configuration, done (a) one after the other
with all cores' threads each, (b) side by side in two processes with cores/2 threads each. Prints both wall
times and the ratio; `mlplab mnist sweep` picks (b) by default on the strength of this.

Part 2 (`--part epochs`): every experiment for a few epochs, scheduled as `mlplab mnist sweep` does by
default; the time of each run's last epoch (evaluation included) times 100 extrapolates its full run, and a
longest-first schedule on `jobs` workers extrapolates the whole set. It is an extrapolation, printed as one.

    nice .venv/bin/python benchmarks/bench_experiments.py --part all --epochs 2
"""

from __future__ import annotations

import argparse
import csv
import heapq
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from mlplab.mnist.config import resolve_config
from mlplab.mnist.experiments import EXPERIMENTS
from mlplab.mnist.sweep import SweepOptions, available_cores, choose_jobs, plan_sweep, run_sweep


def _one_epoch(batch_size: int, threads: int, data_dir: str | None) -> float:
    from mlplab.mnist.data import load_mnist
    from mlplab.mnist.train import train_run

    train, test = load_mnist(Path(data_dir) if data_dir else None)
    config = resolve_config(overrides=[f"training.batch_size={batch_size}", "training.num_epochs=1",
                                       "training.device=cpu"])
    summary = train_run(config, train, test, None, progress=False, threads=threads)
    return float(summary["train_time_s"])


def part_jobs(batch_sizes: list[int], data_dir: str | None) -> None:
    cores = available_cores()
    half = max(1, cores // 2)
    print(f"Part 1: two 1-epoch runs of the baseline model, {cores} cores, load average "
          f"{os.getloadavg()[0]:.1f} at start")
    print(f"{'batch':>6}  {'one at a time, ' + str(cores) + ' threads (s)':>32}  "
          f"{'side by side, ' + str(half) + ' thread each (s)':>34}  {'speed-up':>8}")
    ctx = get_context("spawn")
    for B in batch_sizes:
        with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
            pool.submit(_one_epoch, B, 1, data_dir).result()  # warm the workers' imports and caches
            pool.submit(_one_epoch, B, 1, data_dir).result()
            start = time.perf_counter()
            for _ in range(2):
                pool.submit(_one_epoch, B, cores, data_dir).result()
            serial = time.perf_counter() - start
            start = time.perf_counter()
            futures = [pool.submit(_one_epoch, B, half, data_dir) for _ in range(2)]
            for f in futures:
                f.result()
            parallel = time.perf_counter() - start
        print(f"{B:>6}  {serial:>32.1f}  {parallel:>34.1f}  {serial / parallel:>7.2f}x")


def _lpt(durations: list[float], workers: int) -> float:
    """Makespan of longest-first scheduling on `workers` identical workers."""
    loads = [0.0] * workers
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(loads, loads[0] + d)
    return max(loads)


def part_epochs(epochs: int, data_dir: str | None, jobs: int | None, full_epochs: int = 100) -> None:
    names = list(EXPERIMENTS)
    n_jobs, threads = choose_jobs(len(names), jobs)
    with tempfile.TemporaryDirectory() as tmp:
        plans = plan_sweep([EXPERIMENTS[n] for n in names], Path(tmp), epochs=epochs,
                           overrides=["training.device=cpu"])
        print(f"\nPart 2: every experiment for {epochs} epochs, {n_jobs} at a time with {threads} thread(s) each, "
              f"load average {os.getloadavg()[0]:.1f} at start")
        start = time.perf_counter()
        summaries = run_sweep(plans, SweepOptions(data_dir=Path(data_dir) if data_dir else None, progress=False),
                              jobs=n_jobs)
        wall = time.perf_counter() - start
        print(f"{'run':<20} {'epochs':>6} {'last epoch (s)':>15} {'x' + str(full_epochs) + ' (min)':>12}  note")
        per_run = []
        for plan in plans:
            with (plan.run_dir / "metrics.csv").open() as handle:
                rows = list(csv.DictReader(handle))
            last = float(rows[-1]["epoch_time_s"])
            s = summaries[plan.name]
            if s["divergent"]:  # a divergent run stops where it stops, whatever the epoch count
                full, note = float(s["train_time_s"]), f"divergent in epoch {s['divergence']['epoch']}"
            else:
                full, note = last * full_epochs, ""
            per_run.append(full)
            print(f"{plan.name:<20} {len(rows):>6} {last:>15.2f} {full / 60:>12.1f}  {note}")
    print(f"measured: this {epochs}-epoch sweep took {wall:.0f} s wall")
    print(f"EXTRAPOLATED to {full_epochs} epochs: sum of runs {sum(per_run) / 60:.0f} min; "
          f"longest-first on {n_jobs} worker(s) {_lpt(per_run, n_jobs) / 60:.0f} min")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("jobs", "epochs", "all"), default="all")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per experiment in part 2 (default 2)")
    parser.add_argument("--batch-sizes", default="64,6400", help="batch sizes for part 1 (default 64,6400)")
    parser.add_argument("--jobs", type=int, default=None, help="part 2's parallel runs (default: the sweep's)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    if args.part in ("jobs", "all"):
        part_jobs([int(b) for b in args.batch_sizes.split(",")], args.data_dir)
    if args.part in ("epochs", "all"):
        part_epochs(args.epochs, args.data_dir, args.jobs)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
