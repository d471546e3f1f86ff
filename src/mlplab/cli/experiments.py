"""`mlplab mnist experiment|sweep|params|compare`: the assignment's experiments by name, and their comparison.

Thin on purpose: flags become explicit arguments of `mlplab.mnist.sweep` and `mlplab.mnist.compare`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mlplab.cli.common import add_data_dir, add_device, add_format, add_out, print_tables, say
from mlplab.mnist.experiments import experiment_names, select_experiments
from mlplab.mnist.runstore import SUMMARY_FIELDS
from mlplab.tables import Table, plural

DEFAULT_RESULTS = Path("results") / "mnist" / "experiments"
SUMMARY_COLUMNS = ["run", "epochs run", "best epoch", "best test loss", "final test acc", "best test acc",
                   "divergent", "wall time (s)"]


def register(mnist_sub: Any) -> None:
    """Add the experiment subcommands to the `mlplab mnist` sub-parser."""
    names = ", ".join(experiment_names())
    p = mnist_sub.add_parser("experiment", help="run one of the assignment's named experiments",
                             description=f"Run one named experiment ({names}) into OUT/NAME; a finished run is "
                                         "read back, an interrupted one resumes.")
    p.add_argument("name", metavar="NAME", help=names)
    _add_run_flags(p)
    p.set_defaults(func=_cmd_experiment)

    p = mnist_sub.add_parser("sweep", help="run several named experiments (or all), resumable, in parallel",
                             description="Run named experiments into OUT/NAME each: finished runs are skipped, "
                                         "interrupted ones resume from their checkpoint, divergent runs are "
                                         "recorded and the sweep goes on.")
    p.add_argument("names", nargs="+", metavar="NAME", help=f"{names}, or all")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="runs at once (default: one per CPU core, one thread each; on CUDA all of them, in threads)")
    _add_run_flags(p)
    p.set_defaults(func=_cmd_sweep)

    p = mnist_sub.add_parser("params", help="parameter counts of the default and the [16] model, per layer")
    add_format(p)
    p.set_defaults(func=_cmd_params)

    p = mnist_sub.add_parser("compare", help="tables, learning curves and observations from finished runs",
                             description="Read the finished runs of a sweep and write, per comparison, a table, "
                                         "overlaid learning curves (PNG, PDF) and observations.")
    p.add_argument("--from", dest="sweep_dir", type=Path, default=None, metavar="DIR",
                   help=f"the sweep's results folder, the --out of `sweep` (default: {DEFAULT_RESULTS}; a "
                        "shortened sweep's: results/mnist/experiments-epochs-N)")
    p.add_argument("--out", dest="sweep_dir", type=Path, default=None, help=argparse.SUPPRESS)  # --from's old name
    p.add_argument("--report-dir", type=Path, default=None, metavar="DIR",
                   help="where to write tables and figures (default: DIR/comparisons)")
    add_data_dir(p, "MNIST folder for the logits-against-softmax table, skipped when MNIST is absent")
    p.add_argument("--images", type=int, default=5, metavar="K", help="test images in the softmax table")
    add_format(p)
    p.set_defaults(func=_cmd_compare)


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="train N epochs instead of 100, for a quick look (default --out then gets a suffix)")
    add_out(p, f"results folder, one subfolder per run (default: {DEFAULT_RESULTS})")
    add_data_dir(p)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra override applied to every run, e.g. training.device=cpu (repeatable)")
    add_device(p, None, "the config's training.device, auto unless overridden")
    p.add_argument("--tracker", dest="trackers", action="append", default=[], choices=("tensorboard", "wandb"),
                   help="also log to TensorBoard or offline W&B (repeatable); the run folder is always written")
    p.add_argument("--wandb-mode", default="offline", choices=("offline", "online", "disabled"),
                   help="W&B mode (default offline: nothing leaves this machine; `wandb sync` later)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_format(p, help_text="the runs' table as text, markdown or latex, or json: one JSON object (each run's "
                            "summary keyed by run name) on the last line")


def results_dir(out: Path | None, epochs: int | None) -> Path:
    """The explicit --out, else results/mnist/experiments, or results/mnist/experiments-epochs-N for a
    shortened sweep (so a quick look never mixes with the 100-epoch runs).

    >>> str(results_dir(None, 2))
    'results/mnist/experiments-epochs-2'
    """
    if out is not None:
        return out
    return DEFAULT_RESULTS if epochs is None else DEFAULT_RESULTS.with_name(f"experiments-epochs-{epochs}")


def _cmd_experiment(args: argparse.Namespace) -> int:
    return _run(args, [args.name], jobs=1)


def _cmd_sweep(args: argparse.Namespace) -> int:
    return _run(args, list(args.names), jobs=args.jobs)


def _run(args: argparse.Namespace, names: list[str], jobs: int | None) -> int:
    from mlplab.mnist.sweep import RunPlan, SweepOptions, describe_schedule, plan_sweep, run_sweep, schedule

    out = results_dir(args.out, args.epochs)
    plans = plan_sweep(select_experiments(names), out, epochs=args.epochs, overrides=args.overrides)
    todo = [p for p in plans if p.state != "done"]
    options = SweepOptions(data_dir=args.data_dir, trackers=tuple(args.trackers), wandb_mode=args.wandb_mode,
                           device=args.device, progress=not args.no_progress and sys.stderr.isatty())
    n_jobs, threads, gpu = schedule(todo, options, jobs)
    for plan in plans:
        say(f"{plan.name}: {_STATE_WORDS[plan.state]} ({plan.run_dir})")
    if todo:
        say(f"running {len(todo)} run(s), {describe_schedule(n_jobs, threads, gpu)}")

    def done(plan: RunPlan, summary: dict[str, Any]) -> None:
        if plan.state != "done":
            flag = " (divergent)" if summary.get("divergent") else ""
            say(f"{plan.name} finished{flag}: {plural(int(summary.get('epochs_run') or 0), 'epoch')}, test accuracy "
                f"{_num(summary.get('test_accuracy'))}, {_num(summary.get('wall_time_s'))} s")

    summaries = run_sweep(plans, options, jobs=jobs, on_done=done)
    if args.format == "json":
        print(json.dumps({name: {**{k: s.get(k) for k in SUMMARY_FIELDS}, "run_dir": str(out / name)}
                          for name, s in summaries.items()}))
    else:
        print_tables([summary_table(summaries)], args.format)
        say(f"runs in {out}; `mlplab mnist compare --from {out}` writes the comparison tables and figures")
    return 0


_STATE_WORDS = {"new": "new run", "resume": "resuming from its checkpoint", "done": "finished, skipped"}


def summary_table(summaries: dict[str, dict[str, Any]]) -> Table:
    """One line per run from the trainer's summaries."""
    rows = [[name, s.get("epochs_run"), s.get("best_epoch"), s.get("best_test_loss"), s.get("test_accuracy"),
             s.get("best_test_accuracy"), bool(s.get("divergent")), s.get("wall_time_s")]
            for name, s in summaries.items()]
    return Table("MNIST runs", SUMMARY_COLUMNS, rows, decimals=4)


def _cmd_params(args: argparse.Namespace) -> int:
    from mlplab.mnist.compare import parameter_table

    print_tables([parameter_table({"default": [512, 256, 128], "[16]": [16]})], args.format)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from mlplab.mnist.compare_report import write_comparisons

    out = args.sweep_dir if args.sweep_dir is not None else DEFAULT_RESULTS
    report_dir = args.report_dir or out / "comparisons"
    tables, notes, paths = write_comparisons(out, report_dir, data_dir=args.data_dir, n_images=args.images)
    print_tables(tables, args.format)
    if args.format != "json":
        print("\nObservations")
        for title, lines in notes.items():
            print(f"\n{title}")
            for line in lines:
                print(f"- {line}")
    say(f"wrote {len(paths)} files into {report_dir}")
    return 0


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
