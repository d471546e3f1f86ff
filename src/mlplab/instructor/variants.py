"""A different, fair problem for every student: random variants of the assignment's network, easy by hand.

Variant `index` of random seed `seed` is drawn by rejection: candidates come from a `random.Random` seeded
with the text "mlplab-variants/<seed>/<index>" (string seeding is stable across Python versions), and the
first candidate that passes `fairness_issues` is the variant. So a variant depends on (seed, index) only,
and `--count 40` repeats the 30 variants of `--count 30`.

Numbers: inputs are integers in [-2, 2]; weights and biases are multiples of 0.5 in [-3, 3]. A variant is
fair when (checked in this order, cheapest first):

1. y holds both classes;
2. no hidden pre-activation Z1 is exactly 0 (the ReLU kink), and no z2 of any pair is exactly 0;
3. every output y_hat of every pair lies at least 0.01 from the threshold 0.5 (so no sigmoid output is
   within 0.01 of 0.5, and no label depends on >= versus >);
4. (ReLU, sigmoid) misclassifies at least one sample;
5. no key value (but the descent ones), Z1 or z2 lies within 1e-6 of a half-point at two decimals (x.xx5), so every hand
   calculation rounds the same way;
6. each gradient-descent answer is finite, its float32 run agrees with the float64 one within 1e-4, and it
   lies at least 1e-4 from a half-point (the student's PyTorch runs in float32);
7. every mistake of `mlplab.instructor.mistakes` changes at least one answer beyond the grading tolerance
   (as the student writes it, rounded to two decimals), so each one can be diagnosed on every variant.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from mlplab.errors import MlplabError
from mlplab.instructor.batch_descent import final_losses
from mlplab.instructor.key import (
    agrees,
    answer_key,
    descent_specs,
    descent_values,
    forward_exact,
    forward_values,
    labels,
    round2,
)
from mlplab.instructor.mistakes import MISTAKES, all_descent_specs, mistaken_values
from mlplab.twolayer.activations import activation_pairs
from mlplab.twolayer.problem import Problem, load_problem

INPUTS = tuple(range(-2, 3))
WEIGHTS = tuple(Fraction(k, 2) for k in range(-6, 7))
THRESHOLD_MARGIN = Fraction(1, 100)
HALF_POINT_MARGIN = Fraction(1, 10**6)
DESCENT_MARGIN = Fraction(1, 10**4)
MAX_TRIES = 5000


@dataclass(frozen=True)
class Variant:
    """One student's problem: its id (also `problem.name`), the random seed and index it comes from."""

    id: str
    seed: int
    index: int
    problem: Problem


def variant_id(seed: int, index: int) -> str:
    """A stable id: the 1-based index and four hex digits of a hash of (seed, index).

    >>> variant_id(7, 0)
    'v001-0a28'
    """
    digest = hashlib.sha256(f"mlplab-variant/{seed}/{index}".encode()).hexdigest()
    return f"v{index + 1:03d}-{digest[:4]}"


def _candidate(rng: random.Random, n: int, d: int, h: int, name: str, description: str) -> Problem:
    def weights(k: int) -> list[Fraction]:
        return [rng.choice(WEIGHTS) for _ in range(k)]

    return Problem(X=[[Fraction(rng.choice(INPUTS)) for _ in range(d)] for _ in range(n)],
                   y=[Fraction(rng.randint(0, 1)) for _ in range(n)],
                   W1=[weights(h) for _ in range(d)], b1=weights(h), w2=weights(h), b2=rng.choice(WEIGHTS),
                   name=name, description=description)


def _near_half_point(q: Fraction, margin: Fraction) -> bool:
    """True when q is within `margin` of some k/100 + 1/200 (where rounding to two decimals flips)."""
    scaled = abs(q) * 100
    return abs(scaled - int(scaled) - Fraction(1, 2)) * Fraction(1, 100) < margin


def _flat(value: Any) -> list[Any]:
    return [x for v in value for x in _flat(v)] if isinstance(value, list) else [value]


def _forward_issues(problem: Problem) -> list[str]:
    if len(set(problem.y)) < 2:
        return ["y holds one class only"]
    issues = []
    forwards = {pair: forward_exact(problem, *pair) for pair in activation_pairs()}
    Z1 = forwards[("identity", "identity")].Z1
    if any(z == 0 for row in Z1 for z in row):
        issues.append("a hidden pre-activation Z1 is exactly 0 (the ReLU kink)")
    for pair, fw in forwards.items():
        if any(z == 0 for z in fw.z2):
            issues.append(f"z2 is exactly 0 for {pair}")
        if any(abs(p - Fraction(1, 2)) < THRESHOLD_MARGIN for p in fw.y_hat):
            issues.append(f"an output of {pair} lies within 0.01 of the threshold 0.5")
        if any(_near_half_point(q, HALF_POINT_MARGIN) for q in [*_flat(fw.Z1), *fw.z2]):
            issues.append(f"a Z1 or z2 of {pair} lies within 1e-6 of a half-point")
    if labels(forwards[("relu", "sigmoid")]) == [int(v) for v in problem.y]:
        issues.append("(ReLU, sigmoid) classifies every sample correctly")
    return issues


def _key_issues(problem: Problem) -> list[str]:
    return [f"{name} lies within 1e-6 of a half-point" for name, value in forward_values(problem).items()
            if not name.startswith("classes.") and any(_near_half_point(q, HALF_POINT_MARGIN) for q in _flat(value))]


def _descent_issues(problem: Problem) -> list[str]:
    final_losses(all_descent_specs(problem))  # the key's and every mistake's runs in one batch
    key = answer_key(problem).values
    issues = []
    for name, low in descent_values(descent_specs(problem), "float32").items():
        value = key.get(name)
        if value is None:
            issues.append(f"{name} blew up (NaN or inf)")
        elif low is None or abs(low - value) > DESCENT_MARGIN or round2(low) != round2(value) \
                or _near_half_point(value, DESCENT_MARGIN):
            issues.append(f"{name} is not robust to float32 (float64 {float(value):.6f}, float32 "
                          f"{float(low) if low is not None else float('nan'):.6f})")
    return issues


def _mistake_issues(problem: Problem) -> list[str]:
    key = answer_key(problem).values
    alternatives = mistaken_values(problem)
    issues = []
    for m in MISTAKES:
        if not any(not _same_answer(_round_all(value), key[name])
                   for name, alts in alternatives[m.id].items() if name in key for _, value in alts):
            issues.append(f"the mistake {m.id} changes no answer beyond the tolerance")
    return issues


def _round_all(value: Any) -> Any:
    """A value as a student writes it: every entry rounded to two decimals (labels unchanged)."""
    if isinstance(value, list):
        return [_round_all(v) for v in value]
    return value if isinstance(value, int) else round2(value)


def _same_answer(value: Any, exact: Any) -> bool:
    v, e = _flat(value), _flat(exact)
    return len(v) == len(e) and all(a == b if isinstance(b, int) else agrees(a, b) for a, b in zip(v, e))


def fairness_issues(problem: Problem) -> list[str]:
    """Why `problem` is not a fair variant (empty when it is), checking the module's rules in order and
    stopping at the first rule that fails.

    >>> fairness_issues(load_problem())[:1]
    ['a hidden pre-activation Z1 is exactly 0 (the ReLU kink)']
    """
    for rule in (_forward_issues, _key_issues, _descent_issues, _mistake_issues):
        issues = rule(problem)
        if issues:
            return issues
    return []


def make_variant(seed: int, index: int, like: Problem | None = None) -> Variant:
    """Variant `index` (0-based) of random seed `seed`, in the shape of `like` (default: the assignment's).

    >>> v = make_variant(7, 0); v.id, (v.problem.n, v.problem.d, v.problem.h), v.problem.name == v.id
    ('v001-0a28', (4, 3, 2), True)
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise MlplabError(f"the random seed must be a non-negative integer, got {seed!r}", hint="e.g. --seed 2026")
    shape = like or load_problem()
    n, d, h = shape.n, shape.d, shape.h
    if n < 2:
        raise MlplabError(f"a variant needs at least 2 samples to hold both classes, the template has {n}",
                          hint="use --like with a problem of 2 or more rows")
    vid = variant_id(seed, index)
    description = (f"Variant {index + 1} (random seed {seed}) of the assignment's two-layer network, "
                   f"{d}-{h}-1 with {n} inputs; generated by `mlplab variants`.")
    rng = random.Random(f"mlplab-variants/{seed}/{index}")
    for _ in range(MAX_TRIES):
        problem = _candidate(rng, n, d, h, vid, description)
        while len(set(problem.y)) < 2:  # redraw the labels until both classes occur (n >= 2)
            problem = replace(problem, y=[Fraction(rng.randint(0, 1)) for _ in range(n)])
        if not fairness_issues(problem):
            return Variant(vid, seed, index, problem)
    raise MlplabError(f"no fair {d}-{h}-1 variant with {n} inputs found in {MAX_TRIES} tries "
                      f"(random seed {seed}, index {index})", hint="try another --seed or a smaller --like shape")


def make_variants(count: int, seed: int, like: Problem | None = None) -> list[Variant]:
    """Variants 0 .. count-1 of random seed `seed`.

    >>> [v.id for v in make_variants(2, 7)]
    ['v001-0a28', 'v002-55f6']
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise MlplabError(f"the number of variants must be at least 1, got {count!r}", hint="e.g. --count 30")
    return [make_variant(seed, i, like) for i in range(count)]
