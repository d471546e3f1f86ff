"""Section 2 as tables and files: classification, losses, gradient checks, errata and gradient descent.

The table builders are pure (a problem in, `Table`s out); `run_descent` and `write_section2` write files.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from mlplab.fsio import atomic_write_json, ensure_dir, save_figure
from mlplab.tables import Table, write_tables
from mlplab.twolayer.activations import SYMBOLS, activation_pairs
from mlplab.twolayer.decision import classification_table, classify_pairs
from mlplab.twolayer.descent import DEFAULT_STEPS, VerdictRule, descent_curves, descent_figure
from mlplab.twolayer.errata import code_errata_table, double_sigmoid_training, errata_table, numeric_errata
from mlplab.twolayer.forward import forward
from mlplab.twolayer.gradcheck import FD_STEP, check_all, gradient_table, summary_table
from mlplab.twolayer.gradients import B2_FORMULA, b2_gradient_exact, backward, loss_sensitivity
from mlplab.twolayer.losses import binary_cross_entropy_terms, mse_terms
from mlplab.twolayer.problem import Problem

LOSS_PAIRS = [("relu", "sigmoid"), ("sigmoid", "sigmoid")]
"""The two (sigma_1, sigma_2) pairs of the assignment's tasks 2.2 (4)-(5)."""


# --- tables (pure: problem in, Table out) --------------------------------------------------------------

def classify_tables(problem: Problem) -> list[Table]:
    t = problem.tensors()
    return [classification_table(classify_pairs(t), [int(v) for v in problem.y])]


def losses_tables(problem: Problem, pairs: list[tuple[str, str]] | None = None) -> list[Table]:
    """Per-sample MSE and BCE terms and means for each pair, then the boundary-sensitivity table."""
    t = problem.tensors()
    tables = []
    for s1, s2 in pairs or LOSS_PAIRS:
        y_hat = forward(t["X"], s1, t["W1"], t["b1"], s2, t["W2"], t["b2"]).y_hat
        sq, ce = mse_terms(y_hat, t["y"]).reshape(-1), binary_cross_entropy_terms(y_hat, t["y"]).reshape(-1)
        rows: list[list[Any]] = [[f"x{i + 1}", int(t["y"][i, 0]), y_hat[i, 0].item(), sq[i].item(), ce[i].item()]
                                 for i in range(problem.n)]
        rows.append(["mean", None, None, sq.mean().item(), ce.mean().item()])
        tables.append(Table(f"Losses for (sigma1, sigma2) = ({s1}, {s2})",
                            ["sample", "y", "y_hat", "(y_hat - y)^2", "-[y log y_hat + (1-y) log(1-y_hat)]"], rows,
                            decimals=4, rules_after=[problem.n - 1], label=f"tab:losses-{s1}-{s2}",
                            caption=f"Per-sample MSE and BCE terms and their means, "
                                    f"$(\\sigma_{{{SYMBOLS[s1]}}}, \\sigma_{{{SYMBOLS[s2]}}})$"))
    rows = []
    for y in (1.0, 0.0):
        for p in (0.49, 0.51):
            s = loss_sensitivity(p, y)
            rows.append([int(s["y"]), s["y_hat"], s["z2"], s["mse"], s["mse_dy_hat"], s["mse_dz2"], s["bce"],
                         s["bce_dy_hat"], s["bce_dz2"]])
    tables.append(Table("Sensitivity near the decision boundary (one sample, sigmoid output, z2 = logit(y_hat))",
                        ["y", "y_hat", "z2", "MSE", "dMSE/dy_hat", "dMSE/dz2", "BCE", "dBCE/dy_hat", "dBCE/dz2"],
                        rows, decimals=4, label="tab:sensitivity"))
    return tables


def b2_table(problem: Problem) -> Table:
    """dL_MSE/db2 for every sigma_1 with sigma_2 = identity and sigmoid (the assignment's tasks 8-10): formula and
    numbers."""
    t = problem.tensors()
    rows = []
    for s2 in ("identity", "sigmoid"):
        for s1 in ("identity", "relu", "sigmoid"):
            exact = b2_gradient_exact(problem, s1, s2)
            chain = backward(t["X"], s1, t["W1"], t["b1"], s2, t["W2"], t["b2"], t["y"], "mse").b2.item()
            exact_text = str(exact) if isinstance(exact, Fraction) else f"{float(exact):.12g}"
            rows.append([s1, s2, B2_FORMULA[s2], exact_text, chain])
    return Table("dL_MSE/db2: closed form, exact value and chain-rule value",
                 ["sigma1", "sigma2", "closed form", "exact (40 digits)", "chain rule"], rows, decimals=10,
                 label="tab:b2", rules_after=[2])


def gradients_tables(problem: Problem, detail_pairs: list[tuple[str, str]], losses: list[str],
                     h: float = FD_STEP) -> list[Table]:
    t = problem.tensors()
    checks = check_all(t, activation_pairs(), losses, h)
    detail = [c for c in checks if (c.sigma1, c.sigma2) in detail_pairs]
    return [b2_table(problem), summary_table(checks), *(gradient_table(c) for c in detail)]


def errata_tables(problem: Problem, train_epochs: int = 1000) -> list[Table]:
    t = problem.tensors()
    tables = [errata_table(numeric_errata(t))]
    if train_epochs > 0:
        r = double_sigmoid_training(t, train_epochs)
        tables.append(Table(f"Training (ReLU, sigmoid) for {train_epochs} epochs, step 0.01: the assignment's loss "
                            "vs BCE",
                            ["trained with", "loss it reports", "true BCE after training"],
                            [["assignment's binary_cross_entropy (double sigmoid)", r["seed_loss_final_reported"],
                              r["seed_loss_final_bce"]],
                             ["assignment's loop as written (double sigmoid, gradients never zeroed)",
                              r["seed_loop_final_reported"], r["seed_loop_final_bce"]],
                             ["binary_cross_entropy (this package)", r["correct_loss_final_reported"],
                              r["correct_loss_final_bce"]]], decimals=4, label="tab:double-sigmoid-training"))
    tables.append(code_errata_table())
    return tables


# --- writers ------------------------------------------------------------------------------------------

def run_descent(problem: Problem, out_dir: Path | None, activations: tuple[str, str], loss: str,
                step_sizes: list[float], epochs: int, dtype: torch.dtype) -> tuple[list[Table], list[Path]]:
    """Run gradient descent per step size; with `out_dir`, write curves, verdicts, config and the figure."""
    runs = descent_curves(problem.tensors(), activations, loss, step_sizes, epochs, dtype)
    rows = [[r.step_size, len(r.losses), r.losses[0], r.losses[-1], min(r.losses),
             r.state.accuracy if r.state else None, r.verdict, r.reason] for r in runs]
    table = Table(f"Gradient descent, ({activations[0]}, {activations[1]}), loss {loss}, {epochs} epochs",
                  ["step size", "epochs run", "first loss", "final loss", "min loss", "accuracy", "verdict", "reason"],
                  rows, decimals=6, label="tab:descent")
    paths: list[Path] = []
    if out_dir is not None:
        ensure_dir(out_dir)
        config = {"problem": problem.name, "activations": list(activations), "loss": loss,
                  "step_sizes": step_sizes, "epochs": epochs, "dtype": str(dtype).replace("torch.", ""),
                  "verdict_rule": vars(VerdictRule())}
        paths.append(atomic_write_json(out_dir / "descent_config.json", config))
        paths.append(atomic_write_json(out_dir / "descent_curves.json",
                                       {str(r.step_size): r.losses for r in runs}))
        paths.append(atomic_write_json(out_dir / "descent_verdicts.json", [r.to_dict() for r in runs]))
        paths += write_tables([table], out_dir, "descent")
        import matplotlib.pyplot as plt

        fig = descent_figure(runs, f"Training loss, ({activations[0]}, {activations[1]}), {loss.upper()}")
        try:
            paths += save_figure(fig, out_dir, "descent_loss")
        finally:
            plt.close(fig)
    return [table], paths


def write_section2(problem: Problem, out_dir: Path, epochs: int = 1000, step_sizes: tuple[float, ...] = DEFAULT_STEPS,
                   log: Callable[[str], None] | None = None) -> list[Path]:
    """Write every table, gradient check, descent curve and verdict of the assignment's section 2 under `out_dir`; `log`
    receives one line per part (default: stderr, so stdout stays clean for tables and JSON)."""
    say = log or _to_stderr
    ensure_dir(out_dir)
    say("section 2: classification and losses")
    paths = write_tables(classify_tables(problem), out_dir, "classify")
    paths += write_tables(losses_tables(problem), out_dir, "losses")
    say("section 2: gradient checks (9 pairs x 2 losses)")
    paths += write_tables(gradients_tables(problem, [("relu", "sigmoid")], ["mse", "bce"]), out_dir, "gradients")
    say(f"section 2: errata (with {epochs}-epoch training comparisons)")
    paths += write_tables(errata_tables(problem, epochs), out_dir, "errata")
    for loss in ("bce", "mse"):
        say(f"section 2: gradient descent, {loss}, steps {', '.join(f'{s:g}' for s in step_sizes)}")
        sub = out_dir / f"descent_{loss}"
        paths += run_descent(problem, sub, ("relu", "sigmoid"), loss, list(step_sizes), epochs, torch.float32)[1]
    paths.append(atomic_write_json(out_dir / "section2_config.json",
                                   {"problem": problem.to_json(), "epochs": epochs, "step_sizes": list(step_sizes),
                                    "fd_step": FD_STEP}))
    return paths


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)
