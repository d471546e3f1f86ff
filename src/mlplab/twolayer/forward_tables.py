"""The assignment's Table 1 (identity/identity, Hand vs PyTorch) and Table 2 (all nine activation pairs).

"Hand" values come from the exact derivation (`mlplab.twolayer.byhand`), "PyTorch" values from `mlplab.twolayer.forward`
in float32 by default, as the assignment's code asks (`dtype=torch.float32`); pass `dtype=torch.float64` for
double precision. Tables keep raw values; they are rounded to two decimals only when rendered.
"""

from __future__ import annotations

from typing import Any

import torch

from mlplab.errors import MlplabError
from mlplab.tables import Table
from mlplab.twolayer.activations import SYMBOLS, activation_pairs
from mlplab.twolayer.byhand import Derivation, derive_by_hand
from mlplab.twolayer.forward import ForwardResult, forward
from mlplab.twolayer.problem import Problem

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """'float32' or 'float64' (or the torch dtype itself).

    >>> resolve_dtype("float64")
    torch.float64
    """
    if isinstance(name, torch.dtype) and name in DTYPES.values():
        return name
    if isinstance(name, str) and name in DTYPES:
        return DTYPES[name]
    raise MlplabError(f"unsupported dtype {name!r}", hint="use float32 (the assignment's choice) or float64")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def pytorch_forward(problem: Problem, activation1: str, activation2: str,
                    dtype: torch.dtype = torch.float32) -> ForwardResult:
    """`mlplab.twolayer.forward` on the problem's numbers, in `dtype`, on the CPU."""
    t = problem.tensors(dtype=resolve_dtype(dtype))
    return forward(t["X"], activation1, t["W1"], t["b1"], activation2, t["W2"], t["b2"])


def max_abs_difference(dv: Derivation, out: ForwardResult) -> float:
    """Largest |Hand - PyTorch| over every entry of Z1, A1, z2 and y_hat."""
    hand = dv.floats()
    return max(float((torch.tensor(hand[k], dtype=torch.float64) - getattr(out, k).double()).abs().max())
               for k in ("Z1", "A1", "z2", "y_hat"))


def _pair_label(a: str, b: str) -> str:
    return f"({SYMBOLS[a]}, {SYMBOLS[b]})"


def _var_labels(h: int) -> list[str]:
    return [*(f"a1[{j + 1}]" for j in range(h)), "y_hat"]


def table1(problem: Problem, dtype: torch.dtype = torch.float32) -> Table:
    """Table 1: a1 (every hidden entry) and y_hat per sample, identity in both layers, Hand and PyTorch.

    >>> from mlplab.twolayer.problem import load_problem
    >>> t = table1(load_problem())
    >>> t.columns[:3], [round(v, 4) for v in t.rows[-1][5:7]]
    (['Var.', 'x1 Hand', 'x1 PyTorch'], [-4.1, -4.1])
    """
    dv = derive_by_hand(problem, "identity", "identity")
    out = pytorch_forward(problem, "identity", "identity", dtype)
    hand = dv.floats()
    torch_vals = {"A1": out.A1.tolist(), "y_hat": out.y_hat.tolist()}
    rows = []
    for label, key, j in [*((f"a1[{j + 1}]", "A1", j) for j in range(problem.h)), ("y_hat", "y_hat", 0)]:
        row: list[Any] = [label]
        for i in range(problem.n):
            row += [hand[key][i][j], torch_vals[key][i][j]]
        rows.append(row)
    columns = ["Var.", *(f"x{i + 1} {src}" for i in range(problem.n) for src in ("Hand", "PyTorch"))]
    latex = ["Var.", *(f"$\\mathbf{{x}}_{{{i + 1}}}$ {src}" for i in range(problem.n) for src in ("Hand", "PyTorch"))]
    caption = (f"Intermediate values for the {problem.n} inputs with the identity activation in both "
               f"layers. Hand: exact rational arithmetic; PyTorch: mlplab.forward in {_dtype_name(dtype)}. "
               "Rounded to two decimals.")
    return Table("Table 1: identity activation, Hand vs PyTorch", columns, rows, caption=caption,
                 label="tab:table1", latex_columns=latex)


def table2(problem: Problem, dtype: torch.dtype = torch.float32) -> Table:
    """Table 2: a1 and y_hat per sample for all nine (sigma_1, sigma_2) pairs, from PyTorch, with the largest
    difference to the exact by-hand values in the last column.

    >>> from mlplab.twolayer.problem import load_problem
    >>> t = table2(load_problem())
    >>> [t.cell(r[4]) for r in t.rows if r[1] == "y_hat"]
    ['-4.10', '0.00', '0.02', '-4.10', '0.00', '0.02', '-1.25', '0.00', '0.22']
    """
    rows: list[list[Any]] = []
    rules = []
    for a, b in activation_pairs():
        dv = derive_by_hand(problem, a, b)
        out = pytorch_forward(problem, a, b, dtype)
        diff = f"{max_abs_difference(dv, out):.1e}"
        values = [*(out.A1[:, j].tolist() for j in range(problem.h)), out.y_hat[:, 0].tolist()]
        for k, (label, vals) in enumerate(zip(_var_labels(problem.h), values)):
            rows.append([_pair_label(a, b) if k == 0 else "", label, *vals, diff if k == 0 else ""])
        rules.append(len(rows) - 1)
    columns = ["(σ1, σ2)", "Var.", *(f"x{i + 1}" for i in range(problem.n)), "max abs(Hand - PyTorch)"]
    latex = ["$(\\sigma_1, \\sigma_2)$", "Var.", *(f"$\\mathbf{{x}}_{{{i + 1}}}$" for i in range(problem.n)),
             "$\\max|\\mathrm{Hand} - \\mathrm{PyTorch}|$"]
    caption = (f"Intermediate values for the {problem.n} inputs and the nine combinations of activation "
               f"functions, from mlplab.forward in {_dtype_name(dtype)}, rounded to two decimals; the last column "
               "is the largest difference to the exact by-hand values over Z1, A1, z2 and y_hat.")
    return Table("Table 2: all nine activation pairs", columns, rows, caption=caption, label="tab:table2",
                 latex_columns=latex, rules_after=rules)


def section1_values(problem: Problem, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Every raw value of section 1 as JSON-ready data: the problem, and per pair the exact by-hand values
    (fractions and 30-digit strings), the PyTorch values in `dtype`, and their largest difference."""
    pairs = []
    for a, b in activation_pairs():
        dv = derive_by_hand(problem, a, b)
        out = pytorch_forward(problem, a, b, dtype)
        pairs.append({"activation1": a, "activation2": b, "hand": dv.to_dict(),
                      "pytorch": {k: getattr(out, k).tolist() for k in ("Z1", "A1", "z2", "y_hat")},
                      "max_abs_difference": max_abs_difference(dv, out)})
    return {"problem": problem.to_json(), "pytorch_dtype": _dtype_name(resolve_dtype(dtype)), "pairs": pairs}
