"""The report's sections 1 and 2: one heading per numbered item of the assignment, each with its answer.

Tables, derivations and figures come from `results/section1` and `results/section2`; the answers are written
by the rules of `answers_forward` and `answers_backward` from numbers computed here with `mlplab.forward` on
the same problem, so another `--problem` gives other sentences. The code that answers a question is listed
beside it (`Listings`).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import torch

from mlplab.report import answers_backward as ab
from mlplab.report import answers_forward as af
from mlplab.report.latex import Material
from mlplab.report.listings import Listings
from mlplab.twolayer.activations import activation_pairs
from mlplab.twolayer.decision import classify_pairs
from mlplab.twolayer.errata import seed_binary_cross_entropy
from mlplab.twolayer.forward import forward
from mlplab.twolayer.gradients import b2_gradient_exact
from mlplab.twolayer.losses import binary_cross_entropy
from mlplab.twolayer.problem import Problem

RUN1 = "mlplab reproduce --only section1"
RUN2 = "mlplab reproduce --only section2"
SYM = af.SYM


def question(number: str, title: str) -> str:
    """A heading for one numbered item, e.g. question("1.1 (1)", "..."), listed in the table of contents."""
    return (f"\\subsubsection*{{{number}\\quad {title}}}\n"
            f"\\addcontentsline{{toc}}{{subsubsection}}{{\\texorpdfstring{{{number} {title}}}{{{number}}}}}\n")


def answer(text: str) -> str:
    return f"\\answer{{{text}}}\n"


def _outputs(problem: Problem) -> dict[tuple[str, str], Any]:
    p = problem.tensors()
    return {(a, b): forward(p["X"], a, p["W1"], p["b1"], b, p["W2"], p["b2"]) for a, b in activation_pairs()}


def _plain(res: Any) -> dict[str, Any]:
    return {"Z1": res.Z1.tolist(), "z2": res.z2.flatten().tolist(), "y_hat": res.y_hat.flatten().tolist()}


def section1(m: Material, code: Listings, problem: Problem, stream: dict[str, Any] | None) -> str:
    outs = _outputs(problem)
    ident = outs[("identity", "identity")]
    p32 = {k: v.float() for k, v in problem.tensors().items()}
    torch32 = forward(p32["X"], "identity", p32["W1"], p32["b1"], "identity", p32["W2"], p32["b2"])
    diff = max(float((torch32.A1.double() - ident.A1).abs().max()), float((torch32.y_hat.double() - ident.y_hat)
                                                                          .abs().max()))
    w, c = af.linear_collapse(problem.W1, problem.b1, problem.w2, Fraction(problem.b2))
    out = ["\\section{Two-layer MLP: forward propagation}",
           "\\subsection{Forward propagation with the identity activation}",
           question("1.1 (1)", "The network by hand: $\\mathbf{A}_1$, $\\hat{\\mathbf{y}}$ and their dimensions"),
           answer(af.dimensions_answer(ident.A1.tolist(), ident.y_hat.flatten().tolist())),
           f"Figure~\\ref{{fig:network}} draws the network: $d={problem.d}$ inputs, $h={problem.h}$ hidden units "
           "and one output, every edge labelled with its weight and every neuron with its bias. Below, every entry "
           "is written as the inner product of a row of the left factor with a column of the right one, in exact "
           "fractions, then rounded to two decimals. The assignment also asks for a photo of handwritten work: "
           "this derivation is the reference to compare it with, line by line.",
           m.figure(["section1/network*.pdf"], "The 3-2-1 network of the problem: weights on the edges, biases in "
                    "the neurons.\\label{fig:network}", "The network figure.", RUN1, width="0.62"),
           m.fragment(["section1/byhand.tex"], "The by-hand derivation.", RUN1, demote=True),
           question("1.1 (2)", "One trillion inputs: a strategy that fits in memory"),
           answer(af.stream_answer(stream, problem.d)),
           "\\subsection{PyTorch implementation and verification}",
           question("1.2 (3)", "\\texttt{forward(X, activ\\_func1, W1, b1, activ\\_func2, W2, b2)}"),
           answer("\\texttt{forward} returns all four intermediates $\\mathbf{Z}_1, \\mathbf{A}_1, \\mathbf{z}_2, "
                  "\\hat{\\mathbf{y}}$ as named fields; activations may be given by name or as functions. With the "
                  "identity in both layers it reproduces the hand values of question (1) (Table~\\ref{tab:table1})."),
           code.show("mlplab.twolayer.forward", "forward"),
           question("1.2 (4)", "Table 1: hand against PyTorch"),
           m.table(["section1/table1.tex"], "Table 1.", RUN1),
           answer(af.consistency_answer(diff, int(ident.A1.numel() + ident.y_hat.numel()))),
           "\\subsection{Effect of the activation choice}",
           question("1.3 (5)", "Table 2: the nine activation pairs"),
           answer("Table~\\ref{tab:table2} gives $\\mathbf{a}_1$ and $\\hat y$ for every input and every pair "
                  "$(\\sigma_1, \\sigma_2)$, computed by \\texttt{forward}. For $\\mathbf{x}_3$ it agrees with the "
                  "nine values the assignment prints. The activations, as code:"),
           code.show("mlplab.twolayer.activations", "relu") + code.show("mlplab.twolayer.activations", "sigmoid"),
           m.table(["section1/table2.tex"], "Table 2.", RUN1),
           question("1.3 (6)", "Why the outputs differ: nonlinearity and the vanishing gradient"),
           answer(af.activation_answer({k: _plain(v) for k, v in outs.items()}, w, c, problem.n))]
    return "\n".join(out)


def section2(m: Material, code: Listings, problem: Problem) -> str:
    outs = _outputs(problem)
    out = ["\\section{Two-layer MLP: backward propagation}", *_classification(m, problem),
           *_loss_functions(m, code, problem, outs), *_loss_gradients(m, code, problem, outs),
           *_gradient_descent(m, code)]
    return "\n".join(out)


def _classification(m: Material, problem: Problem) -> list[str]:
    """2.1 (1)-(3): the threshold, the classes, and the predicted labels."""
    y = [float(v) for v in problem.y]
    decisions = [vars(d) for d in classify_pairs(problem.tensors())]
    return ["\\subsection{Binary classification with the sigmoid}",
            question("2.1 (1)", "The decision threshold"),
            answer("The threshold is $\\hat y = 0.5$. The sigmoid is strictly increasing and "
                   f"$\\sigma_{{\\mathrm{{sigm}}}}(0) = 1/(1 + e^0) = {float(torch.sigmoid(torch.tensor(0.0))):.1f}$, "
                   "so the boundary lies at the input $t = z_2 = 0$: $\\hat y \\ge 0.5$ exactly when $t \\ge 0$."),
            question("2.1 (2)", "The classes of $\\mathbf{x}_1, \\dots, \\mathbf{x}_4$"),
            answer(ab.classes_answer(y)),
            question("2.1 (3)", "Reading $\\hat{\\mathbf{y}}$ and predicting a label"),
            answer(ab.prediction_answer(decisions)),
            m.table(["section2/classify.tex"], "The classification table.", RUN2)]


def _loss_functions(m: Material, code: Listings, problem: Problem, outs: dict[tuple[str, str], Any]) -> list[str]:
    """2.2 (4)-(7): MSE and BCE step by step, which penalises more, and their sensitivity near the boundary."""
    y = [float(v) for v in problem.y]
    pairs = (("relu", "sigmoid"), ("sigmoid", "sigmoid"))
    preds = {pair: outs[pair].y_hat.flatten().tolist() for pair in pairs}
    loss_items = "".join(f"\\item {af.pair_tex(*pair)}: {ab.mse_steps(preds[pair], y)}\n" for pair in pairs)
    bce_items = "".join(f"\\item {af.pair_tex(*pair)}: {ab.bce_steps(preds[pair], y)}\n" for pair in pairs)
    return ["\\subsection{Loss functions}",
            question("2.2 (4)", "MSE, step by step"),
            answer("\\begin{itemize}\n" + loss_items + "\\end{itemize}"),
            question("2.2 (5)", "BCE, term by term"),
            answer("Each term is $-\\ln \\hat y_i$ for $y_i = 1$ and $-\\ln(1 - \\hat y_i)$ for $y_i = 0$ (the "
                   "assignment's equation (6) has a minus sign inside the bracket where a plus belongs; see "
                   "Appendix~\\ref{app:errata}):\n\\begin{itemize}\n" + bce_items + "\\end{itemize}"),
            m.table_part("section2/losses.tex", "losses-relu-sigmoid", "The loss table, (ReLU, sigmoid).", RUN2),
            m.table_part("section2/losses.tex", "losses-sigmoid-sigmoid", "The loss table, (sigmoid, sigmoid).", RUN2),
            code.show("mlplab.twolayer.losses", "mse") + code.show("mlplab.twolayer.losses", "binary_cross_entropy"),
            question("2.2 (6)", "Which loss penalises misclassified samples more"),
            answer(ab.compare_answer(preds, y)),
            question("2.2 (7)", "Sensitivity near the decision boundary"),
            answer(ab.boundary_answer()),
            m.table_part("section2/losses.tex", "sensitivity", "The sensitivity table.", RUN2)]


def _loss_gradients(m: Material, code: Listings, problem: Problem, outs: dict[tuple[str, str], Any]) -> list[str]:
    """2.3 (8)-(11): dL_MSE/db2 by the chain rule, its values for two output activations, and `main()`."""
    rs = outs[("relu", "sigmoid")].y_hat
    target = problem.tensors()["y"].reshape(rs.shape).to(rs)
    seed_loss = float(seed_binary_cross_entropy(rs, target))  # the example code's loss, second sigmoid and all
    right_loss = float(binary_cross_entropy(rs, target))
    b2_id = {a: float(b2_gradient_exact(problem, a, "identity")) for a in ("identity", "relu", "sigmoid")}
    b2_sig = {a: float(b2_gradient_exact(problem, a, "sigmoid")) for a in ("identity", "relu", "sigmoid")}
    return ["\\subsection{Gradients of the loss}",
            question("2.3 (8)", "$\\partial\\mathcal{L}_{MSE}/\\partial b_2$ by the chain rule "
                                "($\\sigma_2 = \\sigma_I$)"),
            answer("For one sample, $\\mathcal{L}_i = (\\hat y_i - y_i)^2$, $\\hat y_i = z_{2,i}$ and "
                   "$z_{2,i} = \\mathbf{a}_{1,i}\\mathbf{w}_2 + b_2$, so "
                   "$\\frac{\\partial\\mathcal{L}_i}{\\partial b_2} = "
                   "\\frac{\\partial\\mathcal{L}_i}{\\partial\\hat y_i}\\frac{\\partial\\hat y_i}{\\partial z_{2,i}}"
                   "\\frac{\\partial z_{2,i}}{\\partial b_2} = 2(\\hat y_i - y_i)\\cdot 1\\cdot 1$. Averaging over the "
                   f"$N = {problem.n}$ samples: $\\frac{{\\partial\\mathcal{{L}}_{{MSE}}}}{{\\partial b_2}} = "
                   "\\frac{2}{N}\\sum_i(\\hat y_i - y_i)$, a scalar like $b_2$. (Table 3 of the assignment drops the "
                   "factor 2; see Appendix~\\ref{app:errata}.)"),
            question("2.3 (9)", "Its value"),
            answer(ab.b2_answer(b2_id, b2_sig, problem.n)),
            m.table_part("section2/gradients.tex", "b2", "The dL/db2 table.", RUN2),
            question("2.3 (10)", "The same with $\\sigma_2 = \\sigma_{\\mathrm{sigm}}$"),
            answer("The chain gains the factor $\\partial\\hat y_i/\\partial z_{2,i} = \\hat y_i(1 - \\hat y_i)$ (the "
                   "sigmoid's derivative taken at $z_2$, written through its output; Table 3 of the assignment writes "
                   "$z_2(1 - z_2)$ by mistake), so $\\frac{\\partial\\mathcal{L}_{MSE}}{\\partial b_2} = "
                   "\\frac{2}{N}\\sum_i(\\hat y_i - y_i)\\hat y_i(1-\\hat y_i)$; the values are in the second half of "
                   "question (9)'s answer and table. Appendix~\\ref{app:gradcheck} checks every gradient entry "
                   "against float64 autograd and central finite differences."),
            question("2.3 (11)", "What \\texttt{main()} computes"),
            answer(ab.main_answer(right_loss, seed_loss, rs.flatten().tolist())),
            code.show("mlplab.twolayer.simple_mlp", "SimpleMLP",
                      caption="SimpleMLP in mlplab.twolayer.simple_mlp (the assignment's API, its mistakes fixed)")]


def _gradient_descent(m: Material, code: Listings) -> list[str]:
    """2.4 (12)-(14): the update inside SimpleMLP, and 1000 epochs with eta = 0.01 and eta = 10."""
    return ["\\subsection{Gradient descent}",
            question("2.4 (12)", "Gradient descent inside \\texttt{SimpleMLP}"),
            answer("\\texttt{SimpleMLP.gradient\\_descent} (listed above) takes the four gradients returned by "
                   "\\texttt{compute\\_gradients} and updates each parameter in place, "
                   "$\\theta \\leftarrow \\theta - \\eta\\nabla_\\theta\\mathcal{L}$, under "
                   "\\texttt{torch.no\\_grad()} so the update itself is not tracked; \\texttt{compute\\_gradients} "
                   "clears the old gradients first, so they do not accumulate from epoch to epoch. The training loop:"),
            code.show("mlplab.twolayer.descent", "gradient_descent_run"),
            question("2.4 (13)", "1000 epochs with $\\eta = 0.01$"),
            _descent(m, "bce", 0),
            m.figure(["section2/descent_bce/descent_loss.pdf"],
                     "BCE loss per epoch of full-batch gradient descent, $(\\sigma_{\\mathrm{ReLU}}, "
                     "\\sigma_{\\mathrm{sigm}})$, $\\eta = 0.01$ and $\\eta = 10$ on the same axes.",
                     "The gradient-descent curves (BCE).", RUN2, width="0.72"),
            m.table(["section2/descent_bce/descent.tex"], "The gradient-descent verdicts (BCE).", RUN2,
                    label_suffix="bce"),
            question("2.4 (14)", "Step size $\\eta = 10$"),
            _descent(m, "bce", 1),
            "The same two step sizes with the MSE loss, for comparison:",
            _descent(m, "mse", None),
            m.figure(["section2/descent_mse/descent_loss.pdf"], "MSE loss per epoch of full-batch gradient descent, "
                     "$(\\sigma_{\\mathrm{ReLU}}, \\sigma_{\\mathrm{sigm}})$, $\\eta = 0.01$ and $\\eta = 10$.",
                     "The gradient-descent curves (MSE).", RUN2, width="0.72"),
            m.table(["section2/descent_mse/descent.tex"], "The gradient-descent verdicts (MSE).", RUN2,
                    label_suffix="mse")]


def _descent(m: Material, loss: str, index: int | None) -> str:
    runs = m.json(f"section2/descent_{loss}/descent_verdicts.json")
    if not isinstance(runs, list) or not runs:
        return (answer("The gradient-descent runs are not in this results folder, so there is no loss to report.")
                + m.not_produced(f"The gradient-descent runs ({loss.upper()}).", RUN2))
    chosen = runs if index is None else runs[index:index + 1]
    return answer(ab.descent_answer(chosen, loss))


def appendix_gradients(m: Material) -> str:
    """Every gradient entry: chain rule, float64 autograd and central differences (kept out of the main text)."""
    return "\n".join([
        "\\section{Gradient checks}\\label{app:gradcheck}",
        "Each gradient of question 2.3, entry by entry: the chain rule of Table 3 (corrected), float64 autograd and "
        "central finite differences, with their relative error.",
        m.table_part("section2/gradients.tex", "gradcheck-summary", "The gradient-check summary.", RUN2),
        m.table_part("section2/gradients.tex", "grad-relu-sigmoid-mse", "The MSE gradient table.", RUN2),
        m.table_part("section2/gradients.tex", "grad-relu-sigmoid-bce", "The BCE gradient table.", RUN2)])
