"""Write a by-hand `Derivation` out as terminal text, Markdown, LaTeX or JSON.

One line per entry, showing the inner product term by term, e.g.

    z1[1,1] = x1·W1[:,1] + b1[1] = (1)(1) + (0)(-3/2) + (0)(1/2) + 1/2 = 3/2 = 1.50

Text and LaTeX share the layout and differ only in notation (`_TEXT`, `_LATEX`); Markdown wraps the text
lines in fenced blocks and adds result tables. Rounded figures use the same rule as `mlplab.tables`
(`round_decimal`: half away from zero), so a derivation and a table never disagree in the last digit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from mlplab.errors import MlplabError
from mlplab.tables import round_decimal
from mlplab.twolayer.byhand import ActivationStep, Derivation, InnerProduct, Value, frac_text

RENDER_FORMATS = ("text", "markdown", "latex", "json")
_SYMBOL = {"identity": "I", "relu": "ReLU", "sigmoid": "sigm"}


def round2(v: Value | float) -> str:
    """Two decimals as the assignment asks, without a '-0.00'.

    >>> round2(Value.of(Fraction(-1, 1000))), round2(2.345)
    ('0.00', '2.35')
    """
    return round_decimal(float(v), 2)


@dataclass(frozen=True)
class _Notation:
    """How one format writes names and numbers."""

    latex: bool

    def frac(self, q: Fraction) -> str:
        if not self.latex or q.denominator == 1:
            return frac_text(q)
        sign = "-" if q < 0 else ""
        return f"{sign}\\tfrac{{{abs(q.numerator)}}}{{{q.denominator}}}"

    def short(self, v: Value) -> str:
        """A factor inside a product: exact, or six digits and an ellipsis."""
        if v.exact is not None:
            return self.frac(v.exact)
        return v.digits(6) + ("\\ldots" if self.latex else "…")

    def paren(self, text: str) -> str:
        return f"({text})"

    @property
    def dot(self) -> str:
        return "\\cdot " if self.latex else "·"

    @property
    def approx(self) -> str:
        return "\\approx" if self.latex else "≈"

    def entry(self, matrix: str, i: int, j: int) -> str:
        if self.latex:
            return {"Z1": f"(\\mathbf{{Z}}_1)_{{{i},{j}}}", "A1": f"(\\mathbf{{A}}_1)_{{{i},{j}}}",
                    "z2": f"(\\mathbf{{z}}_2)_{{{i}}}", "y_hat": f"\\hat{{y}}_{{{i}}}"}[matrix]
        return {"Z1": f"z1[{i},{j}]", "A1": f"a1[{i},{j}]", "z2": f"z2[{i}]", "y_hat": f"y_hat[{i}]"}[matrix]

    def definition(self, e: InnerProduct) -> str:
        if self.latex:
            if e.matrix == "Z1":
                return f"\\mathbf{{x}}_{{{e.i}}}\\cdot(\\mathbf{{W}}_1)_{{:,{e.j}}} + (\\mathbf{{b}}_1)_{{{e.j}}}"
            return f"(\\mathbf{{A}}_1)_{{{e.i},:}}\\cdot\\mathbf{{w}}_2 + b_2"
        if e.matrix == "Z1":
            return f"x{e.i}·W1[:,{e.j}] + b1[{e.j}]"
        return f"A1[{e.i},:]·w2 + b2"

    def sigma(self, name: str, arg: str) -> str:
        if self.latex:
            return f"\\sigma_{{\\mathrm{{{_SYMBOL[name]}}}}}\\big({arg}\\big)"
        return f"σ_{_SYMBOL[name]}({arg})"

    def relu(self, arg: str) -> str:
        return f"\\max\\{{0, {arg}\\}}" if self.latex else f"max{{0, {arg}}}"

    def sigmoid_closed_form(self, t: Value) -> str:
        if t.exact is not None:
            neg = self.frac(-t.exact) if not self.latex else _latex_exponent(-t.exact)
        else:
            neg = self.short(Value(None, -t.approx))
        return f"\\frac{{1}}{{1 + e^{{{neg}}}}}" if self.latex else f"1/(1 + e^({neg}))"

    def tail(self, v: Value) -> str:
        """'= exact = rounded', '= exact ≈ rounded' or '≈ 30 digits ≈ rounded'."""
        r = round2(v)
        if v.exact is not None:
            if v.exact.denominator == 1:
                return f"= {self.frac(v.exact)}"
            return f"= {self.frac(v.exact)} {'=' if Fraction(r) == v.exact else self.approx} {r}"
        # LaTeX shows 12 significant digits (30 run off an A4 page in an align); the text keeps them all.
        return f"{self.approx} {v.digits(12) if self.latex else v.digits()} {self.approx} {r}"


def _latex_exponent(q: Fraction) -> str:
    return frac_text(q)  # a slash reads better than \tfrac in a superscript: e^{-3/2}


_TEXT = _Notation(latex=False)
_LATEX = _Notation(latex=True)


def inner_product_line(e: InnerProduct, nt: _Notation = _TEXT) -> str:
    """One entry of Z1 or z2 written as its inner product.

    >>> from mlplab.twolayer.problem import load_problem
    >>> from mlplab.twolayer.byhand import derive_by_hand
    >>> inner_product_line(derive_by_hand(load_problem()).Z1[0][0])
    'z1[1,1] = x1·W1[:,1] + b1[1] = (1)(1) + (0)(-3/2) + (0)(1/2) + 1/2 = 3/2 = 1.50'
    """
    products = " + ".join(nt.paren(nt.short(a)) + nt.paren(nt.frac(b)) for a, b in e.factors)
    bias = f"- {nt.frac(-e.bias)}" if e.bias < 0 else f"+ {nt.frac(e.bias)}"
    return f"{nt.entry(e.matrix, e.i, e.j)} = {nt.definition(e)} = {products} {bias} {nt.tail(e.value)}"


def activation_line(e: ActivationStep, nt: _Notation = _TEXT) -> str:
    """One entry of A1 or y_hat: the activation applied to its pre-activation."""
    source = nt.entry("Z1" if e.matrix == "A1" else "z2", e.i, e.j)
    lhs = f"{nt.entry(e.matrix, e.i, e.j)} = {nt.sigma(e.activation, source)}"
    if e.activation == "relu":
        return f"{lhs} = {nt.relu(nt.short(e.argument))} {nt.tail(e.value)}"
    if e.activation == "sigmoid" and e.value.exact is None:
        return f"{lhs} = {nt.sigmoid_closed_form(e.argument)} {nt.tail(e.value)}"
    return f"{lhs} {nt.tail(e.value)}"


def _pair_title(dv: Derivation) -> str:
    return f"(σ1, σ2) = (σ_{_SYMBOL[dv.activation1]}, σ_{_SYMBOL[dv.activation2]})"


def _steps(dv: Derivation, nt: _Notation) -> list[tuple[str, list[str]]]:
    """The four steps: (a sentence stating the operation and the dimensions, the entry lines)."""
    sentences = _latex_sentences(dv) if nt.latex else _text_sentences(dv)
    lines = [[inner_product_line(e, nt) for row in dv.Z1 for e in row],
             [activation_line(e, nt) for row in dv.A1 for e in row],
             [inner_product_line(e, nt) for e in dv.z2],
             [activation_line(e, nt) for e in dv.y_hat]]
    return list(zip(sentences, lines))


def _text_sentences(dv: Derivation) -> list[str]:
    n, d, h = dv.problem.n, dv.problem.d, dv.problem.h
    s1, s2 = _SYMBOL[dv.activation1], _SYMBOL[dv.activation2]
    return [f"Z1 = X W1 + 1_{n} b1: ({n}×{d})({d}×{h}) + ({n}×1)(1×{h}), so Z1 is {n}×{h}",
            f"A1 = σ_{s1}(Z1), entry by entry, so A1 is {n}×{h}",
            f"z2 = A1 w2 + b2 1_{n}: ({n}×{h})({h}×1) + ({n}×1), so z2 is {n}×1",
            f"y_hat = σ_{s2}(z2), entry by entry, so y_hat is {n}×1"]


def _latex_sentences(dv: Derivation) -> list[str]:
    n, d, h = dv.problem.n, dv.problem.d, dv.problem.h
    s1, s2 = (f"\\sigma_{{\\mathrm{{{_SYMBOL[a]}}}}}" for a in (dv.activation1, dv.activation2))
    R = "\\in \\mathbb{R}^"
    return [f"$\\mathbf{{Z}}_1 = \\mathbf{{X}}\\mathbf{{W}}_1 + \\mathbf{{1}}_{{{n}}}\\mathbf{{b}}_1$: "
            f"$({n}\\times {d})({d}\\times {h}) + ({n}\\times 1)(1\\times {h})$, "
            f"so $\\mathbf{{Z}}_1 {R}{{{n}\\times {h}}}$.",
            f"$\\mathbf{{A}}_1 = {s1}(\\mathbf{{Z}}_1)$ entry by entry, so $\\mathbf{{A}}_1 {R}{{{n}\\times {h}}}$.",
            f"$\\mathbf{{z}}_2 = \\mathbf{{A}}_1\\mathbf{{w}}_2 + b_2\\mathbf{{1}}_{{{n}}}$: "
            f"$({n}\\times {h})({h}\\times 1) + ({n}\\times 1)$, so $\\mathbf{{z}}_2 {R}{{{n}\\times 1}}$.",
            f"$\\hat{{\\mathbf{{y}}}} = {s2}(\\mathbf{{z}}_2)$ entry by entry, "
            f"so $\\hat{{\\mathbf{{y}}}} {R}{{{n}\\times 1}}$."]


def _grid(rows: Sequence[Sequence[Value]]) -> list[str]:
    cells = [[round2(v) for v in row] for row in rows]
    width = max(len(c) for row in cells for c in row)
    return ["[ " + "  ".join(c.rjust(width) for c in row) + " ]" for row in cells]


def _results(dv: Derivation) -> tuple[list[list[Value]], list[list[Value]]]:
    return [[e.value for e in row] for row in dv.A1], [[e.value] for e in dv.y_hat]


def render_text(dv: Derivation) -> str:
    """The derivation of one pair as terminal text."""
    p = dv.problem
    out = [f"Forward pass by hand, {_pair_title(dv)}, problem {p.name!r} "
           f"(N={p.n} samples, d={p.d} inputs, h={p.h} hidden units)", ""]
    for k, (sentence, lines) in enumerate(_steps(dv, _TEXT), start=1):
        out += [f"Step {k}. {sentence}", *("  " + line for line in lines), ""]
    A1, y_hat = _results(dv)
    out.append("Result, rounded to two decimals:")
    for name, rows in (("A1", A1), ("y_hat", y_hat)):
        label = f"  {name} ({len(rows)}×{len(rows[0])}) = "
        grid = _grid(rows)
        out += [label + grid[0], *(" " * len(label) + g for g in grid[1:])]
    return "\n".join(out)


def render_markdown(dv: Derivation) -> str:
    """The derivation of one pair as Markdown: fenced entry lines and result tables."""
    p = dv.problem
    out = [f"### Forward pass by hand, {_pair_title(dv)}", "",
           f"Problem `{p.name}`: N={p.n} samples, d={p.d} inputs, h={p.h} hidden units.", ""]
    for k, (sentence, lines) in enumerate(_steps(dv, _TEXT), start=1):
        out += [f"**Step {k}.** {sentence}.", "", "```text", *lines, "```", ""]
    A1, y_hat = _results(dv)
    header = ["sample", *(f"a1[{j + 1}]" for j in range(p.h)), "y_hat"]
    out += ["**Result, rounded to two decimals** (A1 is "
            f"{p.n}×{p.h}, y_hat is {p.n}×1):", "",
            "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    out += [f"| x{i + 1} | " + " | ".join(round2(v) for v in [*A1[i], *y_hat[i]]) + " |" for i in range(p.n)]
    return "\n".join(out)


def render_latex(dv: Derivation) -> str:
    """The derivation of one pair as a LaTeX fragment (needs amsmath; fits in any article)."""
    p = dv.problem
    title = (f"Forward pass by hand, $(\\sigma_1, \\sigma_2) = (\\sigma_{{\\mathrm{{{_SYMBOL[dv.activation1]}}}}}, "
             f"\\sigma_{{\\mathrm{{{_SYMBOL[dv.activation2]}}}}})$")
    out = [f"\\subsection*{{{title}}}", f"Problem: $N={p.n}$ samples, $d={p.d}$ inputs, $h={p.h}$ hidden units.", ""]
    for k, (sentence, lines) in enumerate(_steps(dv, _LATEX), start=1):
        out += [f"\\paragraph{{Step {k}.}} {sentence}", "\\begin{align*}"]
        out += [_align(line) + (" \\\\" if i < len(lines) - 1 else "") for i, line in enumerate(lines)]
        out += ["\\end{align*}", ""]
    A1, y_hat = _results(dv)
    out += ["Rounded to two decimals:", "\\[",
            f"\\mathbf{{A}}_1 \\approx {_bmatrix(A1)} \\in \\mathbb{{R}}^{{{p.n}\\times {p.h}}}, \\qquad",
            f"\\hat{{\\mathbf{{y}}}} \\approx {_bmatrix(y_hat)} \\in \\mathbb{{R}}^{{{p.n}\\times 1}}.", "\\]"]
    return "\n".join(out)


def _align(line: str) -> str:
    lhs, _, rhs = line.partition(" = ")
    return f"{lhs} &= {rhs}"


def _bmatrix(rows: Sequence[Sequence[Value]]) -> str:
    body = " \\\\ ".join(" & ".join(round2(v) for v in row) for row in rows)
    return f"\\begin{{bmatrix}} {body} \\end{{bmatrix}}"


def render_derivations(derivations: Sequence[Derivation], fmt: str) -> str:
    """Render one or several derivations in `fmt` (text, markdown, latex or json).

    >>> from mlplab.twolayer.problem import load_problem
    >>> from mlplab.twolayer.byhand import derive_by_hand
    >>> render_derivations([derive_by_hand(load_problem())], "text").splitlines()[3]
    '  z1[1,1] = x1·W1[:,1] + b1[1] = (1)(1) + (0)(-3/2) + (0)(1/2) + 1/2 = 3/2 = 1.50'
    """
    if fmt == "json":
        return json.dumps([{**dv.to_dict(), "lines": [line for _, lines in _steps(dv, _TEXT) for line in lines]}
                           for dv in derivations], indent=2)
    renderer = {"text": render_text, "markdown": render_markdown, "latex": render_latex}.get(fmt)
    if renderer is None:
        raise MlplabError(f"unknown format {fmt!r}", hint=f"use one of {', '.join(RENDER_FORMATS)}")
    sep = "\n\n" + ("=" * 100 + "\n\n" if fmt == "text" else "")
    return sep.join(renderer(dv) for dv in derivations)
