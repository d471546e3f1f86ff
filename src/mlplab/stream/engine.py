"""The local engine: a reader thread fills a few chunk buffers ahead while the kernel computes.

Memory is bounded by (prefetch + 2) x chunk_rows x d x 4 bytes of input buffers plus one y_hat chunk,
whatever N is. Shards are done in order; each finished shard is written atomically and recorded in the
manifest before the next one counts, so `--resume` skips exactly the finished ones.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from mlplab.errors import MlplabError
from mlplab.stream.kernel import ChunkKernel
from mlplab.stream.manifest import PredictionWriter, RunDir
from mlplab.stream.sources import Source
from mlplab.stream.summary import Summary

ShardHook = Callable[[int, Summary], None]


@dataclass(frozen=True)
class Shard:
    index: int
    start: int
    stop: int


def prefetched_chunks(source: Source, shards: Sequence[Shard], chunk_rows: int, prefetch: int = 2,
                      pinned: bool = False) -> Iterator[tuple[Shard, int, np.ndarray]]:
    """Yield (shard, first row, X chunk) in order; a thread reads up to `prefetch` chunks ahead.

    A yielded chunk's buffer is reused once the next chunk is asked for: use it before then.
    """
    if chunk_rows <= 0:
        raise MlplabError(f"chunk size must be positive, got {chunk_rows}", hint="pass --chunk-rows 1048576")
    n_buffers = prefetch + 2  # `prefetch` queued, one being computed, one being filled
    if pinned:  # page-locked host memory lets the copy to the GPU run asynchronously
        import torch

        buffers = [torch.empty((chunk_rows, source.d), dtype=torch.float32, pin_memory=True).numpy()
                   for _ in range(n_buffers)]
    else:
        buffers = [np.empty((chunk_rows, source.d), np.float32) for _ in range(n_buffers)]
    free: queue.Queue[int] = queue.Queue()
    for i in range(n_buffers):
        free.put(i)
    ready: queue.Queue[tuple[Shard, int, int, int] | BaseException | None] = queue.Queue()
    stop_flag = threading.Event()

    def reader() -> None:
        try:
            for shard in shards:
                for start in range(shard.start, shard.stop, chunk_rows):
                    b = free.get()
                    if stop_flag.is_set():
                        return
                    stop = min(shard.stop, start + chunk_rows)
                    source.read(start, stop, buffers[b])
                    ready.put((shard, start, stop, b))
            ready.put(None)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            ready.put(exc)

    thread = threading.Thread(target=reader, name="mlplab-reader", daemon=True)
    thread.start()
    held: int | None = None
    try:
        while True:
            item = ready.get()
            if held is not None:
                free.put(held)
                held = None
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            shard, start, stop, b = item
            held = b
            yield shard, start, buffers[b][: stop - start]
    finally:
        stop_flag.set()
        free.put(0)  # wake the reader if it waits for a buffer
        thread.join(timeout=10)


def run_shards(source: Source, kernel: ChunkKernel, shards: Sequence[Shard], chunk_rows: int,
               run_dir: RunDir | None = None, write_predictions: bool = False, prefetch: int = 2,
               progress: Callable[[int], None] | None = None, on_shard: ShardHook | None = None) -> dict[int, Summary]:
    """Run `shards` in order; return their summaries. Each finished shard goes to `run_dir` (if any),
    then `on_shard(index, summary)` is called (the local engine records the manifest there)."""
    done: dict[int, Summary] = {}
    current: Shard | None = None
    partial: Summary | None = None
    writer: PredictionWriter | None = None
    y = np.empty(chunk_rows, np.float32)
    pinned = kernel.device.type == "cuda"

    def finish() -> None:
        assert current is not None and partial is not None
        if writer is not None:
            writer.close()
        if run_dir is not None:
            run_dir.write_shard(current.index, partial)
        done[current.index] = partial
        if on_shard is not None:
            on_shard(current.index, partial)

    try:
        for shard, start, X in prefetched_chunks(source, shards, chunk_rows, prefetch, pinned):
            if shard is not current:
                if current is not None:
                    finish()
                current, partial = shard, Summary(edges=[float(e) for e in kernel.edges])
                writer = None
                if write_predictions and run_dir is not None:
                    writer = PredictionWriter(run_dir.shard_predictions_path(shard.index), shard.stop - shard.start)
            y_chunk, s = kernel(X, start, y)
            assert partial is not None
            partial = partial.merge(s)
            if writer is not None:
                writer.write(y_chunk)
            if progress is not None:
                progress(X.shape[0])
        if current is not None:
            finish()
    except BaseException as exc:
        if writer is not None and (current is None or current.index not in done):
            writer.abort(exc)
        raise
    return done
