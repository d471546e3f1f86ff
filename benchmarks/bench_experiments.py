"""How long do all of the assignment's MNIST experiments take, and how should a sweep use the cores?

Part 1 (`--part jobs`): the same work, two 1-epoch runs of one configuration, done (a) one after the other
with all cores' threads each, (b) side by side in two processes with cores/2 threads each. Prints both wall
times and the ratio; `mlplab mnist sweep` picks (b) by default on the strength of this.

Part 2 (`--part epochs`): every experiment for a few epochs, one thread per run, runs side by side as
`mlplab mnist sweep` does by default. The CPU time of each run's last epoch (evaluation included) times 100
extrapolates its full run; on a machine shared with other work, a one-thread run's own CPU time is what its
epoch costs when it has its core to itself. The tutorial pipeline (benchmarks/bench_mnist_train.py's
per-sample Dataset in a DataLoader, autograd, torch's default Adam) is timed the same way for the same model
and batch size on about 6000 samples plus one test pass. A longest-first schedule on `jobs` workers
extrapolates the whole set. These are extrapolations, and printed as such.

    nice .venv/bin/python benchmarks/bench_experiments.py --part all --epochs 2
"""

from __future__ import annotations

import argparse
import heapq
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from mlplab.mnist.config import resolve_config
from mlplab.mnist.experiments import EXPERIMENTS
from mlplab.mnist.sweep import available_cores, choose_jobs, estimated_cost


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


class _EpochClock:
    """A tracker that notes wall and CPU time at the end of every epoch (CPU time of this process)."""

    def __init__(self) -> None:
        self.marks = [(time.perf_counter(), time.process_time())]

    def start(self, run_name: str, config: dict, run_dir: Path) -> None:
        self.marks = [(time.perf_counter(), time.process_time())]

    def log_epoch(self, epoch: int, metrics: dict) -> None:
        self.marks.append((time.perf_counter(), time.process_time()))

    def finish(self, summary: dict) -> None:
        pass


def _measure(name: str, epochs: int, data_dir: str | None, tutorial_samples: int) -> dict:
    """In a worker with one thread: mlplab's last epoch (wall, CPU), and the tutorial pipeline's CPU time per
    training sample and per test pass for the same model, batch size and learning rate."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from mlplab.mnist.data import load_mnist
    from mlplab.mnist.train import build_model, train_run

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_mnist_train import TutorialMnist  # D's per-sample Dataset: uint8 → float → normalized, per access

    torch.set_num_threads(1)
    config = resolve_config(overrides=[*EXPERIMENTS[name].overrides, f"training.num_epochs={epochs}",
                                       "training.device=cpu"])
    train, test = load_mnist(Path(data_dir) if data_dir else None)
    clock = _EpochClock()
    summary = train_run(config, train, test, None, progress=False, trackers=[clock], run_name=name)
    (w0, c0), (w1, c1) = clock.marks[-2], clock.marks[-1]
    out = {"name": name, "epochs": summary["epochs_run"], "wall": w1 - w0, "cpu": c1 - c0,
           "divergent": summary["divergent"], "divergence": summary["divergence"],
           "run_cpu": c1 - clock.marks[0][1]}
    # The tutorial pipeline on the raw uint8 files, CPU time per sample (samples ≥ `tutorial_samples`).
    from mlplab.mnist.data import load_mnist as load_raw

    raw_train, raw_test = load_raw(Path(data_dir) if data_dir else None, normalize=False)
    images = raw_train.images.to(torch.uint8).numpy()
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.training.learning_rate)
    B = config.training.batch_size
    loader = DataLoader(TutorialMnist(images, raw_train.labels.numpy()), batch_size=B, shuffle=True)
    batches, seen = max(3, -(-tutorial_samples // B)), 0
    tick = time.process_time()
    for b, (X, y) in enumerate(loader):
        if b == batches:
            break
        optimizer.zero_grad()
        loss = F.cross_entropy(model(X), y)
        loss.backward()
        optimizer.step()
        loss.item()
        seen += len(y)
    out["tutorial_cpu_per_sample"] = (time.process_time() - tick) / seen
    tick = time.process_time()
    model.eval()
    test_loader = DataLoader(TutorialMnist(raw_test.images.to(torch.uint8).numpy(), raw_test.labels.numpy()),
                             batch_size=config.training.test_batch_size)
    with torch.no_grad():
        for X, y in test_loader:
            F.cross_entropy(model(X), y, reduction="sum").item()
    out["tutorial_eval_cpu"] = time.process_time() - tick
    return out


def part_epochs(epochs: int, data_dir: str | None, jobs: int | None, full_epochs: int = 100,
                tutorial_samples: int = 6000) -> None:
    names = list(EXPERIMENTS)
    n_jobs, _ = choose_jobs(len(names), jobs)
    order = sorted(names, key=lambda n: estimated_cost(resolve_config(overrides=EXPERIMENTS[n].overrides)),
                   reverse=True)
    print(f"\nPart 2: every experiment for {epochs} epochs, {n_jobs} at a time, 1 thread each; load average "
          f"{os.getloadavg()[0]:.1f} at start. CPU time is this process's own (one thread), so it is what the "
          f"epoch costs without the other tenants of the machine.")
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=get_context("spawn")) as pool:
        results = {r["name"]: r for r in pool.map(_measure, order, [epochs] * len(order), [data_dir] * len(order),
                                                      [tutorial_samples] * len(order))}
    wall = time.perf_counter() - start
    print(f"{'run':<20} {'epoch wall (s)':>14} {'epoch CPU (s)':>13} {'tutorial epoch CPU (s)':>22}  note")
    ours, tutorial = [], []
    for name in names:
        r = results[name]
        tut_epoch = 60000 * r["tutorial_cpu_per_sample"] + r["tutorial_eval_cpu"]
        if r["divergent"]:  # stops where it stops, in either pipeline
            ours.append(r["run_cpu"])
            tutorial.append(r["run_cpu"] * tut_epoch / max(r["cpu"], 1e-9))
            note = f"divergent in epoch {r['divergence']['epoch']} (whole run counted once)"
        else:
            ours.append(r["cpu"] * full_epochs)
            tutorial.append(tut_epoch * full_epochs)
            note = ""
        print(f"{name:<20} {r['wall']:>14.2f} {r['cpu']:>13.2f} {tut_epoch:>22.2f}  {note}")
    print(f"measured: the {epochs}-epoch measurement took {wall:.0f} s wall on the shared machine")
    print(f"EXTRAPOLATED to {full_epochs} epochs from CPU time per epoch (one thread per run):")
    print(f"  mlplab:   sum {sum(ours) / 60:.0f} min; {n_jobs} runs side by side, longest first: "
          f"{_lpt(ours, n_jobs) / 60:.0f} min")
    print(f"  tutorial: sum {sum(tutorial) / 60:.0f} min; {n_jobs} runs side by side, longest first: "
          f"{_lpt(tutorial, n_jobs) / 60:.0f} min")
    print(f"  ratio (side by side): {_lpt(tutorial, n_jobs) / _lpt(ours, n_jobs):.1f}x")


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
