"""`mlplab stream`: the forward pass over inputs far larger than memory, in chunks, resumable, local or Dask."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mlplab.cli.common import add_activations, add_device, add_format, add_out, add_problem, say
from mlplab.errors import MlplabError
from mlplab.stream.run import StreamOptions, run_stream
from mlplab.stream.sources import parse_count


def register(sub: Any) -> None:
    """Add `mlplab stream` to the `mlplab` parser."""
    p = sub.add_parser("stream", help="forward pass over a huge input in chunks (files or synthetic:N)",
                       description="Run the two-layer network over SOURCE chunk by chunk with bounded memory: "
                                   "a .npy file or glob, raw little-endian float32 file(s), or synthetic:N[:SEED]. "
                                   "Prints a summary of y_hat (rows, positives y_hat >= 0.5, mean, min/max, "
                                   "histogram).")
    p.add_argument("source", metavar="SOURCE", help="data.npy, 'parts/*.npy', data.f32 (raw), or synthetic:1e9")
    add_problem(p)
    add_activations(p, "e.g. relu,sigmoid", required=True)
    p.add_argument("--chunk-rows", type=_count_or_zero, default=1 << 20, metavar="N",
                   help="rows per chunk; memory ~ chunk x (prefetch + 5) (default 1048576)")
    p.add_argument("--shard-rows", type=_count_or_zero, default=1 << 24, metavar="N",
                   help="rows per shard, the unit of resuming and of Dask tasks (default 16777216)")
    add_out(p, "folder for the manifest, shard files and summary")
    p.add_argument("--resume", action="store_true", help="continue the run in --out, skipping finished shards")
    p.add_argument("--engine", choices=("local", "dask"), default="local")
    p.add_argument("--workers", type=int, default=2, help="Dask LocalCluster worker processes (default 2)")
    p.add_argument("--scheduler", default=None, metavar="ADDR", help="Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--nonfinite", choices=("error", "skip", "keep"), default="error",
                   help="rows with NaN/inf inputs: stop (default), leave out, or compute as they are")
    p.add_argument("--write-predictions", action="store_true", help="also write y_hat shards (.npy) into --out")
    add_device(p, "cpu", "cpu (for this 3-2-1 network the fused CPU kernel outruns the copy to a GPU: "
                         "docs/streaming.md)")
    p.add_argument("--kernel", choices=("auto", "native", "torch"), default="auto",
                   help="fused compiled loop (native, built with the C compiler on first use) or torch")
    p.add_argument("--columns", type=int, default=None, help="values per row of raw float32 files (default d)")
    p.add_argument("--seed", type=int, default=0, help="seed of synthetic:N (default 0)")
    p.add_argument("--bins", type=int, default=20, help="histogram bins (default 20)")
    p.add_argument("--hist-range", default=None, metavar="LO,HI", help="histogram range (default by sigma_2)")
    p.add_argument("--prefetch", type=int, default=2, help="chunks read ahead (default 2)")
    p.add_argument("--threads", type=int, default=None,
                   help="compute threads of the native kernel (default: all CPUs, at most 8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_format(p, choices=("text", "json"),
               help_text="the summary as text, or as one JSON object on the last line")
    p.set_defaults(func=_run)


def _count_or_zero(text: str) -> int:
    if text.strip() in ("0", "-0"):
        return 0  # run_stream explains why 0 is wrong
    if text.strip().startswith("-"):
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return parse_count(text)


def _hist_range(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise MlplabError(f"--hist-range wants LO,HI, got {text!r}", hint="e.g. --hist-range 0,1") from exc
    return lo, hi


def _run(args: argparse.Namespace) -> int:
    if args.resume and args.out is not None and not (args.out / "manifest.json").exists():
        say(f"note: {args.out} holds no run to resume (no manifest.json): starting a new run there")
    result = run_stream(args.source, StreamOptions(
        activations=args.activations, problem=args.problem, chunk_rows=args.chunk_rows, shard_rows=args.shard_rows,
        out=args.out, resume=args.resume, engine=args.engine, workers=args.workers, scheduler=args.scheduler,
        nonfinite=args.nonfinite, write_predictions=args.write_predictions, device=args.device,
        kernel=args.kernel, columns=args.columns, seed=args.seed, bins=args.bins,
        hist_range=_hist_range(args.hist_range), prefetch=args.prefetch, threads=args.threads,
        progress=False if args.no_progress else None))
    if args.format == "json":
        print(json.dumps(result.to_json()))
        return 0
    s = result.summary
    print(f"rows          {s.rows}")
    print(f"positives     {s.positives}  (y_hat >= 0.5)")
    print(f"mean y_hat    {s.mean_y_hat}")
    print(f"min / max     {s.min_y_hat if s.counted else None} / {s.max_y_hat if s.counted else None}")
    print(f"nonfinite     {s.nonfinite_rows} input rows, {s.nonfinite_y_hat} y_hat")
    width = max([*s.hist[1:-1], 1])
    for k, c in enumerate(s.hist[1:-1]):
        print(f"  [{s.edges[k]:8.3g}, {s.edges[k + 1]:8.3g})  {c:>14}  {'#' * round(40 * c / width)}")
    print(f"  below {s.edges[0]:.3g}: {s.hist[0]}, above {s.edges[-1]:.3g}: {s.hist[-1]}")
    say(f"{result.rows_done} rows in {result.seconds:.2f} s ({result.rows_per_s / 1e6:.1f} M rows/s, "
        f"kernel {result.kernel}, engine {result.engine}, {result.shards_skipped}/{result.shards} shards resumed)")
    if args.out is not None:
        say(f"wrote {args.out}/summary.json, manifest.json and shards/")
    return 0
