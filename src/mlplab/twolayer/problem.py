"""The numbers of a two-layer problem (X, y, W1, b1, w2, b2), loaded exactly from a JSON file.

Numbers are parsed straight from their decimal text into `Fraction`s, so 0.1 is exactly 1/10 and the
"by hand" derivation is exact. The assignment's problem ships as `mlplab/data/seed_problem.json`; an instructor
copies it, changes any number or dimension, and passes `--problem FILE` to every command.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from mlplab.errors import MlplabError

Matrix = list[list[Fraction]]

SEED_PROBLEM = "seed_problem.json"


@dataclass(frozen=True)
class Problem:
    """Exact problem data. Shapes: X (N, d), y (N,), W1 (d, h), b1 (h,), w2 (h,), b2 scalar."""

    X: Matrix
    y: list[Fraction]
    W1: Matrix
    b1: list[Fraction]
    w2: list[Fraction]
    b2: Fraction
    name: str = "custom"
    description: str = ""

    @property
    def n(self) -> int:
        return len(self.X)

    @property
    def d(self) -> int:
        return len(self.W1)

    @property
    def h(self) -> int:
        return len(self.b1)

    def tensors(self, dtype: torch.dtype = torch.float64,
                device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Float tensors in the assignment's shapes: X (N,d), y (N,1), W1 (d,h), b1 (1,h), W2 (h,1), b2 (1,)."""
        def t(v: Any) -> torch.Tensor:
            return torch.tensor(_to_float(v), dtype=dtype, device=device)

        return {"X": t(self.X), "y": t(self.y).reshape(-1, 1), "W1": t(self.W1),
                "b1": t(self.b1).reshape(1, -1), "W2": t(self.w2).reshape(-1, 1), "b2": t([self.b2])}

    def to_text(self) -> str:
        """The problem as an exact JSON file, one matrix row per line: integers and terminating decimals as
        numbers, other rationals as strings "p/q", so `load_problem` reads back exactly this problem.

        >>> print(load_problem().to_text().splitlines()[8])
          "W1": [[1, -2.5],
        """
        def row(v: list[Fraction]) -> str:
            return "[" + ", ".join(_exact_text(x) for x in v) + "]"

        def matrix(name: str, m: Matrix) -> str:
            pad = " " * (len(name) + 7)
            return f'  "{name}": [' + (",\n" + pad).join(row(r) for r in m) + "]"

        lines = [f'  "name": {json.dumps(self.name)}', f'  "description": {json.dumps(self.description)}',
                 matrix("X", self.X), f'  "y": {row(self.y)}', matrix("W1", self.W1), f'  "b1": {row(self.b1)}',
                 f'  "w2": {row(self.w2)}', f'  "b2": {_exact_text(self.b2)}']
        return "{\n" + ",\n".join(lines) + "\n}\n"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "X": _to_float(self.X),
                "y": _to_float(self.y), "W1": _to_float(self.W1), "b1": _to_float(self.b1),
                "w2": _to_float(self.w2), "b2": float(self.b2)}


def load_problem(path: str | Path | None = None) -> Problem:
    """Load a problem file, or the assignment's problem when `path` is None.

    >>> p = load_problem(); (p.n, p.d, p.h), p.W1[1][0]
    ((4, 3, 2), Fraction(-3, 2))
    """
    if path is None:
        text = (resources.files("mlplab") / "data" / SEED_PROBLEM).read_text()  # one name per step: Python 3.10
        source = "the built-in problem of the assignment"
    else:
        try:
            text = Path(path).read_text()
        except FileNotFoundError as exc:
            raise MlplabError(f"problem file {path} does not exist",
                              hint="run `mlplab problem --show > my.json` for a template") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise MlplabError(f"cannot read problem file {path}: {exc}", hint="check the path") from exc
        source = f"problem file {path}"
    try:
        raw = json.loads(text, parse_float=Fraction, parse_int=Fraction,
                         parse_constant=lambda c: _reject_constant(c, source))
    except json.JSONDecodeError as exc:
        raise MlplabError(f"{source} is not valid JSON ({exc.msg} at line {exc.lineno})",
                          hint="fix the file; `mlplab problem` prints the format") from exc
    return problem_from_dict(raw, source)


def problem_from_dict(raw: Any, source: str = "problem") -> Problem:
    """Validate a parsed problem (numbers as Fractions, ints or floats) and build a `Problem`."""
    if not isinstance(raw, dict):
        raise MlplabError(f"{source} must be a JSON object with keys X, y, W1, b1, w2, b2",
                          hint="`mlplab problem` prints the format")
    missing = [k for k in ("X", "y", "W1", "b1", "w2", "b2") if k not in raw]
    if missing:
        raise MlplabError(f"{source} lacks {', '.join(missing)}", hint="every one of X, y, W1, b1, w2, b2 is needed")
    unknown = sorted(set(raw) - {"X", "y", "W1", "b1", "w2", "b2", "name", "description"})
    if unknown:
        raise MlplabError(f"{source} has unknown keys {', '.join(unknown)}",
                          hint="allowed: X, y, W1, b1, w2, b2, name, description")
    X = _matrix(raw["X"], "X", source)
    W1 = _matrix(raw["W1"], "W1", source)
    y, b1, w2 = (_vector(raw[k], k, source) for k in ("y", "b1", "w2"))
    b2_list = _vector(raw["b2"] if isinstance(raw["b2"], list) else [raw["b2"]], "b2", source)
    n, d = len(X), len(X[0])
    if len(W1) != d:
        raise MlplabError(f"{source}: W1 has {len(W1)} rows but X has {d} columns",
                          hint="W1 must be (d x h) with d = number of input features")
    h = len(W1[0])
    if len(b1) != h:
        raise MlplabError(f"{source}: b1 has {len(b1)} entries but W1 has {h} columns", hint="one bias per hidden unit")
    if len(w2) != h:
        raise MlplabError(f"{source}: w2 has {len(w2)} entries but there are {h} hidden units",
                          hint="one output weight per hidden unit")
    if len(y) != n:
        raise MlplabError(f"{source}: y has {len(y)} labels but X has {n} rows", hint="one label per input row")
    if any(v not in (0, 1) for v in y):
        raise MlplabError(f"{source}: labels y must be 0 or 1, got {[_fmt(v) for v in y]}",
                          hint="binary classification needs 0/1 labels")
    if len(b2_list) != 1:
        raise MlplabError(f"{source}: b2 must be one number", hint="the output layer has a single neuron")
    return Problem(X=X, y=y, W1=W1, b1=b1, w2=w2, b2=b2_list[0], name=str(raw.get("name", "custom")),
                   description=str(raw.get("description", "")))


def _reject_constant(name: str, source: str) -> Any:
    raise MlplabError(f"{source} contains {name}; every number must be finite", hint="replace it with a number")


def _number(v: Any, what: str, source: str) -> Fraction:
    if isinstance(v, str):  # an exact rational such as "1/3" (JSON has no exact thirds)
        try:
            return Fraction(v.strip())
        except (ValueError, ZeroDivisionError) as exc:
            raise MlplabError(f"{source}: {what} must be a number or a fraction string like \"1/3\", got {v!r}",
                              hint="write plain numbers, or p/q in quotes") from exc
    if isinstance(v, bool) or not isinstance(v, (int, float, Fraction)):
        raise MlplabError(f"{source}: {what} must be a number, got {v!r}", hint="write plain numbers")
    if isinstance(v, float) and not math.isfinite(v):
        raise MlplabError(f"{source}: {what} is {v}; every number must be finite", hint="replace it with a number")
    return Fraction(v)


def _vector(v: Any, name: str, source: str) -> list[Fraction]:
    if not isinstance(v, list) or not v:
        raise MlplabError(f"{source}: {name} must be a non-empty list of numbers", hint="e.g. [0.5, 2.0]")
    return [_number(x, f"{name}[{i + 1}]", source) for i, x in enumerate(v)]


def _matrix(v: Any, name: str, source: str) -> Matrix:
    if not isinstance(v, list) or not v or not all(isinstance(r, list) for r in v):
        raise MlplabError(f"{source}: {name} must be a non-empty list of rows", hint="e.g. [[1, 0], [0, 1]]")
    rows = [_vector(r, f"{name} row {i + 1}", source) for i, r in enumerate(v)]
    if len({len(r) for r in rows}) != 1:
        raise MlplabError(f"{source}: rows of {name} have different lengths {[len(r) for r in rows]}",
                          hint="every row needs the same number of entries")
    return rows


def _to_float(v: Any) -> Any:
    if isinstance(v, list):
        return [_to_float(x) for x in v]
    return float(v)


def _exact_text(q: Fraction) -> str:
    """q as JSON that parses back to exactly q: 2, -2.5, 0.125 or "1/3".

    >>> _exact_text(Fraction(-5, 2)), _exact_text(Fraction(4)), _exact_text(Fraction(1, 3))
    ('-2.5', '4', '"1/3"')
    """
    if q.denominator == 1:
        return str(q.numerator)
    rest = q.denominator
    for prime in (2, 5):
        while rest % prime == 0:
            rest //= prime
    if rest != 1:  # not a terminating decimal
        return f'"{q.numerator}/{q.denominator}"'
    with localcontext() as ctx:
        ctx.prec = 4 * len(str(q.denominator)) + len(str(q.numerator)) + 10  # enough for an exact quotient
        return format(Decimal(q.numerator) / Decimal(q.denominator), "f")


def _fmt(v: Fraction) -> str:
    return str(v.numerator) if v.denominator == 1 else str(float(v))
