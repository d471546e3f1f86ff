"""The forward pass "by hand": every entry of Z1, A1, z2 and y_hat as exact arithmetic, kept as data.

Rationals stay `Fraction`s (the problem file is parsed exactly, so 0.1 is 1/10). The sigmoid of a
rational t != 0 is irrational, so those values (and everything computed from them) are evaluated with
mpmath at `WORK_DIGITS` digits and shown to `SHOW_DIGITS` significant digits, beside the symbolic form
1/(1 + e^(-t)) and the two-decimal rounding the assignment asks for.

This module only computes; `mlplab.twolayer.byhand_render` turns a `Derivation` into text, Markdown, LaTeX or JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import mpmath

from mlplab.errors import MlplabError
from mlplab.twolayer.activations import Activation, activation_name, activation_pairs
from mlplab.twolayer.problem import Problem

WORK_DIGITS = 50  # mpmath working precision (decimal digits) for every irrational value
SHOW_DIGITS = 30  # significant digits shown for irrational values


@dataclass(frozen=True)
class Value:
    """One number of the derivation: exact when rational, otherwise a high-precision approximation.

    >>> v = Value.of(Fraction(3, 2)); v.exact, v.is_exact, float(v)
    (Fraction(3, 2), True, 1.5)
    """

    exact: Fraction | None  # the exact rational value, or None when the value is irrational
    approx: mpmath.mpf  # the value at WORK_DIGITS digits (exact values too, for uniform use)
    symbolic: str = ""  # closed form when irrational, e.g. "1/(1 + e^(-3/2))"

    @staticmethod
    def of(q: Fraction | int) -> Value:
        q = Fraction(q)
        with mpmath.workdps(WORK_DIGITS):
            return Value(q, mpmath.mpf(q.numerator) / q.denominator)

    @property
    def is_exact(self) -> bool:
        return self.exact is not None

    def __float__(self) -> float:
        return float(self.exact) if self.exact is not None else float(self.approx)

    def digits(self, n: int = SHOW_DIGITS) -> str:
        """The value to `n` significant digits (exact rationals as their fraction)."""
        if self.exact is not None:
            return frac_text(self.exact)
        return mpmath.nstr(self.approx, n, strip_zeros=False)

    def to_dict(self) -> dict[str, Any]:
        return {"exact": None if self.exact is None else frac_text(self.exact),
                "value": mpmath.nstr(self.approx, SHOW_DIGITS), "float": float(self),
                "symbolic": self.symbolic or None}


@dataclass(frozen=True)
class InnerProduct:
    """target = row · col + bias, e.g. z1[1,1] = x1·W1[:,1] + b1[1]; indices are 1-based as in the assignment."""

    matrix: str  # "Z1" or "z2"
    i: int  # sample (row), 1-based
    j: int  # hidden unit (column), 1-based; 1 for z2
    factors: tuple[tuple[Value, Fraction], ...]  # (row entry, column entry) pairs, d or h of them
    bias: Fraction
    value: Value


@dataclass(frozen=True)
class ActivationStep:
    """target = sigma(argument) for one entry, e.g. a1[1,2] = max{0, z1[1,2]}."""

    matrix: str  # "A1" or "y_hat"
    i: int
    j: int
    activation: str  # canonical name: identity, relu or sigmoid
    argument: Value
    value: Value


@dataclass(frozen=True)
class Derivation:
    """The whole forward pass of one (sigma_1, sigma_2) pair, entry by entry. Shapes as in the assignment:
    Z1, A1 (N, h) as lists of rows; z2, y_hat (N,) (column vectors written as lists)."""

    problem: Problem
    activation1: str
    activation2: str
    Z1: tuple[tuple[InnerProduct, ...], ...]
    A1: tuple[tuple[ActivationStep, ...], ...]
    z2: tuple[InnerProduct, ...]
    y_hat: tuple[ActivationStep, ...]

    @property
    def dims(self) -> dict[str, tuple[int, int]]:
        """Dimensions of every matrix, stated as (rows, columns)."""
        n, d, h = self.problem.n, self.problem.d, self.problem.h
        return {"X": (n, d), "W1": (d, h), "b1": (1, h), "Z1": (n, h), "A1": (n, h),
                "w2": (h, 1), "b2": (1, 1), "z2": (n, 1), "y_hat": (n, 1)}

    def floats(self) -> dict[str, list[list[float]]]:
        """Z1, A1 (N, h) and z2, y_hat (N, 1) as float64 nested lists (for tables and comparisons)."""
        return {"Z1": [[float(e.value) for e in row] for row in self.Z1],
                "A1": [[float(e.value) for e in row] for row in self.A1],
                "z2": [[float(e.value)] for e in self.z2],
                "y_hat": [[float(e.value)] for e in self.y_hat]}

    def to_dict(self) -> dict[str, Any]:
        """All values as JSON-ready data: exact fractions (or None), 30-digit strings and floats."""
        def grid(rows: Sequence[Sequence[InnerProduct | ActivationStep]]) -> list[list[dict[str, Any]]]:
            return [[e.value.to_dict() for e in row] for row in rows]

        return {"activation1": self.activation1, "activation2": self.activation2,
                "dims": {k: list(v) for k, v in self.dims.items()},
                "Z1": grid(self.Z1), "A1": grid(self.A1),
                "z2": [e.value.to_dict() for e in self.z2], "y_hat": [e.value.to_dict() for e in self.y_hat]}


def frac_text(q: Fraction) -> str:
    """A fraction as the hand writes it.

    >>> frac_text(Fraction(-3, 2)), frac_text(Fraction(4))
    ('-3/2', '4')
    """
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def apply_activation(name: str, t: Value) -> Value:
    """sigma(t) exactly where possible: identity and ReLU stay rational; sigmoid(0) = 1/2; other sigmoid
    values are evaluated as 1/(1 + e^(-t)) at WORK_DIGITS digits.

    >>> apply_activation("relu", Value.of(Fraction(-1, 2))).exact
    Fraction(0, 1)
    >>> apply_activation("sigmoid", Value.of(Fraction(3, 2))).digits(6)
    '0.817574'
    """
    if name == "identity":
        return t
    if name == "relu":
        if t.exact is not None:
            return Value.of(max(Fraction(0), t.exact))
        return t if t.approx > 0 else Value.of(0)
    if name == "sigmoid":
        if t.exact == 0:
            return Value.of(Fraction(1, 2))
        with mpmath.workdps(WORK_DIGITS):
            approx = 1 / (1 + mpmath.exp(-t.approx))
        return Value(None, approx, f"1/(1 + e^({_negated(t)}))")
    raise MlplabError(f"the by-hand derivation knows identity, relu and sigmoid, not {name!r}",
                      hint="pick one of identity, relu, sigmoid")


def _negated(t: Value) -> str:
    """-t as written inside e^(...): exact fractions exactly, irrational ones to 6 digits."""
    if t.exact is not None:
        return frac_text(-t.exact)
    with mpmath.workdps(WORK_DIGITS):
        return mpmath.nstr(-t.approx, 6) + "…"


def _inner(matrix: str, i: int, j: int, row: Sequence[Value], col: Sequence[Fraction], bias: Fraction) -> InnerProduct:
    """row · col + bias, exactly when every row entry is rational."""
    factors = tuple(zip(row, col))
    if all(a.exact is not None for a in row):
        total = sum((a.exact * b for a, b in factors if a.exact is not None), Fraction(0)) + bias
        return InnerProduct(matrix, i, j, factors, bias, Value.of(total))
    with mpmath.workdps(WORK_DIGITS):
        approx = mpmath.fsum(a.approx * Value.of(b).approx for a, b in factors) + Value.of(bias).approx
    return InnerProduct(matrix, i, j, factors, bias, Value(None, approx))


def derive_by_hand(problem: Problem, activ_func1: str | Activation = "identity",
                   activ_func2: str | Activation = "identity") -> Derivation:
    """Compute Z1 = X W1 + 1 b1, A1 = sigma_1(Z1), z2 = A1 w2 + b2 1, y_hat = sigma_2(z2) entry by entry.

    >>> from mlplab.twolayer.problem import load_problem
    >>> dv = derive_by_hand(load_problem(), "identity", "identity")
    >>> dv.Z1[0][0].value.exact, dv.y_hat[2].value.exact, dv.dims["A1"]
    (Fraction(3, 2), Fraction(-41, 10), (4, 2))
    """
    s1, s2 = activation_name(activ_func1), activation_name(activ_func2)
    for s in (s1, s2):
        if s not in ("identity", "relu", "sigmoid"):
            raise MlplabError(f"the by-hand derivation knows identity, relu and sigmoid, not {s!r}",
                              hint="pass one of them by name")
    p = problem
    W1_cols = [[p.W1[k][j] for k in range(p.d)] for j in range(p.h)]  # h columns of length d
    Z1 = tuple(tuple(_inner("Z1", i + 1, j + 1, [Value.of(x) for x in p.X[i]], W1_cols[j], p.b1[j])
                     for j in range(p.h)) for i in range(p.n))
    A1 = tuple(tuple(ActivationStep("A1", z.i, z.j, s1, z.value, apply_activation(s1, z.value)) for z in row)
               for row in Z1)
    z2 = tuple(_inner("z2", i + 1, 1, [a.value for a in A1[i]], p.w2, p.b2) for i in range(p.n))
    y_hat = tuple(ActivationStep("y_hat", z.i, 1, s2, z.value, apply_activation(s2, z.value)) for z in z2)
    return Derivation(p, s1, s2, Z1, A1, z2, y_hat)


def derive_all_pairs(problem: Problem) -> list[Derivation]:
    """Derivations for all nine (sigma_1, sigma_2) pairs, in the assignment's Table 2 order.

    >>> from mlplab.twolayer.problem import load_problem
    >>> [round(float(dv.y_hat[2].value), 2) for dv in derive_all_pairs(load_problem())][-3:]
    [-1.25, 0.0, 0.22]
    """
    return [derive_by_hand(problem, a, b) for a, b in activation_pairs()]
