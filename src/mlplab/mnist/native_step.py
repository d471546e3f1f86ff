"""A compiled training step for small batches: forward, backward and Adam in one C call, Adam fused into the
weight-gradient pass.

At batch 6 a training step of the default MLP is bound by memory traffic, not arithmetic: every step reads
all 567,434 weights in the forward pass, and the backward pass plus Adam read and write the weights, their
gradients and both Adam moments (some 20 MB). Torch runs that as ~40 separate kernels, each a full pass over
its operands, and Adam's kernel cannot see the gradient product that fills its input. Here one pass per layer
computes each weight's gradient from the batch (g = s·Σ_b dZ[b,i] A[b,j], n multiply-adds), propagates the
error to the layer below with the same, still old, weight (dA[b,j] += s·dZ[b,i] W[i,j]), and applies Adam to
the weight and its two moments while they are in registers: no gradient buffer, one read and one write of
W, m and v per step.

The mathematics is `ManualBackprop`'s (see mlplab.mnist.backprop: dropout scale s folded into the products,
the 0/1 masks drawn by `mlplab.mnist.dropout` from the run's generator, as for the torch engine) and
torch's Adam (`torch._fused_adam_`: m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g², w ← w − lr/(1−β1ᵗ) ·
m / (√v/√(1−β2ᵗ) + ε), weight decay added to g), in float32 with another summation order: results agree
with the torch engine to rounding, not bit for bit (tests/test_mnist_native.py). The optimizer's own state
tensors (exp_avg, exp_avg_sq, step) are updated in place, so checkpoints and resume are unchanged.

Used by the trainer for batches of at most `MAX_ROWS` rows on a CPU with a C compiler (see `applies`);
MLPLAB_NATIVE=0 switches it off.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from typing import Any

import torch

from mlplab.mnist.adam import plain_adam, shared_step_counter
from mlplab.mnist.dropout import DropoutStream
from mlplab.mnist.model import MLP
from mlplab.native.loader import build

MAX_ROWS = 8  # the kernel is unrolled for 1..8 rows (mnist_step.c instantiates mnist_step_rows.h for each)


def workspace_floats(widths: list[int], n: int) -> int:
    """Floats of scratch `mlp_train_step` needs for n rows: the input, every layer's output, dZ and dA."""
    return n * sum(widths) + 2 * n * max(widths[:-1])


@lru_cache(maxsize=1)
def load() -> Any:
    """The compiled step (mlplab/native/csrc/mnist_step.c); None where no compiler, or MLPLAB_NATIVE=0."""
    lib = build("mnist_step.c", "mlp_train_step")
    if lib is None:
        return None
    fn = lib.mlp_train_step
    p, f, d = ctypes.c_void_p, ctypes.c_float, ctypes.c_double
    fn.argtypes = [ctypes.c_int, p, p, p, p, p, p, ctypes.c_int, p, f, d, d, d, d, d, ctypes.c_int, p, p]
    fn.restype = None
    return fn


def applies(model: MLP, optimizer: torch.optim.Optimizer, batch_size: int) -> bool:
    """Whether the compiled step can train this model: CPU, float32, logits output, every layer's input width
    a multiple of 8, plain Adam (one group; no amsgrad/maximize/decoupled decay), at most MAX_ROWS rows."""
    layers = model.linears()
    first = layers[0].weight
    if (batch_size > MAX_ROWS or model.softmax_output or first.device.type != "cpu" or first.dtype != torch.float32
            or any(layer.in_features % 8 for layer in layers) or len(layers) > 16):
        return False
    return plain_adam(optimizer) and load() is not None


class NativeStep:
    """Binds the compiled step to a model, its Adam optimizer (state created here if still empty, exactly as
    torch's first `step()` would) and the training set; `step(perm, start, n, slot)` trains on the rows
    perm[start:start+n] and writes the mean loss to `losses[slot]`."""

    def __init__(self, model: MLP, optimizer: torch.optim.Optimizer, batch_size: int,
                 generator: torch.Generator, X_all: torch.Tensor, y_all: torch.Tensor, flush: bool = True,
                 dropout: DropoutStream | None = None) -> None:
        fn = load()
        assert fn is not None and applies(model, optimizer, batch_size)
        self._fn = fn
        self.p = float(model.dropout_rate)
        layers = model.linears()
        widths = [layers[0].in_features] + [layer.out_features for layer in layers]
        group = optimizer.param_groups[0]
        params = [q for layer in layers for q in (layer.weight, layer.bias)]
        for param in params:
            state = optimizer.state[param]
            if "exp_avg" not in state:  # torch.optim.Adam's own lazy initialisation
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.step_all = shared_step_counter(optimizer, params)  # the C code increments them all
        ptrs: list[int] = []
        for layer in layers:
            w, b = optimizer.state[layer.weight], optimizer.state[layer.bias]
            for t in (layer.weight, layer.bias, w["exp_avg"], w["exp_avg_sq"], b["exp_avg"], b["exp_avg_sq"]):
                assert t.is_contiguous() and t.dtype == torch.float32
                ptrs.append(t.data_ptr())
        self._keep = (params, [optimizer.state[q] for q in params])  # keeps every pointed-to tensor alive
        self._P = (ctypes.c_void_p * len(ptrs))(*ptrs)
        self._widths = (ctypes.c_int * len(widths))(*widths)
        self.L = len(layers)
        # the 0/1 keep flags of dropout; without dropout every unit is kept, once and for all
        self.masks = [torch.empty(batch_size, w) if self.p > 0 else torch.ones(batch_size, w) for w in widths[1:-1]]
        self._K = (ctypes.c_void_p * max(1, len(self.masks)))(*[m.data_ptr() for m in self.masks] or [0])
        self.dropout = dropout if dropout is not None else DropoutStream(generator, self.p)
        self._work = torch.empty(workspace_floats(widths, batch_size))
        self.X_all, self.y_all = X_all.contiguous(), y_all.contiguous()
        assert self.X_all.dtype == torch.float32 and self.y_all.dtype == torch.int64
        self._adam = (float(group["lr"]), float(group["betas"][0]), float(group["betas"][1]), float(group["eps"]),
                      float(group["weight_decay"]))
        self._mask_views: dict[int, list[torch.Tensor]] = {}
        self.flush = int(flush)

    @torch.no_grad()
    def step(self, perm: torch.Tensor, start: int, n: int, losses: torch.Tensor, slot: int) -> None:
        views = self._mask_views.get(n)
        if views is None:
            views = self._mask_views[n] = [m.view(-1)[: n * m.shape[1]] for m in self.masks]
        if self.p > 0:
            for mask in views:
                self.dropout.fill(mask)
        self._fn(self.L, self._widths, self._P, self.step_all.data_ptr(), self.X_all.data_ptr(),
                 self.y_all.data_ptr(), perm.data_ptr() + 8 * start, n, self._K, self.p, *self._adam, self.flush,
                 self._work.data_ptr(), losses.data_ptr() + 4 * slot)
