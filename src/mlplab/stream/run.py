"""`run_stream`: the whole streaming forward pass, from a SOURCE string to a merged summary.

This is the library entry point behind `mlplab stream` (and the report's small demonstration). How it runs is
a `StreamOptions`, whose fields are the command's flags.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlplab.device import get_device
from mlplab.errors import MlplabError
from mlplab.fsio import atomic_write_json
from mlplab.locks import folder_lock
from mlplab.stream.dask_engine import TaskSpec, run_dask
from mlplab.stream.engine import Shard, ShardHook, run_shards
from mlplab.stream.kernel import ChunkKernel, Network
from mlplab.stream.manifest import RunDir, plan_shards
from mlplab.stream.sources import Source, open_source
from mlplab.stream.summary import Summary, default_edges
from mlplab.twolayer.activations import parse_pair
from mlplab.twolayer.problem import Problem, load_problem


@dataclass(frozen=True)
class StreamOptions:
    """How `run_stream` runs: the network, the chunks and shards, the output folder, the engine, the summary.

    The fields are the flags of `mlplab stream` (`--chunk-rows` is `chunk_rows`, `--no-progress` is
    `progress=False`) with the same defaults; `activations`, which the command requires, is (ReLU, sigmoid) here.

    >>> StreamOptions(activations="sigmoid,sigmoid", chunk_rows=4096).shard_rows
    16777216
    """

    activations: str | tuple[str, str] = ("relu", "sigmoid")  # (sigma_1, sigma_2), or "relu,sigmoid"
    problem: Problem | str | Path | None = None  # a Problem, a problem JSON file, or None: the assignment's
    chunk_rows: int = 1 << 20  # rows per chunk; memory ~ chunk_rows x d x 4 bytes x (prefetch + 5)
    shard_rows: int = 1 << 24  # rows per shard: the unit of resuming and of Dask tasks
    out: str | Path | None = None  # folder for the manifest, shard summaries and summary.json; None: keep nothing
    resume: bool = False  # continue the run in `out`, skipping the shards its manifest lists as finished
    engine: str = "local"  # "local" (a reader thread and the kernel) or "dask" (one task per shard)
    workers: int = 2  # Dask LocalCluster worker processes (engine "dask", no `scheduler`)
    scheduler: str | None = None  # address of a running Dask scheduler, e.g. "tcp://host:8786"
    nonfinite: str = "error"  # rows with NaN/inf inputs: "error" stops, "skip" leaves them out, "keep" computes
    write_predictions: bool = False  # also write y_hat, one .npy per shard, into `out`
    device: str = "cpu"  # where the kernel computes: "cpu", "cuda", ... (mlplab.device.get_device)
    kernel: str = "auto"  # "native" (the compiled fused loop), "torch", or "auto": native when it builds
    columns: int | None = None  # values per row of raw float32 files; None: the problem's d
    seed: int = 0  # the random seed of synthetic:N sources
    bins: int = 20  # histogram bins of y_hat
    hist_range: tuple[float, float] | None = None  # (lo, hi) of the histogram; None: chosen by sigma_2
    prefetch: int = 2  # chunks the reader thread reads ahead
    threads: int | None = None  # compute threads of the native kernel; None: `default_threads()`
    progress: bool | None = None  # a progress bar on stderr; None: when stderr is a terminal


@dataclass
class StreamResult:
    summary: Summary
    seconds: float
    rows_done: int  # rows computed in this call (finished shards skipped on --resume are not counted)
    shards: int
    shards_skipped: int
    kernel: str
    engine: str

    @property
    def rows_per_s(self) -> float:
        return self.rows_done / self.seconds if self.seconds > 0 else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {**self.summary.to_json(), "seconds": round(self.seconds, 3), "rows_per_s": round(self.rows_per_s),
                "shards": self.shards, "shards_skipped": self.shards_skipped, "kernel": self.kernel,
                "engine": self.engine}


def default_threads() -> int:
    """The native kernel's thread count when none is given: one per CPU, at most 8 (mapped files leave the
    reader thread next to nothing to do)."""
    return max(1, min(8, os.cpu_count() or 1))


def run_stream(source: str, options: StreamOptions | None = None, *, on_shard: ShardHook | None = None,
               on_client: Callable[[Any], None] | None = None) -> StreamResult:
    """Run the problem's network over SOURCE in chunks; return the merged summary and timing.

    `on_shard(index, summary)` is called as each shard finishes (after the manifest records it);
    `on_client(client)` gets the Dask client once it is connected (engine "dask").

    >>> r = run_stream("synthetic:1000", StreamOptions(activations="relu,sigmoid", chunk_rows=256, progress=False))
    >>> r.summary.rows, 0.0 < r.summary.mean_y_hat < 1.0
    (1000, True)
    """
    o = options if options is not None else StreamOptions()
    net, activations, problem = _network(o)
    dev = _checked_device(o)
    lo, hi = o.hist_range if o.hist_range is not None else (None, None)
    edges = default_edges(activations[1], o.bins, lo, hi)
    src = open_source(source, d=net.d, columns=o.columns, seed=o.seed)
    with contextlib.ExitStack() as cleanup:  # the source and the kernel's threads are closed on any exit
        cleanup.callback(src.close)
        kern = ChunkKernel(net, edges, o.nonfinite, o.kernel, dev,
                           o.threads if o.threads is not None else default_threads())
        cleanup.callback(kern.close)
        shards = [Shard(i, a, b) for i, (a, b) in enumerate(plan_shards(src.rows, o.shard_rows))]
        config = {"source": src.fingerprint(), "problem": problem.to_json(), "activations": list(activations),
                  "shard_rows": o.shard_rows, "nonfinite": o.nonfinite, "hist_edges": edges.tolist(),
                  "write_predictions": o.write_predictions, "kernel": kern.name}
        if o.out is not None:  # one writer per --out folder (mlplab.locks): a second run stops here, one line
            cleanup.enter_context(folder_lock(o.out, "stream output folder"))

        run_dir = RunDir(o.out) if o.out is not None else None
        finished = run_dir.start(config, len(shards), o.resume) if run_dir is not None else set()
        todo = [s for s in shards if s.index not in finished]
        recorder = _Recorder(run_dir, finished, on_shard, _progress_bar(sum(s.stop - s.start for s in todo),
                                                                         o.progress, src.name))
        start_time = time.perf_counter()
        try:
            if o.engine == "local":
                results = _run_local(src, kern, todo, run_dir, o, recorder)
            else:
                results = _run_dask(src, net, edges, todo, o, recorder, on_client)
        finally:
            seconds = time.perf_counter() - start_time
            recorder.close()
            kern.close()
            src.close()
        result = StreamResult(_merged(shards, results, run_dir, edges), seconds,
                              sum(results[i].rows for i in results), len(shards), len(shards) - len(todo),
                              kern.name, o.engine)
        if run_dir is not None:
            atomic_write_json(run_dir.root / "summary.json", result.to_json())
        return result


def _network(o: StreamOptions) -> tuple[Network, tuple[str, str], Problem]:
    """The network to stream (the problem's weights with the pair of activations), the pair, the problem."""
    act1, act2 = parse_pair(o.activations if isinstance(o.activations, str) else ",".join(o.activations))
    prob = o.problem if isinstance(o.problem, Problem) else load_problem(o.problem)
    t = prob.tensors()
    net = Network.from_arrays(t["W1"].numpy(), t["b1"].numpy(), t["W2"].numpy(), t["b2"].numpy(), act1, act2)
    return net, (act1, act2), prob


def _checked_device(o: StreamOptions) -> torch.device:
    """The device to compute on, once the options agree with one another (each mistake: one line, and a flag)."""
    if o.chunk_rows <= 0:
        raise MlplabError(f"chunk size must be positive, got {o.chunk_rows}", hint="pass --chunk-rows 1048576")
    if o.prefetch < 1:
        raise MlplabError(f"prefetch depth must be at least 1, got {o.prefetch}", hint="pass --prefetch 2")
    if o.engine not in ("local", "dask"):
        raise MlplabError(f"unknown engine {o.engine!r}", hint="use local or dask")
    if o.write_predictions and o.out is None:
        raise MlplabError("--write-predictions needs an output folder", hint="pass --out DIR")
    if o.resume and o.out is None:
        raise MlplabError("--resume needs the output folder of the run to continue", hint="pass --out DIR")
    dev = get_device(o.device)
    if o.engine == "dask" and dev.type != "cpu":
        raise MlplabError("--engine dask runs on CPU workers here", hint="use --engine local for a GPU")
    return dev


class _Recorder:
    """Records each finished shard: in the manifest (written by the driver only, it is the record), then the
    caller's `on_shard`; the Dask engine also advances the progress bar here."""

    def __init__(self, run_dir: RunDir | None, finished: set[int], on_shard: ShardHook | None, bar: Any) -> None:
        self.run_dir, self.on_shard, self.bar = run_dir, on_shard, bar
        self.done = set(finished)

    def __call__(self, index: int, summary: Summary) -> None:
        self.done.add(index)
        if self.run_dir is not None:
            self.run_dir.mark_finished(self.done)
        if self.on_shard is not None:
            self.on_shard(index, summary)

    def with_progress(self, index: int, summary: Summary) -> None:
        self(index, summary)
        if self.bar is not None:
            self.bar.update(summary.rows)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run_local(src: Source, kern: ChunkKernel, todo: list[Shard], run_dir: RunDir | None, o: StreamOptions,
               recorder: _Recorder) -> dict[int, Summary]:
    """The shards in order in this process: a reader thread and the kernel (`mlplab.stream.engine`)."""
    return run_shards(src, kern, todo, o.chunk_rows, run_dir, o.write_predictions, o.prefetch,
                      progress=recorder.bar.update if recorder.bar is not None else None, on_shard=recorder)


def _run_dask(src: Source, net: Network, edges: np.ndarray, todo: list[Shard], o: StreamOptions,
              recorder: _Recorder, on_client: Callable[[Any], None] | None) -> dict[int, Summary]:
    """One Dask task per shard (`mlplab.stream.dask_engine`); each worker builds its own kernel."""
    spec = TaskSpec(src, net, tuple(float(e) for e in edges), o.nonfinite, o.kernel, o.chunk_rows,
                    str(o.out) if o.out is not None else None, o.write_predictions, o.prefetch)
    return run_dask(spec, todo, o.workers, o.scheduler, recorder.with_progress, on_client)


def _merged(shards: list[Shard], results: dict[int, Summary], run_dir: RunDir | None, edges: np.ndarray) -> Summary:
    """All shards' summaries merged in shard order; those finished by an earlier run are read from `run_dir`."""
    total = Summary(edges=[float(e) for e in edges])
    for s in shards:  # merge in shard order (any order gives the same bits; this one is easy to audit)
        part = results.get(s.index)
        if part is None:
            assert run_dir is not None
            part = run_dir.read_shard(s.index)
        total = total.merge(part)
    return total


def _progress_bar(total: int, progress: bool | None, name: str) -> Any:
    enabled = sys.stderr.isatty() if progress is None else progress
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="rows", unit_scale=True, desc=f"stream {name}", file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1)
