"""The assignment's MNIST experiments (sections 3.1 and 3.2) as data: a name, a reason and config overrides.

Each experiment is the baseline configuration (`TRAINING_CONFIG`, `MODEL_CONFIG`) plus a few
`section.key=value` overrides, exactly the strings `mlplab mnist train --set` accepts, so any of them can be
re-run by hand. Names that describe the baseline itself (`batch64`, `lr0.001`) are aliases: they resolve to
the one `baseline` run instead of training the same configuration twice.

Comparisons name the runs that the assignment asks to put side by side; `compare.py` turns finished runs into
figures, tables and observations.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mlplab.errors import MlplabError


@dataclass(frozen=True)
class Experiment:
    """One run: the baseline configuration plus `overrides` (`section.key=value` strings)."""

    name: str
    seed_item: str  # where the assignment asks for it
    description: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comparison:
    """Runs shown together: `runs` pairs an experiment name with its legend label."""

    name: str
    title: str
    runs: tuple[tuple[str, str], ...]
    varied: str  # what changes between the runs, for the observations


SOFTMAX_OVERRIDE = "model.softmax_output=true"

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment("baseline", "3.1 (1)",
               "the assignment's defaults: batch 64, lr 0.001, hidden [512, 256, 128], dropout 0.2"),
    Experiment("batch6", "3.1 (3)", "batch size 6", ("training.batch_size=6",)),
    Experiment("batch6400", "3.1 (3)", "batch size 6400", ("training.batch_size=6400",)),
    Experiment("lr1", "3.1 (6)", "learning rate 1 (batch 64)", ("training.learning_rate=1",)),
    Experiment("lr0.00001", "3.1 (6)", "learning rate 0.00001 (batch 64)", ("training.learning_rate=0.00001",)),
    Experiment("hidden16", "3.2 (10)", "one hidden layer of 16 units", ("model.hidden_sizes=[16]",)),
    Experiment("hidden16_nodropout", "3.2 (12)", "one hidden layer of 16 units, no dropout",
               ("model.hidden_sizes=[16]", "model.dropout_rate=0")),
    Experiment("softmax", "3.2 (15)", "the default model with a softmax appended to its output, trained with "
               "the same cross-entropy (which expects logits)", (SOFTMAX_OVERRIDE,)),
)}

# Names the assignment uses for the baseline configuration itself.
ALIASES: dict[str, str] = {"batch64": "baseline", "lr0.001": "baseline"}

COMPARISONS: dict[str, Comparison] = {c.name: c for c in (
    Comparison("batch_size", "Batch size", (("batch6", "B=6"), ("baseline", "B=64"), ("batch6400", "B=6400")),
               "batch size"),
    Comparison("learning_rate", "Learning rate",
               (("lr1", "lr=1"), ("baseline", "lr=0.001"), ("lr0.00001", "lr=0.00001")), "learning rate"),
    Comparison("dropout16", "Hidden [16]: dropout 0.2 against none",
               (("hidden16", "[16], dropout 0.2"), ("hidden16_nodropout", "[16], no dropout")), "dropout"),
    Comparison("capacity", "Hidden [512, 256, 128] against [16]",
               (("baseline", "[512, 256, 128]"), ("hidden16", "[16]")), "hidden sizes"),
    Comparison("softmax", "Logits against softmax outputs",
               (("baseline", "logits"), ("softmax", "softmax appended")), "output layer"),
)}


def experiment_names() -> list[str]:
    """Every runnable name in the assignment's order, aliases included.

    >>> experiment_names()[:4]
    ['baseline', 'batch64', 'lr0.001', 'batch6']
    """
    return ["baseline", *ALIASES, *(n for n in EXPERIMENTS if n != "baseline")]


def get_experiment(name: str) -> Experiment:
    """Look up an experiment by name or alias.

    >>> get_experiment("batch64").name
    'baseline'
    >>> get_experiment("lr1").overrides
    ('training.learning_rate=1',)
    """
    key = ALIASES.get(name, name)
    if key not in EXPERIMENTS:
        raise MlplabError(f"unknown experiment {name!r}",
                          hint="use one of " + ", ".join(experiment_names()) + " (or all)")
    return EXPERIMENTS[key]


def select_experiments(names: Iterable[str]) -> list[Experiment]:
    """Resolve names (or `all`) to distinct experiments, in the order given, each once.

    >>> [e.name for e in select_experiments(["batch6", "batch64", "baseline"])]
    ['batch6', 'baseline']
    >>> len(select_experiments(["all"]))
    8
    """
    chosen: dict[str, Experiment] = {}
    names = list(names)
    if not names:
        raise MlplabError("no experiment named", hint="name one or more experiments, or all")
    for name in names:
        for exp in (EXPERIMENTS.values() if name == "all" else [get_experiment(name)]):
            chosen.setdefault(exp.name, exp)
    return list(chosen.values())


def experiment_overrides(exp: Experiment, epochs: int | None = None,
                         extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The overrides for one run: the experiment's own, then `--epochs`, then anything extra (wins last).

    >>> experiment_overrides(get_experiment("batch6"), epochs=2)
    ('training.batch_size=6', 'training.num_epochs=2')
    """
    if epochs is not None and epochs < 1:
        raise MlplabError(f"--epochs must be at least 1, got {epochs}", hint="pass --epochs 1 or more")
    epoch_override = () if epochs is None else (f"training.num_epochs={epochs}",)
    return (*exp.overrides, *epoch_override, *extra)


def get_comparison(name: str) -> Comparison:
    """Look up a comparison by name.

    >>> [run for run, _ in get_comparison("batch_size").runs]
    ['batch6', 'baseline', 'batch6400']
    """
    if name not in COMPARISONS:
        raise MlplabError(f"unknown comparison {name!r}", hint="use one of " + ", ".join(COMPARISONS))
    return COMPARISONS[name]
