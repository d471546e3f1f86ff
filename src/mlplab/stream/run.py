"""`run_stream`: the whole streaming forward pass, from a SOURCE string to a merged summary.

This is the library entry point behind `mlplab stream` (and the report's small demonstration).
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

from mlplab.device import get_device
from mlplab.errors import MlplabError
from mlplab.fsio import atomic_write_json
from mlplab.locks import folder_lock
from mlplab.stream.dask_engine import TaskSpec, run_dask
from mlplab.stream.engine import Shard, run_shards
from mlplab.stream.kernel import ChunkKernel, Network
from mlplab.stream.manifest import RunDir, plan_shards
from mlplab.stream.sources import open_source
from mlplab.stream.summary import Summary, default_edges
from mlplab.twolayer.activations import parse_pair
from mlplab.twolayer.problem import Problem, load_problem


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


def run_stream(source: str, activations: str | tuple[str, str] = ("relu", "sigmoid"),
               problem: Problem | str | Path | None = None, *, chunk_rows: int = 1 << 20,
               shard_rows: int = 1 << 24, out: str | Path | None = None, resume: bool = False,
               engine: str = "local", workers: int = 2, scheduler: str | None = None, nonfinite: str = "error",
               write_predictions: bool = False, device: str = "cpu", kernel: str = "auto",
               columns: int | None = None, seed: int = 0, bins: int = 20,
               hist_range: tuple[float, float] | None = None, prefetch: int = 2, threads: int | None = None,
               progress: bool | None = None,
               on_shard: Callable[[int, Summary], None] | None = None,
               on_client: Callable[[Any], None] | None = None) -> StreamResult:
    """Run the problem's network over SOURCE in chunks; return the merged summary and timing.

    >>> r = run_stream("synthetic:1000", "relu,sigmoid", chunk_rows=256, progress=False)
    >>> r.summary.rows, 0.0 < r.summary.mean_y_hat < 1.0
    (1000, True)
    """
    act1, act2 = parse_pair(activations) if isinstance(activations, str) else parse_pair(",".join(activations))
    prob = problem if isinstance(problem, Problem) else load_problem(problem)
    t = prob.tensors()
    net = Network.from_arrays(t["W1"].numpy(), t["b1"].numpy(), t["W2"].numpy(), t["b2"].numpy(), act1, act2)
    if chunk_rows <= 0:
        raise MlplabError(f"chunk size must be positive, got {chunk_rows}", hint="pass --chunk-rows 1048576")
    if prefetch < 1:
        raise MlplabError(f"prefetch depth must be at least 1, got {prefetch}", hint="pass --prefetch 2")
    if engine not in ("local", "dask"):
        raise MlplabError(f"unknown engine {engine!r}", hint="use local or dask")
    if write_predictions and out is None:
        raise MlplabError("--write-predictions needs an output folder", hint="pass --out DIR")
    if resume and out is None:
        raise MlplabError("--resume needs the output folder of the run to continue", hint="pass --out DIR")
    dev = get_device(device)
    if threads is None:
        threads = default_threads()
    if engine == "dask" and dev.type != "cpu":
        raise MlplabError("--engine dask runs on CPU workers here", hint="use --engine local for a GPU")
    lo, hi = hist_range if hist_range is not None else (None, None)
    edges = default_edges(act2, bins, lo, hi)
    src = open_source(source, d=net.d, columns=columns, seed=seed)
    with contextlib.ExitStack() as cleanup:  # the source and the kernel's threads are closed on any exit
        cleanup.callback(src.close)
        kern = ChunkKernel(net, edges, nonfinite, kernel, dev, threads)
        cleanup.callback(kern.close)
        ranges = plan_shards(src.rows, shard_rows)
        shards = [Shard(i, a, b) for i, (a, b) in enumerate(ranges)]
        config = {"source": src.fingerprint(), "problem": prob.to_json(), "activations": [act1, act2],
                  "shard_rows": shard_rows, "nonfinite": nonfinite, "hist_edges": edges.tolist(),
                  "write_predictions": write_predictions, "kernel": kern.name}
        if out is not None:  # one writer per --out folder (mlplab.locks): a second run stops here, one line
            cleanup.enter_context(folder_lock(out, "stream output folder"))

        run_dir = RunDir(out) if out is not None else None
        finished = run_dir.start(config, len(shards), resume) if run_dir is not None else set()
        todo = [s for s in shards if s.index not in finished]
        done_indices = set(finished)

        def record(index: int, summary: Summary) -> None:
            done_indices.add(index)
            if run_dir is not None:
                run_dir.mark_finished(done_indices)  # the manifest, written by the driver only, is the record
            if on_shard is not None:
                on_shard(index, summary)

        bar = _progress_bar(sum(s.stop - s.start for s in todo), progress, src.name)
        start_time = time.perf_counter()
        try:
            if engine == "local":
                results = run_shards(src, kern, todo, chunk_rows, run_dir, write_predictions, prefetch,
                                     progress=bar.update if bar is not None else None, on_shard=record)
            else:
                spec = TaskSpec(src, net, tuple(float(e) for e in edges), nonfinite, kernel, chunk_rows,
                                str(out) if out is not None else None, write_predictions, prefetch)

                def record_dask(index: int, summary: Summary) -> None:
                    record(index, summary)
                    if bar is not None:
                        bar.update(summary.rows)

                results = run_dask(spec, todo, workers, scheduler, record_dask, on_client)
        finally:
            seconds = time.perf_counter() - start_time
            if bar is not None:
                bar.close()
            kern.close()
            src.close()
        total = Summary(edges=[float(e) for e in edges])
        for s in shards:  # merge in shard order (any order gives the same bits; this one is easy to audit)
            part = results.get(s.index)
            if part is None:
                assert run_dir is not None
                part = run_dir.read_shard(s.index)
            total = total.merge(part)
        result = StreamResult(total, seconds, sum(results[i].rows for i in results), len(shards),
                              len(shards) - len(todo), kern.name, engine)
        if run_dir is not None:
            atomic_write_json(run_dir.root / "summary.json", result.to_json())
        return result


def _progress_bar(total: int, progress: bool | None, name: str) -> Any:
    enabled = sys.stderr.isatty() if progress is None else progress
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="rows", unit_scale=True, desc=f"stream {name}", file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1)


