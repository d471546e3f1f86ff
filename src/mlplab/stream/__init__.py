"""Streaming forward propagation over inputs far larger than memory (the assignment's one-trillion-row question).

Sources (`sources`), the fused chunk kernel (`kernel`, `native`), mergeable summaries (`summary`),
shards and the manifest (`manifest`), the local prefetching engine (`engine`), the Dask engine
(`dask_engine`) and the entry point `run_stream` with its `StreamOptions` (`run`). See docs/streaming.md.
"""

from __future__ import annotations

from mlplab.stream.run import StreamOptions, StreamResult, run_stream
from mlplab.stream.summary import Summary

__all__ = ["StreamOptions", "StreamResult", "Summary", "run_stream"]
