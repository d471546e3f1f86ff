"""The MNIST trainer: whole dataset resident as tensors, batches sliced from a seeded permutation.

`train_run` is a library function: plain arguments in, a summary dict out; files are written only through the
`RunStore` passed in (none: nothing is written). Per epoch it records the mean training loss (with dropout on,
weighted by batch size), the validation and test loss and accuracy, and the time; it checkpoints the model,
the optimizer, the random-generator states, the metrics and the early-stopping state, so `resume=True`
continues an interrupted run and ends with exactly the metrics of an uninterrupted one.

Speed (measured in benchmarks/bench_mnist_train.py): no per-sample Dataset or DataLoader, the data is
normalized once and moved to the device once, the hand-written backward of `mlplab.mnist.backprop` writes into
preallocated buffers, Adam is the fused kernel, the batch losses stay on the device and are read back only
every `_CHECK_EVERY` batches (the divergence check still names the exact batch), and evaluation runs under
`torch.inference_mode` in chunks of `test_batch_size`.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from mlplab.device import flush_denormals, get_device
from mlplab.errors import MlplabError
from mlplab.mnist.adam import plain_adam, shared_step_counter
from mlplab.mnist.backprop import ManualBackprop
from mlplab.mnist.best_epoch import analyse_run, selection_curve, stop_epoch
from mlplab.mnist.config import Config, config_to_dict
from mlplab.mnist.data import MnistSplit
from mlplab.mnist.dropout import DropoutStream
from mlplab.mnist.graphed import DIVERGENCE_THRESHOLD, DeviceEpoch
from mlplab.mnist.graphed import applies as graphed_applies
from mlplab.mnist.model import MLP, count_parameters
from mlplab.mnist.native_step import NativeStep
from mlplab.mnist.native_step import applies as native_applies
from mlplab.mnist.runstore import RunStore, json_safe
from mlplab.mnist.tracking import Tracker
from mlplab.seeding import seed_everything

_CHECK_EVERY = 32  # batches between reading losses back from the device (divergence check, progress bar)
_FORMAT = "mlplab-mnist-checkpoint-1"
_INIT_LOCK = threading.Lock()
STOP = threading.Event()  # set by a sweep's Ctrl-C: runs in threads stop at their next epoch, checkpoint kept
_RESUMABLE_CHANGES = {("training", "num_epochs"), ("training", "device")}


def build_model(config: Config) -> MLP:
    """The MLP described by `config.model` (initialised from the global torch RNG)."""
    m = config.model
    return MLP(m.input_size, m.hidden_sizes, m.num_classes, m.dropout_rate, m.softmax_output)


def make_optimizer(name: str, params: Any, lr: float) -> torch.optim.Optimizer:
    """Adam or plain SGD, as the fused kernel where this torch and device support it."""
    cls = torch.optim.Adam if name == "adam" else torch.optim.SGD
    try:
        return cls(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch or an unsupported device: one kernel per op
        return cls(params, lr=lr, foreach=True)


@torch.inference_mode()
def evaluate(model: MLP, X: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy of the model's outputs and accuracy, dropout off, in chunks of `batch_size`.

    >>> _ = torch.manual_seed(0)
    >>> loss, acc = evaluate(MLP(4, [3], 2, 0.5), torch.randn(10, 4), torch.zeros(10).long(), 4)
    >>> 0 <= acc <= 1 and loss > 0
    True
    """
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=X.device)
    correct = torch.zeros((), dtype=torch.int64, device=X.device)
    for start in range(0, len(y), batch_size):
        out = model(X[start:start + batch_size])
        total += F.cross_entropy(out, y[start:start + batch_size], reduction="sum").double()
        correct += (out.argmax(1) == y[start:start + batch_size]).sum()
    model.train(was_training)
    return total.item() / len(y), correct.item() / len(y)


def split_validation(train: MnistSplit, fraction: float, seed: int) -> tuple[MnistSplit, MnistSplit | None]:
    """Hold out round(fraction·N) training samples, chosen by a permutation seeded with `seed`."""
    if fraction == 0:
        return train, None
    n_val = round(len(train) * fraction)
    if n_val < 1 or n_val >= len(train):
        raise MlplabError(f"training.validation_split {fraction} leaves {n_val} of {len(train)} samples for "
                          "validation", hint="choose a fraction that keeps both parts non-empty")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    val, rest = perm[:n_val].to(train.labels.device), perm[n_val:].to(train.labels.device)
    return (MnistSplit(train.images[rest], train.labels[rest]), MnistSplit(train.images[val], train.labels[val]))


def _check_data(config: Config, *splits: MnistSplit) -> None:
    for split in splits:
        if split.images.shape[1] != config.model.input_size:
            raise MlplabError(f"images have {split.images.shape[1]} features but model.input_size is "
                              f"{config.model.input_size}", hint="MNIST images flatten to 28·28 = 784")
        if len(split) and (int(split.labels.min()) < 0 or int(split.labels.max()) >= config.model.num_classes):
            raise MlplabError(f"labels must lie in 0..{config.model.num_classes - 1}",
                              hint="check model.num_classes")


def _config_changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return [f"{section}.{key}: {saved.get(section, {}).get(key)!r} → {value!r}"
            for section, values in now.items() for key, value in values.items()
            if (section, key) not in _RESUMABLE_CHANGES and saved.get(section, {}).get(key) != value]


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
        self.sizes = torch.tensor([min(self.B, self.n - b * self.B) for b in range(self.num_batches)],
                                  dtype=torch.float64)
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
                bad = torch.nonzero(~(chunk <= DIVERGENCE_THRESHOLD))  # NaN fails every comparison
                if len(bad):
                    i = checked + int(bad[0, 0])
                    mean = float(read(0, i + 1) @ self.sizes[: i + 1] / self.sizes[: i + 1].sum())
                    return mean, {"epoch": epoch, "batch": i + 1, "loss": float(chunk[i - checked])}
                if bar is not None:
                    bar.update(b + 1 - checked)
                    bar.set_postfix_str(f"batch {b + 1}/{self.num_batches} loss {float(chunk[-1]):.4f}{note}",
                                        refresh=False)
                checked = b + 1
        mean = float(read(0, num_batches) @ self.sizes[:num_batches] / self.sizes[:num_batches].sum())
        return mean, None


def make_epoch_runner(config: Config, model: MLP, optimizer: torch.optim.Optimizer, X: torch.Tensor,
                      y: torch.Tensor, generator: torch.Generator,
                      allow_native: bool = True) -> EpochRunner | DeviceEpoch:
    """The step engine of a run, chosen once: on CUDA the device-counter epoch replayed as CUDA graphs
    (`mlplab.mnist.graphed`), elsewhere `EpochRunner` (the compiled small-batch step or torch kernels)."""
    if graphed_applies(model, optimizer, X.device, config.training.engine,
                       math.ceil(len(y) / config.training.batch_size)):
        return DeviceEpoch(model, optimizer, X, y, generator, config.training.batch_size)
    return EpochRunner(config, model, optimizer, X, y, generator, allow_native=allow_native)


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    state: dict[str, Any] = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(generator: torch.Generator, state: dict[str, Any]) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train_run(config: Config, train: MnistSplit, test: MnistSplit, store: RunStore | None = None, *,
              resume: bool = False, progress: bool = True, trackers: Sequence[Tracker] = (),
              device: str | torch.device | None = None, threads: int | None = None,
              run_name: str = "mnist") -> dict[str, Any]:
    """Train `config` on `train`, evaluate on `test` every epoch; return the run's summary (see docs).

    `store` receives config.json, metrics.csv, checkpoint.pt (every epoch), summary.json and the figure.
    `resume=True` continues from the store's checkpoint (same config, except num_epochs and device).
    `threads` sets torch's CPU thread count for this process. The count a run starts with is recorded in its
    checkpoint and summary, and a resumed run goes on with the recorded count whatever `threads` says: CPU
    matrix products split their sums by thread, so the count is part of what makes a run's numbers repeat.
    Trackers get start / log_epoch / finish. The store's folder is locked for the run's life (one writer).
    """
    _check_data(config, train, test)  # before the lock creates the folder: bad data leaves nothing behind
    with store.lock() if store is not None else contextlib.nullcontext():
        return _train_run(config, train, test, store, resume=resume, progress=progress, trackers=trackers,
                          device=device, threads=threads, run_name=run_name)


def _train_run(config: Config, train: MnistSplit, test: MnistSplit, store: RunStore | None, *, resume: bool,
               progress: bool, trackers: Sequence[Tracker], device: str | torch.device | None, threads: int | None,
               run_name: str) -> dict[str, Any]:
    t = config.training
    started = time.perf_counter()
    if threads is not None:
        torch.set_num_threads(threads)
    dev = get_device(device if device is not None else t.device)
    cfg_dict = config_to_dict(config)
    fit, val = split_validation(train, t.validation_split, t.seed)
    with _INIT_LOCK:  # runs trained in threads (a sweep on one GPU) must not interleave their global-RNG draws
        seed_everything(t.seed)
        model = build_model(config).to(dev)
    optimizer = make_optimizer(t.optimizer, model.parameters(), t.learning_rate)
    generator = torch.Generator(device=dev)
    generator.manual_seed(t.seed)
    X, y = fit.images.to(dev), fit.labels.to(dev)
    X_val, y_val = (val.images.to(dev), val.labels.to(dev)) if val is not None else (None, None)
    X_test, y_test = test.images.to(dev), test.labels.to(dev)

    rows: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": None, "loss": math.inf, "model": None}
    status: dict[str, Any] = {"divergence": None, "stopped_early": False, "elapsed_s": 0.0}
    if store is not None and store.has_checkpoint() and not resume:
        raise MlplabError(f"{store.run_dir} already holds a run",
                          hint="pass --resume to continue it, or choose another --out folder")
    data_id = {"train": train.fingerprint(), "test": test.fingerprint()}
    if resume and store is not None and store.has_checkpoint():
        state = store.load_checkpoint()
        changes = _config_changes(state["config"], cfg_dict)
        if changes:
            raise MlplabError(f"the checkpoint in {store.run_dir} was made with another config ({'; '.join(changes)})",
                              hint="resume with the same settings, or choose another --out folder")
        if state.get("data", data_id) != data_id:
            changed = " and ".join(k for k in ("train", "test") if state["data"].get(k) != data_id[k])
            raise MlplabError(f"the {changed} data differ from the data the run in {store.run_dir} started with",
                              hint="resume with the same data (--data-dir), or choose another --out folder")
        if state.get("threads") and dev.type == "cpu":
            torch.set_num_threads(int(state["threads"]))  # the count the run started with (see the docstring)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(generator, state["rng"])
        rows, best, status = state["metrics"], state["best"], state["status"]

    def checkpoint() -> dict[str, Any]:
        return {"format": _FORMAT, "config": cfg_dict, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "rng": _rng_state(generator), "metrics": rows, "best": best,
                "status": status, "threads": torch.get_num_threads(), "data": data_id}

    if store is not None:
        store.prepare()
        store.save_config(cfg_dict)
        if not store.has_checkpoint():  # epoch 0: a run killed in its first epoch resumes with its thread count
            store.save_checkpoint(checkpoint())
        elif rows:  # resumed: metrics.csv is rebuilt from the checkpoint (it may have been damaged)
            store.save_metrics(rows)
    for tracker in trackers:
        tracker.start(run_name, cfg_dict, store.run_dir if store is not None else None)  # type: ignore[arg-type]

    epoch_runner = make_epoch_runner(config, model, optimizer, X, y, generator)
    stopping = config.stopping
    done = status["divergence"] is not None or status["stopped_early"]
    remaining = 0 if done else max(0, t.num_epochs - len(rows))
    bar = tqdm(total=remaining * epoch_runner.num_batches, disable=(not progress) or None, unit="batch",
               leave=False, dynamic_ncols=True)
    session_start = time.perf_counter()
    status["elapsed_s"] += session_start - started  # this session's setup (data to device, model, checkpoint)
    try:
        for epoch in range(len(rows) + 1, len(rows) + 1 + remaining):
            if STOP.is_set():
                raise KeyboardInterrupt
            bar.set_description(f"epoch {epoch}/{t.num_epochs}")
            tick = time.perf_counter()
            note = f" | last epoch: test loss {rows[-1]['test_loss']:.4f}" if rows else ""
            train_loss, divergence = epoch_runner.run(epoch, bar, note=note)
            row: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "val_loss": None, "val_accuracy": None}
            if X_val is not None and y_val is not None:
                row["val_loss"], row["val_accuracy"] = evaluate(model, X_val, y_val, t.test_batch_size)
            row["test_loss"], row["test_accuracy"] = evaluate(model, X_test, y_test, t.test_batch_size)
            row["epoch_time_s"] = time.perf_counter() - tick
            rows.append(row)
            selection = row["val_loss"] if X_val is not None else row["test_loss"]
            if stopping.enabled and math.isfinite(selection) and selection < best["loss"]:
                best = {"epoch": epoch, "loss": selection,
                        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
            status["divergence"] = divergence
            if stopping.enabled and divergence is None:
                status["stopped_early"] = stop_epoch(
                    selection_curve(rows)[1], [r["train_loss"] for r in rows], rule=stopping.rule,
                    window=stopping.window, patience=stopping.patience, gl_alpha=stopping.gl_alpha,
                    pq_alpha=stopping.pq_alpha, up_strips=stopping.up_strips,
                    strip_length=stopping.strip_length) is not None
            status["elapsed_s"] += time.perf_counter() - session_start
            session_start = time.perf_counter()
            if store is not None:
                store.save_checkpoint(checkpoint())
                store.save_metrics(rows)
            for tracker in trackers:
                tracker.log_epoch(epoch, {k: v for k, v in row.items() if k != "epoch" and v is not None})
            if divergence is not None or status["stopped_early"]:
                break
    finally:
        bar.close()
    status["elapsed_s"] += time.perf_counter() - session_start
    restored = None
    if status["stopped_early"] and best["model"] is not None:
        model.load_state_dict(best["model"])
        restored = best["epoch"]
    summary = summarize(config, rows, status, restored, count_parameters(model), str(dev))
    summary["kernel"] = epoch_runner.kernel  # "native": the compiled small-batch step; "torch": torch kernels
    summary["wall_time_s"] = status["elapsed_s"]
    summary["threads"] = torch.get_num_threads()  # CPU threads the run trained with (kept across resumes)
    if store is not None:
        store.save_summary(summary)
        store.save_figures(rows, f"{run_name}: batch {t.batch_size}, lr {t.learning_rate:g}, hidden "
                                 f"{config.model.hidden_sizes}",
                           {"best_epoch": summary["best_epoch"], "onset_epoch": summary["onset_epoch"],
                            "divergent": summary["divergent"]})
    for tracker in trackers:
        tracker.finish(json_safe(summary))
    return json_safe(summary)


def summarize(config: Config, rows: Sequence[dict[str, Any]], status: dict[str, Any], restored: int | None,
              parameters: int, device: str) -> dict[str, Any]:
    """The run's summary from its per-epoch rows (the fields documented in docs/mnist-training.md)."""
    selection, analysis = analyse_run(rows, config.stopping)
    best_epoch = analysis["best_epoch"]
    at_best = rows[best_epoch - 1] if best_epoch else {}
    final = rows[restored - 1] if restored else (rows[-1] if rows else {})
    test_losses = [r["test_loss"] for r in rows if math.isfinite(r["test_loss"])]
    return {
        "test_accuracy": final.get("test_accuracy"),
        "test_loss": final.get("test_loss"),
        "final_train_loss": rows[-1]["train_loss"] if rows else None,
        "best_epoch": best_epoch,
        "best_test_loss": min(test_losses) if test_losses else None,
        "best_test_accuracy": max((r["test_accuracy"] for r in rows), default=None),
        "test_loss_at_best_epoch": at_best.get("test_loss"),
        "test_accuracy_at_best_epoch": at_best.get("test_accuracy"),
        "selection": selection,
        "onset_epoch": analysis["onset_epoch"],
        "stopping": analysis,
        "stopped_early": status["stopped_early"],
        "restored_epoch": restored,
        "epochs_run": len(rows),
        "divergent": status["divergence"] is not None,
        "divergence": status["divergence"],
        "parameters": parameters,
        "device": device,
        "engine": config.training.engine,
        "train_time_s": sum(r["epoch_time_s"] for r in rows),
    }
