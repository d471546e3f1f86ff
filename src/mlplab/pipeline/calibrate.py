"""Time estimates that hold on any machine: measure a few real steps first, then correct as steps finish.

A fixed cost model is right only on the machine it was fitted on. Instead, before an MNIST run is estimated,
`probe_run` trains a handful of real batches of that run's own configuration (same model, batch size, optimizer
and thread count, on the data it will train on) and times them, plus one evaluation pass; the run is then
estimated as epochs x (batches per epoch x seconds per batch + seconds per evaluation). A configuration that
diverges within the probe (the trainer's rule: a batch loss above 1e3 or NaN) is estimated as stopping there.
While the plan runs, `Refiner` scales the estimates of the steps left by how long the finished ones really
took against their estimates, so the "left" figure improves as the run goes on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Probe:
    """What a few real batches of one configuration took."""

    step_s: float  # seconds per training batch
    eval_s: float  # seconds per evaluation pass over the test set
    diverged: bool  # the probe's batches already diverged


def run_estimate(probe: Probe, epochs: int, n_train: int, batch_size: int, overhead_s: float) -> float:
    """Seconds for one run from its probe: epochs x (batches x step + evaluation) + fixed overhead.

    >>> run_estimate(Probe(0.002, 0.05, False), 10, 60000, 64, 3.0)  # 938 batches of 2 ms, 50 ms evaluation
    22.26
    >>> run_estimate(Probe(0.002, 0.05, True), 100, 60000, 64, 3.0)  # diverges in its first epoch
    3.05
    """
    if probe.diverged:
        return round(overhead_s + probe.eval_s, 6)
    batches = math.ceil(n_train / batch_size)
    return round(overhead_s + epochs * (batches * probe.step_s + probe.eval_s), 6)


def parallel_wall(costs: Sequence[float], jobs: int) -> float:
    """Wall time of `costs` run `jobs` at a time, longest first, each on the next free worker.

    >>> parallel_wall([10, 10, 1, 1], 2), parallel_wall([10, 1, 1], 1)
    (11.0, 12.0)
    """
    workers = [0.0] * max(1, jobs)
    for cost in sorted(costs, reverse=True):
        i = workers.index(min(workers))
        workers[i] += cost
    return max(workers)


def probe_run(config: Any, train: Any, test: Any, threads: int | None = None, budget_s: float = 0.3,
              max_batches: int = 400) -> Probe:
    """Train real batches of `config` on `train` until about `budget_s` has passed (after one warm-up batch),
    and time one evaluation on `test`. Nothing is written; the global RNG state is restored afterwards."""
    import torch

    from mlplab.device import get_device
    from mlplab.mnist.epoch import make_epoch_runner
    from mlplab.mnist.train import build_model, evaluate, make_optimizer

    t = config.training
    before_threads, rng = torch.get_num_threads(), torch.get_rng_state()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        dev = get_device(t.device)  # where the run will train: on CUDA its step is the graphed one
        torch.manual_seed(t.seed)
        model = build_model(config).to(dev)
        optimizer = make_optimizer(t.optimizer, model.parameters(), t.learning_rate)
        generator = torch.Generator(device=dev).manual_seed(t.seed)
        n = min(len(train), t.batch_size * max_batches)
        runner = make_epoch_runner(config, model, optimizer, train.images[:n].to(dev), train.labels[:n].to(dev),
                                   generator)
        _, diverged = runner.run(1, max_batches=1)  # warm-up: lazy state, kernels, caches
        done, start = 0, time.perf_counter()
        while diverged is None and done < runner.num_batches - 1 and time.perf_counter() - start < budget_s:
            k = min(max(1, done), runner.num_batches - 1 - done)
            _, diverged = runner.run(1, max_batches=k)
            done += k
        step_s = (time.perf_counter() - start) / max(done, 1)
        tick = time.perf_counter()
        evaluate(model, test.images.to(dev), test.labels.to(dev), t.test_batch_size)
        eval_s = time.perf_counter() - tick
        return Probe(step_s=step_s, eval_s=eval_s, diverged=diverged is not None)
    finally:
        torch.set_num_threads(before_threads)
        torch.set_rng_state(rng)


_WORKER_DATA: dict[str, Any] = {}  # a probe worker process's MNIST, loaded once (the pool's processes end with it)


def _probe_with(data: tuple[Any, Any], config: Any, threads: int | None, budget_s: float) -> Probe:
    from mlplab.mnist.train import split_validation

    train, test = data
    fit, _ = split_validation(train, config.training.validation_split, config.training.seed)
    return probe_run(config, fit, test, threads=threads, budget_s=budget_s)


def _probe_in_worker(config: Any, data_dir: Any, threads: int | None, budget_s: float) -> Probe:
    from mlplab.mnist.data import load_mnist

    key = str(data_dir)
    if key not in _WORKER_DATA:
        _WORKER_DATA[key] = load_mnist(data_dir)
    return _probe_with(_WORKER_DATA[key], config, threads, budget_s)


def probe_runs(configs: Sequence[Any], data_dir: Any, jobs: int, threads: int | None,
               budget_s: float = 0.4) -> list[Probe]:
    """Probe every config the way the runs will train: `jobs` worker processes side by side, so the probes
    share the machine as the runs will (two runs on two vCPUs of one core each get about half of it).

    With `jobs` = 1 the probes run in this process, one after another."""
    if jobs <= 1 or len(configs) <= 1:
        from mlplab.mnist.data import load_mnist

        data = load_mnist(data_dir)
        return [_probe_with(data, c, threads, budget_s) for c in configs]
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_probe_in_worker, configs, [data_dir] * len(configs), [threads] * len(configs),
                             [budget_s] * len(configs)))


class Refiner:
    """Scales the estimates of the steps left by the measured/estimated ratio of finished steps of the same kind.

    Kinds keep unlike estimates apart: MNIST runs are estimated from probes and the short steps from constants,
    so a section that ran faster than its constant says nothing about the MNIST runs.

    >>> r = Refiner()
    >>> r.left([("mnist", 10.0), ("report", 20.0)])
    30.0
    >>> r.finished("mnist", estimate_s=10.0, actual_s=5.0)
    >>> r.left([("mnist", 20.0), ("report", 4.0)])
    14.0
    """

    def __init__(self) -> None:
        self.estimated: dict[str, float] = {}
        self.actual: dict[str, float] = {}

    def finished(self, kind: str, estimate_s: float, actual_s: float) -> None:
        if estimate_s > 0:
            self.estimated[kind] = self.estimated.get(kind, 0.0) + estimate_s
            self.actual[kind] = self.actual.get(kind, 0.0) + actual_s

    def ratio(self, kind: str) -> float:
        est = self.estimated.get(kind, 0.0)
        return self.actual[kind] / est if est > 0 else 1.0

    def left(self, estimates: Sequence[tuple[str, float]]) -> float:
        return sum(self.ratio(kind) * est for kind, est in estimates)
