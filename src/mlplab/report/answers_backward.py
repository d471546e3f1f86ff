"""Answers to section 2 of the assignment (classification, losses, gradients, gradient descent).

Plain numbers in, LaTeX sentences out; no file access. The losses are evaluated here in float64 from the
predictions they are given, so each sentence shows the terms it adds up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mlplab.report.answers_forward import num, pair_tex


def classes_answer(y: Sequence[float]) -> str:
    """2.1 (2): which class each sample belongs to.

    >>> classes_answer([1, 0]).split("; ")[1]
    '$y_2 = 0$: $\\\\mathbf{x}_2$ is in the negative class (0).'
    """
    items = [f"$y_{i + 1} = {int(v)}$: $\\mathbf{{x}}_{i + 1}$ is in the "
             + ("positive class (1)" if int(v) == 1 else "negative class (0)") for i, v in enumerate(y)]
    return "; ".join(items) + "."


def prediction_answer(decisions: Sequence[Mapping[str, Any]]) -> str:
    """2.1 (3): the probabilistic reading and how many samples each sigmoid-output pair labels correctly."""
    sig = [d for d in decisions if d["sigma2"] == "sigmoid"]
    counts = ", ".join(f"{pair_tex(d['sigma1'], d['sigma2'])} {sum(d['correct'])} of {len(d['correct'])}"
                       for d in sig)
    return ("A sigmoid output is read as the model's estimate of $P(y = 1 \\mid \\mathbf{x})$, and "
            "$1 - \\hat y$ as that of class 0 \\citep[sec.~4.3.2]{bishop2006pattern}. The predicted label is 1 when "
            "$\\hat y \\ge 0.5$ (equivalently $z_2 \\ge 0$) and 0 otherwise. With the given weights the sigmoid-output "
            f"pairs label correctly: {counts} samples (Table~\\ref{{tab:classification}}); the weights have not been "
            "trained yet, so this is close to chance.")


def mse_terms(y_hat: Sequence[float], y: Sequence[float]) -> list[float]:
    return [(p - t) ** 2 for p, t in zip(y_hat, y)]


def bce_terms(y_hat: Sequence[float], y: Sequence[float]) -> list[float]:
    """-[y log y_hat + (1 - y) log(1 - y_hat)] per sample (the correct sign; see the errata).

    >>> [round(v, 4) for v in bce_terms([0.5, 0.9], [1, 0])]
    [0.6931, 2.3026]
    """
    return [-(t * math.log(p) + (1 - t) * math.log(1 - p)) for p, t in zip(y_hat, y)]


def mse_steps(y_hat: Sequence[float], y: Sequence[float]) -> str:
    """2.2 (4): the MSE written out term by term."""
    terms = mse_terms(y_hat, y)
    sq = " + ".join(f"({num(p, 4)} - {int(t)})^2" for p, t in zip(y_hat, y))
    vals = " + ".join(num(v, 4) for v in terms)
    return (f"$\\mathcal{{L}}_{{MSE}} = \\frac{{1}}{{{len(y)}}}[{sq}] = \\frac{{1}}{{{len(y)}}}({vals}) = "
            f"{num(sum(terms) / len(y), 4)} \\approx {num(sum(terms) / len(y))}$")


def bce_steps(y_hat: Sequence[float], y: Sequence[float]) -> str:
    """2.2 (5): the BCE written out term by term (the log of y_hat for y = 1, of 1 - y_hat for y = 0)."""
    terms = bce_terms(y_hat, y)
    parts = [f"-\\ln {num(p, 4)}" if int(t) == 1 else f"-\\ln(1 - {num(p, 4)})" for p, t in zip(y_hat, y)]
    vals = " + ".join(num(v, 4) for v in terms)
    return (f"$\\mathcal{{L}}_{{BCE}} = \\frac{{1}}{{{len(y)}}}[{' '.join(_plus(parts))}] = "
            f"\\frac{{1}}{{{len(y)}}}({vals}) = {num(sum(terms) / len(y), 4)} \\approx {num(sum(terms) / len(y))}$")


def _plus(parts: list[str]) -> list[str]:
    return [parts[0]] + [f"+ ({p})" for p in parts[1:]]


def compare_answer(preds: Mapping[tuple[str, str], Sequence[float]], y: Sequence[float]) -> str:
    """2.2 (6): which loss is larger, which sample is penalised most under each loss, and by how much."""
    out = []
    for pair, y_hat in preds.items():
        m, b = mse_terms(y_hat, y), bce_terms(y_hat, y)
        worst = max(range(len(y)), key=lambda i: b[i])
        wrong = [i for i in range(len(y)) if (y_hat[i] >= 0.5) != (int(y[i]) == 1)]
        out.append(f"For {pair_tex(*pair)}, $\\mathcal{{L}}_{{MSE}} = {num(sum(m) / len(y))}$ and "
                   f"$\\mathcal{{L}}_{{BCE}} = {num(sum(b) / len(y))}$. The sample penalised most is "
                   f"$\\mathbf{{x}}_{worst + 1}$ ($y = {int(y[worst])}$, $\\hat y = {num(y_hat[worst])}$, "
                   + ("misclassified" if worst in wrong else "correctly classified")
                   + f"): its BCE term is {num(b[worst])} against an MSE term of {num(m[worst])}, "
                   f"{num(b[worst] / m[worst], 1)} times as large. Misclassified samples: "
                   + (", ".join(f"$\\mathbf{{x}}_{i + 1}$" for i in wrong) or "none") + ".")
    out.append("BCE penalises misclassified samples more: a squared error can never exceed 1 when $\\hat y$ and $y$ "
               "lie in $[0, 1]$, while $-\\ln \\hat y$ grows without bound as the probability given to the true "
               "class goes to 0. BCE is the negative log-likelihood of a Bernoulli model, which is why it is the "
               "usual loss for a sigmoid output \\citep[sec.~6.2.2]{goodfellow2016deep}.")
    return "\n\n".join(out)


def boundary_answer(points: Sequence[float] = (0.49, 0.51)) -> str:
    """2.2 (7): the derivatives of both losses near the boundary, for y = 1 (one sample, N = 1)."""
    rows = []
    for p in points:
        rows.append(f"$\\hat y = {p}$: MSE loss {num((p - 1) ** 2, 4)}, "
                    f"$\\partial \\mathcal{{L}}_{{MSE}}/\\partial \\hat y = 2(\\hat y - 1) = {num(2 * (p - 1), 2)}$; "
                    f"BCE loss {num(-math.log(p), 4)}, $\\partial \\mathcal{{L}}_{{BCE}}/\\partial \\hat y = "
                    f"-1/\\hat y = {num(-1 / p, 2)}$")
    a, b = points
    d_mse = abs((a - 1) ** 2 - (b - 1) ** 2)
    d_bce = abs(math.log(b) - math.log(a))
    return ("For a sample with $y = 1$ (the case $y = 0$ is its mirror image): " + "; ".join(rows) + ". Moving "
            f"$\\hat y$ from {a} to {b} changes the MSE by {num(d_mse, 4)} and the BCE by {num(d_bce, 4)}, "
            f"{num(d_bce / d_mse, 1)} times as much. BCE is the more sensitive: near $\\hat y = 0.5$ its slope "
            "$1/\\hat y \\approx 2$ is twice the MSE slope $2(1 - \\hat y) \\approx 1$, because the ratio of the two "
            "slopes is $1/(2\\hat y(1 - \\hat y))$, which is 2 at the boundary and grows towards the ends. Through a "
            "sigmoid output the contrast is the same: $\\partial\\mathcal{L}_{BCE}/\\partial z_2 = \\hat y - y$ while "
            "the MSE's carries the extra factor $2\\hat y(1-\\hat y) \\le 0.5$.")


def b2_answer(values: Mapping[str, float], values_sigmoid: Mapping[str, float], n: int) -> str:
    """2.3 (9)-(10): dL_MSE/db2 for each hidden activation, identity and sigmoid output."""
    ident = "; ".join(f"$\\sigma_1 = {_sym(k)}$: ${num(v, 4)}$" for k, v in values.items())
    sig = "; ".join(f"$\\sigma_1 = {_sym(k)}$: ${num(v, 4)}$" for k, v in values_sigmoid.items())
    return (f"With $\\sigma_2 = \\sigma_I$, $\\partial\\mathcal{{L}}_{{MSE}}/\\partial b_2 = \\frac{{2}}{{{n}}}"
            f"\\sum_i(\\hat y_i - y_i)$: {ident}. With $\\sigma_2 = \\sigma_{{\\mathrm{{sigm}}}}$, "
            f"$\\frac{{2}}{{{n}}}\\sum_i(\\hat y_i - y_i)\\hat y_i(1 - \\hat y_i)$: {sig}. Each is a scalar, the "
            "shape of $b_2$, and each equals float64 autograd and central finite differences (the gradient table).")


def _sym(name: str) -> str:
    from mlplab.report.answers_forward import SYM

    return SYM[name]


def main_answer(loss_correct: float, loss_seed: float, y_hat: Sequence[float]) -> str:
    """2.3 (11): what `main()` computes, and the second sigmoid inside its loss."""
    return ("\\texttt{main()} builds a 3-2-1 \\texttt{SimpleMLP} with ReLU in the hidden layer and a sigmoid output, "
            "copies the problem's weights in (transposed, because \\texttt{nn.Linear} stores its weight as "
            "(outputs, inputs)), moves it to the device and calls \\texttt{compute\\_gradients}. That runs the "
            "forward pass on $\\mathbf{X}$, evaluates the loss against $\\mathbf{y}$, calls \\texttt{backward()}, and "
            "returns the loss, $\\partial\\mathcal{L}/\\partial\\mathbf{X}$ and the gradients of both layers' weights "
            "and biases: the numbers that the chain rule of question (8) gives by hand (the gradient table puts "
            "them side by side). One catch: its \\texttt{binary\\_cross\\_entropy} calls "
            "\\texttt{F.binary\\_cross\\_entropy\\_with\\_logits}, which applies a sigmoid itself, so on the "
            f"already squashed $\\hat{{\\mathbf{{y}}}} = [{', '.join(num(v) for v in y_hat)}]$ it computes "
            f"$\\mathcal{{L}} = {num(loss_seed, 4)}$ instead of the BCE ${num(loss_correct, 4)}$, with matching wrong "
            "gradients. mlplab's version uses \\texttt{F.binary\\_cross\\_entropy} on probabilities (or the logits "
            "loss on $z_2$); see the errata section.")


def descent_answer(runs: Sequence[Mapping[str, Any]], loss: str) -> str:
    """2.4 (13)-(14): the final loss, the verdict in words, and what collapsed, per step size."""
    out = []
    for r in runs:
        eta = f"{float(r['step_size']):g}"
        acc = r.get("accuracy")
        acc_text = f", accuracy on the four samples {acc:.0%}".replace("%", "\\%") if acc is not None else ""
        head = (f"With $\\eta = {eta}$ the {loss.upper()} loss goes from {num(r['first_loss'], 4)} to "
                f"{num(r['final_loss'], 4)} after {r['epochs_run']} epochs{acc_text}.")
        out.append(head + " " + _verdict_words(r))
    return " ".join(out)


def _verdict_words(r: Mapping[str, Any]) -> str:
    v = r.get("verdict")
    if v == "converging":
        return ("The curve is smooth and decreases at every epoch; it has not flattened out yet, so more epochs (or "
                "a larger step) would lower it further.")
    if v == "collapsed":
        parts = []
        if r.get("hidden_units") and r.get("dead_units") == r.get("hidden_units"):
            parts.append(f"all {r['hidden_units']} ReLU units are dead for every sample, so no gradient reaches "
                         "the first layer again and only $b_2$ still moves")
        if r.get("constant_output"):
            parts.append("the network predicts the same value for every sample")
        if r.get("b2_cycle"):
            a, b = r["b2_cycle"]
            parts.append(f"$b_2$ jumps between {num(a)} and {num(b)} at every step, the step being too large to "
                         "settle")
        return ("This is not convergence but a collapse: " + "; ".join(parts) + ". The first updates were so large "
                "that they pushed every hidden pre-activation below zero; the loss curve (" + str(r.get("reason", ""))
                .split("(loss curve: ")[-1].rstrip(")") + ") only reflects what the output bias can still do.")
    if v == "diverging":
        return "The loss grows (or becomes NaN): the step overshoots the minimum further at every update."
    if v == "oscillating":
        return "The loss goes up and down from epoch to epoch: the step is too large to descend steadily."
    return "The loss hardly changes: the steps are too small, or the gradient is (nearly) zero."
