"""Streaming forward pass against the read roofline, cold and warm cache, peak memory, and Dask scaling.

    .venv/bin/python benchmarks/bench_stream.py [--rows 5e7] [--chunk-rows 1048576] [--quick]

Roofline = a plain NumPy pass that only sums the same chunks of the same file, read with `os.preadv` into a
reused buffer, and through `np.load(mmap_mode="r")`; the engine is compared with the faster of the two. The
two rooflines and the engine take turns, round after round; the best of each is kept, and the engine's ratio
to the faster roofline of the same round is reported too (median and range over the rounds).
Cold cache = the file's pages dropped with posix_fadvise(POSIX_FADV_DONTNEED) before the pass (works
without root for clean pages; a hypervisor's own cache below the VM may still serve them).
Peak RSS is measured in fresh subprocesses (VmHWM) at N = 1e6, 1e7, 1e8 synthetic rows.
Dask rates count from the moment the cluster is up and every worker has imported mlplab until the last
shard is back (starting and closing a LocalCluster takes seconds and is reported apart).
Prints ratios; nothing here is asserted (timings depend on the machine and its load).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mlplab.stream import StreamOptions, run_stream
from mlplab.stream.run import default_threads
from mlplab.stream.sources import open_source, parse_count

ACTS = "relu,sigmoid"


def write_synthetic_npy(path: Path, rows: int) -> None:
    """A (rows, 3) float32 .npy file of the synthetic source's rows (seed 0), written through a map."""
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, 3))
    src = open_source(f"synthetic:{rows}", d=3)
    for s in range(0, rows, 1 << 22):
        src.read(s, min(rows, s + (1 << 22)), X[s:s + (1 << 22)])
    X.flush()
    del X


def drop_cache(path: Path) -> bool:
    """Ask the kernel to forget the file's cached pages; False where that is not possible."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def roofline_pread(path: Path, chunk_rows: int) -> float:
    src = open_source(str(path), d=3)
    buf = np.empty((chunk_rows, 3), np.float32)
    t = time.perf_counter()
    total = 0.0
    for s in range(0, src.rows, chunk_rows):
        total += float(src.read(s, min(src.rows, s + chunk_rows), buf).sum())
    return src.rows / (time.perf_counter() - t)


def roofline_mmap(path: Path, chunk_rows: int) -> float:
    X = np.load(path, mmap_mode="r")
    t = time.perf_counter()
    total = 0.0
    for s in range(0, X.shape[0], chunk_rows):
        total += float(X[s:s + chunk_rows].sum())
    return X.shape[0] / (time.perf_counter() - t)


def engine(source: str, chunk_rows: int, **kw: object) -> float:
    r = run_stream(source, StreamOptions(activations=ACTS, chunk_rows=chunk_rows, progress=False, **kw))  # type: ignore[arg-type]
    return r.rows_per_s


def interleaved(fns, repeats: int, before=None) -> list[list[float]]:  # type: ignore[no-untyped-def]
    """The rates of each function over `repeats` rounds, the functions taking turns within a round, so a
    machine whose speed drifts from minute to minute gives each of them the same conditions."""
    rates: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            if before is not None:
                before()
            rates[i].append(fn())
    return rates


def peak_rss_mb(n: int, chunk_rows: int) -> float:
    # VmHWM of the child's own address space (ru_maxrss would carry over the parent's peak across exec)
    code = ("from mlplab.stream import StreamOptions, run_stream; "
            f"r = run_stream('synthetic:{n}', StreamOptions(activations='{ACTS}', chunk_rows={chunk_rows}, "
            "progress=False)); "
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="5e7", help="rows of the test file (12 bytes each; default 5e7 = 600 MB)")
    ap.add_argument("--chunk-rows", type=int, default=1 << 20)
    ap.add_argument("--repeats", type=int, default=5, help="rounds of the warm and the cold passes (best is kept)")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--dir", default=None, help="folder for the test file (default: a temporary one)")
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    args = ap.parse_args()
    rows = parse_count("2e6" if args.quick else args.rows)
    rss_sizes = [10**5, 10**6] if args.quick else [10**6, 10**7, 10**8]
    chunk = args.chunk_rows
    res: dict[str, object] = {"cpus": os.cpu_count(), "load_before": os.getloadavg(), "rows": rows, "chunk": chunk}
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; file {rows:.3g} rows "
          f"({rows * 12 / 1e9:.2f} GB float32), chunk {chunk} rows")

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "X.npy"
        write_synthetic_npy(path, rows)

        def cold() -> None:
            drop_cache(path)

        can_drop = drop_cache(path)
        for mode, before in (("warm", None), ("cold", cold if can_drop else None)):
            if mode == "warm":
                roofline_pread(path, chunk)  # load the page cache
            rounds = interleaved([lambda: roofline_pread(path, chunk), lambda: roofline_mmap(path, chunk),
                                  lambda: engine(str(path), chunk)], args.repeats, before)
            r_pread, r_mmap, e = (max(r) for r in rounds)
            # the same round's rates were measured within a second of each other: their ratio is the least
            # touched by the machine's drift
            ratios = sorted(er / max(pr, mr) for pr, mr, er in zip(*rounds))
            res[mode] = {"roofline_pread": r_pread, "roofline_mmap": r_mmap, "engine": e,
                         "rounds": {"roofline_pread": rounds[0], "roofline_mmap": rounds[1], "engine": rounds[2]},
                         "round_ratio_median": float(np.median(ratios))}
            roof = max(r_pread, r_mmap)
            print(f"{mode:5s} cache: roofline pread+sum {r_pread / 1e6:7.1f} M rows/s, mmap+sum "
                  f"{r_mmap / 1e6:7.1f} M rows/s | engine {e / 1e6:7.1f} M rows/s = {e / roof:5.1%} of the "
                  f"faster roofline (best of {args.repeats} rounds each); round by round: median "
                  f"{np.median(ratios):5.1%}, range {ratios[0]:.1%}-{ratios[-1]:.1%}"
                  + ("" if mode == "warm" or can_drop else " (could not drop the cache)"))
        e_1t = engine(str(path), chunk, threads=1)  # the engine above uses every CPU (at most 8)
        res["warm_threads_1"] = e_1t
        print(f"warm  cache: native kernel on 1 thread  {e_1t / 1e6:7.1f} M rows/s (the engine uses "
              f"{default_threads()})")
        e_torch = engine(str(path), chunk, kernel="torch")
        res["warm_torch_kernel"] = e_torch
        print(f"warm  cache: torch kernel (no native loop) {e_torch / 1e6:7.1f} M rows/s")

        syn_n = min(rows, 10**7)
        syn = open_source(f"synthetic:{syn_n}", d=3)
        buf = np.empty((chunk, 3), np.float32)
        t = time.perf_counter()
        for s in range(0, syn_n, chunk):
            syn.read(s, min(syn_n, s + chunk), buf).sum()
        gen = syn_n / (time.perf_counter() - t)
        e_syn = engine(f"synthetic:{syn_n}", chunk)
        res["synthetic"] = {"generate_and_sum": gen, "engine": e_syn}
        print(f"synthetic  : generate+sum {gen / 1e6:7.1f} M rows/s | engine {e_syn / 1e6:7.1f} M rows/s = "
              f"{e_syn / gen:5.1%} (the normal generator, not the network, limits this source)")

        shard = max(chunk, rows // 8)
        local = engine(str(path), chunk, shard_rows=shard)
        line = [f"engines (warm, {rows // shard} shards): local {local / 1e6:.1f} M rows/s"]
        res["dask"] = {"local": local}
        has_dask = importlib.util.find_spec("distributed") is not None
        if not has_dask:
            line.append('dask not installed, skipped (pip install "mlplab[dask]")')
        for w in (1, 2) if has_dask else ():
            ready: list[float] = []
            t0 = time.perf_counter()
            def warm_up(client, ready=ready):  # type: ignore[no-untyped-def]
                client.run(lambda: __import__("mlplab.stream.dask_engine"))  # imports are not throughput
                ready.append(time.perf_counter())

            last: list[float] = []
            r = run_stream(str(path), StreamOptions(activations=ACTS, chunk_rows=chunk, shard_rows=shard,
                                                    engine="dask", workers=w, progress=False),
                           on_client=warm_up, on_shard=lambda _i, _s, last=last: last.append(time.perf_counter()))
            wall = time.perf_counter() - t0  # includes starting and closing the cluster
            after_start = r.summary.rows / (last[-1] - ready[0])  # cluster up -> last shard back
            res["dask"][f"workers_{w}"] = {"rows_per_s_after_start": after_start, "wall_s": wall,  # type: ignore[index]
                                           "startup_s": ready[0] - t0}
            line.append(f"dask {w} worker{'s' if w > 1 else ''} {after_start / 1e6:.1f} M rows/s "
                        f"({after_start / local:.2f}x local; +{ready[0] - t0:.1f} s cluster start and imports)")
        print("; ".join(line))

    rss = {}
    for n in rss_sizes:
        rss[n] = peak_rss_mb(n, chunk)
    res["peak_rss_mb"] = rss
    print("peak RSS   : " + ", ".join(f"N={n:.0e}: {mb:.0f} MB" for n, mb in rss.items())
          + f" (ratio largest/smallest {rss[rss_sizes[-1]] / rss[rss_sizes[0]]:.2f})")
    res["load_after"] = os.getloadavg()
    print(f"load average after: {os.getloadavg()[0]:.2f} (other jobs share these CPUs)")
    print(f"own CPU time: {resource.getrusage(resource.RUSAGE_SELF).ru_utime:.1f} s user")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
