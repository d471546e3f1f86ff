"""Training throughput on real MNIST: the usual tutorial pipeline against mlplab's trainer, side by side.

For each batch size B (default 6, 64, 6400) it trains the assignment's default model (567,434 parameters) for one
epoch (or the first --max-batches batches) with

  tutorial   a per-sample Dataset that converts and normalizes each uint8 image in __getitem__, inside
             DataLoader(batch_size=B, shuffle=True); nn.Module + autograd; torch's default Adam;
             loss.item() every step (the pattern of most MNIST tutorials);
  tensor     the data held as one normalized tensor, batches sliced from a seeded permutation, autograd,
             fused Adam (mlplab's `training.engine=autograd`);
  mlplab-torch  the same plus the hand-written backward with preallocated buffers, subnormals flushed and
             hashed dropout masks (docs/mnist-training.md), run as torch kernels
             (shown only where it differs from `mlplab`: batches of at most 8 rows on a CPU);
  mlplab     mlplab's default trainer: as mlplab-torch, except that batches of at most 8 rows on a CPU go
             through the compiled step of mlplab.mnist.native_step (forward, backward and Adam in one C call),
             and on CUDA every step is a replay of one captured CUDA graph (mlplab.mnist.graphed);
  mlplab-triton  on CUDA only: as mlplab, with the step's kernels fused by Triton (mlplab.mnist.fused_step,
             `MLPLAB_TRITON=1`), about ten kernels a step instead of about forty,

and prints samples/s, the speed-up over the tutorial, and the achieved GFLOP/s = 6 × parameters × samples/s
(2 FLOPs per multiply-add, forward 1×, backward 2× the forward) as a fraction of the best torch.mm GFLOP/s
measured in the same run on the same threads. Variants are interleaved and repeated (--repeats), and the best
of the repeats is kept, because other processes on a shared machine only ever slow a run down.

    python benchmarks/bench_mnist_train.py                      # all batch sizes, all four variants
    python benchmarks/bench_mnist_train.py --batch-sizes 64 --max-batches 300 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from mlplab.device import get_device
from mlplab.mnist import fused_step
from mlplab.mnist.config import resolve_config
from mlplab.mnist.data import MEAN, STD, load_mnist
from mlplab.mnist.epoch import make_epoch_runner
from mlplab.mnist.model import MLP, count_parameters
from mlplab.mnist.native_step import MAX_ROWS
from mlplab.mnist.train import build_model, make_optimizer
from mlplab.tables import Table

VARIANTS = ("tutorial", "tensor", "mlplab-torch", "mlplab", "mlplab-triton")
DEFAULT_MAX_BATCHES = {6: 2000}  # B=6 with the tutorial pipeline takes minutes per epoch; 12,000 samples suffice


class TutorialMnist(Dataset):
    """The usual per-sample Dataset: uint8 image → float in [0, 1] → normalized → flattened, on every access."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[i]).float().div(255.0)
        x = (x - MEAN) / STD
        return x.view(-1), int(self.labels[i])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mm_peak_gflops(device: torch.device, sizes: tuple[int, ...] = (1024, 2048), repeats: int = 5) -> float:
    """Best torch.mm GFLOP/s over square float32 products of the given sizes (TF32 as torch is set up)."""
    best = 0.0
    if device.type == "cuda":
        sizes = (4096, 8192)
    for n in sizes:
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        c = torch.empty(n, n, device=device)
        torch.mm(a, b, out=c)
        for _ in range(repeats):
            _sync(device)
            tick = time.perf_counter()
            torch.mm(a, b, out=c)
            _sync(device)
            best = max(best, 2 * n**3 / (time.perf_counter() - tick) / 1e9)
    return best


def time_tutorial(images: np.ndarray, labels: np.ndarray, B: int, max_batches: int, seed: int,
                  device: torch.device) -> tuple[int, float]:
    torch.manual_seed(seed)
    model = MLP().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TutorialMnist(images, labels), batch_size=B, shuffle=True)
    model.train()
    seen, running, tick = 0, 0.0, time.perf_counter()
    for b, (X, y) in enumerate(loader):
        if b == max_batches:
            break
        X, y = X.to(device), y.to(device)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(X), y)
        loss.backward()
        optimizer.step()
        running += loss.item()
        seen += len(y)
    return seen, time.perf_counter() - tick


def time_mlplab(X: torch.Tensor, y: torch.Tensor, B: int, max_batches: int, engine: str,
                seed: int, allow_native: bool = True, triton: bool = False) -> tuple[int, float]:
    config = resolve_config(overrides=[f"training.batch_size={B}", f"training.engine={engine}",
                                       f"training.seed={seed}"])
    torch.manual_seed(seed)
    model = build_model(config).to(X.device)
    optimizer = make_optimizer("adam", model.parameters(), 1e-3)
    generator = torch.Generator(device=X.device)
    generator.manual_seed(seed)
    runner = make_epoch_runner(config, model, optimizer, X, y, generator, allow_native=allow_native, fused=triton)
    runner.run(0, max_batches=3)  # warm-up: first-call allocations and kernel selection
    tick = time.perf_counter()
    runner.run(1, max_batches=max_batches)  # ends by reading the losses back: the device is synchronized
    n = min(len(y), max_batches * B)
    return n, time.perf_counter() - tick


def variants_for(variants: list[str], B: int, device: torch.device) -> list[str]:
    """`mlplab-torch` differs from `mlplab` only where the compiled step applies (a CPU, at most MAX_ROWS rows);
    `mlplab-triton` runs on CUDA only, with Triton installed."""
    return [v for v in variants if (v != "mlplab-torch" or (B <= MAX_ROWS and device.type == "cpu"))
            and (v != "mlplab-triton" or (device.type == "cuda" and fused_step.available()))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[6, 64, 6400])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--max-batches", type=int, default=None,
                        help="batches per measurement (default: a full epoch; 2000 at B=6)")
    parser.add_argument("--epochs-fraction", type=float, default=None,
                        help="measure this fraction of an epoch instead (overrides --max-batches)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats; the best is kept")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (data resident there; peak measured there)")
    parser.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    train, _ = load_mnist(args.data_dir)
    X, y = train.images.to(device), train.labels.to(device)
    raw, _ = load_mnist(args.data_dir, normalize=False)
    images = raw.images.to(torch.uint8).numpy().reshape(-1, 28, 28)
    labels = raw.labels.numpy()
    params = count_parameters(MLP())
    peak = mm_peak_gflops(device)
    results: dict[tuple[str, int], float] = {}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for B in args.batch_sizes:
        batches = -(-len(labels) // B)
        if args.epochs_fraction is not None:
            cap = max(1, round(batches * args.epochs_fraction))
        else:
            cap = args.max_batches or DEFAULT_MAX_BATCHES.get(B, batches)
        for r in range(args.repeats):
            for variant in variants_for(args.variants, B, device):
                if variant == "tutorial":
                    n, dt = time_tutorial(images, labels, B, cap, seed=r, device=device)
                else:
                    n, dt = time_mlplab(X, y, B, cap, "autograd" if variant == "tensor" else "manual", seed=r,
                                        allow_native=variant != "mlplab-torch", triton=variant == "mlplab-triton")
                results[(variant, B)] = max(results.get((variant, B), 0.0), n / dt)
                print(f"B={B} {variant} repeat {r + 1}: {n} samples, {n / dt:,.0f} samples/s", file=sys.stderr)
        peak = max(peak, mm_peak_gflops(device, repeats=2))  # measured again: the machine's best moment counts
    rows: list[list[Any]] = []
    for B in args.batch_sizes:
        base = results.get(("tutorial", B))
        for variant in variants_for(args.variants, B, device):
            sps = results[(variant, B)]
            gflops = 6 * params * sps / 1e9
            rows.append([B, variant, round(sps), round(sps / base, 2) if base else None, round(gflops, 1),
                         round(100 * gflops / peak, 1)])
    where = f"{torch.get_num_threads()} threads" if device.type == "cpu" else str(device)
    table = Table(f"One epoch of the default MLP on MNIST ({params:,} parameters), {where}, "
                  f"torch.mm peak {peak:.0f} GFLOP/s, {started}",
                  ["batch", "pipeline", "samples/s", "× tutorial", "GFLOP/s", "% of mm peak"], rows, decimals=2)
    if args.format == "json":
        print(json.dumps({"peak_gflops": peak, "threads": torch.get_num_threads(), "started": started,
                          "rows": [dict(zip(table.columns, row)) for row in rows]}))
    else:
        print(table.to_markdown() if args.format == "markdown" else table.to_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
