#!/usr/bin/env bash
# Part 3 on a CUDA GPU, one prepared script: the CUDA tests, graph vs eager on real MNIST, the eight
# experiments all at once on the card and each alone, and the throughput benchmark (tutorial pipeline, plain
# tensor loop, mlplab) with the share of the card's measured float32 matmul peak, and a profile of one
# graphed step (benchmarks/profile_gpu_step.py).
#
#   MLPLAB_DATA=/folder/with/the/four/idx/files bash benchmarks/gpu_check.sh
#
# Needs python with a CUDA torch, numpy, matplotlib, tqdm, mpmath and pytest (PYTHON=... to choose); the repo's
# src/ is used directly, nothing is installed. About 8 minutes on an H200. Writes under ${OUT:-$PWD/gpu_out}.
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

step "CUDA tests: graphed epoch, trainer, backward on the device"
timeout 240 "$PY" -m pytest -q -p no:cacheprovider -o addopts="" tests/test_mnist_graphed.py 2>&1 | tail -n 15

step "graph replay vs eager device steps on real MNIST (3 epochs of the baseline, same seed)"
timeout 240 "$PY" - <<'PYEOF'
import os, time, torch
from mlplab.mnist.config import resolve_config
from mlplab.mnist.data import load_mnist
from mlplab.mnist.train import train_run
train, test = load_mnist()
cfg = resolve_config(overrides=["training.num_epochs=3", "training.device=cuda"])
runs = {}
for graphs in ("1", "0"):
    os.environ["MLPLAB_CUDA_GRAPHS"] = graphs
    tick = time.perf_counter()
    runs[graphs] = train_run(cfg, train, test, progress=False)
    print(f"MLPLAB_CUDA_GRAPHS={graphs}: kernel {runs[graphs]['kernel']}, train {runs[graphs]['train_time_s']:.2f} s"
          f" for 3 epochs, test accuracy {runs[graphs]['test_accuracy']:.4f}, loss {runs[graphs]['test_loss']:.6f}")
g, e = runs["1"], runs["0"]
print("bit-identical losses:", g["final_train_loss"] == e["final_train_loss"] and g["test_loss"] == e["test_loss"],
      "| train loss diff", abs(g["final_train_loss"] - e["final_train_loss"]),
      "| speed-up per epoch", round(e["train_time_s"] / g["train_time_s"], 1))
PYEOF

step "the eight experiments at once on one GPU (mlplab mnist sweep all --device cuda)"
rm -rf "$OUT/together"
start=$(date +%s.%N)
eval "$MLPLAB" mnist sweep all --device cuda --out "$OUT/together" --no-progress 2>&1 | tail -n 40
echo "sweep all, wall time: $(since "$start") s"

step "each experiment alone (--jobs 1), for the per-run times and the comparison"
rm -rf "$OUT/alone"
start=$(date +%s.%N)
eval "$MLPLAB" mnist sweep all --jobs 1 --device cuda --out "$OUT/alone" --no-progress 2>&1 | tail -n 40
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

step "throughput: tutorial pipeline, plain tensor loop, mlplab (one epoch; B=6: 2000 batches)"
timeout 300 "$PY" benchmarks/bench_mnist_train.py --device cuda --batch-sizes 6 64 6400 \
    --variants tutorial tensor mlplab --repeats 2 --format markdown 2>&1 | grep -v "repeat"

step "where a graphed step spends its time (profiler)"
timeout 120 "$PY" benchmarks/profile_gpu_step.py --batch-sizes 6 64 2>&1 | tail -n 40
step "done"
