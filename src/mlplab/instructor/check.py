"""Grading a student's answers against the key, naming the mistake behind each wrong one, and a class summary.

An answer is right when it agrees with the exact key value by `mlplab.instructor.key.agrees` (same two
decimals, or within 0.01); a list is right when every entry is. A wrong answer is diagnosed when it agrees,
entry by entry, with what one of `mlplab.instructor.mistakes.MISTAKES` gives on the same problem (and that
mistaken value differs from the key's): the diagnosis is computed, never guessed, and lists every mistake that
fits.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from mlplab.errors import MlplabError
from mlplab.instructor.key import agrees, answer_key, to_rounded
from mlplab.instructor.mistakes import MISTAKE_IDS, mistaken_values
from mlplab.instructor.render import fmt_value
from mlplab.tables import Table
from mlplab.twolayer.problem import Problem

META_KEYS = ("variant", "student")
"""Keys an answer file may hold besides the key's items."""


@dataclass(frozen=True)
class ItemResult:
    """The verdict on one key item."""

    name: str
    status: str  # right, wrong or missing
    expected: Any  # the key's rounded value
    given: Any  # what the student wrote (numbers as floats), None when missing
    diagnosis: str | None  # e.g. "wrong-pair (relu-identity)"; None when right, missing or unexplained
    mistakes: tuple[str, ...] = ()  # the mistake ids named in `diagnosis`

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "expected": self.expected, "given": self.given,
                "diagnosis": self.diagnosis}


@dataclass(frozen=True)
class CheckResult:
    """All items of one answer sheet, in key order."""

    problem_name: str
    items: list[ItemResult]

    @property
    def score(self) -> float:
        """Fraction of the key's items answered right."""
        return sum(i.status == "right" for i in self.items) / len(self.items)

    def count(self, status: str) -> int:
        return sum(i.status == status for i in self.items)

    def mistakes(self) -> Counter[str]:
        """The mistakes that explain this sheet, with the number of items each explains.

        An item may fit several mistakes (its diagnosis lists them all); here each item is given to one, by a
        greedy cover: the mistake that explains the most still unexplained items first, ties in the order of
        `MISTAKES`. So a value that happens to fit another pair does not count as a second mistake when the
        mistake that explains the rest of the sheet explains it too.
        """
        open_items = [set(i.mistakes) for i in self.items if i.mistakes]
        chosen: Counter[str] = Counter()
        while open_items:
            fits = Counter(m for options in open_items for m in options)
            best = min(fits, key=lambda m: (-fits[m], MISTAKE_IDS.index(m)))
            chosen[best] = fits[best]
            open_items = [options for options in open_items if best not in options]
        return chosen

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "items": [i.to_dict() for i in self.items]}

    def table(self) -> Table:
        rows = [[i.name, i.status, fmt_value(i.expected), _show(i.given), i.diagnosis or ""] for i in self.items]
        return Table(f"Answers for problem {self.problem_name}: {self.count('right')} of {len(self.items)} right "
                     f"(score {self.score:.2f}), {self.count('wrong')} wrong, {self.count('missing')} missing",
                     ["item", "status", "expected", "given", "diagnosis"], rows, label="tab:check")


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def to_number(value: Any, where: str) -> Fraction | None:
    """A student's number, exactly as written: 0.145 stays 0.145 (floats go through their shortest repr).

    >>> to_number(0.145, "x"), to_number("1/8", "x"), to_number(None, "x")
    (Fraction(29, 200), Fraction(1, 8), None)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise MlplabError(f"{where}: expected a number, got {value!r}", hint="write numbers such as 0.25")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MlplabError(f"{where}: {value} is not a finite number", hint="write the value you computed")
        return Fraction(repr(value))
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "null", "none", "nan"):
            return None
        try:
            return Fraction(text)
        except (ValueError, ZeroDivisionError):
            pass
    raise MlplabError(f"{where}: expected a number, got {value!r}", hint="write numbers such as 0.25, or null")


def _parse(value: Any, where: str) -> Any:
    if isinstance(value, list):
        return [_parse(v, f"{where}[{i + 1}]") for i, v in enumerate(value)]
    return to_number(value, where)


def parse_answers(raw: Any, problem: Problem, source: str = "answers") -> dict[str, Any]:
    """Validate an answer sheet (a dict of key names to numbers, lists or null) against the key's names.

    Unknown names and values that are not numbers raise `MlplabError` naming them.
    """
    if not isinstance(raw, dict):
        raise MlplabError(f"{source} must be a JSON object of item names to values",
                          hint="start from `mlplab check --template --problem FILE`")
    variant = raw.get("variant")
    if variant is not None and str(variant) != problem.name:
        raise MlplabError(f"{source} are for variant {variant!r}, but the problem is {problem.name!r}",
                          hint="grade the sheet with its own variant's problem.json")
    names = answer_key(problem).values
    unknown = [k for k in raw if k not in names and k not in META_KEYS]
    if unknown:
        raise MlplabError(f"{source} has unknown item names: {', '.join(map(repr, unknown[:5]))}"
                          + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""),
                          hint="use the names of `mlplab check --template --problem FILE`")
    return {k: _parse(v, f"{source}: {k}") for k, v in raw.items() if k not in META_KEYS}


def _shape(value: Any) -> Any:
    return [_shape(v) for v in value] if isinstance(value, list) else None


def _flat(value: Any) -> list[Any]:
    return [x for v in value for x in _flat(v)] if isinstance(value, list) else [value]


def _all_agree(given: Any, target: Any) -> bool:
    """Same shape and every entry agrees (labels: equal)."""
    if _shape(given) != _shape(target):
        return False
    return all(g is not None and (g == t if isinstance(t, int) else agrees(g, t))
               for g, t in zip(_flat(given), _flat(target)))


def _diagnose(name: str, given: Any, exact: Any, problem: Problem) -> tuple[str | None, tuple[str, ...]]:
    named: dict[str, list[str]] = {}
    for mistake_id, alternatives in mistaken_values(problem).items():
        for detail, value in alternatives.get(name, []):
            # a mistake that leaves the value unchanged explains nothing; otherwise the given answer (wrong, and
            # often the mistaken value rounded) only has to agree with it
            if _flat(value) != _flat(exact) and _all_agree(given, value):
                named.setdefault(mistake_id, [])
                if detail and detail not in named[mistake_id]:
                    named[mistake_id].append(detail)
    if not named:
        return None, ()
    text = " or ".join(f"{m} ({', '.join(d)})" if d else m for m, d in named.items())
    return text, tuple(named)


def _given_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_given_json(v) for v in value]
    return None if value is None else float(value)


def check_answers(problem: Problem, answers: dict[str, Any]) -> CheckResult:
    """Grade `answers` (item name -> number, list or None; unknown names raise) on `problem`.

    >>> from mlplab.twolayer.problem import load_problem
    >>> r = check_answers(load_problem(), {"loss.bce.relu-sigmoid": 1.68, "grad.mse_b2.identity": -4.1})
    >>> [(i.status, i.diagnosis) for i in r.items if i.status != "missing"]
    [('right', None), ('wrong', 'missing-2-over-n (summed, no 2/N)')]
    """
    parsed = parse_answers(answers, problem)
    key = answer_key(problem)
    items = []
    for name, exact in key.values.items():
        given = parsed.get(name)
        expected = to_rounded(exact)
        if given is None or all(g is None for g in _flat(given)):
            items.append(ItemResult(name, "missing", expected, None, None))
            continue
        if _all_agree(given, exact):
            items.append(ItemResult(name, "right", expected, _given_json(given), None))
            continue
        diagnosis, ids = _diagnose(name, given, exact, problem)
        items.append(ItemResult(name, "wrong", expected, _given_json(given), diagnosis, ids))
    return CheckResult(problem.name, items)


def answer_template(problem: Problem) -> dict[str, Any]:
    """An empty answer sheet: every key item as null (lists of nulls in the item's shape), and the variant id.

    >>> from mlplab.twolayer.problem import load_problem
    >>> t = answer_template(load_problem()); t["variant"], t["table2.relu-relu.y_hat"]
    ('seed', [None, None, None, None])
    """
    return {"variant": problem.name, **{name: _shape(v) for name, v in answer_key(problem).values.items()}}


@dataclass(frozen=True)
class ClassReport:
    """The results of a class: one `CheckResult` per student, in the order given."""

    students: list[str]
    results: list[CheckResult]

    def grid(self) -> list[list[str]]:
        """Rows of items x students: 'right', 'missing' or 'wrong' (with the mistakes named); a last row of scores."""
        rows = []
        for k, name in enumerate(i.name for i in self.results[0].items) if self.results else []:
            row = [name]
            for r in self.results:
                item = r.items[k]
                row.append(item.status + (f": {'; '.join(item.mistakes)}" if item.mistakes else ""))
            rows.append(row)
        rows.append(["score", *(f"{r.score:.4f}" for r in self.results)])
        return rows

    def mistake_counts(self) -> dict[str, int]:
        """For each mistake, the number of students in whom it was named at least once (most common first)."""
        counts = Counter(m for r in self.results for m in r.mistakes())
        return {m: counts[m] for m in sorted(counts, key=lambda m: (-counts[m], MISTAKE_IDS.index(m)))}


def check_class(sheets: list[tuple[str, Problem, dict[str, Any]]]) -> ClassReport:
    """Grade every (student id, problem, answers) sheet; all sheets must have the same key items."""
    results = [check_answers(problem, answers) for _, problem, answers in sheets]
    names = [[i.name for i in r.items] for r in results]
    if any(n != names[0] for n in names):
        raise MlplabError("the answer sheets belong to problems of different shapes, so their items differ",
                          hint="grade each shape of problem in its own class folder")
    return ClassReport([s for s, _, _ in sheets], results)


def class_figure(report: ClassReport) -> Any:
    """Bar chart: how many students made each diagnosed mistake."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = report.mistake_counts()
    fig, ax = plt.subplots(figsize=(7.0, 0.5 * max(len(counts), 2) + 1.4))
    labels = list(counts)[::-1]
    ax.barh(labels, [counts[m] for m in labels], color="tab:red")
    for y, m in enumerate(labels):
        ax.text(counts[m], y, f" {counts[m]}", va="center")
    ax.set_xlim(0, max(len(report.students), 1))
    ax.set_xlabel(f"students (of {len(report.students)}) in whom the mistake was diagnosed")
    ax.set_title("Most common diagnosed mistakes" if counts else "No mistake diagnosed")
    fig.tight_layout()
    return fig
