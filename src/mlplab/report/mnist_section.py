"""The report's section 3 (MNIST): one heading per numbered item, answered from the runs of this results folder.

Reads what `mlplab mnist sweep` wrote under `results/mnist/<profile>/`: one folder per run (`summary.json`,
`metrics.csv`, the loss figure) and the comparison figures and tables. The answers come from
`mlplab.report.answers_mnist`; where a run is missing the answer says so and a red box names the command.
"""

from __future__ import annotations

import math
from typing import Any

from mlplab.mnist.model import closed_form_parameters
from mlplab.report import answers_mnist as am
from mlplab.report.latex import Material, tex
from mlplab.report.listings import Listings
from mlplab.report.sections import answer, question

RUN3 = "mlplab reproduce --only mnist"
N_TRAIN = 60000

# (comparison name, title, runs with labels) in the assignment's order; names follow mlplab.mnist.experiments.
COMPARISONS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("batch_size", "Batch size", (("batch6", "B=6"), ("baseline", "B=64"), ("batch6400", "B=6400"))),
    ("learning_rate", "Learning rate", (("lr1", "lr=1"), ("baseline", "lr=0.001"), ("lr0.00001", "lr=0.00001"))),
    ("capacity", "Hidden sizes", (("baseline", "[512, 256, 128]"), ("hidden16", "[16]"))),
    ("dropout16", "Dropout with hidden [16]", (("hidden16", "dropout 0.2"), ("hidden16_nodropout", "no dropout"))),
    ("softmax", "Logits against softmax", (("baseline", "logits"), ("softmax", "softmax appended"))),
)
_COMPARED = {name: (title, runs) for name, title, runs in COMPARISONS}
ASKED_EPOCHS = 100  # the assignment's num_epochs: fewer make a reduced run, and the answers say so


class MnistRuns:
    """The run summaries and per-epoch rows found under one MNIST results folder."""

    def __init__(self, m: Material, mnist_rel: str) -> None:
        from mlplab.errors import MlplabError
        from mlplab.mnist.runstore import read_run

        self.m, self.rel = m, mnist_rel
        self.summaries: dict[str, dict[str, Any]] = {}
        self.rows: dict[str, list[dict[str, Any]]] = {}
        root = m.results / mnist_rel
        for path in sorted(root.glob("*/summary.json")) if root.is_dir() else []:
            data = m.json(path.relative_to(m.results).as_posix())
            if isinstance(data, dict):
                self.summaries[path.parent.name] = data
                try:
                    self.rows[path.parent.name] = read_run(path.parent)[1]
                except MlplabError:
                    self.rows[path.parent.name] = []

    def epochs(self) -> int:
        return max((int(s.get("epochs_run") or 0) for s in self.summaries.values()), default=0)

    def figure(self, name: str, title: str, epochs: int) -> str:
        return self.m.figure([f"{self.rel}/comparisons/{name}.pdf"],
                             f"MNIST, {tex(title.lower())}: training loss (dashed) and test loss (solid) per epoch, "
                             f"{am.plural(epochs, 'epoch')}.", f"The {title.lower()} figure.", RUN3, width="0.75")

    def table(self, name: str, title: str, epochs: int) -> str:
        return self.m.table_part(f"{self.rel}/comparisons/comparisons.tex", "mnist-" + name.replace("_", "-"),
                                 f"The {title.lower()} table.", RUN3, caption_note=am.plural(epochs, "epoch"))


def setup_paragraph(s: dict[str, Any], config: dict[str, Any], epochs: int, total_s: float) -> str:
    """Section 3's setup: optimiser, seed, data, split, device, trainer, wall time."""
    t = config.get("training", {})
    split = float(t.get("validation_split") or 0.0)
    return ("\\paragraph{Setup.} Real MNIST (60{,}000 training and 10{,}000 test images, the four original IDX "
            "files checked by MD5), pixels scaled to $[0,1]$ and normalised with the training set's mean and "
            f"standard deviation. Optimiser {tex(str(t.get('optimizer', 'adam')).capitalize())} with the "
            "assignment's defaults (batch 64, learning rate 0.001, test batch 1000), cross-entropy loss, random "
            f"seed {t.get('seed', 0)} for the weights, the batch order and the dropout masks; "
            + (f"{split:.0%} of the training set held out for validation; ".replace("%", "\\%") if split else
               "no validation split (the best epoch is chosen on the test loss, as the assignment asks); ")
            + f"device {tex(str(s.get('device', 'cpu')))}, mlplab's own trainer (data resident as tensors, "
            f"hand-written backward, fused Adam). Every run trained for {am.plural(epochs, 'epoch')}"
            + (f"; the eight runs took {_duration(total_s)} of training in all." if total_s else ".")
            + (" \\textbf{This is a reduced run: the assignment asks for 100 epochs.}" if epochs < 100 else ""))


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def section3(m: Material, code: Listings, mnist_rel: str, epochs: int | None) -> str:
    runs = MnistRuns(m, mnist_rel)
    s = runs.summaries
    done = runs.epochs() or int(epochs or 0)
    base = s.get("baseline", {})
    config = m.json(f"{mnist_rel}/baseline/config.json") or {}
    total = sum(float(v.get("train_time_s") or 0.0) for v in s.values())
    out = ["\\section{MNIST image classification with an MLP}",
           setup_paragraph(base, config, done, total) if base else m.not_produced("The MNIST runs.", RUN3),
           *_training_configuration(runs, code, done), *_model_configuration(runs, code, done),
           *_output_layer(runs, done)]
    return "\n".join(out)


def _training_configuration(runs: MnistRuns, code: Listings, done: int) -> list[str]:
    """3.1 (1)-(8): the baseline, overfitting, batch sizes and learning rates."""
    m, mnist_rel, s, asked = runs.m, runs.rel, runs.summaries, ASKED_EPOCHS
    base = s.get("baseline", {})
    return ["\\subsection{Training configuration}",
            question("3.1 (1)", "The baseline run"),
            answer(am.baseline_answer(base, runs.rows.get("baseline", []), asked)),
            m.figure([f"{mnist_rel}/baseline/loss.pdf"], f"Baseline: training and test loss per epoch, with test "
                     f"accuracy, {am.plural(done, 'epoch')}.", "The baseline curves.", RUN3, width="0.72"),
            code.show("mlplab.mnist.config", first="TRAINING_CONFIG", caption="TRAINING_CONFIG in mlplab.mnist.config")
            + code.show("mlplab.mnist.config", first="MODEL_CONFIG", caption="MODEL_CONFIG in mlplab.mnist.config"),
            question("3.1 (2)", "Where overfitting begins, and when to stop"),
            answer(am.overfitting_answer(base, runs.rows.get("baseline", []), asked)),
            code.show("mlplab.mnist.best_epoch", "overfitting_onset")
            + code.show("mlplab.mnist.best_epoch", "stop_epoch"),
            *_one_setting_varied(runs, done, "batch_size", first=3,
                                 titles=("Batch sizes 6 and 6400",
                                         "Learning curves and best epochs for $B \\in \\{6, 64, 6400\\}$",
                                         "The best batch size"),
                                 runs_answer="Both runs trained with every other setting at the baseline's values; "
                                             "their curves are in the figure below, beside the baseline's.",
                                 best_answer=am.batch_answer((("batch6", "$B = 6$", 6), ("baseline", "$B = 64$", 64),
                                                              ("batch6400", "$B = 6400$", 6400)), s, N_TRAIN)),
            *_one_setting_varied(runs, done, "learning_rate", first=6,
                                 titles=("Learning rates 1 and 0.00001",
                                         "Learning curves and best epochs for "
                                         "$\\eta \\in \\{1, 0.001, 0.00001\\}$",
                                         "The best learning rate"),
                                 runs_answer="Divergence is a batch loss that is NaN or above $10^3$; the trainer "
                                             "then stops the run and records the epoch and batch. The curves are in "
                                             "the figure below.",
                                 best_answer=am.lr_answer((("lr1", "$\\eta = 1$", 1.0),
                                                           ("baseline", "$\\eta = 0.001$", 1e-3),
                                                           ("lr0.00001", "$\\eta = 0.00001$", 1e-5)), s))]


def _one_setting_varied(runs: MnistRuns, done: int, name: str, first: int, titles: tuple[str, str, str],
                        runs_answer: str, best_answer: str) -> list[str]:
    """Three questions on one setting varied (comparison `name`): the runs and their curves, their best epochs
    and table, and the best value; numbered from `first`."""
    title, labelled = _COMPARED[name]
    reduced = am.reduced_note(done, ASKED_EPOCHS)
    return [question(f"3.1 ({first})", titles[0]), answer(runs_answer), runs.figure(name, title, done),
            question(f"3.1 ({first + 1})", titles[1]), answer(am.best_epoch_list(labelled, runs.summaries) + reduced),
            runs.table(name, title.lower(), done), question(f"3.1 ({first + 2})", titles[2]),
            answer(best_answer + reduced)]


def _model_configuration(runs: MnistRuns, code: Listings, done: int) -> list[str]:
    """3.2 (8)-(12): the input size, the parameter counts, the small network and dropout."""
    m, mnist_rel, s, asked = runs.m, runs.rel, runs.summaries, ASKED_EPOCHS
    base = s.get("baseline", {})
    sizes_base = [784, 512, 256, 128, 10]
    sizes_small = [784, 16, 10]
    params = (closed_form_parameters(784, [512, 256, 128], 10), closed_form_parameters(784, [16], 10))
    return ["\\subsection{Model configuration}",
            question("3.2 (8)", "Why \\texttt{input\\_size} is 784, and whether it can change"),
            answer(am.input_size_answer(784, 512)),
            question("3.2 (9)", "Parameters of the default model"),
            answer(am.params_answer(sizes_base)),
            m.table([f"{mnist_rel}/comparisons/parameters.tex"], "The parameter table.", RUN3),
            code.show("mlplab.mnist.model", "MLP"),
            question("3.2 (10)", "Parameters with \\texttt{hidden\\_sizes = [16]}"),
            answer(am.params_answer(sizes_small)),
            question("3.2 (11)", "The small network against the baseline"),
            answer(am.capacity_answer(base, s.get("hidden16", {}), params) + am.reduced_note(done, asked)),
            runs.figure("capacity", _COMPARED["capacity"][0], done),
            runs.table("capacity", "hidden sizes", done),
            question("3.2 (11, second)", "What \\texttt{nn.Dropout} does"),
            answer("During training, \\texttt{nn.Dropout(p)} sets each input unit to zero with probability $p$ "
                   "(here $p = 0.2$), independently for every sample and step, and scales the kept ones by "
                   "$1/(1-p) = 1.25$ so that their expected sum is unchanged; in evaluation mode it does nothing. "
                   "Each step thus trains a randomly thinned network, units cannot rely on particular partners, and "
                   "the full network at test time acts like an average of the thinned ones, which reduces overfitting "
                   "\\citep{srivastava2014dropout}."),
            question("3.2 (12)", "Hidden [16] without dropout"),
            answer(am.dropout_answer(s.get("hidden16", {}), s.get("hidden16_nodropout", {}))
                   + am.reduced_note(done, asked)),
            runs.figure("dropout16", _COMPARED["dropout16"][0], done),
            runs.table("dropout16", "dropout with hidden [16]", done)]


def _output_layer(runs: MnistRuns, done: int) -> list[str]:
    """3.2 (13)-(16): the output activation, the softmax, and a softmax appended to the network."""
    m, mnist_rel, s = runs.m, runs.rel, runs.summaries
    base = s.get("baseline", {})
    floor = math.log(1 + 9 / math.e)
    return [question("3.2 (13)", "The output activation, and why not a sigmoid"),
            answer("None: the last layer is a plain \\texttt{Linear} layer that outputs 10 raw scores (logits), and "
                   "\\texttt{nn.CrossEntropyLoss} applies the log-softmax itself. A sigmoid would squash each of the "
                   "10 scores into $(0, 1)$ on its own: the ten values would not sum to 1, so they are not a "
                   "distribution over mutually exclusive classes, and each saturates for large scores, which weakens "
                   "the gradient; applied before \\texttt{CrossEntropyLoss} it would also squash the logits twice "
                   "\\citep[sec.~6.2.2]{goodfellow2016deep}. A sigmoid per output suits multi-label problems, not "
                   "one digit per image \\citep[sec.~4.3]{bishop2006pattern}."),
            question("3.2 (14)", "The role of the softmax"),
            answer("The softmax $p_k = e^{z_k}/\\sum_j e^{z_j}$ turns the $K = 10$ logits into a probability "
                   "distribution: every $p_k$ is positive, they sum to 1, and the order of the logits is kept, so the "
                   "argmax (the predicted digit) is unchanged. It generalises the sigmoid to more than two classes "
                   "\\citep{bridle1990probabilistic}, and with the cross-entropy it gives the simple gradient "
                   "$\\mathbf{p} - \\mathbf{y}$ with respect to the logits \\citep[sec.~6.2.2.3]{goodfellow2016deep}."),
            question("3.2 (15)", "A softmax appended to the network"),
            answer(am.softmax_answer(base, s.get("softmax", {}), floor)),
            m.table([f"{mnist_rel}/comparisons/softmax.tex"], "The logits-against-probabilities table.", RUN3,
                    caption_note=f"models trained for {am.plural(done, 'epoch')}", colsep=1.5),
            runs.figure("softmax", _COMPARED["softmax"][0], done),
            runs.table("softmax", "logits against softmax", done),
            question("3.2 (16)", "Raw logits against probabilities"),
            answer("Logits are unbounded real scores: only their differences matter (adding a constant to all ten "
                   "changes nothing), and their size is not a calibrated confidence. The softmax turns them into "
                   "probabilities that can be read, compared across images, thresholded and combined, which is why "
                   "it is used to interpret outputs. For training, the logits are kept and the softmax is folded into "
                   "the loss (\\texttt{CrossEntropyLoss}), which is numerically stable (the log-sum-exp trick) and "
                   "avoids the second softmax whose effect question (15) shows "
                   "\\citep[sec.~6.2.2.3]{goodfellow2016deep}.")]
