"""The Dask engine: one task per shard on a dask.distributed cluster; the manifest stays the record.

Without a scheduler address a `LocalCluster` of `workers` single-threaded processes is started;
with `--scheduler tcp://HOST:PORT` the tasks go to a cluster started elsewhere (`dask scheduler` plus
`dask worker` on each machine, or dask-jobqueue / dask-kubernetes). A task reads its shard, writes the
shard's files atomically (when there is an output folder) and returns its summary; only the driver, on
receiving that result, records the shard in the manifest. A worker that dies mid-task is replaced by
the scheduler and the task runs again elsewhere: the second write replaces the first atomically with
identical bytes, so a lost worker changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlplab.errors import MlplabError
from mlplab.stream.engine import Shard, run_shards
from mlplab.stream.kernel import ChunkKernel, Network
from mlplab.stream.manifest import RunDir
from mlplab.stream.sources import Source
from mlplab.stream.summary import Summary


@dataclass(frozen=True)
class TaskSpec:
    """Everything a worker needs, as plain picklable data."""

    source: Source
    net: Network
    edges: tuple[float, ...]
    nonfinite: str
    kernel: str
    chunk_rows: int
    out: str | None
    write_predictions: bool
    prefetch: int


_KERNELS: dict[tuple[Any, ...], ChunkKernel] = {}


def _worker_kernel(net: Network, edges: tuple[float, ...], nonfinite: str, kernel: str) -> ChunkKernel:
    """One kernel per worker process and network (building the native one means loading a library)."""
    key = (net.W1.tobytes(), net.b1.tobytes(), net.W2.tobytes(), net.b2, net.act1, net.act2, edges, nonfinite, kernel)
    if key not in _KERNELS:
        _KERNELS[key] = ChunkKernel(net, np.asarray(edges, np.float32), nonfinite, kernel)
    return _KERNELS[key]


def shard_task(spec: TaskSpec, shard: Shard) -> dict[str, Any]:
    """Run one shard on a worker; returns its summary as JSON (the driver records it)."""
    kern = _worker_kernel(spec.net, spec.edges, spec.nonfinite, spec.kernel)
    run_dir = RunDir(spec.out) if spec.out is not None else None
    done = run_shards(spec.source, kern, [shard], spec.chunk_rows, run_dir, spec.write_predictions, spec.prefetch)
    return done[shard.index].to_json()


def run_dask(spec: TaskSpec, shards: Sequence[Shard], workers: int = 2, scheduler: str | None = None,
             on_shard: Callable[[int, Summary], None] | None = None,
             on_client: Callable[[Any], None] | None = None) -> dict[int, Summary]:
    """Submit one task per shard; call `on_shard` as results come back (in completion order)."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise MlplabError("--engine dask needs dask.distributed",
                          hint='pip install "mlplab[dask]", or use --engine local') from exc
    if workers < 1:
        raise MlplabError(f"--workers must be at least 1, got {workers}", hint="e.g. --workers 2")
    cluster = None
    try:
        if scheduler:
            client = Client(scheduler, timeout="20s")
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=50)
            client = Client(cluster)
    except (OSError, TimeoutError) as exc:
        raise MlplabError(f"cannot reach the Dask scheduler {scheduler or '(local)'}: {exc}",
                          hint="start it with `dask scheduler` and pass --scheduler tcp://HOST:8786") from exc
    results: dict[int, Summary] = {}
    try:
        if on_client is not None:
            on_client(client)
        spec_future = client.scatter(spec, broadcast=True)
        run_id = uuid.uuid4().hex[:12]  # task keys unique to this run, also on a long-lived scheduler
        futures = {client.submit(shard_task, spec_future, shard, key=f"mlplab-shard-{shard.index}-{run_id}",
                                 retries=2, pure=False): shard for shard in shards}
        for future in as_completed(futures):
            shard = futures[future]
            summary = Summary.from_json(future.result())
            results[shard.index] = summary
            if on_shard is not None:
                on_shard(shard.index, summary)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return results
