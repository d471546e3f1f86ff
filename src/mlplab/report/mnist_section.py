"""The report's section 3 (MNIST): runs, comparisons, best epochs, parameter counts, softmax against logits.

Reads what `mlplab mnist sweep` wrote under `results/mnist/<profile>/`: one folder per run (its
`summary.json` and figures) and the comparison figures and tables. Where the sweep wrote no table for a
comparison, one is built here from the runs' `summary.json` files and saved (JSON and LaTeX) under
`results/report-tables/`, so every number in the report still has its JSON beside it.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from mlplab.report.latex import Material, fmt_num, markdown_to_latex, tex
from mlplab.report.sections import question
from mlplab.tables import Table

RUN3 = "mlplab reproduce --only mnist"

# (comparison name, runs with labels) in the seed's order; names follow mlplab.mnist.experiments.
COMPARISONS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("batch_size", "Batch size", (("batch6", "B=6"), ("baseline", "B=64"), ("batch6400", "B=6400"))),
    ("learning_rate", "Learning rate", (("lr1", "lr=1"), ("baseline", "lr=0.001"), ("lr0.00001", "lr=0.00001"))),
    ("capacity", "Hidden sizes", (("baseline", "[512, 256, 128]"), ("hidden16", "[16]"))),
    ("dropout16", "Dropout with hidden [16]", (("hidden16", "dropout 0.2"), ("hidden16_nodropout", "no dropout"))),
    ("softmax", "Logits against softmax", (("baseline", "logits"), ("softmax", "softmax appended"))),
)


def param_count(input_size: int, hidden_sizes: list[int], num_classes: int) -> list[tuple[str, int, int]]:
    """Per layer (name, weights, biases) of Linear layers 784 -> hidden... -> 10; dropout has none.

    >>> sum(w + b for _, w, b in param_count(784, [512, 256, 128], 10)), sum(w + b for _, w, b in
    ...     param_count(784, [16], 10))
    (567434, 12730)
    """
    sizes = [input_size, *hidden_sizes, num_classes]
    return [(f"Linear {a}->{b}", a * b, b) for a, b in itertools.pairwise(sizes)]


class MnistRuns:
    """The run summaries found under one MNIST results folder."""

    def __init__(self, m: Material, mnist_rel: str) -> None:
        self.m = m
        self.rel = mnist_rel
        self.summaries: dict[str, dict[str, Any]] = {}
        root = m.results / mnist_rel
        for path in sorted(root.glob("*/summary.json")) if root.is_dir() else []:
            data = m.json(path.relative_to(m.results).as_posix())
            if isinstance(data, dict):
                self.summaries[path.parent.name] = data

    def summary_table(self, name: str, title: str, runs: tuple[tuple[str, str], ...]) -> str:
        present = [(run, label) for run, label in runs if run in self.summaries]
        if not present:
            return self.m.not_produced(f"The {title.lower()} runs.", RUN3)
        rows = []
        for run, label in present:
            s = self.summaries[run]
            rows.append([label, _int(s.get("best_epoch")), _f(s.get("best_test_loss")), _f(s.get("test_loss")),
                         _f(s.get("best_test_accuracy")), _f(s.get("test_accuracy")),
                         _f(s.get("final_train_loss", s.get("train_loss"))), _int(s.get("epochs_run")),
                         bool(s.get("divergent", False)), _f(s.get("train_time_s", s.get("wall_time_s")))])
        table = Table(f"MNIST: {title}", ["run", "best epoch", "best test loss", "final test loss",
                                          "best test acc.", "final test acc.", "final train loss", "epochs",
                                          "divergent", "train s"], rows, decimals=4,
                      caption=f"MNIST, {title.lower()}: best epoch, test loss and accuracy (best and final).",
                      label=f"tab:mnist-{name}")
        missing = [run for run, _ in runs if run not in self.summaries]
        note = self.m.not_produced(f"Runs {', '.join(missing)}.", RUN3) if missing else ""
        return self.m.write_table(table, f"mnist-{name}") + note

    def comparison(self, name: str, title: str, runs: tuple[tuple[str, str], ...]) -> str:
        figure = self.m.figure([f"{self.rel}/comparisons/{name}.pdf", f"{self.rel}/**/*{name}*.pdf"],
                               f"MNIST, {tex(title.lower())}: training and test loss per epoch.",
                               f"The {title.lower()} figure.", RUN3)
        if self.m.find(f"{self.rel}/comparisons/comparisons.tex") is not None:
            table = self.m.table_part(f"{self.rel}/comparisons/comparisons.tex", "mnist-" + name.replace("_", "-"),
                                      f"The {title.lower()} table.", RUN3)
        else:
            table = self.summary_table(name, title, runs)
        return figure + table + self._observations(title)

    def _observations(self, title: str) -> str:
        path = self.m.find(f"{self.rel}/comparisons/observations.md")
        if path is None:
            return ""
        sections = re.split(r"^## ", path.read_text(encoding="utf-8"), flags=re.M)
        titles = {"Batch size": "Batch size", "Learning rate": "Learning rate",
                  "Hidden sizes": "Hidden [512, 256, 128] against [16]",
                  "Dropout with hidden [16]": "Hidden [16]: dropout 0.2 against none",
                  "Logits against softmax": "Logits against softmax outputs"}
        wanted = titles.get(title, title)
        for section in sections[1:]:
            head, _, body = section.partition("\n")
            if head.strip() == wanted:
                return "\\facts{Observations computed from the runs:}\n" + markdown_to_latex(body) + "\n"
        return ""

    def best_epochs(self, runs: tuple[str, ...]) -> str:
        items = []
        for run in runs:
            s = self.summaries.get(run)
            if s is None:
                continue
            items.append(f"\\item \\texttt{{{tex(run)}}}: best epoch {fmt_num(s.get('best_epoch'))} "
                         f"(test loss {fmt_num(_f(s.get('best_test_loss')))}), final test accuracy "
                         f"{fmt_num(_f(s.get('test_accuracy')))}, {fmt_num(s.get('epochs_run'))} epochs"
                         + (", \\textbf{divergent}" if s.get("divergent") else "") + ".")
        return ("\\begin{itemize}\\small\n" + "\n".join(items) + "\n\\end{itemize}\n") if items else ""


def _f(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def _int(v: Any) -> int | None:
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


def section3(m: Material, mnist_rel: str, epochs: int | None) -> str:
    runs = MnistRuns(m, mnist_rel)
    base = runs.summaries.get("baseline", {})
    epoch_note = (f"These runs used {epochs} epoch(s) per experiment" + (" (the seed asks for 100; run "
                  "\\texttt{mlplab reproduce} without \\texttt{--quick} for the full settings)." if epochs != 100
                  else ", as the seed asks.")) if epochs else ""
    comp = {name: (title, r) for name, title, r in COMPARISONS}
    out = ["\\section{MNIST image classification with an MLP}", epoch_note,
           "\\subsection{Training configuration (seed 3.1)}",
           question("1", "the baseline run"),
           m.figure([f"{mnist_rel}/baseline/*.pdf", f"{mnist_rel}/baseline/**/*.pdf"],
                    "Baseline: training and test loss per epoch, with test accuracy.", "The baseline curves.", RUN3),
           runs.summary_table("baseline", "Baseline", (("baseline", "baseline"),)),
           question("2", "where overfitting begins and when to stop"),
           (f"\\facts{{Best epoch of the baseline: {fmt_num(base.get('best_epoch'))} of "
            f"{fmt_num(base.get('epochs_run'))} (chosen on the {tex(str(base.get('selection', 'test')))} loss), "
            f"test loss there {fmt_num(_f(base.get('test_loss_at_best_epoch', base.get('best_test_loss'))))}; "
            f"onset of overfitting: "
            + (f"epoch {fmt_num(base.get('onset_epoch'))}" if base.get("onset_epoch") else "not detected in these "
               "epochs")
            + ". The rule is documented with the code (\\texttt{mlplab/mnist/best\\_epoch.py}, "
            "Appendix~\\ref{app:code}) and builds on the criteria of \\citet{prechelt1998early}.}")
           if base else m.not_produced("The baseline run.", RUN3),
           "\\studentanswer{Where does overfitting begin, how do you choose the stopping epoch on a noisy test "
           "curve, and why is choosing it on the test set optimistic?}",
           question("3--4", "batch sizes 6, 64 and 6400"),
           runs.comparison("batch_size", *comp["batch_size"]),
           runs.best_epochs(("batch6", "baseline", "batch6400")),
           question("5", "which batch size works best"),
           "\\studentanswer{Explain with gradient noise and the number of parameter updates per epoch.}",
           question("6--7", "learning rates 1, 0.001 and 0.00001"),
           runs.comparison("learning_rate", *comp["learning_rate"]),
           runs.best_epochs(("lr1", "baseline", "lr0.00001")),
           question("8", "which learning rate works best"),
           "\\studentanswer{Explain with gradient noise and the size of each update \\citep{kingma2015adam}.}",
           "\\subsection{Model configuration (seed 3.2)}",
           question("8", "why \\texttt{input\\_size} is 784"),
           "\\facts{An MNIST image has $28 \\times 28 = 784$ pixels \\citep{lecun1998gradient}, flattened into one "
           "input vector.}",
           "\\studentanswer{Can it be changed? Explain.}",
           question("9--10", "parameter counts"),
           _param_tables(m, mnist_rel),
           question("11", "the small network against the baseline"),
           runs.comparison("capacity", *comp["capacity"]),
           "\\studentanswer{How does reducing the hidden units affect capacity, convergence and generalization?}",
           question("11 (b)", "what \\texttt{nn.Dropout} does"),
           "\\studentanswer{Explain dropout and its role \\citep{srivastava2014dropout}.}",
           question("12", "hidden [16] without dropout"),
           runs.comparison("dropout16", *comp["dropout16"]),
           "\\studentanswer{Compare with and without dropout.}",
           question("13", "the output activation"),
           "\\facts{The last layer is a plain \\texttt{Linear} layer: the network outputs 10 logits, and the loss "
           "(cross-entropy on logits) applies the log-softmax itself.}",
           "\\studentanswer{Could a sigmoid be added? Explain why it is not appropriate.}",
           question("14", "the role of the softmax"),
           "\\studentanswer{Explain the softmax in multi-class classification.}",
           question("15", "a softmax appended to the network"),
           m.table([f"{mnist_rel}/comparisons/softmax.tex"], "The logits-against-probabilities table.", RUN3),
           _softmax_notes(m, mnist_rel),
           runs.comparison("softmax", *comp["softmax"]),
           question("16", "logits against probabilities"),
           "\\studentanswer{Discuss raw logits against probability distributions.}"]
    return "\n".join(out)


def _softmax_notes(m: Material, mnist_rel: str) -> str:
    path = m.find(f"{mnist_rel}/comparisons/observations.md")
    if path is None:
        return ""
    _, _, body = path.read_text(encoding="utf-8").partition("## Logits and softmax")
    body = body.split("\n## ")[0]
    return ("\\facts{Computed from the baseline model:}\n" + markdown_to_latex(body) + "\n") if body.strip() else ""


def _param_tables(m: Material, mnist_rel: str) -> str:
    found = m.find([f"{mnist_rel}/comparisons/parameters.tex"])
    if found is not None:  # the sweep's table has the closed form and the model's own count side by side
        return m.table([found.relative_to(m.results).as_posix()], "The parameter table.", RUN3)
    out = []
    for stem, hidden in (("params-default", [512, 256, 128]), ("params-hidden16", [16])):
        layers = param_count(784, hidden, 10)
        rows: list[list[Any]] = [[name, w, b, w + b] for name, w, b in layers]
        rows.append(["total", sum(w for _, w, _ in layers), sum(b for _, _, b in layers),
                     sum(w + b for _, w, b in layers)])
        table = Table(f"Parameters, hidden sizes {hidden}", ["layer", "weights", "biases", "parameters"], rows,
                      caption=f"Parameters of the MLP with hidden sizes {hidden}: a Linear layer from a to b "
                              "units has a*b weights and b biases.",
                      label=f"tab:{stem}", rules_after=[len(rows) - 2])
        out.append(m.write_table(table, stem))
    return "\n".join(out)
