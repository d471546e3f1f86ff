"""Answers to section 1 of the assignment (forward propagation), written from the numbers of this run.

Every function takes plain numbers (the problem and the forward results) and returns LaTeX sentences; nothing
here reads files. A claim is either a number computed from its arguments or a statement with a citation key
from `mlplab.report.references`. Change the problem and the sentences change with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

SYM = {"identity": r"\sigma_I", "relu": r"\sigma_{\mathrm{ReLU}}", "sigmoid": r"\sigma_{\mathrm{sigm}}"}


def num(value: float, decimals: int = 2) -> str:
    """A number for math mode, rounded half away from zero, without a minus sign on zero.

    >>> num(2.345), num(-0.001), num(-4.1)
    ('2.35', '0.00', '-4.10')
    """
    scaled = abs(value) * 10**decimals
    rounded = math.floor(scaled + 0.5 + 1e-9) / 10**decimals
    text = f"{math.copysign(rounded, value):.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def matrix(rows: Sequence[Sequence[float]], decimals: int = 2) -> str:
    """A bmatrix of rounded numbers (math mode)."""
    body = r" \\ ".join(" & ".join(num(v, decimals) for v in row) for row in rows)
    return r"\begin{bmatrix} " + body + r" \end{bmatrix}"


def pair_tex(s1: str, s2: str) -> str:
    return f"$({SYM[s1]}, {SYM[s2]})$"


def dimensions_answer(A1: Sequence[Sequence[float]], y_hat: Sequence[float]) -> str:
    """1.1 (1): A1 and y_hat with their dimensions.

    >>> "4 \\\\times 2" in dimensions_answer([[1.5, -0.5]] * 4, [1.65] * 4)
    True
    """
    n, h = len(A1), len(A1[0])
    return (f"With the identity in both layers, $\\mathbf{{A}}_1 = \\mathbf{{Z}}_1 = {matrix(A1)} "
            f"\\in \\mathbb{{R}}^{{{n} \\times {h}}}$ and $\\hat{{\\mathbf{{y}}}} = \\mathbf{{z}}_2 = "
            f"{matrix([[v] for v in y_hat])} \\in \\mathbb{{R}}^{{{n} \\times 1}}$: one row per input vector, one "
            f"column per hidden unit for $\\mathbf{{A}}_1$ and a single output column for $\\hat{{\\mathbf{{y}}}}$.")


def consistency_answer(max_difference: float, n_values: int) -> str:
    """1.2 (4): how far the float32 PyTorch values are from the exact hand values."""
    verdict = ("so every entry agrees to the two decimals asked for" if max_difference < 0.005
               else "which is visible at two decimals: check the hand calculation")
    return (f"The hand values come from exact rational arithmetic and the PyTorch values from \\texttt{{forward}} "
            f"in float32. Over all {n_values} entries of Table~\\ref{{tab:table1}} the largest difference is "
            f"${_sci(max_difference)}$, {verdict}; the differences are float32 rounding (a relative precision of "
            "about $6\\times 10^{-8}$).")


def linear_collapse(W1: Sequence[Sequence[Fraction]], b1: Sequence[Fraction], w2: Sequence[Fraction],
                    b2: Fraction) -> tuple[list[Fraction], Fraction]:
    """The single linear layer (w, c) that the identity-identity network equals: y_hat = X w + c.

    >>> linear_collapse([[Fraction(1)], [Fraction(2)]], [Fraction(1)], [Fraction(3)], Fraction(1))
    ([Fraction(3, 1), Fraction(6, 1)], Fraction(4, 1))
    """
    w = [sum((row[j] * w2[j] for j in range(len(w2))), Fraction(0)) for row in W1]
    c = sum((b1[j] * w2[j] for j in range(len(w2))), Fraction(0)) + b2
    return w, c


def activation_answer(outputs: Mapping[tuple[str, str], Mapping[str, Any]], w: Sequence[Fraction], c: Fraction,
                      n_samples: int) -> str:
    """1.3 (6): why the outputs differ, from the nine pairs' numbers, with citations.

    `outputs[(s1, s2)]` holds lists `Z1` (N×h), `z2` and `y_hat` (N).
    """
    ident = outputs[("identity", "identity")]
    relu_hidden = outputs[("relu", "identity")]
    dead = sum(1 for row in relu_hidden["Z1"] for v in row if v <= 0)
    total = sum(len(row) for row in relu_hidden["Z1"])
    clipped = sum(1 for v in outputs[("identity", "relu")]["z2"] if v <= 0)
    sig = outputs[("sigmoid", "sigmoid")]
    slopes = [v * (1 - v) for v in sig["y_hat"]]
    hidden_slopes = [1 / (1 + math.exp(-z)) * (1 - 1 / (1 + math.exp(-z))) for row in sig["Z1"] for z in row]
    lo = min(min(r["y_hat"]) for k, r in outputs.items() if k[1] == "sigmoid")
    hi = max(max(r["y_hat"]) for k, r in outputs.items() if k[1] == "sigmoid")
    ws = ", ".join(num(float(v)) for v in w)
    parts = [
        "\\textbf{Nonlinearity.} With $\\sigma_I$ in both layers the network is one affine map: "
        "$\\hat{\\mathbf{y}} = \\mathbf{X}(\\mathbf{W}_1\\mathbf{w}_2) + (\\mathbf{b}_1\\mathbf{w}_2 + b_2)$ "
        f"with $\\mathbf{{W}}_1\\mathbf{{w}}_2 = [{ws}]^T$ and "
        f"$\\mathbf{{b}}_1\\mathbf{{w}}_2 + b_2 = {num(float(c))}$ "
        f"for this problem, so its outputs ({', '.join(num(v) for v in ident['y_hat'])}) are unbounded and the hidden "
        "layer adds nothing a single linear layer could not do \\citep[ch.~6]{goodfellow2016deep}.",
        f"ReLU in the hidden layer sets {dead} of the {total} hidden pre-activations of $\\mathbf{{Z}}_1$ to zero, and "
        f"ReLU at the output clips {clipped} of the {n_samples} outputs to $0$: a piecewise-linear bend that makes the "
        "map nonlinear while keeping a slope of exactly 1 wherever a unit is active "
        "\\citep{nair2010rectified,glorot2011deep}.",
        f"The sigmoid squashes every output into $(0, 1)$: here between {num(lo)} and {num(hi)}, which is what lets "
        "$\\hat y$ be read as a probability in section 2.",
        "\\textbf{Vanishing gradient.} The sigmoid's slope $\\sigma'(t) = \\sigma(t)(1-\\sigma(t))$ is at most "
        f"$0.25$ (at $t=0$). For {pair_tex('sigmoid', 'sigmoid')} the output slopes are "
        f"{', '.join(num(v, 3) for v in slopes)} and the hidden slopes lie between {num(min(hidden_slopes), 3)} and "
        f"{num(max(hidden_slopes), 3)}, so a gradient passing both layers is multiplied by at most "
        f"${num(max(slopes) * max(hidden_slopes), 3)}$; stacked over many layers such factors shrink it "
        "geometrically, which is why deep sigmoid networks train slowly \\citep{glorot2010understanding}. ReLU's "
        "slope is 1 for active units, so it does not shrink the gradient, but a unit whose pre-activation is "
        "negative for every input passes no gradient at all (a dead unit, seen in section 2.4).",
        "\\textbf{In short.} Identity: simple, unbounded, exact gradients, but no nonlinearity. ReLU: cheap, "
        "nonlinear, no saturation for positive inputs, but zero gradient for negative ones and unbounded outputs. "
        "Sigmoid: smooth and bounded with a probabilistic reading, but saturating (vanishing gradient) and "
        "not centred at zero \\citep[sec.~6.3]{goodfellow2016deep}.",
    ]
    return "\n\n".join(parts)


def stream_answer(stream: Mapping[str, Any] | None, d: int) -> str:
    """1.1 (2): the strategy for 10^12 inputs, with the arithmetic from this machine's measured rate."""
    rows_total = 10**12
    bytes_total = rows_total * d * 4
    parts = [
        "Never hold all inputs at once. The forward pass treats every row independently, so the inputs can be read "
        "from disk in chunks of a fixed number of rows (for example $2^{20}$), each chunk pushed through "
        "$\\sigma_2(\\sigma_1(\\mathbf{X}_c\\mathbf{W}_1 + \\mathbf{b}_1)\\mathbf{w}_2 + b_2)$ on the GPU, and its "
        "$\\hat{\\mathbf{y}}$ written out (or reduced to running statistics) before the next chunk is loaded. "
        "Memory then depends on the chunk size, not on the number of rows. Chunks are grouped into shards that are "
        "recorded when finished, so an interrupted run resumes where it stopped, and the shards can be spread over "
        "the GPUs or machines of a cluster (mlplab uses Dask for this), since no shard depends on another.",
    ]
    if stream and stream.get("rows_per_s"):
        rate = float(stream["rows_per_s"])
        hours = rows_total / rate / 3600
        parts.append(
            f"\\textbf{{The arithmetic.}} $10^{{12}}$ rows of $d = {d}$ float32 inputs are "
            f"${bytes_total / 1e12:.0f}$~TB. The demonstration run of this report streamed "
            f"${int(stream.get('rows', 0)):,}$ rows in chunks of ${int(stream.get('chunk_rows', 0)):,}$ "
            f"(${int(stream.get('shards', 1))}$ shard(s)) at ${rate:,.0f}$ rows/s on this machine, so one such "
            f"process needs about ${hours:,.1f}$ hours for $10^{{12}}$ rows, and $k$ processes about $1/k$ of that. "
            "Reading is the other limit: at 1 GB/s from disk the inputs alone take "
            f"${bytes_total / 1e9 / 3600:,.1f}$ hours, so the data must be sharded across disks as well as "
            "processors.".replace(",", "{,}"))
    return "\n\n".join(parts)


def _sci(value: float) -> str:
    if value == 0:
        return "0"
    mant, exp = f"{value:.1e}".split("e")
    return f"{mant}\\times 10^{{{int(exp)}}}"
