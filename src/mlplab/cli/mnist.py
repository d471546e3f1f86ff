"""`mlplab mnist train`: the assignment's MNIST baseline (or any overridden config) into a run folder.

F's experiment subcommands (`experiment`, `sweep`, `params`, ...) hang off the same `mnist` sub-parser through
`mlplab.cli.experiments.register`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mlplab.cli import experiments
from mlplab.cli.common import add_data_dir, add_device, add_format, add_out, print_tables, say
from mlplab.mnist.runstore import SUMMARY_FIELDS

DEFAULT_OUT = Path("results") / "mnist" / "train"


def register(sub: Any) -> None:
    """Add `mlplab mnist ...` to the `mlplab` parser."""
    mnist = sub.add_parser("mnist", help="train the assignment's MLP on MNIST; experiments and sweeps",
                           description="MNIST with an MLP (the assignment's section 3).")
    mnist_sub = mnist.add_subparsers(dest="mnist_command", metavar="ACTION")
    mnist.set_defaults(func=lambda _args: _help(mnist))

    train = mnist_sub.add_parser(
        "train", help="train one run (default: the assignment's baseline) into a run folder",
        description="Train the MLP; writes config.json, metrics.csv, summary.json, checkpoint.pt, loss.png/.pdf "
                    "into --out. Ctrl-C keeps every finished epoch: rerun with --resume.")
    train.add_argument("--epochs", type=int, default=None, metavar="N",
                       help="shorthand for --set training.num_epochs=N")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. training.batch_size=6 or model.hidden_sizes=[16] "
                            "(repeatable)")
    train.add_argument("--config", type=Path, default=None, metavar="FILE", help="JSON file of config overrides")
    add_out(train, f"run folder (default: {DEFAULT_OUT})", default=DEFAULT_OUT)
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    add_device(train, None, "the config's training.device, auto unless overridden")
    train.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for torch")
    add_data_dir(train)
    add_format(train, choices=("text", "json"),
               help_text="the summary as text, or as one JSON object on the last line")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=lambda a: run_train(
        epochs=a.epochs, overrides=a.overrides, config_file=a.config, out=a.out, resume=a.resume, device=a.device,
        threads=a.threads, data_dir=a.data_dir, as_json=a.format == "json", progress=not a.no_progress))
    best = mnist_sub.add_parser(
        "best-epoch", help="where each stopping rule stops on a run's curve, and the onset of overfitting",
        description="Read a run folder's metrics.csv and config.json; apply the smoothed rule and Prechelt's GL, "
                    "PQ and UP to its selection loss (validation if the run has a split, else test).")
    best.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    add_format(best)
    best.set_defaults(func=lambda a: run_best_epoch(a.run_dir, a.format))
    experiments.register(mnist_sub)


def run_train(*, epochs: int | None, overrides: list[str], config_file: Path | None, out: Path, resume: bool,
              device: str | None, threads: int | None, data_dir: Path | None, as_json: bool, progress: bool) -> int:
    """Resolve the config, load MNIST from the cache, train, print a short report (or the JSON summary)."""
    from mlplab.errors import MlplabError
    from mlplab.mnist.config import resolve_config
    from mlplab.mnist.data import load_mnist
    from mlplab.mnist.runstore import RunStore
    from mlplab.mnist.train import train_run

    if epochs is not None:
        overrides = [*overrides, f"training.num_epochs={epochs}"]
    if threads is not None and threads < 1:
        raise MlplabError(f"--threads must be positive, got {threads}")
    config = resolve_config(config_file, overrides)
    if resume and not RunStore(out).has_checkpoint():
        say(f"note: {out} holds no run to resume (no checkpoint.pt): starting a new run there")
    train, test = load_mnist(data_dir)
    summary = train_run(config, train, test, RunStore(out), resume=resume, progress=progress, device=device,
                        threads=threads, run_name=out.name)
    summary["run_dir"] = str(out)
    if as_json:
        print(json.dumps({k: summary.get(k) for k in SUMMARY_FIELDS}))
        return 0
    say(f"wrote {out}/ (config.json, metrics.csv, summary.json, checkpoint.pt, loss.png, loss.pdf)")
    div = summary["divergence"]
    lines = [f"epochs run        {summary['epochs_run']}" + (" (stopped early)" if summary["stopped_early"] else ""),
             f"final test acc    {_num(summary['test_accuracy'])}   test loss {_num(summary['test_loss'])}",
             f"best epoch        {summary['best_epoch']} (lowest {summary['selection']} loss)",
             f"best test loss    {_num(summary['best_test_loss'])}   best test acc "
             f"{_num(summary['best_test_accuracy'])}",
             f"overfitting onset {summary['onset_epoch'] or 'not detected'}",
             "divergent         " + (f"yes, epoch {div['epoch']} batch {div['batch']}" if div else "no"),
             f"parameters        {summary['parameters']:,}",
             f"wall time         {summary['wall_time_s']:.1f} s on {summary['device']}"]
    print("\n".join(lines))
    return 0


def run_best_epoch(run_dir: Path, fmt: str) -> int:
    """Print the stopping-rule table of a finished (or interrupted) run folder."""
    from mlplab.mnist.best_epoch import analyse_run
    from mlplab.mnist.runstore import read_run
    from mlplab.tables import Table

    config, rows = read_run(run_dir)
    selection, out = analyse_run(rows, config.stopping)
    table_rows = []
    for rule in out["rules"].values():
        at = rows[rule["best_epoch"] - 1]
        table_rows.append([rule["rule"], rule["stop_epoch"] or "never", rule["best_epoch"], at["test_loss"],
                           at["test_accuracy"]])
    caption = (f"{len(rows)} epochs; lowest {selection} loss at epoch {out['best_epoch']}; onset of overfitting "
               f"(minimum of the centred {config.stopping.window}-epoch mean, followed by at least "
               f"{config.stopping.patience} epochs): {out['onset_epoch'] or 'not detected'}; chosen rule: "
               f"{config.stopping.rule}")
    print_tables([Table(f"Stopping rules on the {selection} loss of {run_dir}",
                        ["rule", "stops at", "keeps epoch", "test loss there", "test acc there"], table_rows,
                        decimals=4, caption=caption)], fmt)
    if fmt == "text":
        print(caption)
    return 0


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2
