"""The report's sections 1 and 2: one subsection per seed question, holding the computed material for it.

Tables, derivations and figures come from `results/section1` and `results/section2` (written by
`mlplab forward`/`mlplab backward`); the few numbers quoted in running text are computed here from the same
problem with `mlplab.forward`. Discussion questions get those numbers and a box for the student's words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mlplab.activations import activation_pairs
from mlplab.forward import forward
from mlplab.problem import Problem
from mlplab.report.latex import Material, fmt_num, tex

RUN1 = "mlplab reproduce --only section1"
RUN2 = "mlplab reproduce --only section2"
RUN_STREAM = "mlplab reproduce --only stream"
SYM = {"identity": r"\sigma_I", "relu": r"\sigma_{\mathrm{ReLU}}", "sigmoid": r"\sigma_{\mathrm{sigm}}"}


def question(number: str, title: str) -> str:
    return (f"\\subsubsection*{{Question {number}: {title}}}\n"
            f"\\addcontentsline{{toc}}{{subsubsection}}{{\\texorpdfstring{{({number}) {title}}}"
            f"{{Question {number}}}}}\n")


def _pair_tex(a: str, b: str) -> str:
    return f"$({SYM[a]}, {SYM[b]})$"


def _outputs(problem: Problem) -> dict[tuple[str, str], Any]:
    p = problem.tensors()
    return {(a, b): forward(p["X"], a, p["W1"], p["b1"], b, p["W2"], p["b2"]) for a, b in activation_pairs()}


def _vec(values: Sequence[float], decimals: int = 2) -> str:
    return "$[" + ",\\ ".join(f"{v:.{decimals}f}".replace("-0.00", "0.00") for v in values) + "]$"


def section1(m: Material, problem: Problem, stream: dict[str, Any] | None) -> str:
    outs = _outputs(problem)
    ident = outs[("identity", "identity")]
    n, h = problem.n, problem.h
    out = ["\\section{Two-layer MLP: forward propagation}",
           "\\subsection{Forward propagation with the identity activation (seed 1.1)}",
           question("1", "the network by hand, $\\mathbf{A}_1$ and $\\hat{\\mathbf{y}}$"),
           f"The network has $d={problem.d}$ inputs, $h={h}$ hidden units and one output; every edge carries its "
           "weight and every neuron its bias (Figure~\\ref{fig:network}).",
           m.figure(["section1/network*.pdf", "section1/*net*.pdf"],
                    "The two-layer network of the problem, edges labelled with weights, neurons with biases."
                    "\\label{fig:network}", "The network figure.", RUN1, width="0.7"),
           f"Dimensions: $\\mathbf{{A}}_1 \\in \\mathbb{{R}}^{{{n}\\times {h}}}$ and "
           f"$\\hat{{\\mathbf{{y}}}} \\in \\mathbb{{R}}^{{{n}\\times 1}}$. Every entry, written as its inner product "
           "in exact arithmetic:",
           m.fragment(["section1/byhand.tex", "section1/byhand*.tex"], "The by-hand derivation.", RUN1,
                      demote=True),
           "The same derivation for all nine activation pairs is in Appendix~\\ref{app:byhand}.",
           "\\studentanswer{The seed asks for a photo of your own handwritten work here; compare it line by line "
           "with the derivation above.}",
           question("2", "one trillion inputs"),
           _stream_facts(m, stream),
           "\\studentanswer{Propose and explain your strategy; the measurements above are what mlplab's "
           "streaming engine achieved on this machine.}",
           "\\subsection{PyTorch implementation and verification (seed 1.2)}",
           question("3", "\\texttt{forward(X, activ\\_func1, W1, b1, activ\\_func2, W2, b2)}"),
           "The function is \\texttt{mlplab.forward.forward}; its source is in Appendix~\\ref{app:code}. It returns "
           "$\\mathbf{Z}_1, \\mathbf{A}_1, \\mathbf{z}_2, \\hat{\\mathbf{y}}$ as named fields. With identity "
           f"activations it gives $\\hat{{\\mathbf{{y}}}} = $ {_vec(ident.y_hat.flatten().tolist())}.",
           question("4", "Table 1, by hand and in PyTorch"),
           m.table(["section1/table1.tex", "section1/*table1*.tex"], "Table 1.", RUN1),
           question("5", "Table 2, all activation pairs"),
           m.table(["section1/table2.tex", "section1/*table2*.tex"], "Table 2.", RUN1),
           question("6", "why the outputs differ: nonlinearity and vanishing gradients"),
           _activation_facts(outs),
           "\\studentanswer{Discuss the nonlinear property and the vanishing gradient, with the advantages and "
           "disadvantages of each activation; cite your sources (for example "
           "\\cite{goodfellow2016deep,nair2010rectified,glorot2010understanding}).}"]
    return "\n".join(out)


def _stream_facts(m: Material, stream: dict[str, Any] | None) -> str:
    if not stream:
        return m.not_produced("The streaming measurements.", RUN_STREAM)
    rows = stream.get("rows")
    rate = stream.get("rows_per_s")
    parts = [f"mlplab's streaming engine ran the forward pass over {fmt_num(rows)} synthetic input rows in chunks "
             f"of {fmt_num(stream.get('chunk_rows'))} rows, so memory stays bounded whatever the number of rows."]
    if rate:
        parts.append(f"It reached {fmt_num(float(rate), 0)} rows/s on this machine "
                     f"({tex(str(stream.get('machine', 'this machine')))}); at that rate $10^{{12}}$ rows take "
                     f"{fmt_num(1e12 / float(rate) / 3600, 1)} hours in one such process, and their float32 inputs "
                     f"alone are {fmt_num(1e12 * 4 * problem_d(stream) / 1e12, 0)} TB.")
    if stream.get("mean_y_hat") is not None:
        parts.append(f"Summary computed on the fly: {fmt_num(stream.get('positives'))} predicted positives "
                     f"($\\hat y \\ge 0.5$), mean $\\hat y = $ {fmt_num(stream.get('mean_y_hat'))}.")
    table = m.table(["stream/stream.tex"], "The streaming table.", RUN_STREAM)
    return "\\facts{" + " ".join(parts) + "}\n" + table


def problem_d(stream: dict[str, Any]) -> int:
    return int(stream.get("d", 3))


def _activation_facts(outs: dict[tuple[str, str], Any]) -> str:
    items = []
    for (a, b), res in outs.items():
        y = res.y_hat.flatten()
        note = ""
        if b == "sigmoid":
            slope = (y * (1 - y)).max().item()
            note = f"; largest $\\sigma'(z_2) = \\hat y(1-\\hat y)$ is {fmt_num(slope, 3)} (at most $0.25$)"
        elif b == "relu":
            note = f"; {int((res.z2.flatten() <= 0).sum())} of {len(y)} outputs clipped to $0$ (zero gradient)"
        dead = int((res.Z1 <= 0).sum()) if a == "relu" else None
        hidden = f"; {dead} of {res.Z1.numel()} hidden pre-activations $\\le 0$" if dead is not None else ""
        items.append(f"\\item {_pair_tex(a, b)}: $\\hat{{\\mathbf{{y}}}} = $ "
                     f"{_vec(y.tolist())}{note}{hidden}.")
    return "\\facts{Outputs per pair:}\n\\begin{itemize}\\small\n" + "\n".join(items) + "\n\\end{itemize}\n"


def section2(m: Material, problem: Problem, errata_latex: str | None) -> str:
    outs = _outputs(problem)
    y = [float(v) for v in problem.y]
    out = ["\\section{Two-layer MLP: backward propagation}",
           f"Labels: $\\mathbf{{y}} = $ {_vec(y, 0)}.",
           "\\subsection{Binary classification with the sigmoid (seed 2.1)}",
           question("1", "the decision threshold"),
           "\\facts{$\\sigma_{\\mathrm{sigm}}(t) = 0.5$ exactly when $t = 0$, so the threshold $\\hat y = 0.5$ "
           "corresponds to $t = z_2 = 0$.}",
           "\\studentanswer{State the threshold and the boundary in your own words.}",
           question("2", "the classes of $\\mathbf{x}_1, \\dots, \\mathbf{x}_4$"),
           "\\facts{" + ", ".join(f"$\\mathbf{{x}}_{i + 1}$: class {int(v)}" for i, v in enumerate(y)) + ".}",
           "\\studentanswer{Interpret the label vector.}",
           question("3", "interpreting $\\hat{\\mathbf{y}}$ and predicting labels"),
           m.table(["section2/classify.tex", "section2/*classif*.tex"], "The classification table.", RUN2),
           "\\studentanswer{Explain how the sigmoid output is read as a probability and turned into a label.}",
           "\\subsection{Loss functions (seed 2.2)}",
           question("4", "MSE for $(\\sigma_{\\mathrm{ReLU}}, \\sigma_{\\mathrm{sigm}})$ and "
                         "$(\\sigma_{\\mathrm{sigm}}, \\sigma_{\\mathrm{sigm}})$"),
           _loss_facts(outs, y),
           m.table(["section2/losses.tex", "section2/*loss*.tex"], "The loss breakdown tables.", RUN2),
           question("5", "BCE, term by term"),
           "Each BCE term $-[y_i \\log \\hat y_i + (1-y_i)\\log(1-\\hat y_i)]$ and their mean are in the last "
           "column of the loss tables of question (4). The seed's equation (6) has a sign error inside the "
           "bracket; see the errata.",
           question("6", "which loss penalises misclassified samples more"),
           "\\studentanswer{Compare MSE and BCE for each pair, using the numbers above.}",
           question("7", "sensitivity near the decision boundary"),
           "The sensitivity table (each loss and its gradients at $\\hat y = 0.49$ and $0.51$, for $y = 1$ and "
           "$y = 0$) is the last table of question (4).",
           "\\studentanswer{Which loss reacts more to $\\hat y = 0.49$ against $0.51$, and why?}",
           "\\subsection{Gradients of loss functions (seed 2.3)}",
           question("8", "$\\partial \\mathcal{L}_{MSE} / \\partial b_2$ by the chain rule, $\\sigma_2 = \\sigma_I$"),
           "With $\\hat y_i = z_{2,i} = \\mathbf{a}_{1,i}\\mathbf{w}_2 + b_2$ and "
           "$\\mathcal{L}_{MSE} = \\frac1N\\sum_i (\\hat y_i - y_i)^2$: "
           "$\\frac{\\partial \\mathcal{L}}{\\partial b_2} = \\frac1N \\sum_i "
           "\\frac{\\partial \\mathcal{L}_i}{\\partial \\hat y_i}\\,\\frac{\\partial \\hat y_i}{\\partial z_{2,i}}"
           "\\,\\frac{\\partial z_{2,i}}{\\partial b_2} = \\frac{2}{N}\\sum_i (\\hat y_i - y_i)\\cdot 1 \\cdot 1$ "
           "(a scalar, like $b_2$). Table 3 of the seed writes $\\partial\\mathcal{L}_{MSE}/\\partial\\hat y$ without "
           "the factor 2; see the errata section.",
           question("9", "its value"),
           _b2_facts(outs, y),
           m.table(["section2/gradients.tex", "section2/*grad*.tex"], "The gradient tables.", RUN2),
           question("10", "the same with $\\sigma_2 = \\sigma_{\\mathrm{sigm}}$"),
           "With a sigmoid output, $\\partial \\hat y_i/\\partial z_{2,i} = \\hat y_i(1-\\hat y_i)$, so "
           "$\\frac{\\partial \\mathcal{L}_{MSE}}{\\partial b_2} = \\frac{2}{N}\\sum_i (\\hat y_i - y_i)\\,"
           "\\hat y_i(1-\\hat y_i)$; its value for each pair is in the first gradient table of question (9).",
           question("11", "what \\texttt{main()} does: chain rule, autograd and finite differences"),
           "The gradient tables of question (9) put the chain-rule gradients (from the local derivatives of Table 3), "
           "float64 autograd (what \\texttt{compute\\_gradients} returns) and central finite differences side "
           "by side, with the CS231n relative error.",
           "\\studentanswer{Interpret \\texttt{main()}: what \\texttt{compute\\_gradients} returns and why the three "
           "columns agree.}",
           "\\subsection{Gradient descent (seed 2.4)}",
           question("12--13", "gradient descent with $\\eta = 0.01$, 1000 epochs"),
           m.figure(["section2/descent_bce/descent_loss.pdf", "section2/**/*descent*.pdf"],
                    "BCE loss per epoch of full-batch gradient descent, $(\\sigma_{\\mathrm{ReLU}}, "
                    "\\sigma_{\\mathrm{sigm}})$, $\\eta = 0.01$ and $\\eta = 10$.",
                    "The gradient-descent curves (BCE).", RUN2),
           m.table(["section2/descent_bce/descent.tex"], "The gradient-descent verdicts (BCE).", RUN2),
           "The same with the MSE loss:",
           m.figure(["section2/descent_mse/descent_loss.pdf"], "MSE loss per epoch of full-batch gradient descent.",
                    "The gradient-descent curves (MSE).", RUN2),
           m.table(["section2/descent_mse/descent.tex"], "The gradient-descent verdicts (MSE).", RUN2),
           "The verdict rule (converging, flat, oscillating, diverging) is computed from the recorded losses; it is "
           "documented with the code (\\texttt{mlplab/descent.py}, Appendix~\\ref{app:code}).",
           "\\studentanswer{Two or three sentences on convergence: smooth and decreasing, noisy, or flat?}",
           question("14", "step size $\\eta = 10$"),
           "\\studentanswer{Two or three sentences on the $\\eta = 10$ curve: divergence or oscillation?}",
           "\\subsection{Errors in the assignment text}",
           "Each error of the seed, with the numbers that show the difference (seed problem):",
           m.table(["section2/errata.tex"], "The errata tables.", RUN2),
           errata_latex or ""]
    return "\n".join(out)


def _loss_facts(outs: dict[tuple[str, str], Any], y: list[float]) -> str:
    target = torch.tensor(y, dtype=torch.float64)
    items = []
    for pair in (("relu", "sigmoid"), ("sigmoid", "sigmoid")):
        p = outs[pair].y_hat.flatten()
        mse = ((p - target) ** 2).mean().item()
        eps = 1e-12  # only guards log(0); the seed's predictions are well inside (0, 1)
        bce = -(target * torch.log(p.clamp_min(eps)) + (1 - target) * torch.log((1 - p).clamp_min(eps))).mean().item()
        items.append(f"\\item {_pair_tex(*pair)}: $\\hat{{\\mathbf{{y}}}} = $ {_vec(p.tolist())}, "
                     f"$\\mathcal{{L}}_{{MSE}} = $ {fmt_num(mse, 2)}, $\\mathcal{{L}}_{{BCE}} = $ {fmt_num(bce, 2)}.")
    return "\\facts{}\n\\begin{itemize}\\small\n" + "\n".join(items) + "\n\\end{itemize}\n"


def _b2_facts(outs: dict[tuple[str, str], Any], y: list[float]) -> str:
    target = torch.tensor(y, dtype=torch.float64)
    items = []
    for a in ("identity", "relu", "sigmoid"):
        z2 = outs[(a, "identity")].y_hat.flatten()
        g = (2 * (z2 - target)).mean().item()
        items.append(f"\\item {_pair_tex(a, 'identity')}: $\\partial\\mathcal{{L}}_{{MSE}}/\\partial b_2 = "
                     f"\\frac{{2}}{{{len(y)}}}\\sum_i(\\hat y_i - y_i) = $ {fmt_num(g, 4)}.")
    return "\\facts{}\n\\begin{itemize}\\small\n" + "\n".join(items) + "\n\\end{itemize}\n"
