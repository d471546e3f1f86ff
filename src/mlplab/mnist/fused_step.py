"""The device-counter step (`graphed.DeviceEpoch`) in a few Triton kernels instead of about forty torch kernels.

A CUDA graph removes the host from a step but not the GPU's own cost of starting each kernel: at batch 6 an
H200 spent about 158 us on the 42 kernels of the torch step, a few microseconds each, while the arithmetic
would take well under one. Here a step of an MLP with L layers is 2L + (L - 1) kernels (`fused_kernels`):

    forward, one kernel per hidden layer     rows gathered from the resident data inside the first one;
                                             bias, dropout mask and ReLU applied to the product in registers
    loss, one program                        output layer, mean cross-entropy, dz_L, the divergence flag, Adam's
                                             step counters and bias corrections, the step counter b += 1
    then for each layer, last to first:
      backward (but the first layer)         dZ_{k-1} = s·dZ_k W_k ⊙ [A'_{k-1} > 0]
      Adam                                   the weight gradient s·dZ_kᵀ A_{k-1} of each tile, computed and used
                                             at once (never written out), bias gradient, Adam's update

The arithmetic is the eager step's (`backprop.ManualBackprop` and torch's Adam formula, float32), with sums
in another order, so the results agree to float32 rounding rather than bit for bit. Adam's state stays in the
optimizer's own tensors, so checkpoints and resume are unchanged; the `.grad` buffers are not written.
"""

from __future__ import annotations

import importlib.util
import math
import os
from typing import Any

import torch


def available() -> bool:
    """Whether Triton is installed (it comes with torch's CUDA wheels on Linux)."""
    return importlib.util.find_spec("triton") is not None


def wanted(device: torch.device) -> bool:
    """Whether a run on `device` uses these kernels: `MLPLAB_TRITON=1` (off by default until measured on a GPU,
    see docs/mnist-training.md), CUDA and Triton present."""
    return os.environ.get("MLPLAB_TRITON", "0") == "1" and device.type == "cuda" and available()


def supports(model: Any) -> bool:
    """The kernels handle float32 MLPs with at least one hidden layer."""
    layers = model.linears()
    return len(layers) >= 2 and all(layer.weight.dtype == torch.float32 for layer in layers)


def _block(size: int, cap: int) -> int:
    """A power of two between 16 (the least `tl.dot` takes) and `cap`, at least `size` where it can be."""
    return max(16, min(cap, 1 << max(0, size - 1).bit_length()))


class FusedStep:
    """Launches one training step's kernels for `epoch` (a `graphed.DeviceEpoch`): its data, permutation,
    dropout flags, loss slots and divergence flag, and its model's parameters and Adam state, all updated in
    place. `launch(step, n, advance)` runs the step whose index sits in the one-entry tensor `step`, on n rows."""

    def __init__(self, epoch: Any, threshold: float) -> None:
        from mlplab.mnist import fused_kernels  # imports triton

        self.k = fused_kernels
        self.epoch = epoch
        layers = epoch.engine.layers
        optimizer = epoch.optimizer
        self.W = [layer.weight.data for layer in layers]
        self.b = [layer.bias.data for layer in layers]
        states = [optimizer.state[p] for layer in layers for p in (layer.weight, layer.bias)]
        self.m = [s["exp_avg"] for s in states]
        self.v = [s["exp_avg_sq"] for s in states]
        self.widths = [layer.out_features for layer in layers]
        self.ins = [layer.in_features for layer in layers]
        self.offsets = [sum(self.widths[:j]) for j in range(len(self.widths))]  # of each hidden layer's flags
        self.s = 1.0 / (1.0 - epoch.p)
        dev, B = epoch.X.device, epoch.B
        self.x = torch.empty(B, self.ins[0], device=dev)  # the gathered rows, for the first layer's weight gradient
        self.act = [torch.empty(B, w, device=dev) for w in self.widths[:-1]]  # A'_k = relu(Z_k) ⊙ m_k
        self.dz = [torch.empty(B, w, device=dev) for w in self.widths]
        self.skip = torch.zeros((), device=dev)  # 1: this step's Adam update is skipped (an earlier divergence)
        self.scalars = torch.zeros(2, device=dev)  # lr / (1 - β1^t), sqrt(1 - β2^t) of this step
        t = float(epoch.step_all[0])  # Adam's step so far (all counters are equal in a run)
        self.powers = torch.tensor([epoch.beta1 ** t, epoch.beta2 ** t, epoch.beta1, epoch.beta2, epoch.lr],
                                   dtype=torch.float64, device=dev)
        self.tail_index = torch.full((1,), epoch.full, dtype=torch.int64, device=dev)
        self.threshold = threshold  # a loss above it (or NaN) is divergent

    def _alpha(self, k: int) -> float:
        """The scale of layer k's products: s for a layer reading dropped-out activations, 1 for the first."""
        return self.s if k > 0 else 1.0

    def launch(self, step: torch.Tensor, n: int, advance: bool) -> None:
        e, k = self.epoch, self.k
        masks = e.masks if e.p > 0 else self.x
        L = len(self.W)
        src = e.X
        BM = _block(n, 64)  # rows per program (the loss kernel takes 32: at 64 ptxas spills registers for sm_90)
        for j in range(L - 1):
            K, N = self.ins[j], self.widths[j]
            BN, BK = _block(N, 32), _block(K, 64)
            k.forward_kernel[(math.ceil(n / BM), math.ceil(N / BN))](
                src, e.perm, step, self.x, self.W[j], self.b[j], self.act[j], masks,
                n, e.B, K, N, n * self.offsets[j], e.H, self._alpha(j),
                GATHER=j == 0, DROPOUT=e.p > 0, BM=BM, BN=BN, BK=BK)
            src = self.act[j]
        C, K = self.widths[-1], self.widths[-2]
        k.loss_kernel[(1,)](
            self.act[-1], self.W[-1], self.b[-1], self.dz[-1], e.y, e.perm, step, e.losses, e.dead, self.skip,
            e.step_all, self.powers, self.scalars, n, e.B, K, C, e.step_all.numel(), self._alpha(L - 1), 1.0 / n,
            self.threshold, SOFTMAX_OUT=bool(e.model.softmax_output), ADVANCE=advance,
            BM=_block(n, 32), BC=_block(C, 1 << 30), BK=_block(K, 64), BT=_block(e.step_all.numel(), 1 << 30))
        for j in range(L - 1, -1, -1):
            O, I = self.widths[j], self.ins[j]
            if j > 0:  # needs W_j before its update
                BN, BK = _block(I, 32), _block(O, 32)
                k.backward_kernel[(math.ceil(n / BM), math.ceil(I / BN))](
                    self.dz[j], self.W[j], self.act[j - 1], self.dz[j - 1], n, O, I, self._alpha(j),
                    BM=BM, BN=BN, BK=BK)
            BO, BI = _block(O, 32), _block(I, 64)
            k.adam_kernel[(math.ceil(O / BO), math.ceil(I / BI))](
                self.dz[j], self.x if j == 0 else self.act[j - 1], self.W[j], self.b[j],
                self.m[2 * j], self.v[2 * j], self.m[2 * j + 1], self.v[2 * j + 1], self.skip, self.scalars,
                n, O, I, self._alpha(j), e.beta1, e.beta2, e.eps, e.weight_decay,
                DECAY=e.weight_decay != 0, BO=BO, BI=BI, BR=BM)
