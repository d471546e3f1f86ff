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
    reader = _Reader(source, shards, chunk_rows, pinned, n_slots)
    thread = threading.Thread(target=reader.run, name="mlplab-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = reader.ready.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            shard, start, X, b, mapped = item
            del item

            def release(b: int = b, lo: int = start, hi: int = start + X.shape[0], mapped: bool = mapped) -> None:
                if mapped:
                    source.drop(lo, hi)
                reader.free.put(b)

            yield shard, start, X, release
            del X
    finally:
        reader.stop_flag.set()
        reader.free.put(0)  # wake the reader if it waits for a buffer
        thread.join(timeout=10)


class _Reader:
    """The reader thread of `prefetched_chunks`: fills free slots with chunks (mapped, else read into the slot's
    buffer) and queues them, then None; an exception is queued for the consumer, which re-raises it."""

    def __init__(self, source: Source, shards: Sequence[Shard], chunk_rows: int, pinned: bool, n_slots: int) -> None:
        self.source, self.shards, self.chunk_rows, self.pinned = source, shards, chunk_rows, pinned
        self.buffers: list[np.ndarray | None] = [None] * n_slots  # made on first use: mapped chunks need none
        self.free: queue.Queue[int] = queue.Queue()
        for i in range(n_slots):
            self.free.put(i)
        self.ready: queue.Queue[tuple[Shard, int, np.ndarray, int, bool] | BaseException | None] = queue.Queue()
        self.stop_flag = threading.Event()

    def buffer(self, i: int) -> np.ndarray:
        if self.buffers[i] is None:
            if self.pinned:  # page-locked host memory lets the copy to the GPU run asynchronously
                import torch

                self.buffers[i] = torch.empty((self.chunk_rows, self.source.d), dtype=torch.float32,
                                              pin_memory=True).numpy()
            else:
                self.buffers[i] = np.empty((self.chunk_rows, self.source.d), np.float32)
        return self.buffers[i]  # type: ignore[return-value]

    def run(self) -> None:
        source = self.source
        try:
            for shard in self.shards:
                for start in range(shard.start, shard.stop, self.chunk_rows):
                    for lo, hi in source.spans(start, min(shard.stop, start + self.chunk_rows)):
                        b = self.free.get()
                        if self.stop_flag.is_set():
                            return
                        X = None if self.pinned else source.mapped(lo, hi)  # pinned: the GPU copy wants page-locked
                        self.ready.put((shard, lo, X if X is not None else source.read(lo, hi, self.buffer(b)), b,
                                        X is not None))
                        del X
            self.ready.put(None)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self.ready.put(exc)


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
    loop = _ShardLoop(kernel, chunk_rows, run_dir, write_predictions, progress, on_shard)
    try:
        for shard, start, X, release in prefetched_chunks(source, shards, chunk_rows, prefetch,
                                                          kernel.device.type == "cuda", loop.ahead):
            if shard is not loop.current:
                loop.begin(shard)
            loop.submit(X, start, release)
            del X
            loop.settle(loop.ahead - 1)
        loop.settle(0)
        if loop.current is not None:
            loop.finish()
    except BaseException as exc:
        loop.abort(exc)
        raise
    return loop.done


class _ShardLoop:
    """The state of `run_shards`: the shard being summed, its prediction file, and the chunks in flight."""

    def __init__(self, kernel: ChunkKernel, chunk_rows: int, run_dir: RunDir | None, write_predictions: bool,
                 progress: Callable[[int], None] | None, on_shard: ShardHook | None) -> None:
        self.kernel, self.run_dir, self.write_predictions = kernel, run_dir, write_predictions
        self.progress, self.on_shard = progress, on_shard
        self.done: dict[int, Summary] = {}
        self.current: Shard | None = None
        self.partial: Summary | None = None
        self.writer: PredictionWriter | None = None
        self.y = np.empty(chunk_rows if write_predictions else 0, np.float32)
        self.in_flight: deque[tuple[Callable[[], Summary], Release, int]] = deque()  # (wait, release, rows)
        self.ahead = AHEAD if kernel.native is not None and not write_predictions else 1

    def begin(self, shard: Shard) -> None:
        """Finish the shard before (all its chunks in), then start summing `shard`."""
        self.settle(0)
        if self.current is not None:
            self.finish()
        self.current, self.partial = shard, Summary(edges=[float(e) for e in self.kernel.edges])
        self.writer = None
        if self.write_predictions and self.run_dir is not None:
            self.writer = PredictionWriter(self.run_dir.shard_predictions_path(shard.index), shard.stop - shard.start)

    def submit(self, X: np.ndarray, start: int, release: Release) -> None:
        if self.writer is not None:
            y_chunk, s = self.kernel(X, start, self.y)
            self.writer.write(y_chunk)
            self.in_flight.append((lambda s=s: s, release, X.shape[0]))  # type: ignore[misc]
        else:
            self.in_flight.append((self.kernel.start(X, start), release, X.shape[0]))  # y_hat never leaves the cache

    def settle(self, keep: int) -> None:
        """Wait for all but `keep` chunks in flight, oldest first."""
        while len(self.in_flight) > keep:
            wait, release, rows = self.in_flight.popleft()
            s = wait()
            del wait  # it held the chunk's rows: with it gone, `release` can unmap them at once
            release()
            assert self.partial is not None
            self.partial = self.partial.merge(s)
            if self.progress is not None:
                self.progress(rows)

    def finish(self) -> None:
        assert self.current is not None and self.partial is not None
        if self.writer is not None:
            self.writer.close()
        if self.run_dir is not None:
            self.run_dir.write_shard(self.current.index, self.partial)
        self.done[self.current.index] = self.partial
        if self.on_shard is not None:
            self.on_shard(self.current.index, self.partial)

    def abort(self, exc: BaseException) -> None:
        """On any error: an unfinished shard's prediction file never appears (its temporary file is removed)."""
        if self.writer is not None and (self.current is None or self.current.index not in self.done):
            self.writer.abort(exc)
