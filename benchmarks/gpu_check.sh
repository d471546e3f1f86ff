#!/usr/bin/env bash
# Part 3 on a CUDA GPU, one prepared script: the CUDA tests (the fused Triton step compiled), torch graphs
# against Triton graphs on real MNIST, a profile of one graphed step of each (benchmarks/profile_gpu_step.py),
# the 100-epoch baseline, the eight experiments all at once on the card and each alone, the throughput
# benchmark (tutorial pipeline, plain tensor loop, mlplab with torch and with Triton kernels) with the share of
# the card's measured float32 matmul peak, and the reproduce plan's estimate against the time taken.
# From the baseline on it trains with the fused step (MLPLAB_TRITON=1); MLPLAB_TRITON=0 keeps torch kernels.
#
#   MLPLAB_DATA=/folder/with/the/four/idx/files bash benchmarks/gpu_check.sh
#
# Needs python with a CUDA torch, triton, numpy, matplotlib, tqdm, mpmath and pytest (PYTHON=... to choose); the
# repo's src/ is used directly, nothing is installed. Each part has a timeout; the whole is meant to fit in about
# 9 minutes on an H200 (not yet run in this form). Writes under ${OUT:-$PWD/gpu_out}.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
: "${MLPLAB_DATA:?set MLPLAB_DATA to the folder holding the four MNIST IDX files}"
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
MLPLAB="$PY -c 'import sys; from mlplab.cli import main; sys.exit(main())'"
step() { echo; echo "== $1 ($(date -u +%H:%M:%S))"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
"$PY" -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, torch.cuda.get_device_name(0))'
"$PY" -c 'import triton; print("triton", triton.__version__)' || echo "no triton: the fused step cannot run"

step "CUDA tests: the fused Triton step compiled, the graphed epoch, the trainer"
timeout 300 "$PY" -m pytest -q -p no:cacheprovider -o addopts="" tests/test_mnist_fused.py tests/test_mnist_graphed.py \
    2>&1 | tail -n 15

step "3 epochs of the baseline on real MNIST, same seed: torch graphs against Triton graphs"
timeout 240 "$PY" - <<'PYEOF'
import os, torch
from mlplab.mnist.config import resolve_config
from mlplab.mnist.data import load_mnist
from mlplab.mnist.train import train_run
train, test = load_mnist()
cfg = resolve_config(overrides=["training.num_epochs=3", "training.device=cuda"])
runs = {}
for triton in ("0", "1", "1"):  # Triton twice: the first run includes compiling its kernels
    os.environ["MLPLAB_TRITON"] = triton
    r = runs[triton] = train_run(cfg, train, test, progress=False)
    print(f"MLPLAB_TRITON={triton}: kernel {r['kernel']}, train {r['train_time_s']:.2f} s for 3 epochs, "
          f"test accuracy {r['test_accuracy']:.4f}, loss {r['test_loss']:.6f}, train loss {r['final_train_loss']:.6f}")
t, f = runs["0"], runs["1"]
print(f"accuracy diff {100 * abs(t['test_accuracy'] - f['test_accuracy']):.2f} pp | "
      f"train loss rel diff {abs(t['final_train_loss'] - f['final_train_loss']) / t['final_train_loss']:.2e} | "
      f"speed-up per epoch {t['train_time_s'] / f['train_time_s']:.2f}")
PYEOF

step "where a graphed step spends its time, torch and Triton kernels (profiler)"
timeout 150 "$PY" benchmarks/profile_gpu_step.py --batch-sizes 6 64 --rows 12 2>&1 | tail -n 80

export MLPLAB_TRITON=${MLPLAB_TRITON:-1}  # what follows uses the fused step, unless told otherwise
step "the 100-epoch baseline (MLPLAB_TRITON=$MLPLAB_TRITON)"
rm -rf "$OUT/baseline"
timeout 200 bash -c "$MLPLAB mnist train --device cuda --out '$OUT/baseline' --no-progress" 2>&1 | tail -n 12

step "the eight experiments at once on one GPU (mlplab mnist sweep all --device cuda)"
rm -rf "$OUT/together"
start=$(date +%s.%N)
timeout 400 bash -c "$MLPLAB mnist sweep all --device cuda --out '$OUT/together' --no-progress" 2>&1 | tail -n 40
echo "sweep all, wall time: $(since "$start") s"

step "each experiment alone (--jobs 1), for the per-run times and the comparison"
rm -rf "$OUT/alone"
start=$(date +%s.%N)
timeout 400 bash -c "$MLPLAB mnist sweep all --jobs 1 --device cuda --out '$OUT/alone' --no-progress" 2>&1 | tail -n 40
echo "one at a time, wall time: $(since "$start") s"
"$PY" - "$OUT" <<'PYEOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for run in sorted(p.name for p in (out / "alone").iterdir() if (p / "summary.json").exists()):
    a = json.loads((out / "alone" / run / "summary.json").read_text())
    t = out / "together" / run / "summary.json"
    if not t.exists():
        print(f"{run:20s} alone acc {a['test_accuracy']:.4f} train {a['train_time_s']:.1f} s | together: missing")
        continue
    b = json.loads(t.read_text())
    same = all(a[k] == b[k] for k in ("final_train_loss", "test_loss", "test_accuracy"))
    print(f"{run:20s} alone acc {a['test_accuracy']:.4f} train {a['train_time_s']:6.1f} s kernel {a['kernel']} | "
          f"together acc {b['test_accuracy']:.4f} train {b['train_time_s']:6.1f} s | "
          f"diff {100 * abs(a['test_accuracy'] - b['test_accuracy']):.2f} pp, bit-identical {same}")
PYEOF

step "throughput: tutorial pipeline, plain tensor loop, mlplab with torch and with Triton kernels"
timeout 300 "$PY" benchmarks/bench_mnist_train.py --device cuda --batch-sizes 6 64 6400 \
    --variants tutorial tensor mlplab mlplab-triton --repeats 1 --format markdown 2>&1 | grep -v "repeat"

step "the reproduce plan's estimate on this GPU, against the time taken (quick MNIST runs only)"
rm -rf "$OUT/quick"
start=$(date +%s.%N)
timeout 200 bash -c "$MLPLAB reproduce --quick --only mnist --no-pdf --out '$OUT/quick' --no-progress" 2>&1 \
    | grep -i -E "estimat|MNIST|took|wall" | head -n 12
echo "reproduce --quick --only mnist, wall time: $(since "$start") s"
step "done"
