"""Where a graphed training step spends its time on a CUDA GPU: microseconds per replay, kernels per step, and
the kernels that take longest (torch profiler), for the default MLP on MNIST at the given batch sizes.

    MLPLAB_DATA=/folder/with/idx python benchmarks/profile_gpu_step.py --batch-sizes 6 64

The step is `mlplab.mnist.graphed.DeviceEpoch`'s full-batch graph, of torch kernels or of the fused Triton
kernels (`--step`), replayed `--replays` times within one epoch (the step counter is reset before it would run
past the epoch's last full batch). Without CUDA it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def profile(batch: int, replays: int, rows: int, triton: bool) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from mlplab.mnist.config import resolve_config
    from mlplab.mnist.data import load_mnist
    from mlplab.mnist.epoch import make_epoch_runner
    from mlplab.mnist.train import build_model, make_optimizer

    train, _ = load_mnist()
    X, y = train.images.cuda(), train.labels.cuda()
    config = resolve_config(overrides=[f"training.batch_size={batch}", "training.device=cuda"])
    torch.manual_seed(0)
    model = build_model(config).cuda()
    optimizer = make_optimizer("adam", model.parameters(), 1e-3)
    generator = torch.Generator(device="cuda")
    generator.manual_seed(0)
    runner = make_epoch_runner(config, model, optimizer, X, y, generator, fused=triton)
    if not runner.kernel.endswith("cuda-graph"):
        print(f"batch {batch}: the run uses {runner.kernel!r}, not CUDA graphs; nothing to profile")
        return
    runner.run(0, max_batches=3)  # captures the graphs
    graph, full = runner.graphs["full"], runner.full  # type: ignore[attr-defined]

    def replay(n: int) -> None:
        for i in range(n):
            if i % full == 0:
                runner.b.zero_()  # type: ignore[attr-defined]
            graph.replay()

    torch.cuda.synchronize()
    tick = time.perf_counter()
    replay(replays)
    torch.cuda.synchronize()
    per_step = (time.perf_counter() - tick) / replays
    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        replay(20)
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
    print(f"batch {batch}, {runner.kernel}: {1e6 * per_step:.1f} us per step ({replays} replays), "
          f"{len(kernels) / 20:.0f} kernels per step, {batch / per_step:,.0f} samples/s")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=rows, max_name_column_width=60))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[6, 64])
    parser.add_argument("--replays", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=15, help="kernels shown per batch size")
    parser.add_argument("--step", choices=["torch", "triton", "both"], default="both",
                        help="the torch kernels, the fused Triton kernels (mlplab.mnist.fused_step), or both")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("profile_gpu_step: no CUDA device here; run it on a machine with a GPU", file=sys.stderr)
        return 2
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    for batch in args.batch_sizes:
        for triton in {"torch": [False], "triton": [True], "both": [False, True]}[args.step]:
            profile(batch, args.replays, args.rows, triton)
    return 0


if __name__ == "__main__":
    sys.exit(main())
