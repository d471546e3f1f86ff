"""The step engines of the MNIST trainer, one interface chosen once per run: an object whose `run(epoch)`
trains one pass over the training set and returns (mean training loss, divergence record or None).

- `EpochRunner` (CPU, and any device without CUDA graphs): batches sliced from a seeded permutation; the step
  is the compiled small-batch C step (`native_step`), the hand-written backward (`backprop`) or autograd, with
  Adam as torch's fused kernel called directly (`FusedAdamStep`); the batch losses stay on the device and are
  read back every `_CHECK_EVERY` batches (the divergence check still names the exact batch).
- `graphed.DeviceEpoch` (CUDA): every step indexed by a counter in device memory and replayed as a CUDA graph.

`make_epoch_runner` picks one; `train.train_run` and the benchmarks call it.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from mlplab.device import flush_denormals
from mlplab.mnist.adam import plain_adam, shared_step_counter
from mlplab.mnist.backprop import ManualBackprop
from mlplab.mnist.config import Config
from mlplab.mnist.dropout import DropoutStream
from mlplab.mnist.graphed import DeviceEpoch, batch_sizes, epoch_loss, first_divergent, show_progress
from mlplab.mnist.graphed import applies as graphed_applies
from mlplab.mnist.model import MLP
from mlplab.mnist.native_step import NativeStep
from mlplab.mnist.native_step import applies as native_applies

_CHECK_EVERY = 32  # batches between reading losses back from the device (divergence check, progress bar)


class EpochEngine(Protocol):
    """What the trainer needs of a step engine."""

    num_batches: int
    kernel: str  # "native", "torch", or DeviceEpoch's "[triton-]cuda-graph" / "[triton-]device-loop": in the summary

    def run(self, epoch: int, bar: Any = None, max_batches: int | None = None,
            note: str = "") -> tuple[float, dict[str, Any] | None]: ...


class FusedAdamStep:
    """`optimizer.step()` for fused Adam without the Python bookkeeping of `Optimizer.step` (about 0.7 ms per
    call on a CPU, a tenth of a batch-64 step): the same two kernels on the optimizer's own state tensors, so the
    state dict, checkpoints and results are exactly those of `optimizer.step()` (tests/test_mnist_train.py).
    Built after the first real step (Adam creates its state lazily); None where it does not apply."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        group = optimizer.param_groups[0]
        self.params = list(group["params"])
        states = [optimizer.state[p] for p in self.params]
        self.grads = [p.grad for p in self.params]
        self.exp_avgs = [s["exp_avg"] for s in states]
        self.exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        self.step_all = shared_step_counter(optimizer, self.params)
        self.steps = [optimizer.state[p]["step"] for p in self.params]
        self.beta1, self.beta2 = group["betas"]
        self.lr, self.eps, self.weight_decay = group["lr"], group["eps"], group["weight_decay"]

    @staticmethod
    def applies(optimizer: torch.optim.Optimizer) -> bool:
        if not plain_adam(optimizer) or not hasattr(torch, "_fused_adam_"):
            return False
        g = optimizer.param_groups[0]
        params = g["params"]
        return (bool(g.get("fused")) and not g.get("capturable") and len({(p.device, p.dtype) for p in params}) == 1
                and all(p.grad is not None and "exp_avg" in optimizer.state[p] for p in params))

    def __call__(self) -> None:
        self.step_all.add_(1)
        torch._fused_adam_(self.params, self.grads, self.exp_avgs, self.exp_avg_sqs, [], self.steps,
                           amsgrad=False, lr=self.lr, beta1=self.beta1, beta2=self.beta2,
                           weight_decay=self.weight_decay, eps=self.eps, maximize=False, grad_scale=None,
                           found_inf=None)


class EpochRunner:
    """One pass over the training set; the losses stay on the device until a check (also used by the benchmark)."""

    def __init__(self, config: Config, model: MLP, optimizer: torch.optim.Optimizer, X: torch.Tensor,
                 y: torch.Tensor, generator: torch.Generator, allow_native: bool = True) -> None:
        self.model, self.optimizer, self.X, self.y, self.generator = model, optimizer, X, y, generator
        self.B = config.training.batch_size
        self.flush = config.training.flush_denormals and X.device.type == "cpu"
        self.n = len(y)
        self.num_batches = math.ceil(self.n / self.B)
        self.sizes = batch_sizes(self.n, self.B)
        self.dropout = DropoutStream(generator, model.dropout_rate)
        hand_written = config.training.engine == "manual"
        # small batches on a CPU: the compiled step (forward, backward and Adam in one call; see native_step)
        self.native = (NativeStep(model, optimizer, min(self.B, self.n), generator, X, y, self.flush, self.dropout)
                       if allow_native and hand_written and native_applies(model, optimizer, min(self.B, self.n))
                       else None)
        self.manual = (ManualBackprop(model, min(self.B, self.n), generator, self.dropout)
                       if hand_written and self.native is None else None)
        self._fast_adam: FusedAdamStep | None = None
        self.kernel = "native" if self.native is not None else "torch"

    def _step(self, index: torch.Tensor) -> torch.Tensor:
        if self.manual is not None:
            loss = self.manual.step_indices(self.X, self.y, index)
        else:
            loss = F.cross_entropy(self.model(self.X[index]), self.y[index])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            loss = loss.detach()
        if self._fast_adam is not None:
            self._fast_adam()
        else:
            self.optimizer.step()
            # The manual engine's gradient buffers are fixed, so the fused kernel can be bound to them once.
            if self.manual is not None and FusedAdamStep.applies(self.optimizer):
                self._fast_adam = FusedAdamStep(self.optimizer)
        return loss

    def run(self, epoch: int, bar: Any = None, max_batches: int | None = None,
            note: str = "") -> tuple[float, dict[str, Any] | None]:
        """Train one epoch (or its first `max_batches`); return (mean training loss, divergence record or None).
        `note` (e.g. the last test loss) is shown after the current batch loss on the progress bar."""
        with flush_denormals(self.flush):
            return self._run(epoch, bar, max_batches, note)

    def _run(self, epoch: int, bar: Any, max_batches: int | None, note: str) -> tuple[float, dict[str, Any] | None]:
        self.model.train()
        perm = torch.randperm(self.n, generator=self.generator, device=self.X.device)
        if self.manual is not None or self.native is not None:
            self.dropout.begin_epoch()
        losses: list[torch.Tensor] = []  # the torch engines' 0-dim losses; the native step writes into `written`
        written = torch.zeros(self.num_batches) if self.native is not None else None

        def read(lo: int, hi: int) -> torch.Tensor:  # batch losses lo..hi-1 as float64 on the host
            return (written[lo:hi] if written is not None else torch.stack(losses[lo:hi])).double().cpu()

        checked = 0
        num_batches = self.num_batches if max_batches is None else min(max_batches, self.num_batches)
        for b in range(num_batches):
            if self.native is not None and written is not None:
                self.native.step(perm, b * self.B, min(self.B, self.n - b * self.B), written, b)
            else:
                losses.append(self._step(perm[b * self.B:(b + 1) * self.B]))
            if b + 1 - checked >= _CHECK_EVERY or b == num_batches - 1:
                chunk = read(checked, b + 1)  # the one device→host read per chunk
                bad = first_divergent(chunk)
                if bad is not None:
                    i = checked + bad
                    mean = epoch_loss(read(0, i + 1), self.sizes)[0]
                    return mean, {"epoch": epoch, "batch": i + 1, "loss": float(chunk[bad])}
                show_progress(bar, b + 1 - checked, b + 1, self.num_batches, float(chunk[-1]), note)
                checked = b + 1
        return epoch_loss(read(0, num_batches), self.sizes)[0], None


def make_epoch_runner(config: Config, model: MLP, optimizer: torch.optim.Optimizer, X: torch.Tensor,
                      y: torch.Tensor, generator: torch.Generator,
                      allow_native: bool = True, fused: bool | None = None) -> EpochRunner | DeviceEpoch:
    """The step engine of a run, chosen once: on CUDA the device-counter epoch replayed as CUDA graphs
    (`mlplab.mnist.graphed`), elsewhere `EpochRunner` (the compiled small-batch step or torch kernels).
    `fused` chooses the device epoch's step (`graphed.DeviceEpoch`; None: as `MLPLAB_TRITON` says)."""
    if graphed_applies(model, optimizer, X.device, config.training.engine,
                       math.ceil(len(y) / config.training.batch_size)):
        return DeviceEpoch(model, optimizer, X, y, generator, config.training.batch_size, fused=fused)
    return EpochRunner(config, model, optimizer, X, y, generator, allow_native=allow_native)
