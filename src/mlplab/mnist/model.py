"""The assignment's MNIST model: Linear → ReLU → Dropout for each hidden layer, then a Linear layer giving logits.

A Linear layer from n_in to n_out units has n_in·n_out weights and n_out biases, so the parameter count is
Σ_k (n_{k-1} + 1)·n_k over the layer widths n_0 = input_size, hidden sizes ..., n_L = num_classes:
(784+1)·512 + (512+1)·256 + (256+1)·128 + (128+1)·10 = 567,434 for the default, and
(784+1)·16 + (16+1)·10 = 12,730 for hidden_sizes [16]. Dropout and softmax have no parameters.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """`MLP(input_size, hidden_sizes, num_classes, dropout_rate, softmax_output=False)`.

    `softmax_output=True` appends a softmax, so the outputs are probabilities instead of logits (the assignment's
    question 3.2 (15)); the cross-entropy loss of `torch` expects logits, which is why the default is False.

    >>> model = MLP(784, [16], 10, 0.2)
    >>> model(torch.zeros(3, 784)).shape, count_parameters(model)
    (torch.Size([3, 10]), 12730)
    """

    def __init__(self, input_size: int = 784, hidden_sizes: Sequence[int] = (512, 256, 128),
                 num_classes: int = 10, dropout_rate: float = 0.2, softmax_output: bool = False) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_sizes = list(hidden_sizes)
        self.num_classes = num_classes
        self.dropout_rate = dropout_rate
        self.softmax_output = softmax_output
        layers: list[nn.Module] = []
        width = input_size
        for hidden in self.hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout_rate)]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        if softmax_output:
            layers.append(nn.Softmax(dim=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """(N, input_size) → (N, num_classes) logits (probabilities with `softmax_output`)."""
        return self.layers(X)

    def linears(self) -> list[nn.Linear]:
        """The Linear layers in order (hidden layers, then the output layer)."""
        return [m for m in self.layers if isinstance(m, nn.Linear)]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars, counted from the model itself.

    >>> count_parameters(MLP())
    567434
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def closed_form_parameters(input_size: int, hidden_sizes: Sequence[int], num_classes: int) -> int:
    """Σ (n_in + 1)·n_out over the layers, from the sizes alone.

    >>> closed_form_parameters(784, [512, 256, 128], 10), closed_form_parameters(784, [16], 10)
    (567434, 12730)
    """
    return sum(int(row["parameters"]) for row in layer_parameters(input_size, hidden_sizes, num_classes))


def layer_parameters(input_size: int, hidden_sizes: Sequence[int], num_classes: int) -> list[dict[str, int | str]]:
    """Per-layer counts: name, inputs, outputs, weights (n_in·n_out), biases (n_out), parameters.

    >>> layer_parameters(784, [16], 10)[1]
    {'layer': 'fc2', 'inputs': 16, 'outputs': 10, 'weights': 160, 'biases': 10, 'parameters': 170}
    """
    widths = [input_size, *hidden_sizes, num_classes]
    rows: list[dict[str, int | str]] = []
    for k, (n_in, n_out) in enumerate(itertools.pairwise(widths), start=1):
        rows.append({"layer": f"fc{k}", "inputs": n_in, "outputs": n_out, "weights": n_in * n_out,
                     "biases": n_out, "parameters": (n_in + 1) * n_out})
    return rows


def model_layer_parameters(model: MLP) -> list[int]:
    """Per-layer counts read from the model's own tensors (to check against `layer_parameters`)."""
    return [layer.weight.numel() + (layer.bias.numel() if layer.bias is not None else 0)
            for layer in model.linears()]
