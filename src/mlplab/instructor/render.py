"""An answer key as a page a person reads: Markdown (key.md) and LaTeX (key.tex, built into key.pdf)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from mlplab.instructor.key import AnswerKey, describe
from mlplab.tables import latex_escape, round_decimal


def fmt_value(value: Any) -> str:
    """A rounded key value as text: two decimals, lists in brackets, labels as integers.

    >>> fmt_value([[1.5, -0.5], [0.0, 2.0]]), fmt_value([1, 0]), fmt_value(0.1)
    ('[[1.50, -0.50], [0.00, 2.00]]', '[1, 0]', '0.10')
    """
    if isinstance(value, list):
        return "[" + ", ".join(fmt_value(v) for v in value) + "]"
    if isinstance(value, int):
        return str(value)
    return round_decimal(float(value), 2)


def _num(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_num(v) for v in value) + "]"
    q = Fraction(value)
    return str(q.numerator) if q.denominator == 1 else str(float(q))


def _problem_lines(key: AnswerKey) -> list[tuple[str, str]]:
    p = key.problem
    return [("X", _num(p.X)), ("y", _num(p.y)), ("W1", _num(p.W1)), ("b1", _num(p.b1)), ("w2", _num(p.w2)),
            ("b2", _num(p.b2))]


def key_markdown(key: AnswerKey) -> str:
    """The key as a Markdown page: the problem's numbers, then one table row per item.

    >>> from mlplab.twolayer.problem import load_problem
    >>> from mlplab.instructor.key import answer_key
    >>> [line for line in key_markdown(answer_key(load_problem())).splitlines() if "grad.mse_b2.sigmoid" in line]
    ['| `grad.mse_b2.sigmoid` | 0.10 | dL_MSE/db2 with (sigma1, sigma2) = (relu, sigmoid) |']
    """
    rounded = key.rounded()
    out = [f"# Answer key: {key.problem.name}", "", key.problem.description, "",
           *(f"- {name} = `{text}`" for name, text in _problem_lines(key)), "",
           "Values are rounded to two decimals, half away from zero. A student's answer counts as right when it "
           "rounds to the same two decimals or lies within 0.01 of the exact value.", "",
           "| item | value | what |", "|---|---|---|"]
    out += [f"| `{name}` | {fmt_value(value)} | {describe(name)} |" for name, value in rounded.items()]
    return "\n".join(out) + "\n"


def key_latex(key: AnswerKey) -> str:
    """The key as a standalone LaTeX document (longtable, so it breaks across pages)."""
    rounded = key.rounded()
    rows = [f"\\texttt{{{latex_escape(name)}}} & {latex_escape(fmt_value(value))} & {latex_escape(describe(name))} \\\\"
            for name, value in rounded.items()]
    problem = [f"\\item ${name}$ = \\texttt{{{latex_escape(text)}}}" for name, text in _problem_lines(key)]
    return "\n".join([
        "\\documentclass[10pt]{article}",
        "\\usepackage[a4paper,margin=1.8cm]{geometry}",
        "\\usepackage{array,longtable,booktabs}",
        "\\begin{document}",
        f"\\section*{{Answer key: {latex_escape(key.problem.name)}}}",
        latex_escape(key.problem.description.replace("`", "")),
        "\\begin{itemize}", *problem, "\\end{itemize}",
        "Values are rounded to two decimals, half away from zero. An answer counts as right when it rounds to "
        "the same two decimals or lies within 0.01 of the exact value.",
        "\\begin{longtable}{" + "".join(f">{{\\raggedright\\arraybackslash}}p{{{w}\\textwidth}}"
                                         for w in ("0.34", "0.3", "0.28")) + "}",
        "\\toprule item & value & what \\\\ \\midrule \\endhead",
        *rows,
        "\\bottomrule",
        "\\end{longtable}",
        "\\end{document}",
    ]) + "\n"
