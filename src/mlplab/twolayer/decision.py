"""Binary classification with a sigmoid output (the assignment's section 2.1).

The decision threshold is y_hat = 0.5. Since sigmoid is strictly increasing and sigmoid(0) = 0.5,
y_hat >= 0.5 holds exactly when t = z2 >= 0, so the boundary in the input of the sigmoid is t = 0.
A sample on the boundary (y_hat = 0.5, z2 = 0) is assigned class 1, as `>=` says.

In floating point sigmoid(z2) rounds to exactly 0.5 for |z2| below about 1e-16 (float64), so the labels
are decided on z2 whenever it is available: that test is exact.

For (sigma_1, sigma_2) pairs whose output is not a sigmoid, y_hat is not a probability; thresholding the
output at 0.5 is still reported (it is what the assignment's rule gives), flagged as not probabilistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mlplab.tables import Table
from mlplab.twolayer.activations import activation_name, activation_pairs
from mlplab.twolayer.forward import forward

THRESHOLD = 0.5
"""Decision threshold on the sigmoid output y_hat."""

LOGIT_THRESHOLD = 0.0
"""The same boundary before the sigmoid: sigmoid(t) = 0.5 exactly when t = 0."""


def predict_labels(y_hat: torch.Tensor, threshold: float = THRESHOLD) -> torch.Tensor:
    """Class labels 1[y_hat >= threshold] as int64, same shape as `y_hat`.

    >>> predict_labels(torch.tensor([0.2, 0.5, 0.9]))
    tensor([0, 1, 1])
    """
    return (torch.as_tensor(y_hat) >= threshold).to(torch.int64)


def predict_labels_from_logits(z2: torch.Tensor) -> torch.Tensor:
    """Class labels 1[z2 >= 0], identical to thresholding sigmoid(z2) at 0.5 but exact.

    >>> predict_labels_from_logits(torch.tensor([-1e-20, 0.0, 3.0]))
    tensor([0, 1, 1])
    """
    return (torch.as_tensor(z2) >= LOGIT_THRESHOLD).to(torch.int64)


@dataclass(frozen=True)
class PairDecision:
    """Predictions of one (sigma_1, sigma_2) pair on the problem's inputs."""

    sigma1: str
    sigma2: str
    y_hat: list[float]
    labels: list[int]
    correct: list[bool]
    probabilistic: bool  # True when sigma_2 is the sigmoid, so y_hat is a probability

    @property
    def n_correct(self) -> int:
        return sum(self.correct)


def classify_pairs(tensors: dict[str, torch.Tensor], pairs: list[tuple[str, str]] | None = None) -> list[PairDecision]:
    """Predicted labels and agreement with y for each pair (default: the nine pairs of Table 2).

    `tensors` is `Problem.tensors()`. Labels come from z2 >= 0 for a sigmoid output, else y_hat >= 0.5.

    >>> from mlplab.twolayer.problem import load_problem
    >>> d = classify_pairs(load_problem().tensors(), [("relu", "sigmoid")])[0]
    >>> d.labels, d.n_correct
    ([1, 1, 0, 1], 1)
    """
    y = tensors["y"].reshape(-1).to(torch.int64)
    out = []
    for a1, a2 in pairs or activation_pairs():
        s1, s2 = activation_name(a1), activation_name(a2)
        res = forward(tensors["X"], s1, tensors["W1"], tensors["b1"], s2, tensors["W2"], tensors["b2"])
        probabilistic = s2 == "sigmoid"
        labels = predict_labels_from_logits(res.z2) if probabilistic else predict_labels(res.y_hat)
        labels = labels.reshape(-1)
        out.append(PairDecision(s1, s2, res.y_hat.reshape(-1).tolist(), labels.tolist(),
                                (labels == y).tolist(), probabilistic))
    return out


def classification_table(decisions: list[PairDecision], y: list[int]) -> Table:
    """One row per pair: y_hat per sample, the predicted labels, and how many agree with y."""
    n = len(y)
    columns = ["sigma1", "sigma2", *[f"y_hat x{i + 1}" for i in range(n)], "labels", "correct", "probability"]
    rows = [[d.sigma1, d.sigma2, *d.y_hat, " ".join(map(str, d.labels)), f"{d.n_correct}/{n}", d.probabilistic]
            for d in decisions]
    return Table("Classification: label = 1 if y_hat >= 0.5 (sigmoid output: z2 >= 0); y = "
                 + " ".join(str(int(v)) for v in y), columns, rows, decimals=2,
                 caption="Predicted labels per activation pair, threshold 0.5 on y_hat (t = 0 before the sigmoid)",
                 label="tab:classification")
