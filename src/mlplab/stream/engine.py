"""The local engine: a reader thread gets a few chunks ahead while the kernel computes.

A chunk of a float32 file is a view of a memory map of the file (no copy; see `Source.mapped`), whose
pages are unmapped again once the chunk is done; other chunks are read into reused buffers. Either way
at most prefetch + 5 chunks (chunk_rows x d x 4 bytes each; prefetch + 2 without the native kernel's
threads or with predictions to write) are held, plus one y_hat chunk when predictions are written,
whatever N is. Shards are done in order; each finished shard is written atomically and recorded in the
manifest before the next one counts, so `--resume` skips exactly the finished ones.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from mlplab.errors import MlplabError
from mlplab.stream.kernel import ChunkKernel
from mlplab.stream.manifest import PredictionWriter, RunDir
from mlplab.stream.sources import Source
from mlplab.stream.summary import Summary

ShardHook = Callable[[int, Summary], None]
Release = Callable[[], None]
AHEAD = 4  # chunks the native pool's threads are given at once (without predictions to write): all its slots


@dataclass(frozen=True)
class Shard:
    index: int
    start: int
    stop: int


def prefetched_chunks(source: Source, shards: Sequence[Shard], chunk_rows: int, prefetch: int = 2,
                      pinned: bool = False, in_use: int = 1) -> Iterator[tuple[Shard, int, np.ndarray, Release]]:
    """Yield (shard, first row, X chunk, release) in order; a thread reads up to `prefetch` chunks ahead.

    A chunk is cut where the source's storage changes (`Source.spans`). Call `release()` once done with X:
    its buffer is then reused. At most `in_use` chunks may be held unreleased at a time.
    """
    if chunk_rows <= 0:
        raise MlplabError(f"chunk size must be positive, got {chunk_rows}", hint="pass --chunk-rows 1048576")
    n_slots = prefetch + in_use + 1  # `prefetch` queued, `in_use` held by the consumer, one being filled
    buffers: list[np.ndarray | None] = [None] * n_slots  # made on first use: mapped chunks need none

    def buffer(i: int) -> np.ndarray:
        if buffers[i] is None:
            if pinned:  # page-locked host memory lets the copy to the GPU run asynchronously
                import torch

                buffers[i] = torch.empty((chunk_rows, source.d), dtype=torch.float32, pin_memory=True).numpy()
            else:
                buffers[i] = np.empty((chunk_rows, source.d), np.float32)
        return buffers[i]  # type: ignore[return-value]

    free: queue.Queue[int] = queue.Queue()
    for i in range(n_slots):
        free.put(i)
    ready: queue.Queue[tuple[Shard, int, np.ndarray, int, bool] | BaseException | None] = queue.Queue()
    stop_flag = threading.Event()

    def reader() -> None:
        try:
            for shard in shards:
                for start in range(shard.start, shard.stop, chunk_rows):
                    for lo, hi in source.spans(start, min(shard.stop, start + chunk_rows)):
                        b = free.get()
                        if stop_flag.is_set():
                            return
                        X = None if pinned else source.mapped(lo, hi)  # pinned: the GPU copy wants page-locked
                        ready.put((shard, lo, X if X is not None else source.read(lo, hi, buffer(b)), b,
                                   X is not None))
                        del X
            ready.put(None)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            ready.put(exc)

    thread = threading.Thread(target=reader, name="mlplab-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            shard, start, X, b, mapped = item
            del item

            def release(b: int = b, lo: int = start, hi: int = start + X.shape[0], mapped: bool = mapped) -> None:
                if mapped:
                    source.drop(lo, hi)
                free.put(b)

            yield shard, start, X, release
            del X
    finally:
        stop_flag.set()
        free.put(0)  # wake the reader if it waits for a buffer
        thread.join(timeout=10)


def run_shards(source: Source, kernel: ChunkKernel, shards: Sequence[Shard], chunk_rows: int,
               run_dir: RunDir | None = None, write_predictions: bool = False, prefetch: int = 2,
               progress: Callable[[int], None] | None = None, on_shard: ShardHook | None = None) -> dict[int, Summary]:
    """Run `shards` in order; return their summaries. Each finished shard goes to `run_dir` (if any),
    then `on_shard(index, summary)` is called (the local engine records the manifest there).

    Without predictions to write, the native kernel's threads are given up to AHEAD chunks at once
    (`ChunkKernel.start`), so they go from one chunk to the next without waiting for each other or for this
    loop (which meanwhile merges the last summary, unmaps the last chunk and hands over the next), even when
    this thread is late to get a CPU. The other kernels compute within `start`: one chunk at a time.
    """
    done: dict[int, Summary] = {}
    current: Shard | None = None
    partial: Summary | None = None
    writer: PredictionWriter | None = None
    y = np.empty(chunk_rows if write_predictions else 0, np.float32)
    pinned = kernel.device.type == "cuda"
    in_flight: deque[tuple[Callable[[], Summary], Release, int]] = deque()  # (wait, release, rows)
    ahead = AHEAD if kernel.native is not None and not write_predictions else 1

    def settle(keep: int) -> None:  # wait for all but `keep` chunks in flight, oldest first
        nonlocal partial
        while len(in_flight) > keep:
            wait, release, rows = in_flight.popleft()
            s = wait()
            del wait  # it held the chunk's rows: with it gone, `release` can unmap them at once
            release()
            assert partial is not None
            partial = partial.merge(s)
            if progress is not None:
                progress(rows)

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
        for shard, start, X, release in prefetched_chunks(source, shards, chunk_rows, prefetch, pinned, ahead):
            if shard is not current:
                settle(0)
                if current is not None:
                    finish()
                current, partial = shard, Summary(edges=[float(e) for e in kernel.edges])
                writer = None
                if write_predictions and run_dir is not None:
                    writer = PredictionWriter(run_dir.shard_predictions_path(shard.index), shard.stop - shard.start)
            if writer is not None:
                y_chunk, s = kernel(X, start, y)
                writer.write(y_chunk)
                in_flight.append((lambda s=s: s, release, X.shape[0]))  # type: ignore[misc]
            else:
                in_flight.append((kernel.start(X, start), release, X.shape[0]))  # y_hat never leaves the cache
            del X
            settle(ahead - 1)
        settle(0)
        if current is not None:
            finish()
    except BaseException as exc:
        if writer is not None and (current is None or current.index not in done):
            writer.abort(exc)
        raise
    return done
