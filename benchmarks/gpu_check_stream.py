"""GPU check of the streaming engine (run where CUDA is available; prints and asserts).

    PYTHONPATH=src python3 benchmarks/gpu_check_stream.py [--rows 3e7]

1. On CUDA, streamed y_hat equals float64 forward() (relative to the size of the summed terms) for all
   nine activation pairs, and its summary equals the NumPy reference summary of the same y_hat bit for bit.
2. Throughput from a warm .npy file: CUDA engine (pinned buffers, non-blocking copies) vs the CPU engine
   (native kernel if it compiles, else torch) on 1 thread and on the default count, vs the faster of two read
   rooflines (pread + sum, mmap + sum), each one thread.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import mlplab
from bench_stream import write_synthetic_npy
from mlplab.stream import StreamOptions, run_stream
from mlplab.stream.run import default_threads
from mlplab.stream.sources import open_source, parse_count
from mlplab.stream.summary import default_edges, summarize_y
from mlplab.twolayer.activations import activation_pairs
from mlplab.twolayer.problem import load_problem


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="3e7")
    ap.add_argument("--device", default="cuda", help="cpu only to try the script itself")
    args = ap.parse_args()
    dev = args.device
    assert dev == "cpu" or torch.cuda.is_available(), "no CUDA here"
    name = torch.cuda.get_device_name() if dev != "cpu" else "cpu"
    print(f"device {name}, torch {torch.__version__}, {os.cpu_count()} CPUs")
    t = load_problem().tensors()
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "small.npy"
        X = np.random.default_rng(0).standard_normal((100_003, 3)).astype(np.float32) * 2
        X[17, 1] = np.nan
        np.save(small, X)
        X64 = torch.from_numpy(X).double()
        for a1, a2 in activation_pairs():
            out = Path(tmp) / f"{a1}-{a2}"
            r = run_stream(str(small), StreamOptions(activations=(a1, a2), chunk_rows=30_000, shard_rows=50_000,
                                                     out=out, device=dev, write_predictions=True, nonfinite="skip",
                                                     progress=False))
            y = np.concatenate([np.load(p) for p in sorted((out / "shards").glob("*.npy"))])
            ref = mlplab.forward(X64, a1, t["W1"], t["b1"], a2, t["W2"], t["b2"]).y_hat.reshape(-1)
            scale = 1 + (X64.abs() @ t["W1"].abs() + t["b1"].abs()) @ t["W2"].abs().reshape(-1) + t["b2"].abs()
            ok = ~torch.isnan(ref)
            err = ((torch.from_numpy(y).double() - ref) / scale)[ok]
            torch.testing.assert_close(err, torch.zeros_like(err), atol=1e-6, rtol=0)
            assert np.isnan(y[17]) and r.summary.nonfinite_rows == 1 and r.summary.first_nonfinite_row == 17
            bad = ~np.isfinite(X).all(axis=1)
            assert r.summary == summarize_y(y, default_edges(a2), bad), (a1, a2)
            cpu = run_stream(str(small), StreamOptions(activations=(a1, a2), chunk_rows=30_000, nonfinite="skip",
                                                       progress=False))
            print(f"  {a1:8s} {a2:8s} {dev} ok; |mean {dev} - mean cpu {cpu.kernel}| = "
                  f"{abs(r.summary.mean_y_hat - cpu.summary.mean_y_hat):.2e}")
        rows = parse_count(args.rows)
        big = Path(tmp) / "big.npy"
        write_synthetic_npy(big, rows)
        chunk = 1 << 22
        src = open_source(str(big), d=3)
        buf = np.empty((chunk, 3), np.float32)
        pread = mmap = 0.0
        for _rep in range(2):
            t0 = time.perf_counter()
            for s in range(0, rows, chunk):
                src.read(s, min(rows, s + chunk), buf).sum()
            pread = max(pread, rows / (time.perf_counter() - t0))
            Xm = np.load(big, mmap_mode="r")
            t0 = time.perf_counter()
            for s in range(0, rows, chunk):
                Xm[s:s + chunk].sum()
            mmap = max(mmap, rows / (time.perf_counter() - t0))
            del Xm
        roof = max(pread, mmap)
        res = {}
        default = default_threads()  # run_stream's thread count when none is given
        for name, kw in ((dev, {"device": dev}), ("cpu 1 thread", {"threads": 1}),
                         (f"cpu {default} threads (the default)", {})):
            res[name] = max(run_stream(str(big), StreamOptions(activations="relu,sigmoid", chunk_rows=chunk,
                                                               progress=False, **kw)).rows_per_s
                            for _ in range(2))
        if dev != "cpu":  # the device kernel alone, on a chunk already in host memory
            from mlplab.stream.kernel import ChunkKernel, Network
            from mlplab.stream.summary import default_edges as edges_of

            net = Network.from_arrays(t["W1"], t["b1"], t["W2"], t["b2"], "relu", "sigmoid")
            kern = ChunkKernel(net, edges_of("sigmoid"), device=dev)
            Xc = src.read(0, chunk, buf).copy()
            yc = np.empty(chunk, np.float32)
            kern(Xc, 0, yc)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(5):
                kern(Xc, 0, yc)
            print(f"device kernel alone (chunk in host memory, copy there and back): "
                  f"{5 * chunk / (time.perf_counter() - t0) / 1e6:.0f} M rows/s")
        rates = "; ".join(f"{k} {v / 1e6:.0f} M rows/s ({v / roof:.0%})" for k, v in res.items())
        print(f"warm file {rows:.2g} rows: roofline pread+sum {pread / 1e6:.0f}, mmap+sum {mmap / 1e6:.0f} "
              f"M rows/s; {rates}")


if __name__ == "__main__":
    main()
