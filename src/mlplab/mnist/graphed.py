"""A training epoch that never waits for the host: every step indexed by a counter in device memory, so a GPU
can replay one captured step (a CUDA graph) a thousand times without a Python call per kernel.

On a GPU, the eager trainer is bound by launches: a step of the default MLP is about 40 small kernels, each
queued by Python (about 0.64 ms per step on an H200, whose arithmetic would take microseconds). Here, for a
full batch b of the epoch, everything the step needs is found on the device from b alone:

    rows    = perm[b·B : (b+1)·B]                        (the epoch's seeded permutation, drawn once per epoch)
    X, y    = X_all[rows], y_all[rows]                    (gathered into fixed buffers)
    M_k     = masks[b·B·H + B·o_k : ...]  (B, n_k)        (the epoch's dropout flags, hashed once per epoch;
                                                           H = Σ n_k, o_k = n_1 + ... + n_{k-1})
    loss_b  → losses[b];   forward, backward (`backprop.ManualBackprop`, fixed buffers), fused Adam

and b += 1 on the device. The flags are the same counter-hash stream as `dropout.DropoutStream` (entry
counter = b·B·H + B·o_k + i), so the masks, the permutation and therefore every number equal the eager
trainer's. The divergence rule runs on the device too: `dead` turns 1 after the first loss that is NaN or over
the threshold, and from the next step on Adam skips its update (the fused kernel's `found_inf` flag) and the
step counters stop; the host reads the losses once per epoch, finds the first bad batch, and reports exactly
what the eager trainer reports. (The eager trainer stops drawing at that batch; here the epoch's remaining
steps still run, without updating anything. A diverged run ends, so nothing downstream sees the difference.)

On CUDA (`capture=True`) the full-batch step and the last, smaller step are each captured once as a CUDA
graph (after two warm-up steps run with `dead = 1`, which change nothing) and replayed. Everywhere else the
same step functions run eagerly, which is how the CPU tests check this module against the eager trainer.
With `fused=True` (on CUDA: `MLPLAB_TRITON=1`) a step is the few Triton kernels of `fused_step.FusedStep`
instead of torch's kernels, with the same counters, flags and bookkeeping.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from typing import Any

import torch

from mlplab.mnist import fused_step
from mlplab.mnist.adam import plain_adam, shared_step_counter
from mlplab.mnist.backprop import ManualBackprop
from mlplab.mnist.dropout import DropoutStream, keep_flags_torch

DIVERGENCE_THRESHOLD = 1e3  # the assignment's "loss becomes NaN or exceeds a large threshold such as 10^3"
_HASH_CHUNK = 1 << 23  # dropout flags hashed per torch call (int64 temporaries of 64 MB)
_CAPTURE_LOCK = threading.Lock()  # one capture at a time in a process (several runs may train in threads)


_ADAM_PIECE = 16384


def _pieces(tensors: list[Any]) -> list[torch.Tensor]:
    """Each tensor's entries as consecutive views of at most _ADAM_PIECE entries."""
    return [piece for t in tensors for piece in t.detach().view(-1).split(_ADAM_PIECE)]


MIN_STEPS = 64  # batches per epoch below which the eager loop is kept (see `applies`)


def batch_sizes(n: int, batch_size: int) -> torch.Tensor:
    """The rows of each batch of an epoch over n samples (float64: they weight the mean training loss).

    >>> batch_sizes(10, 4).tolist()
    [4.0, 4.0, 2.0]
    """
    return torch.tensor([min(batch_size, n - start) for start in range(0, n, batch_size)], dtype=torch.float64)


def first_divergent(losses: torch.Tensor) -> int | None:
    """Index of the first loss that is NaN or over DIVERGENCE_THRESHOLD (NaN fails every comparison), or None."""
    bad = torch.nonzero(~(losses <= DIVERGENCE_THRESHOLD))
    return int(bad[0, 0]) if len(bad) else None


def epoch_loss(losses: torch.Tensor, sizes: torch.Tensor) -> tuple[float, int | None]:
    """(mean of the batch losses up to and with the first divergent one, weighted by batch size; that batch's
    index, or None; see `first_divergent`).

    >>> epoch_loss(torch.tensor([1.0, 3.0, 2e3], dtype=torch.float64), batch_sizes(10, 4))
    (401.6, 2)
    >>> epoch_loss(torch.tensor([1.0, 3.0], dtype=torch.float64), batch_sizes(8, 4))
    (2.0, None)
    """
    first = first_divergent(losses)
    last = len(losses) if first is None else first + 1
    return float(losses[:last] @ sizes[:last] / sizes[:last].sum()), first


def show_progress(bar: Any, steps: int, batch: int, num_batches: int, loss: float, note: str) -> None:
    """Advance a progress bar by `steps` batches and show "batch i/n loss x" and `note`; nothing without a bar."""
    if bar is not None:
        bar.update(steps)
        bar.set_postfix_str(f"batch {batch}/{num_batches} loss {loss:.4f}{note}", refresh=False)


def applies(model: Any, optimizer: torch.optim.Optimizer, device: torch.device, engine: str,
            steps_per_epoch: int) -> bool:
    """Whether a run can use this epoch: the hand-written engine, Adam as torch's fused kernel, on CUDA (the
    device-side logic also runs on a CPU, but there the compiled small-batch step and the eager loop are faster),
    and at least MIN_STEPS batches per epoch. With few, large batches a step is not bound by launches, and
    hashing a whole epoch's dropout flags up front (about 15 ms for MNIST on an H200) outweighs what the graph
    saves: at batch 6400 (10 steps) the eager loop trained 5.6 M samples/s (an H200, 2026-11-27), this epoch
    2.7 M (another H200, 2026-12-04; docs/mnist-training.md).
    `MLPLAB_CUDA_GRAPHS=0` turns it off."""
    if (os.environ.get("MLPLAB_CUDA_GRAPHS", "1") == "0" or device.type != "cuda" or engine != "manual"
            or steps_per_epoch < MIN_STEPS):
        return False
    return plain_adam(optimizer) and bool(optimizer.param_groups[0].get("fused")) and hasattr(torch, "_fused_adam_")


def init_adam_state(optimizer: torch.optim.Optimizer) -> None:
    """Create Adam's state as its first `step()` would (fused: a float32 step counter on the parameter's device),
    so that a graph can be captured before any update has happened. State already there is left alone."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state[p]
            if "exp_avg" not in state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)


class DeviceEpoch:
    """`epoch.EpochRunner`'s interface (`run`, `num_batches`, `kernel`) for the device-counter step.

    `capture=None` captures CUDA graphs on CUDA and runs eagerly elsewhere. The model and the optimizer's state
    are updated in place (a graph holds their addresses): load checkpoints before building this object.
    """

    def __init__(self, model: Any, optimizer: torch.optim.Optimizer, X: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator, batch_size: int, dropout: DropoutStream | None = None,
                 capture: bool | None = None, fused: bool | None = None) -> None:
        self.model, self.optimizer, self.X, self.y, self.generator = model, optimizer, X, y, generator
        dev = X.device
        self.n = n = len(y)
        self.B = B = min(batch_size, n)
        self.full = n // B  # full batches; a last batch of n - full·B rows follows when that is not zero
        self.tail = n - self.full * B
        self.num_batches = math.ceil(n / B)
        self.sizes = batch_sizes(n, B)
        self.p = float(model.dropout_rate)
        self.dropout = dropout if dropout is not None else DropoutStream(generator, self.p)
        self.engine = ManualBackprop(model, B, generator, self.dropout)
        self._bind_adam(optimizer)
        widths = [layer.out_features for layer in self.engine.layers[:-1]]  # hidden layers
        self.H = sum(widths)
        offsets = [sum(widths[:k]) for k in range(len(widths))]
        dtype = self.engine.layers[0].weight.dtype
        self.perm = torch.empty(n, dtype=torch.int64, device=dev)
        self.perm2d = self.perm[: self.full * B].view(self.full, B)
        self.b = torch.zeros(1, dtype=torch.int64, device=dev)  # the step counter the full-batch step reads
        self.losses = torch.zeros(self.num_batches, dtype=dtype, device=dev)
        self.dead = torch.zeros((), dtype=torch.float32, device=dev)  # 1 after the first divergent loss
        self.alive = torch.ones((), dtype=torch.float32, device=dev)
        self.threshold = torch.tensor(DIVERGENCE_THRESHOLD, dtype=dtype, device=dev)
        self.one = torch.ones((), dtype=torch.float32, device=dev)
        self._mask_buffers(widths, offsets, dtype, dev)
        self.capture = dev.type == "cuda" if capture is None else capture
        self.graphs: dict[str, torch.cuda.CUDAGraph] = {}
        if fused is None:
            fused = fused_step.wanted(dev) and fused_step.supports(model)
        elif fused and not fused_step.supports(model):
            raise ValueError("the fused step needs a float32 MLP with at least one hidden layer")
        self.fused = fused_step.FusedStep(self, DIVERGENCE_THRESHOLD) if fused else None
        self.kernel = ("triton-" if fused else "") + ("cuda-graph" if self.capture else "device-loop")

    def _bind_adam(self, optimizer: torch.optim.Optimizer) -> None:
        """Adam's state (created now if absent), its step counters as one tensor, and its tensors in pieces."""
        init_adam_state(optimizer)
        group = optimizer.param_groups[0]
        params = list(group["params"])
        states = [optimizer.state[p] for p in params]
        self.step_all = shared_step_counter(optimizer, params)
        # The fused kernel gives each block one chunk of 65,536 entries of one tensor, so the default model's
        # eight tensors keep a dozen of an H200's 132 multiprocessors busy (75 us a step, half of a batch-6
        # step). Handed as pieces of _ADAM_PIECE entries (views; the same arithmetic per entry, so the same
        # bits), it spreads over about forty blocks.
        self.adam_params, self.adam_grads, self.adam_avgs, self.adam_avg_sqs = (
            _pieces(ts) for ts in (params, [p.grad for p in params], [s["exp_avg"] for s in states],
                                   [s["exp_avg_sq"] for s in states]))
        self.adam_steps = [s["step"] for p, s in zip(params, states) for _ in range(math.ceil(p.numel() / _ADAM_PIECE))]
        self.beta1, self.beta2 = group["betas"]
        self.lr, self.eps, self.weight_decay = group["lr"], group["eps"], group["weight_decay"]

    def _mask_buffers(self, widths: list[int], offsets: list[int], dtype: torch.dtype, dev: torch.device) -> None:
        """The epoch's dropout flags (`masks`, in stream order) and the views each step reads them through."""
        B = self.B
        self.full_masks: list[torch.Tensor] | None = None
        self.tail_masks: list[torch.Tensor] | None = None
        if self.p > 0:
            self.masks = torch.empty(self.n * self.H, dtype=dtype, device=dev)  # the epoch's 0/1 flags, stream order
            self.mask2d = self.masks[: self.full * B * self.H].view(self.full, B * self.H)
            self.mask_row = torch.empty(1, B * self.H, dtype=dtype, device=dev)
            row = self.mask_row.view(-1)
            self.full_masks = [row[B * o: B * (o + w)].view(B, w) for o, w in zip(offsets, widths)]
            rest = self.masks[self.full * B * self.H:]
            self.tail_masks = [rest[self.tail * o: self.tail * (o + w)].view(self.tail, w)
                               for o, w in zip(offsets, widths)]

    # -- the two steps, as they are captured ---------------------------------------------------------------
    def _adam_and_bookkeeping(self, loss: torch.Tensor, slot: torch.Tensor | None, index: int) -> None:
        self.step_all.add_(self.alive)  # no step after a divergent one: counters stand still
        torch._fused_adam_(self.adam_params, self.adam_grads, self.adam_avgs, self.adam_avg_sqs, [], self.adam_steps,
                           amsgrad=False, lr=self.lr, beta1=self.beta1, beta2=self.beta2,
                           weight_decay=self.weight_decay, eps=self.eps, maximize=False, grad_scale=None,
                           found_inf=self.dead)  # dead = 1: the kernel leaves every tensor as it is
        if slot is not None:
            self.losses.index_copy_(0, slot, loss.view(1))
        else:
            self.losses[index].copy_(loss)
        # NaN fails `<=`, so it counts as divergent, as in the eager check
        torch.where(loss <= self.threshold, self.dead, self.one, out=self.dead)
        torch.sub(self.one, self.dead, out=self.alive)

    def _full_step(self) -> None:
        if self.fused is not None:
            self.fused.launch(self.b, self.B, advance=True)
            return
        rows = torch.index_select(self.perm2d, 0, self.b).view(-1)  # (B,) sample indices of batch b
        X, y = self.engine.inputs(self.B)
        torch.index_select(self.X, 0, rows, out=X)
        torch.index_select(self.y, 0, rows, out=y)
        if self.p > 0:
            torch.index_select(self.mask2d, 0, self.b, out=self.mask_row)
        loss = self.engine.step(X, y, self.full_masks)
        self._adam_and_bookkeeping(loss, self.b, 0)
        self.b.add_(1)

    def _tail_step(self) -> None:
        if self.fused is not None:
            self.fused.launch(self.fused.tail_index, self.tail, advance=False)
            return
        X, y = self.engine.inputs(self.tail)
        rows = self.perm[self.full * self.B:]
        torch.index_select(self.X, 0, rows, out=X)
        torch.index_select(self.y, 0, rows, out=y)
        loss = self.engine.step(X, y, self.tail_masks)
        self._adam_and_bookkeeping(loss, None, self.full)

    # -- the epoch ----------------------------------------------------------------------------------------
    def _begin(self) -> None:
        """Draw the epoch's permutation, then its dropout key (the eager trainer's order), hash its flags."""
        self.perm.copy_(torch.randperm(self.n, generator=self.generator, device=self.X.device))
        self.dropout.begin_epoch()  # drawn even without dropout, as the eager trainer does
        if self.p > 0:
            assert self.dropout.key is not None
            for start in range(0, self.masks.numel(), _HASH_CHUNK):
                count = min(_HASH_CHUNK, self.masks.numel() - start)
                flags = keep_flags_torch(self.dropout.key, start, count, self.p, self.X.device)
                self.masks[start:start + count].copy_(flags)
            self.dropout.counter = self.masks.numel()
        self.b.zero_()
        self.dead.zero_()
        self.alive.fill_(1.0)

    def _capture(self) -> None:
        """Warm up (with dead = 1: Adam and the counters untouched) on a side stream, then capture each step."""
        self.dead.fill_(1.0)
        self.alive.zero_()
        names = ["full"] * (self.full > 0) + ["tail"] * (self.tail > 0)
        fns = {"full": self._full_step, "tail": self._tail_step}
        side = torch.cuda.Stream(device=self.X.device)
        side.wait_stream(torch.cuda.current_stream(self.X.device))
        with _CAPTURE_LOCK:
            with torch.cuda.stream(side):
                for name in names:
                    for _ in range(2):
                        fns[name]()
            torch.cuda.current_stream(self.X.device).wait_stream(side)
            for name in names:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                    fns[name]()
                self.graphs[name] = graph
        self.b.zero_()
        self.dead.zero_()
        self.alive.fill_(1.0)

    def _capture_or_fall_back(self) -> None:
        """Capture the graphs. If the fused kernels fail (a Triton that cannot compile them: the warm-up, with
        dead = 1, changed nothing), capture torch's step instead; if capturing fails (a torch or driver that
        cannot), run the same steps eagerly. Either way with a warning."""
        try:
            self._capture()
            return
        except Exception as exc:
            if self.fused is None and not isinstance(exc, RuntimeError):
                raise
            failed = exc
        if self.fused is not None:
            warnings.warn(f"the fused Triton step failed ({type(failed).__name__}: {failed}); training with torch's "
                          "kernels", stacklevel=3)
            self.fused, self.graphs = None, {}
            self.kernel = self.kernel.removeprefix("triton-")
            self._capture_or_fall_back()
            return
        warnings.warn(f"CUDA graph capture failed ({failed}); training with eager device steps", stacklevel=3)
        self.capture, self.graphs = False, {}
        self.kernel = self.kernel.replace("cuda-graph", "device-loop")

    def _replay(self, name: str) -> None:
        if self.capture and not self.graphs:
            self._capture_or_fall_back()
        if self.capture:
            self.graphs[name].replay()
        else:
            (self._full_step if name == "full" else self._tail_step)()

    def run(self, epoch: int, bar: Any = None, max_batches: int | None = None,
            note: str = "") -> tuple[float, dict[str, Any] | None]:
        """Train one epoch (or its first `max_batches`); return (mean training loss, divergence record or None),
        reading the device once, at the end."""
        self.model.train()
        self._begin()
        steps = self.num_batches if max_batches is None else min(max_batches, self.num_batches)
        with torch.no_grad():
            for _ in range(min(steps, self.full)):
                self._replay("full")
            if steps > self.full:
                self._replay("tail")
        losses = self.losses[:steps].double().cpu()  # the epoch's one device→host read
        mean, bad = epoch_loss(losses, self.sizes)
        last = steps if bad is None else bad + 1
        show_progress(bar, last, last, self.num_batches, float(losses[last - 1]), note)
        return mean, None if bad is None else {"epoch": epoch, "batch": last, "loss": float(losses[last - 1])}
