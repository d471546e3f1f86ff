"""The MNIST trainer: whole dataset resident as tensors, batches sliced from a seeded permutation.

`train_run` is a library function: plain arguments in, a summary dict out; files are written only through the
`RunStore` passed in (none: nothing is written). Per epoch it records the mean training loss (with dropout on,
weighted by batch size), the validation and test loss and accuracy, and the time; it checkpoints the model,
the optimizer, the random-generator states, the metrics and the early-stopping state, so `resume=True`
continues an interrupted run and ends with exactly the metrics of an uninterrupted one.

Speed (measured in benchmarks/bench_mnist_train.py): no per-sample Dataset or DataLoader, the data is
normalized once and moved to the device once, and the steps are those of `mlplab.mnist.epoch` (the compiled
small-batch step, the hand-written backward into preallocated buffers, fused Adam, CUDA graphs on a GPU);
evaluation runs under `torch.inference_mode` in chunks of `test_batch_size`.
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

from mlplab.device import get_device
from mlplab.errors import MlplabError
from mlplab.mnist.best_epoch import analyse_run, selection_curve, stop_epoch
from mlplab.mnist.config import Config, config_to_dict
from mlplab.mnist.data import MnistSplit
from mlplab.mnist.epoch import EpochEngine, make_epoch_runner
from mlplab.mnist.model import MLP, count_parameters
from mlplab.mnist.runstore import RunStore, json_safe
from mlplab.mnist.tracking import Tracker
from mlplab.seeding import seed_everything

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


class _Run:
    """One training run's objects and records; `_train_run` drives it: restore, epochs, checkpoints, summary."""

    def __init__(self, config: Config, train: MnistSplit, test: MnistSplit, store: RunStore | None,
                 device: str | torch.device | None, threads: int | None) -> None:
        t = config.training
        if threads is not None:
            torch.set_num_threads(threads)
        self.config, self.store, self.t = config, store, t
        self.dev = dev = get_device(device if device is not None else t.device)
        self.cfg_dict = config_to_dict(config)
        self.data_id = {"train": train.fingerprint(), "test": test.fingerprint()}
        fit, val = split_validation(train, t.validation_split, t.seed)
        with _INIT_LOCK:  # runs trained in threads (a sweep on one GPU) must not interleave their global-RNG draws
            seed_everything(t.seed)
            self.model = build_model(config).to(dev)
        self.optimizer = make_optimizer(t.optimizer, self.model.parameters(), t.learning_rate)
        self.generator = torch.Generator(device=dev)
        self.generator.manual_seed(t.seed)
        self.X, self.y = fit.images.to(dev), fit.labels.to(dev)
        self.val = (val.images.to(dev), val.labels.to(dev)) if val is not None else None
        self.test = (test.images.to(dev), test.labels.to(dev))
        self.rows: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"epoch": None, "loss": math.inf, "model": None}
        self.status: dict[str, Any] = {"divergence": None, "stopped_early": False, "elapsed_s": 0.0}

    def restore(self, resume: bool) -> None:
        """Continue from the store's checkpoint (same config and data), or refuse to overwrite one."""
        store = self.store
        if store is None or not store.has_checkpoint():
            return
        if not resume:
            raise MlplabError(f"{store.run_dir} already holds a run",
                              hint="pass --resume to continue it, or choose another --out folder")
        state = store.load_checkpoint()
        changes = _config_changes(state["config"], self.cfg_dict)
        if changes:
            raise MlplabError(f"the checkpoint in {store.run_dir} was made with another config ({'; '.join(changes)})",
                              hint="resume with the same settings, or choose another --out folder")
        if state.get("data", self.data_id) != self.data_id:
            changed = " and ".join(k for k in ("train", "test") if state["data"].get(k) != self.data_id[k])
            raise MlplabError(f"the {changed} data differ from the data the run in {store.run_dir} started with",
                              hint="resume with the same data (--data-dir), or choose another --out folder")
        if state.get("threads") and self.dev.type == "cpu":
            torch.set_num_threads(int(state["threads"]))  # the count the run started with (see train_run)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(self.generator, state["rng"])
        self.rows, self.best, self.status = state["metrics"], state["best"], state["status"]

    def checkpoint(self) -> dict[str, Any]:
        return {"format": _FORMAT, "config": self.cfg_dict, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "rng": _rng_state(self.generator), "metrics": self.rows,
                "best": self.best, "status": self.status, "threads": torch.get_num_threads(), "data": self.data_id}

    def open_store(self) -> None:
        """config.json, and an epoch-0 checkpoint (a run killed in its first epoch resumes with its thread
        count); a resumed run's metrics.csv is rebuilt from its checkpoint (it may have been damaged)."""
        if self.store is None:
            return
        self.store.prepare()
        self.store.save_config(self.cfg_dict)
        if not self.store.has_checkpoint():
            self.store.save_checkpoint(self.checkpoint())
        elif self.rows:
            self.store.save_metrics(self.rows)

    def epochs_left(self) -> int:
        done = self.status["divergence"] is not None or self.status["stopped_early"]
        return 0 if done else max(0, self.t.num_epochs - len(self.rows))

    def epoch(self, engine: EpochEngine, epoch: int, bar: Any) -> dict[str, Any]:
        """Train one epoch, evaluate, keep the best weights, apply the stopping rule; return the epoch's row."""
        t, rows, stopping = self.t, self.rows, self.config.stopping
        tick = time.perf_counter()
        note = f" | last epoch: test loss {rows[-1]['test_loss']:.4f}" if rows else ""
        train_loss, divergence = engine.run(epoch, bar, note=note)
        row: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "val_loss": None, "val_accuracy": None}
        if self.val is not None:
            row["val_loss"], row["val_accuracy"] = evaluate(self.model, *self.val, t.test_batch_size)
        row["test_loss"], row["test_accuracy"] = evaluate(self.model, *self.test, t.test_batch_size)
        row["epoch_time_s"] = time.perf_counter() - tick
        rows.append(row)
        selection = row["val_loss"] if self.val is not None else row["test_loss"]
        if stopping.enabled and math.isfinite(selection) and selection < self.best["loss"]:
            self.best = {"epoch": epoch, "loss": selection,
                         "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}}
        self.status["divergence"] = divergence
        if stopping.enabled and divergence is None:
            self.status["stopped_early"] = stop_epoch(
                selection_curve(rows)[1], [r["train_loss"] for r in rows], rule=stopping.rule,
                window=stopping.window, patience=stopping.patience, gl_alpha=stopping.gl_alpha,
                pq_alpha=stopping.pq_alpha, up_strips=stopping.up_strips,
                strip_length=stopping.strip_length) is not None
        return row

    def finish(self, engine: EpochEngine, run_name: str) -> dict[str, Any]:
        """Restore the best weights after an early stop; write the summary and the figure."""
        restored = None
        if self.status["stopped_early"] and self.best["model"] is not None:
            self.model.load_state_dict(self.best["model"])
            restored = self.best["epoch"]
        summary = summarize(self.config, self.rows, self.status, restored, count_parameters(self.model),
                            str(self.dev))
        summary["kernel"] = engine.kernel  # "native", "torch", "cuda-graph", ... (see mlplab.mnist.epoch)
        summary["wall_time_s"] = self.status["elapsed_s"]
        summary["threads"] = torch.get_num_threads()  # CPU threads the run trained with (kept across resumes)
        if self.store is not None:
            t = self.t
            self.store.save_summary(summary)
            self.store.save_figures(self.rows, f"{run_name}: batch {t.batch_size}, lr {t.learning_rate:g}, hidden "
                                               f"{self.config.model.hidden_sizes}",
                                    {"best_epoch": summary["best_epoch"], "onset_epoch": summary["onset_epoch"],
                                     "divergent": summary["divergent"]})
        return summary


def _train_run(config: Config, train: MnistSplit, test: MnistSplit, store: RunStore | None, *, resume: bool,
               progress: bool, trackers: Sequence[Tracker], device: str | torch.device | None, threads: int | None,
               run_name: str) -> dict[str, Any]:
    started = time.perf_counter()
    run = _Run(config, train, test, store, device, threads)
    run.restore(resume)
    run.open_store()
    for tracker in trackers:
        tracker.start(run_name, run.cfg_dict, store.run_dir if store is not None else None)  # type: ignore[arg-type]
    engine = make_epoch_runner(config, run.model, run.optimizer, run.X, run.y, run.generator)
    remaining, status = run.epochs_left(), run.status
    bar = tqdm(total=remaining * engine.num_batches, disable=(not progress) or None, unit="batch", leave=False,
               dynamic_ncols=True)
    session_start = time.perf_counter()
    status["elapsed_s"] += session_start - started  # this session's setup (data to device, model, checkpoint)
    try:
        for epoch in range(len(run.rows) + 1, len(run.rows) + 1 + remaining):
            if STOP.is_set():
                raise KeyboardInterrupt
            bar.set_description(f"epoch {epoch}/{config.training.num_epochs}")
            row = run.epoch(engine, epoch, bar)
            status["elapsed_s"] += time.perf_counter() - session_start
            session_start = time.perf_counter()
            if store is not None:
                store.save_checkpoint(run.checkpoint())
                store.save_metrics(run.rows)
            for tracker in trackers:
                tracker.log_epoch(epoch, {k: v for k, v in row.items() if k != "epoch" and v is not None})
            if status["divergence"] is not None or status["stopped_early"]:
                break
    finally:
        bar.close()
    status["elapsed_s"] += time.perf_counter() - session_start
    summary = run.finish(engine, run_name)
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
