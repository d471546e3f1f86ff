"""Answers to section 3 of the assignment (MNIST), written by rules that read the runs' summaries and curves.

Inputs are the summaries `train_run` writes (`summary.json`) and per-epoch rows (`metrics.csv` as dicts);
outputs are LaTeX sentences. A run may be missing, divergent, or shorter than asked; every rule says so instead
of guessing. The rules are tested on constructed runs (tests/test_report_answers.py).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from mlplab.tables import plural

Summary = Mapping[str, Any]


def pct(value: float | None) -> str:
    return "--" if value is None else f"{100 * float(value):.2f}\\%"


def f4(value: float | None) -> str:
    return "--" if value is None or not math.isfinite(float(value)) else f"{float(value):.4f}"


def updates_per_epoch(n_train: int, batch_size: int) -> int:
    """Parameter updates in one epoch: the number of batches, the last one possibly smaller.

    >>> updates_per_epoch(60000, 6), updates_per_epoch(60000, 64), updates_per_epoch(60000, 6400)
    (10000, 938, 10)
    """
    return math.ceil(n_train / batch_size)


def reduced_note(epochs_run: int, asked: int = 100) -> str:
    """A warning for answers that the assignment means for 100 epochs."""
    if epochs_run >= asked:
        return ""
    return (f" (From a reduced run of {plural(epochs_run, 'epoch')}; the assignment asks for {asked}, so trends "
            "that need many epochs, such as overfitting, may not show yet.)")


def noise_level(curve: Sequence[float]) -> float | None:
    """Typical epoch-to-epoch jitter of a curve: the median absolute second difference / 2.

    A straight or smoothly bending curve gives ~0; alternating noise of amplitude a gives ~a.
    >>> noise_level([1.0, 0.5, 0.0, -0.5]), round(noise_level([1.0, 1.2, 1.0, 1.2, 1.0]), 6)
    (0.0, 0.2)
    """
    if len(curve) < 3:
        return None
    second = [abs(curve[i + 1] - 2 * curve[i] + curve[i - 1]) / 2 for i in range(1, len(curve) - 1)]
    return statistics.median(second)


def baseline_answer(s: Summary, rows: Sequence[Mapping[str, Any]], asked_epochs: int) -> str:
    """3.1 (1): what the baseline run reached."""
    if not s:
        return "The baseline run is missing from this results folder."
    first, last = rows[0] if rows else {}, rows[-1] if rows else {}
    text = (f"The baseline trained for {plural(int(s['epochs_run']), 'epoch')}. The training loss went from "
            f"{f4(first.get('train_loss'))} after the first epoch to {f4(s.get('final_train_loss'))}, the test loss "
            f"from {f4(first.get('test_loss'))} to {f4(last.get('test_loss'))}; the final test accuracy is "
            f"{pct(s.get('test_accuracy'))} (best {pct(s.get('best_test_accuracy'))}).")
    return text + reduced_note(int(s["epochs_run"]), asked_epochs)


def overfitting_answer(s: Summary, rows: Sequence[Mapping[str, Any]], asked_epochs: int) -> str:
    """3.1 (2): where overfitting begins, by which rule, and how to stop on a noisy curve."""
    if not s or not rows:
        return "The baseline run is missing, so no epoch can be named."
    test = [float(r["test_loss"]) for r in rows]
    train = [float(r["train_loss"]) for r in rows]
    best = int(s.get("best_epoch") or 1 + min(range(len(test)), key=test.__getitem__))
    onset = s.get("onset_epoch")
    noise = noise_level(test)
    stopping = s.get("stopping") or {}
    chosen = (stopping.get("chosen") or {}).get("rule", "smoothed")
    if onset:
        head = (f"Overfitting begins at epoch {int(onset)}: there the centred moving average of the test loss "
                f"reaches its minimum and stays above it afterwards while the training loss keeps falling (from "
                f"{f4(train[int(onset) - 1])} to {f4(train[-1])}). The lowest raw test loss is "
                f"{f4(min(test))} at epoch {best}.")
    elif len(test) >= 2 and test[-1] > min(test) and train[-1] < train[0]:
        head = (f"The lowest test loss, {f4(min(test))}, is at epoch {best} and the last epoch is higher "
                f"({f4(test[-1])}), but the rise is not sustained over enough epochs to call it the onset of "
                "overfitting by the rule below.")
    else:
        head = (f"No overfitting is detected: the test loss is still at its lowest, {f4(min(test))}, at epoch "
                f"{best} of {len(test)}.")
    noise_text = (f" Epoch to epoch the test loss jitters by about {f4(noise)} (median half second difference), "
                  "so the first epoch whose loss is higher than the one before is not a reliable sign. "
                  if noise is not None else " On a noisy test curve the first epoch whose loss is higher than the "
                  "one before is not a reliable sign. ")
    rule = (noise_text +
            f"The rule used here (\\texttt{{{_tt(chosen)}}}) averages the test loss over a trailing window and stops "
            "once that average has not improved for a set number of epochs (patience); the weights kept are those "
            "of the epoch with the lowest loss up to that point, in the spirit of Prechelt's criteria "
            "\\citep{prechelt1998early}. Choosing the epoch on the test set makes the reported test loss optimistic; "
            "\\texttt{training.validation\\_split} holds out part of the training set for this instead.")
    return head + rule + reduced_note(len(test), asked_epochs)


def _tt(text: str) -> str:
    return text.replace("_", "\\_").replace("%", "\\%")


def best_runs(summaries: Mapping[str, Summary]) -> tuple[list[str], list[str]]:
    """(names with the highest final test accuracy, names with the lowest best test loss); divergent runs excluded;
    several names when tied."""
    ok = {k: s for k, s in summaries.items() if s and not s.get("divergent")}
    if not ok:
        return [], []
    top = max(float(s.get("test_accuracy") or 0.0) for s in ok.values())
    low = min(float(s.get("best_test_loss") or math.inf) for s in ok.values())
    return ([k for k, s in ok.items() if float(s.get("test_accuracy") or 0.0) == top],
            [k for k, s in ok.items() if float(s.get("best_test_loss") or math.inf) == low])


def best_epoch_list(runs: Sequence[tuple[str, str]], summaries: Mapping[str, Summary]) -> str:
    """3.1 (4) and (7): the best epoch of each run, with divergence named."""
    items = []
    for name, label in runs:
        s = summaries.get(name)
        if not s:
            items.append(f"{label}: not run")
        elif s.get("divergent"):
            d = s.get("divergence") or {}
            items.append(f"{label}: diverged in epoch {d.get('epoch', '?')} (batch {d.get('batch', '?')}, loss "
                         f"{_big(d.get('loss'))}), so no best epoch")
        else:
            items.append(f"{label}: best epoch {s.get('best_epoch')} of {s.get('epochs_run')} (test loss "
                         f"{f4(s.get('best_test_loss'))})")
    return "Best epochs: " + "; ".join(items) + "."


def _big(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "?"
    if not math.isfinite(v):
        return "NaN" if v != v else "infinite"
    mant, exp = f"{v:.2e}".split("e")
    return f"${mant}\\times 10^{{{int(exp)}}}$" if abs(v) >= 1e4 else f"{v:.4g}"


def _names(names: Sequence[str], labels: Mapping[str, str]) -> str:
    return " and ".join(labels.get(n, n) for n in names)


def _best_sentence(acc: Sequence[str], loss: Sequence[str], labels: Mapping[str, str]) -> str:
    if set(acc) == set(loss):
        return f"{_names(acc, labels)} gives both the best test accuracy and the lowest test loss."
    return f"{_names(acc, labels)} gives the best test accuracy and {_names(loss, labels)} the lowest test loss."


def batch_answer(runs: Sequence[tuple[str, str, int]], summaries: Mapping[str, Summary], n_train: int) -> str:
    """3.1 (5): which batch size is best, with updates per epoch and gradient noise."""
    labels = {name: label for name, label, _ in runs}
    present = {name: summaries[name] for name, _, _ in runs if summaries.get(name)}
    if not present:
        return "None of the batch-size runs is in this results folder."
    acc, loss = best_runs(present)
    facts = "; ".join(f"{label}: {updates_per_epoch(n_train, b):,} updates per epoch, final test accuracy "
                      f"{pct(present[name].get('test_accuracy'))}, lowest test loss "
                      f"{f4(present[name].get('best_test_loss'))}".replace(",", "{,}", 1)
                      for name, label, b in runs if name in present)
    verdict = _best_sentence(acc, loss, labels)
    why = (" The gradient of a batch of $B$ samples is an average, so its noise (variance) shrinks like $1/B$: "
           "over the same epochs $B = 6$ makes many noisy updates and $B = 6400$ few precise ones.")
    order = [name for name, _, _ in runs if name in present]
    return f"{facts}. {verdict}{why} " + _why_best(acc + [n for n in loss if n not in acc], order, present, labels,
                                                  "updates")


def _rise(s: Summary) -> float:
    # How far the final test loss ended above the lowest one: the overfitting after the best epoch.
    try:
        return float(s["test_loss"]) - float(s["best_test_loss"])
    except (KeyError, TypeError, ValueError):
        return math.nan


def _why_best(winners: Sequence[str], order: Sequence[str], runs: Mapping[str, Summary],
              labels: Mapping[str, str], axis: str) -> str:
    """Why each winner won, from where it sits in `order` (smallest to largest batch or step) and its curve."""
    out = []
    for name in winners:
        s, i = runs[name], order.index(name)
        late = int(s.get("best_epoch") or 0) >= int(s.get("epochs_run") or 0)
        others = [n for n in order if n != name and not runs[n].get("divergent")]
        rose = [n for n in others if _rise(runs[n]) > _rise(s)]
        overfit = (f"its test loss ended only {f4(_rise(s))} above its minimum, against "
                   + ", ".join(f"{f4(_rise(runs[n]))} for {labels[n]}" for n in rose) + " (overfitting after their "
                   "best epochs)") if rose else ""
        if i == len(order) - 1:
            reason = ("its low-noise steps were still enough to converge" if axis == "updates" else
                      "its large steps still converged")
        elif i == 0:
            reason = ("its many small, noisy steps explore the most" if axis == "updates" else
                      "its small steps move slowly" + (" and it was still improving at the last epoch" if late
                                                      else ""))
        else:
            reason = ("it combines enough updates with moderate noise" if axis == "updates" else
                      "its steps are large enough to converge in a few epochs and small enough to stay stable")
        out.append(f"For {labels[name]}: {reason}" + (f"; {overfit}" if overfit else "") + ".")
    return " ".join(out)


def lr_answer(runs: Sequence[tuple[str, str, float]], summaries: Mapping[str, Summary]) -> str:
    """3.1 (8): which learning rate is best, naming divergence and too-small steps."""
    labels = {name: label for name, label, _ in runs}
    present = {name: summaries[name] for name, _, _ in runs if summaries.get(name)}
    if not present:
        return "None of the learning-rate runs is in this results folder."
    acc, loss = best_runs(present)
    facts = []
    for name, label, _ in runs:
        s = present.get(name)
        if s is None:
            continue
        if s.get("divergent"):
            d = s.get("divergence") or {}
            facts.append(f"{label} diverged (batch loss {_big(d.get('loss'))} in epoch {d.get('epoch', '?')}, "
                         f"test accuracy {pct(s.get('test_accuracy'))})")
        else:
            facts.append(f"{label}: final test accuracy {pct(s.get('test_accuracy'))}, lowest test loss "
                         f"{f4(s.get('best_test_loss'))}")
    if not acc:
        return "; ".join(facts) + ". Every run diverged."
    verdict = _best_sentence(acc, loss, labels)
    why = (" All three runs make the same number of updates (938 per epoch at $B = 64$) with the same gradient "
           "noise; what differs is the size of each step. Adam's updates are about $\\eta$ per weight whatever the "
           "gradient's scale, so $\\eta = 1$ overshoots at once, while a very small $\\eta$ needs many epochs to "
           "get anywhere; $\\eta = 10^{-3}$ is the default that \\citet{kingma2015adam} propose.")
    order = [name for name, _, _ in runs if name in present]
    return ("; ".join(facts) + ". " + verdict + why + " "
            + _why_best(acc + [n for n in loss if n not in acc], order[::-1], present, labels, "step"))


def capacity_answer(base: Summary, small: Summary, params: tuple[int, int]) -> str:
    """3.2 (11): the [16] network against the baseline: capacity, convergence, generalisation."""
    if not base or not small:
        return "One of the two runs is missing from this results folder."
    gap_b = float(base["test_loss"]) - float(base["final_train_loss"])
    gap_s = float(small["test_loss"]) - float(small["final_train_loss"])
    return (f"With hidden sizes [16] the network has {params[1]:,} parameters against {params[0]:,} "
            f"({params[0] / params[1]:.0f} times fewer). Final training loss {f4(small['final_train_loss'])} against "
            f"{f4(base['final_train_loss'])}, test loss {f4(small['test_loss'])} against {f4(base['test_loss'])}, "
            f"test accuracy {pct(small['test_accuracy'])} against {pct(base['test_accuracy'])}. The small network "
            "has less capacity: it cannot fit the training set as closely, so its training loss stays higher and it "
            "converges to a worse level. Its test-minus-training loss gap is "
            f"{f4(gap_s)} against {f4(gap_b)} for the baseline; "
            + ("it overfits less, as a smaller model usually does, but at the price of a higher error."
               if gap_s < gap_b else "even the small model's gap is not smaller here, so its lower accuracy comes "
               "from underfitting rather than from better or worse generalisation.")).replace(",", "{,}")


def dropout_answer(with_dropout: Summary, without: Summary) -> str:
    """3.2 (12): [16] with and without dropout."""
    if not with_dropout or not without:
        return "One of the two runs is missing from this results folder."
    gw = float(with_dropout["test_loss"]) - float(with_dropout["final_train_loss"])
    gn = float(without["test_loss"]) - float(without["final_train_loss"])
    better = float(without["test_accuracy"]) > float(with_dropout["test_accuracy"])
    return (f"Without dropout the [16] network reaches a training loss of {f4(without['final_train_loss'])} "
            f"(with dropout {f4(with_dropout['final_train_loss'])}) and a test accuracy of "
            f"{pct(without['test_accuracy'])} (with dropout {pct(with_dropout['test_accuracy'])}); the "
            f"test-minus-training loss gap is {f4(gn)} against {f4(gw)}. "
            + (("Removing dropout helps this small network: its test accuracy is higher"
                + (" even though its gap grows, so with only 16 hidden units the capacity that dropout takes away "
                   "(each step trains a thinned network) costs more than the overfitting it prevents."
                   if gn > gw else ", and its gap does not grow: with only 16 hidden units there is little "
                   "overfitting for dropout to prevent."))
               if better else
               "Dropout helps here: the thinned networks it trains act as a regulariser and the test accuracy is "
               "higher with it.")
            + " Note that the training loss with dropout is measured with units dropped, so it overstates the loss "
              "of the full network.")


def softmax_answer(base: Summary, soft: Summary, floor: float) -> str:
    """3.2 (15): what appending a softmax did to the outputs and to training."""
    if not base or not soft:
        return "One of the two runs is missing from this results folder."
    return (f"With a softmax appended the outputs are probabilities (each row sums to 1), and the argmax, hence the "
            f"predicted class, is the same as that of the logits. Training, however, suffers: "
            "\\texttt{nn.CrossEntropyLoss} applies its own log-softmax, so the model is trained through two "
            f"softmaxes and its loss cannot go below $\\ln(1 + 9/e) = {floor:.4f}$. Its final training loss is "
            f"{f4(soft['final_train_loss'])} against {f4(base['final_train_loss'])} for the baseline, and its test "
            f"accuracy {pct(soft['test_accuracy'])} against {pct(base['test_accuracy'])}.")


def input_size_answer(input_size: int, first_hidden: int) -> str:
    """3.2 (8): why 784, and what a change means."""
    side = round(math.sqrt(input_size))
    shape = f"${side} \\times {side} = {input_size}$" if side * side == input_size else f"${input_size}$"
    return (f"An MNIST image has {shape} grey values \\citep{{lecun1998gradient}}; the MLP takes each image as one "
            f"flat vector, so the first layer needs exactly {input_size} inputs. It can only change together with "
            f"the data: the first layer has {input_size} $\\times$ {first_hidden} weights, one column per pixel, and "
            "a different number would no longer match the images (mlplab stops with an error naming both numbers). "
            "It can change if the input changes, for example images resized or cropped to another size, or "
            "features computed from the pixels; then the first layer's weight count changes with it.")


def params_answer(sizes: Sequence[int]) -> str:
    """3.2 (9)-(10): the parameter count layer by layer.

    >>> "567{,}434" in params_answer([784, 512, 256, 128, 10])
    True
    """
    terms = [f"{a} \\cdot {b} + {b}" for a, b in itertools.pairwise(sizes)]
    values = [a * b + b for a, b in itertools.pairwise(sizes)]
    total = sum(values)
    chain = " $\\to$ ".join(str(s) for s in sizes)
    return (f"Each \\texttt{{Linear}} layer from $a$ to $b$ units has $a \\cdot b$ weights and $b$ biases; dropout "
            f"and ReLU have none. For {chain}: $"
            + " + ".join(f"({t})" for t in terms) + " = " + " + ".join(f"{v:,}" for v in values)
            + f" = {total:,}$ parameters.").replace(",", "{,}")
