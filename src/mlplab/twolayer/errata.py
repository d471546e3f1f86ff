"""The assignment's mistakes in sections 2.2-2.4, reproduced as written, beside the correct version.

Each `Erratum` computes both numbers on the assignment's problem so the docs and `mlplab errata` show real values;
docs/seed-errata.md explains each one, and tests/test_seed_errata.py asserts the difference.
The assignment's versions live here and nowhere else: no other module calls them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mlplab.tables import Table
from mlplab.twolayer.forward import forward
from mlplab.twolayer.gradients import backward
from mlplab.twolayer.losses import binary_cross_entropy


def seed_bce_eq6(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The assignment's eq. 6 as printed: -1/N sum (y log y_hat - (1 - y) log(1 - y_hat)) (wrong sign inside)."""
    return -(y * torch.log(y_hat) - (1 - y) * torch.log(1 - y_hat)).mean()


def seed_binary_cross_entropy(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """The assignment's example `binary_cross_entropy`: logits loss applied to a sigmoid output (double sigmoid)."""
    return F.binary_cross_entropy_with_logits(y_pred, y_true)


def table3_sigmoid_derivative(z2: torch.Tensor) -> torch.Tensor:
    """Table 3's d y_hat / d z2 for the sigmoid, as printed: z2 (1 - z2)."""
    return z2 * (1 - z2)


def table3_mse_derivative(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Table 3's dL_MSE/dy_hat as printed: y_hat - y (the factor 2/N is missing)."""
    return y_hat - y


def table3_bce_derivative(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Table 3's dL_BCE/dy_hat as printed: y / y_hat + (1 - y) / (1 - y_hat) (sign of y/y_hat and 1/N wrong)."""
    return y / y_hat + (1 - y) / (1 - y_hat)


def seed_difference_quotient(loss: torch.Tensor, loss_shifted: torch.Tensor, delta: float) -> float:
    """Section 2.4's 'definition' (L(theta + d) - L(theta)) / d, a one-sided quotient without the limit d -> 0."""
    return float((loss_shifted - loss) / delta)


@dataclass(frozen=True)
class Erratum:
    """One mistake: where it is, what the assignment computes, what is right, on the assignment's problem."""

    key: str
    where: str
    seed_says: str
    correct: str
    seed_value: str
    correct_value: str


def _fmt(t: torch.Tensor) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in t.reshape(-1).tolist()) + "]" if t.numel() > 1 else f"{t.item():.4f}"


def numeric_errata(tensors: dict[str, torch.Tensor]) -> list[Erratum]:
    """The errata that change a number, evaluated on `tensors` (Problem.tensors()) with (ReLU, sigmoid)."""
    X, y = tensors["X"], tensors["y"]
    args = (tensors["W1"], tensors["b1"], "sigmoid", tensors["W2"], tensors["b2"])
    _, _, z2, y_hat = forward(X, "relu", *args)
    g = backward(X, "relu", tensors["W1"], tensors["b1"], "sigmoid", tensors["W2"], tensors["b2"], y, "bce")
    g_mse = backward(X, "relu", tensors["W1"], tensors["b1"], "sigmoid", tensors["W2"], tensors["b2"], y, "mse")
    # the double sigmoid's effect on the gradient that reaches z2, (N, 1)
    leaf = z2.detach().clone().requires_grad_(True)
    seed_dz2 = torch.autograd.grad(seed_binary_cross_entropy(torch.sigmoid(leaf), y), leaf)[0]
    # difference quotient with a finite step on b2, against the derivative
    b2 = tensors["b2"]

    def bce_at(b: torch.Tensor) -> torch.Tensor:
        return binary_cross_entropy(forward(X, "relu", *args[:-1], b).y_hat, y)

    quotient = seed_difference_quotient(bce_at(b2), bce_at(b2 + 1.0), 1.0)
    return [
        Erratum("eq6-sign", "Sec. 2.2, eq. (6)", "-1/N sum(y log y_hat - (1-y) log(1-y_hat))",
                "-1/N sum(y log y_hat + (1-y) log(1-y_hat))", _fmt(seed_bce_eq6(y_hat, y)),
                _fmt(binary_cross_entropy(y_hat, y))),
        Erratum("double-sigmoid", "Sec. 2.3 example code, binary_cross_entropy",
                "F.binary_cross_entropy_with_logits(sigmoid(z2), y)", "F.binary_cross_entropy(sigmoid(z2), y)",
                _fmt(seed_binary_cross_entropy(y_hat, y)), _fmt(F.binary_cross_entropy(y_hat, y))),
        Erratum("double-sigmoid-grad", "Sec. 2.3 example code, gradient reaching z2",
                "d/dz2 of the double-sigmoid loss", "(y_hat - y)/N", _fmt(seed_dz2), _fmt(g.dz2)),
        Erratum("table3-sigmoid", "Table 3, row y_hat = sigm(z2)", "dy_hat/dz2 = z2 (1 - z2)",
                "dy_hat/dz2 = y_hat (1 - y_hat)", _fmt(table3_sigmoid_derivative(z2)), _fmt(y_hat * (1 - y_hat))),
        Erratum("table3-mse", "Table 3, row L_MSE", "dL/dy_hat = y_hat - y", "dL/dy_hat = 2 (y_hat - y) / N",
                _fmt(table3_mse_derivative(y_hat, y)), _fmt(g_mse.dy_hat)),
        Erratum("table3-bce", "Table 3, row L_BCE", "dL/dy_hat = y/y_hat + (1-y)/(1-y_hat)",
                "dL/dy_hat = (-y/y_hat + (1-y)/(1-y_hat)) / N", _fmt(table3_bce_derivative(y_hat, y)), _fmt(g.dy_hat)),
        Erratum("gradient-definition", "Sec. 2.4, definition of the gradient",
                "(L(theta + d) - L(theta)) / d (no limit; divides by a vector)",
                "dL/dtheta_k = lim_{d->0} (L(theta + d e_k) - L(theta)) / d", f"{quotient:.4f} (d = 1 on b2)",
                f"{g.b2.item():.4f} (dL_BCE/db2)"),
        Erratum("table3-dims", "Table 3, dZ1/dW1 = X", "dZ1/dW1 = X (a 4x3 matrix for a 3x2 parameter)",
                "dL/dW1 = X^T dZ1, shape of W1", f"X is {tuple(X.shape)}", f"dL/dW1 is {tuple(g.W1.shape)}"),
    ]


def errata_table(errata: list[Erratum]) -> Table:
    """The numeric errata side by side: what the assignment computes vs the correct value."""
    rows = [[e.key, e.where, e.seed_says, e.seed_value, e.correct, e.correct_value] for e in errata]
    return Table("Errata of the assignment with numbers (its problem, (sigma1, sigma2) = (ReLU, sigmoid))",
                 ["id", "where", "assignment", "assignment value", "correct", "correct value"], rows,
                 label="tab:errata")


CODE_ERRATA: list[tuple[str, str, str, str]] = [
    ("float-epochs", "Sec. 2.4 main()", "num_epochs = 1e3; for epoch in num_epochs",
     "TypeError: 'float' object is not iterable; use range(int(num_epochs))"),
    ("self-model", "Sec. 2.4 gradient_descent", "self.model.fc1_weight -= ...",
     "AttributeError (SimpleMLP has no .model); update self.fc1.weight"),
    ("gw1-name", "Sec. 2.4 main()", "gW1, gb1, gW2, gb2 = ...; gradient_descent(step_size, gw1, gb1, gw2, gb2)",
     "NameError: gw1 and gw2 are never defined; Python names are case sensitive"),
    ("numpy-activations", "Sec. 1.3 relu/sigmoid", "np.maximum(0, x), 1 / (1 + np.exp(-x))",
     "RuntimeError: Can't call numpy() on Tensor that requires grad; use torch.relu / torch.sigmoid"),
    ("grad-accumulation", "Sec. 2.3/2.4 compute_gradients", "loss.backward() each epoch, never zeroed",
     "the k-th call returns the sum of k gradients; zero grads before backward"),
    ("bias-shape", "Sec. 2.3 set_weights", "self.fc1.bias.copy_(b1) with b1 in R^{1x2}",
     "RuntimeError: output with shape [2] doesn't match the broadcast shape [1, 2]; reshape b1 to (h,)"),
    ("percent-comment", "Sec. 1.2/1.3 code", "% Identity activation function",
     "SyntaxError in Python; comments start with #"),
    ("model-undefined", "Sec. 2.4 main()", "model.compute_gradients(...) in a main() that never builds model",
     "NameError unless the model of the Sec. 2.3 main() is created first"),
    ("bengio-twice", "References [2]", "Ian Goodfellow, Yoshua Bengio, Aaron Courville, and Yoshua Bengio",
     "Goodfellow, Bengio and Courville, Deep Learning, MIT Press, 2016 (three authors)"),
    ("question-numbers", "Sec. 3 questions", "(8) and (11) each appear twice",
     "number the questions (8)-(18) without repeats"),
]
"""Mistakes in the assignment's code and text that raise an error or mislabel rather than change a number."""


def code_errata_table() -> Table:
    return Table("Errata of the assignment in code and text", ["id", "where", "assignment", "what happens / fix"],
                 [list(row) for row in CODE_ERRATA], label="tab:code-errata")


def double_sigmoid_training(tensors: dict[str, torch.Tensor], epochs: int = 1000,
                            step_size: float = 0.01) -> dict[str, float]:
    """Train the assignment's (ReLU, sigmoid) net with its loss and with the right one; report the true BCE.

    Both runs start from the assignment's weights, float32 as in the assignment; the returned BCE values are
    `binary_cross_entropy` of the trained model's output, so the two runs are compared on one scale.
    """
    from mlplab.twolayer.descent import gradient_descent_run

    out = {}
    for key, loss in (("seed_loss", seed_binary_cross_entropy), ("correct_loss", binary_cross_entropy)):
        run = gradient_descent_run(tensors, ("relu", "sigmoid"), loss, step_size, epochs)
        w = {k: torch.tensor(v, dtype=torch.float64) for k, v in run.final_weights.items()}
        y_hat = forward(tensors["X"], "relu", w["W1"], w["b1"], "sigmoid", w["W2"], w["b2"]).y_hat
        out[f"{key}_final_bce"] = binary_cross_entropy(y_hat, tensors["y"]).item()
        out[f"{key}_final_reported"] = run.losses[-1]
    out.update(_seed_loop_as_written(tensors, epochs, step_size))
    return out


def _seed_loop_as_written(tensors: dict[str, torch.Tensor], epochs: int, step_size: float) -> dict[str, float]:
    """The assignment's loop with only its crashes fixed: double-sigmoid loss and gradients never zeroed.

    Each update then uses the running sum of all gradients so far (float32, as in the assignment).
    """
    from mlplab.twolayer.simple_mlp import SimpleMLP

    t = {k: v.to(torch.float32) for k, v in tensors.items()}
    d, h = t["W1"].shape
    model = SimpleMLP(d, h, 1, "relu", "sigmoid")
    model.set_weights(t["W1"], t["b1"], t["W2"], t["b2"])
    reported = float("nan")
    for _ in range(epochs):
        loss = seed_binary_cross_entropy(model(t["X"]), t["y"])
        loss.backward()  # accumulates into .grad, as in the assignment
        reported = loss.item()
        with torch.no_grad():
            for param in model.parameters():
                assert param.grad is not None
                param.sub_(step_size * param.grad)
    with torch.no_grad():
        final = binary_cross_entropy(model(t["X"]).double(), tensors["y"]).item()
    return {"seed_loop_final_reported": reported, "seed_loop_final_bce": final}
