"""The mistakes students make in sections 1-2, each computed on a given problem, never guessed.

Each `Mistake` maps a problem to the answers a student who makes it would give: for every key item it
changes, one or more alternatives (detail, value). `mlplab.instructor.check` names a mistake when a wrong
answer equals one of its alternatives (to the grading tolerance).

    eq6-sign                 BCE with eq. (6)'s sign as printed: -[y log p - (1 - y) log(1 - p)]
    missing-2-over-n         dL_MSE/db2 from Table 3's dL/dy_hat = y_hat - y: no factor 2/N (summed) or no 2 (averaged)
    sigmoid-derivative-at-z2 Table 3's sigmoid derivative z2 (1 - z2) instead of y_hat (1 - y_hat)
    double-sigmoid           the example code's BCE-with-logits applied to y_hat, which already went through a sigmoid
    gradients-accumulated    the training loop never zeroes .grad: each step uses the sum of all gradients so far
    w1-transposed            W1 laid out as (h, d) by reshape instead of transpose (and W1^T itself when W1 is square)
    rounded-early            every intermediate rounded to two decimals before it is used
    wrong-pair               the value of another (sigma1, sigma2) pair
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import lru_cache
from typing import Any

from mlplab.instructor.batch_descent import DescentSpec, final_losses
from mlplab.instructor.key import (
    DESCENT_PAIR,
    GRAD_SIGMA1,
    b2_gradient,
    descent_specs,
    forward_exact,
    forward_values,
    log_q,
    mean,
    pair_name,
    problem_from_text,
    round2,
    softplus_q,
)
from mlplab.twolayer.activations import activation_pairs
from mlplab.twolayer.problem import Problem

Alternatives = dict[str, list[tuple[str, Any]]]
"""Key item -> [(detail, mistaken value), ...]."""
DescentAlternatives = dict[str, list[tuple[str, DescentSpec]]]


def _none(problem: Problem) -> dict[str, list[Any]]:
    return {}


@dataclass(frozen=True)
class Mistake:
    """A named mistake: what it is, and the answers it produces on a problem (descent runs kept apart so that
    all runs of a problem go through one batch)."""

    id: str
    title: str
    values: Callable[[Problem], Alternatives] = _none
    descents: Callable[[Problem], DescentAlternatives] = _none


def _sigmoid_output_pairs() -> list[tuple[str, str]]:
    return [(a, b) for a, b in activation_pairs() if b == "sigmoid"]


def eq6_sign(problem: Problem) -> Alternatives:
    """loss.bce items with the printed sign: a y = 0 sample adds +log(1 - p) instead of -log(1 - p)."""
    out: Alternatives = {}
    for a, b in _sigmoid_output_pairs():
        fw = forward_exact(problem, a, b)
        terms = [-log_q(p) if t == 1 else log_q(1 - p) for p, t in zip(fw.y_hat, problem.y)]
        out[f"loss.bce.{pair_name(a, b)}"] = [("", mean(terms))]
        out[f"loss.bce.{pair_name(a, b)}.terms"] = [("", terms)]
    return out


def missing_two_over_n(problem: Problem) -> Alternatives:
    """dL_MSE/db2 with Table 3's (y_hat - y): summed over samples (no 2/N) or averaged (no 2)."""
    out: Alternatives = {}
    for b in ("identity", "sigmoid"):
        fw = forward_exact(problem, GRAD_SIGMA1, b)
        half = b2_gradient(fw, problem.y) / 2  # the mean of (y_hat - y) sigma2'(z2)
        out[f"grad.mse_b2.{b}"] = [("summed, no 2/N", half * problem.n), ("averaged, no factor 2", half)]
    return out


def sigmoid_derivative_at_z2(problem: Problem) -> Alternatives:
    """dL_MSE/db2 for a sigmoid output with dy_hat/dz2 = z2 (1 - z2), as Table 3 prints it."""
    fw = forward_exact(problem, GRAD_SIGMA1, "sigmoid")
    parts = [(p - t) * z * (1 - z) for p, t, z in zip(fw.y_hat, problem.y, fw.z2)]
    return {"grad.mse_b2.sigmoid": [("", 2 * sum(parts, Fraction(0)) / problem.n)]}


def double_sigmoid(problem: Problem) -> Alternatives:
    """loss.bce items as `F.binary_cross_entropy_with_logits(y_hat, y)`: log(1 + e^p) - p y per sample."""
    out: Alternatives = {}
    for a, b in _sigmoid_output_pairs():
        fw = forward_exact(problem, a, b)
        terms = [softplus_q(p) - p * t for p, t in zip(fw.y_hat, problem.y)]
        out[f"loss.bce.{pair_name(a, b)}"] = [("", mean(terms))]
        out[f"loss.bce.{pair_name(a, b)}.terms"] = [("", terms)]
    return out


def double_sigmoid_descents(problem: Problem) -> DescentAlternatives:
    specs = descent_specs(problem, loss_of={"bce": "bce-logits"})
    return {name: [("", spec)] for name, spec in specs.items() if name.startswith("descent.bce.")}


def accumulated_descents(problem: Problem) -> DescentAlternatives:
    return {name: [("", spec)] for name, spec in descent_specs(problem, accumulate=True).items()}


def transposed_readings(problem: Problem) -> list[tuple[str, Problem]]:
    """The problem as a student who mislays W1 sees it: W1's numbers reshaped to (h, d) and used as nn.Linear's
    weight (so W1' = reshape(W1, (h, d))^T), and for a square W1 also W1^T."""
    d, h = problem.d, problem.h
    flat = [v for row in problem.W1 for v in row]
    as_linear = [flat[j * d:(j + 1) * d] for j in range(h)]  # (h, d), row-major reshape
    readings = [("reshaped to (h, d) instead of transposed",
                 replace(problem, W1=[[as_linear[j][k] for j in range(h)] for k in range(d)]))]
    if d == h:
        readings.append(("W1^T", replace(problem, W1=[[problem.W1[j][k] for j in range(h)] for k in range(d)])))
    return [(detail, p) for detail, p in readings if p.W1 != problem.W1]


def w1_transposed(problem: Problem) -> Alternatives:
    out: Alternatives = {}
    for detail, p in transposed_readings(problem):
        for name, value in forward_values(p).items():
            out.setdefault(name, []).append((detail, value))
    return out


def w1_transposed_descents(problem: Problem) -> DescentAlternatives:
    out: DescentAlternatives = {}
    for detail, p in transposed_readings(problem):
        for name, spec in descent_specs(p).items():
            out.setdefault(name, []).append((detail, spec))
    return out


def rounded_early(problem: Problem) -> Alternatives:
    return {name: [("", value)] for name, value in forward_values(problem, keep=round2).items()}


def wrong_pair(problem: Problem) -> Alternatives:
    """Each pair's items answered with another pair's values (the detail names the pair used)."""
    forwards = {(a, b): forward_exact(problem, a, b) for a, b in activation_pairs()}
    values = forward_values(problem, forwards=forwards)
    b2 = {pair: b2_gradient(fw, problem.y) for pair, fw in forwards.items()}
    out: Alternatives = {}
    for name in values:
        parts = name.split(".")
        if parts[0] == "grad":
            own = (GRAD_SIGMA1, parts[2])
            out[name] = [(pair_name(*q), v) for q, v in b2.items() if q != own]
            continue
        at = 1 if parts[0] in ("table2", "classes") else 2
        for q in activation_pairs():
            other = ".".join([*parts[:at], pair_name(*q), *parts[at + 1:]])
            if other != name and other in values:
                out.setdefault(name, []).append((pair_name(*q), values[other]))
    return out


def wrong_pair_descents(problem: Problem) -> DescentAlternatives:
    out: DescentAlternatives = {}
    for q in activation_pairs():
        if q == DESCENT_PAIR:
            continue
        for name, spec in descent_specs(problem, pair=q).items():
            if name.startswith("descent.mse.") or q[1] == "sigmoid":
                out.setdefault(name, []).append((pair_name(*q), spec))
    return out


MISTAKES: tuple[Mistake, ...] = (
    Mistake("eq6-sign", "BCE with eq. (6)'s sign as printed", values=eq6_sign),
    Mistake("missing-2-over-n", "dL_MSE/db2 without the factor 2/N", values=missing_two_over_n),
    Mistake("sigmoid-derivative-at-z2", "sigmoid derivative taken at z2: z2 (1 - z2)", values=sigmoid_derivative_at_z2),
    Mistake("double-sigmoid", "BCE-with-logits applied to a sigmoid output (a second sigmoid)",
            values=double_sigmoid, descents=double_sigmoid_descents),
    Mistake("gradients-accumulated", "gradients never zeroed: accumulated over epochs", descents=accumulated_descents),
    Mistake("w1-transposed", "W1 reshaped or transposed", values=w1_transposed, descents=w1_transposed_descents),
    Mistake("rounded-early", "intermediates rounded to two decimals before use", values=rounded_early),
    Mistake("wrong-pair", "the values of another activation pair", values=wrong_pair, descents=wrong_pair_descents),
)
"""Every mistake the checker knows, in the order diagnoses are listed."""

MISTAKE_IDS = tuple(m.id for m in MISTAKES)


def get_mistake(mistake_id: str) -> Mistake:
    """The mistake with this id.

    >>> get_mistake("eq6-sign").title
    "BCE with eq. (6)'s sign as printed"
    """
    for m in MISTAKES:
        if m.id == mistake_id:
            return m
    raise KeyError(mistake_id)


def all_descent_specs(problem: Problem) -> list[DescentSpec]:
    """Every run the key and all mistakes of `problem` need (to run them in one batch)."""
    specs = list(descent_specs(problem).values())
    for m in MISTAKES:
        specs += [spec for alts in m.descents(problem).values() for _, spec in alts]
    return specs


def mistaken_values(problem: Problem) -> dict[str, Alternatives]:
    """For every mistake, the answers it gives on `problem` (cached per problem).

    >>> from mlplab.twolayer.problem import load_problem
    >>> alts = mistaken_values(load_problem())["missing-2-over-n"]["grad.mse_b2.identity"]
    >>> [(detail, str(v)) for detail, v in alts]
    [('summed, no 2/N', '-41/10'), ('averaged, no factor 2', '-41/40')]
    """
    return _cached_mistakes(problem.to_text())


@lru_cache(maxsize=256)
def _cached_mistakes(text: str) -> dict[str, Alternatives]:
    problem = problem_from_text(text)
    final_losses(all_descent_specs(problem))  # one batch for every run; the calls below hit the cache
    out: dict[str, Alternatives] = {}
    for m in MISTAKES:
        alts = m.values(problem)
        for name, runs in m.descents(problem).items():
            finals = final_losses([spec for _, spec in runs])
            alts.setdefault(name, []).extend((detail, Fraction(v)) for (detail, _), v in zip(runs, finals)
                                             if math.isfinite(v))
        out[m.id] = alts
    return out

