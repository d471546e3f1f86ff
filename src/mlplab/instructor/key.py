"""The answer key of a problem: every numeric answer of sections 1-2 of the assignment, by dotted name.

Names (pairs are `<sigma1>-<sigma2>` with the activation names identity, relu, sigmoid):

    table2.<pair>.a1           (N, h) hidden activations          table2.<pair>.y_hat   (N,) outputs
    classes.<pair>             (N,) predicted labels: z2 >= 0 for a sigmoid output, else y_hat >= 0.5
    loss.mse.<pair>            mean squared error                  loss.mse.<pair>.terms (N,) (y_hat - y)^2
    loss.bce.<pair>            binary cross entropy, sigma2 = sigmoid only; .terms per sample
    grad.mse_b2.<sigma2>       dL_MSE/db2 for sigma2 = identity and sigmoid, with sigma1 = GRAD_SIGMA1
    descent.<loss>.eta-<eta>.final_loss   loss at the last of 1000 epochs of gradient descent, (ReLU, sigmoid)

Values are exact `Fraction`s wherever the maths is rational (identity and ReLU, the MSE, dL/db2 of
piecewise-linear pairs). Sigmoids and logs are evaluated with mpmath at `WORK_DIGITS` digits and carried
on as Fractions of that approximation, so a rational value such as an MSE of 1/8 is rounded exactly.
Descent losses are float64 (`mlplab.instructor.batch_descent`). Labels are ints.

Rounding is the assignment's: two decimals, half away from zero (`round2`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

import mpmath

from mlplab.instructor.batch_descent import DescentSpec, final_losses
from mlplab.twolayer.activations import activation_pairs
from mlplab.twolayer.problem import Problem, problem_from_dict

WORK_DIGITS = 60
GRAD_SIGMA1 = "relu"
"""sigma1 of the dL_MSE/db2 items: the network of section 2 of the assignment has a ReLU hidden layer."""
DESCENT_PAIR = ("relu", "sigmoid")
STEP_SIZES = (0.01, 10.0)
DESCENT_LOSSES = ("mse", "bce")
HUNDREDTH = Fraction(1, 100)

Keep = Callable[[Fraction], Fraction]


def round2(q: Fraction) -> Fraction:
    """Round to two decimals, half away from zero, exactly.

    >>> [str(round2(Fraction(t))) for t in ("0.125", "-0.125", "2.675", "0.1249")]
    ['13/100', '-13/100', '67/25', '3/25']
    """
    sign = -1 if q < 0 else 1
    return sign * Fraction(int(abs(q) * 100 + Fraction(1, 2)), 100)


def agrees(given: Fraction, exact: Fraction) -> bool:
    """The grading rule: right when `given` rounds to the same two decimals as `exact`, or lies within 0.01 of it.

    >>> e = Fraction("0.1549")  # the key says 0.15
    >>> agrees(Fraction("0.145"), e), agrees(Fraction("0.1449"), e), agrees(Fraction("0.165"), e)
    (True, True, False)
    """
    return round2(given) == round2(exact) or abs(given - exact) <= HUNDREDTH


def _exact(x: Any) -> Fraction:
    """An mpmath number as the Fraction of its binary value (exact: mantissa times a power of two)."""
    sign, man, exp, _ = mpmath.mpf(x)._mpf_  # value = (-1)^sign man 2^exp
    return (-1) ** sign * Fraction(int(man)) * (Fraction(2) ** int(exp))


def _mp(q: Fraction) -> Any:
    return mpmath.mpf(q.numerator) / q.denominator


def sigmoid_q(t: Fraction) -> Fraction:
    """1 / (1 + e^(-t)): exactly 1/2 at t = 0, otherwise to WORK_DIGITS digits.

    >>> float(sigmoid_q(Fraction(0))), round(float(sigmoid_q(Fraction(3, 2))), 6)
    (0.5, 0.817574)
    """
    if t == 0:
        return Fraction(1, 2)
    with mpmath.workdps(WORK_DIGITS):
        return _exact(1 / (1 + mpmath.exp(-_mp(t))))


def log_q(q: Fraction) -> Fraction:
    """Natural log of a positive rational to WORK_DIGITS digits."""
    with mpmath.workdps(WORK_DIGITS):
        return _exact(mpmath.log(_mp(q)))


def softplus_q(t: Fraction) -> Fraction:
    """log(1 + e^t), as `F.binary_cross_entropy_with_logits` uses it."""
    with mpmath.workdps(WORK_DIGITS):
        return _exact(mpmath.log(1 + mpmath.exp(_mp(t))))


def activate(name: str, t: Fraction) -> Fraction:
    """sigma(t) for identity, relu or sigmoid."""
    if name == "identity":
        return t
    if name == "relu":
        return max(Fraction(0), t)
    return sigmoid_q(t)


def local_derivative(name: str, pre: Fraction, post: Fraction) -> Fraction:
    """d sigma/dt from pre- and post-activation (sigmoid: post (1 - post); ReLU: 0 at the kink, like torch)."""
    if name == "identity":
        return Fraction(1)
    if name == "relu":
        return Fraction(1 if pre > 0 else 0)
    return post * (1 - post)


@dataclass(frozen=True)
class Forward:
    """One forward pass: Z1, A1 as (N, h) lists of rows, z2 and y_hat as (N,) lists."""

    sigma1: str
    sigma2: str
    Z1: list[list[Fraction]]
    A1: list[list[Fraction]]
    z2: list[Fraction]
    y_hat: list[Fraction]


def _same(q: Fraction) -> Fraction:
    return q


def forward_exact(problem: Problem, sigma1: str, sigma2: str, keep: Keep = _same) -> Forward:
    """Z1 = X W1 + b1, A1 = sigma1(Z1), z2 = A1 w2 + b2, y_hat = sigma2(z2); `keep` is applied to every
    intermediate as it is written down (the identity for the key, `round2` for a student who rounds early).

    >>> from mlplab.twolayer.problem import load_problem
    >>> fw = forward_exact(load_problem(), "identity", "identity")
    >>> fw.Z1[0], fw.y_hat[2]
    ([Fraction(3, 2), Fraction(-1, 2)], Fraction(-41, 10))
    """
    p = problem
    Z1 = [[keep(sum((x[k] * p.W1[k][j] for k in range(p.d)), Fraction(0)) + p.b1[j]) for j in range(p.h)]
          for x in p.X]
    A1 = [[keep(activate(sigma1, z)) for z in row] for row in Z1]
    z2 = [keep(sum((a * w for a, w in zip(row, p.w2)), Fraction(0)) + p.b2) for row in A1]
    y_hat = [keep(activate(sigma2, z)) for z in z2]
    return Forward(sigma1, sigma2, Z1, A1, z2, y_hat)


def pair_name(sigma1: str, sigma2: str) -> str:
    return f"{sigma1}-{sigma2}"


def eta_name(step_size: float) -> str:
    """'eta-0.01', 'eta-10'."""
    return f"eta-{step_size:g}"


def labels(fw: Forward) -> list[int]:
    """Predicted classes: z2 >= 0 for a sigmoid output (exact), y_hat >= 1/2 otherwise."""
    if fw.sigma2 == "sigmoid":
        return [int(z >= 0) for z in fw.z2]
    return [int(v >= Fraction(1, 2)) for v in fw.y_hat]


def mse_terms(y_hat: list[Fraction], y: list[Fraction]) -> list[Fraction]:
    return [(p - t) ** 2 for p, t in zip(y_hat, y)]


def bce_terms(y_hat: list[Fraction], y: list[Fraction]) -> list[Fraction]:
    """-[y log p + (1 - y) log(1 - p)] per sample (eq. (6) with the sign corrected)."""
    return [-(log_q(p) if t == 1 else log_q(1 - p)) for p, t in zip(y_hat, y)]


def mean(values: list[Fraction], keep: Keep = _same) -> Fraction:
    return keep(sum(values, Fraction(0)) / len(values))


def b2_gradient(fw: Forward, y: list[Fraction], keep: Keep = _same) -> Fraction:
    """dL_MSE/db2 = (2/N) sum_i (y_hat_i - y_i) sigma2'(z2_i), the chain rule of section 2.3."""
    parts = [keep((p - t) * local_derivative(fw.sigma2, z, p)) for p, t, z in zip(fw.y_hat, y, fw.z2)]
    return keep(2 * sum(parts, Fraction(0)) / len(parts))


def forward_values(problem: Problem, keep: Keep = _same,
                   forwards: dict[tuple[str, str], Forward] | None = None) -> dict[str, Any]:
    """Every key item except the descent ones, from the forward passes of all nine pairs."""
    fws = forwards or {(a, b): forward_exact(problem, a, b, keep) for a, b in activation_pairs()}
    y = problem.y
    out: dict[str, Any] = {}
    for (a, b), fw in fws.items():
        out[f"table2.{pair_name(a, b)}.a1"] = fw.A1
        out[f"table2.{pair_name(a, b)}.y_hat"] = fw.y_hat
    for (a, b), fw in fws.items():
        out[f"classes.{pair_name(a, b)}"] = labels(fw)
    for (a, b), fw in fws.items():
        terms = [keep(t) for t in mse_terms(fw.y_hat, y)]
        out[f"loss.mse.{pair_name(a, b)}"] = mean(terms, keep)
        out[f"loss.mse.{pair_name(a, b)}.terms"] = terms
    for (a, b), fw in fws.items():
        if b == "sigmoid":
            terms = [keep(t) for t in bce_terms(fw.y_hat, y)]
            out[f"loss.bce.{pair_name(a, b)}"] = mean(terms, keep)
            out[f"loss.bce.{pair_name(a, b)}.terms"] = terms
    for b in ("identity", "sigmoid"):
        out[f"grad.mse_b2.{b}"] = b2_gradient(fws[(GRAD_SIGMA1, b)], y, keep)
    return out


def descent_name(loss: str, step_size: float) -> str:
    return f"descent.{loss}.{eta_name(step_size)}.final_loss"


def descent_specs(problem: Problem, pair: tuple[str, str] = DESCENT_PAIR, loss_of: dict[str, str] | None = None,
                  accumulate: bool = False) -> dict[str, DescentSpec]:
    """The descent items of the key and the run behind each; `loss_of` maps the key's loss name to the loss the
    run really uses (a mistake may train 'bce' with 'bce-logits')."""
    loss_of = loss_of or {}
    return {descent_name(loss, eta): DescentSpec.of(problem, pair[0], pair[1], loss_of.get(loss, loss), eta,
                                                    accumulate=accumulate)
            for loss in DESCENT_LOSSES for eta in STEP_SIZES}


def descent_values(specs: dict[str, DescentSpec], dtype: str = "float64") -> dict[str, Fraction | None]:
    """Final losses as exact Fractions of the float result; None for a run that blew up."""
    finals = final_losses(list(specs.values()), dtype)
    return {name: (Fraction(v) if math.isfinite(v) else None) for name, v in zip(specs, finals)}


@dataclass(frozen=True)
class AnswerKey:
    """The exact answers of one problem. `values[name]` is a Fraction, an int label list, or a (nested) list
    of Fractions; descent items that blew up (NaN) are left out."""

    problem: Problem
    values: dict[str, Any]

    def rounded(self) -> dict[str, Any]:
        """The key as the assignment asks for it: two decimals (floats), labels as ints; JSON-ready.

        >>> from mlplab.twolayer.problem import load_problem
        >>> answer_key(load_problem()).rounded()["table2.sigmoid-sigmoid.y_hat"][2]
        0.22
        """
        return {name: to_rounded(v) for name, v in self.values.items()}

    def names(self) -> list[str]:
        return list(self.values)


def to_rounded(value: Any) -> Any:
    if isinstance(value, list):
        return [to_rounded(v) for v in value]
    if isinstance(value, int):
        return value
    return float(round2(value))


def describe(name: str) -> str:
    """One line on what a key item is.

    >>> describe("grad.mse_b2.sigmoid")
    'dL_MSE/db2 with (sigma1, sigma2) = (relu, sigmoid)'
    """
    parts = name.split(".")
    if parts[0] == "table2":
        what = {"a1": "hidden activations a1 (one row per input)", "y_hat": "outputs y_hat"}[parts[2]]
        return f"Table 2, (sigma1, sigma2) = ({parts[1].replace('-', ', ')}): {what}"
    if parts[0] == "classes":
        return f"predicted class of each input, ({parts[1].replace('-', ', ')})"
    if parts[0] == "loss":
        what = "per-sample terms of the" if parts[-1] == "terms" else "mean"
        return f"{what} {parts[1].upper()} loss, ({parts[2].replace('-', ', ')})"
    if parts[0] == "grad":
        return f"dL_MSE/db2 with (sigma1, sigma2) = ({GRAD_SIGMA1}, {parts[2]})"
    if parts[0] == "descent":
        return (f"{parts[1].upper()} loss at the last of 1000 epochs of gradient descent, step size "
                f"{parts[2].removeprefix('eta-')}, ({', '.join(DESCENT_PAIR)})")
    return name


def answer_key(problem: Problem) -> AnswerKey:
    """The answer key of `problem` (cached per problem: keys are reused by the checker and the class report).

    >>> from mlplab.twolayer.problem import load_problem
    >>> key = answer_key(load_problem())
    >>> key.values["table2.identity-identity.y_hat"][2], key.rounded()["loss.bce.relu-sigmoid"]
    (Fraction(-41, 10), 1.68)
    """
    return _cached_key(problem.to_text())


def problem_from_text(text: str) -> Problem:
    """Read back `Problem.to_text()` exactly (the caches here are keyed by that text)."""
    return problem_from_dict(json.loads(text, parse_float=Fraction, parse_int=Fraction))


@lru_cache(maxsize=256)
def _cached_key(text: str) -> AnswerKey:
    problem = problem_from_text(text)
    values = forward_values(problem)
    values.update({k: v for k, v in descent_values(descent_specs(problem)).items() if v is not None})
    return AnswerKey(problem, values)
