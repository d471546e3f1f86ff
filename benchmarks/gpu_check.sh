#!/usr/bin/env bash
# The MNIST trainer on a CUDA GPU, unchanged code: the assignment's full 100-epoch baseline, timed, plus a short
# throughput comparison and a check that the hand-written backward equals autograd on the device.
#
#   MLPLAB_DATA=/path/with/the/four/idx/files bash benchmarks/gpu_check.sh
#
# Needs python with a CUDA torch, numpy, matplotlib and tqdm (PYTHON=... to choose; the repo's src/ is used
# directly, nothing is installed). Runs in about 2-4 minutes on an H100/H200; writes under ${OUT:-$PWD/gpu_out}.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
: "${MLPLAB_DATA:?set MLPLAB_DATA to the folder holding the four MNIST IDX files}"
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

"$PY" - <<'PYEOF'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to this python"
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))
# Hand-written backward vs autograd on the GPU (float64, with the same dropout masks).
import torch.nn.functional as F
from mlplab.mnist.backprop import ManualBackprop
from mlplab.mnist.model import MLP
torch.manual_seed(0)
model = MLP(784, [64, 32], 10, 0.2).double().cuda()
g = torch.Generator(device="cuda"); g.manual_seed(0)
engine = ManualBackprop(model, 50, g)
X = torch.randn(50, 784, dtype=torch.float64, device="cuda"); y = torch.randint(0, 10, (50,), device="cuda")
loss = engine.step(X, y)
masks = engine.dropout_masks()
params = [p.detach().clone().requires_grad_() for p in model.parameters()]
A = X
for k in range(2):
    A = torch.relu(A @ params[2 * k].T + params[2 * k + 1]) * masks[k]
ref = F.cross_entropy(A @ params[4].T + params[5], y)
ref.backward()
torch.testing.assert_close(loss, ref.detach(), rtol=1e-12, atol=1e-12)
for p, r in zip(model.parameters(), params):
    torch.testing.assert_close(p.grad, r.grad, rtol=1e-10, atol=1e-12)
print("backprop on cuda equals float64 autograd: ok")
PYEOF

echo "== throughput, one epoch (tensor = autograd + fused Adam, mlplab = hand-written backward), cuda"
"$PY" benchmarks/bench_mnist_train.py --device cuda --batch-sizes 64 6400 --variants tensor mlplab \
    --repeats 1 --data-dir "$MLPLAB_DATA"

echo "== the assignment's 100-epoch baseline on cuda"
rm -rf "$OUT/baseline"
start=$(date +%s)
"$PY" -c 'import sys; from mlplab.cli import main; sys.exit(main())' mnist train --device cuda \
    --data-dir "$MLPLAB_DATA" --out "$OUT/baseline" --no-progress --format json | tee "$OUT/baseline.json"
echo "wall clock including start-up: $(( $(date +%s) - start )) s"
