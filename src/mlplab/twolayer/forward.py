"""Forward propagation of the two-layer MLP (the assignment's eq. 1-3), returning every intermediate.

    Z1 = X W1 + b1      (N, h)      A1 = sigma_1(Z1)   (N, h)
    z2 = A1 w2 + b2     (N, 1)      y_hat = sigma_2(z2) (N, 1)

Pure torch end to end, so autograd and CUDA work through it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from mlplab.errors import MlplabError
from mlplab.twolayer.activations import Activation, get_activation


class ForwardResult(NamedTuple):
    """The intermediates of one forward pass; unpack as `Z1, A1, z2, y_hat = forward(...)`."""

    Z1: torch.Tensor  # (N, h) pre-activations of the hidden layer
    A1: torch.Tensor  # (N, h) hidden activations
    z2: torch.Tensor  # (N, 1) pre-activation of the output neuron
    y_hat: torch.Tensor  # (N, 1) network output


def as_layer_params(X: torch.Tensor, W1: torch.Tensor, b1: torch.Tensor | float,
                    W2: torch.Tensor, b2: torch.Tensor | float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check shapes and bring parameters to canonical form: W1 (d,h), b1 (h,), W2 (h,1), b2 (1,)."""
    X, W1, b1, W2, b2 = (torch.as_tensor(t) for t in (X, W1, b1, W2, b2))
    # Integer inputs (e.g. X = torch.tensor([[1, 0, 0]])) would make `X @ W1` fail on mixed dtypes:
    # promote every tensor to one common floating dtype; `.to` keeps autograd intact.
    dtype = X.dtype
    for t in (W1, b1, W2, b2):
        dtype = torch.promote_types(dtype, t.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    X, W1, b1, W2, b2 = (t.to(dtype) for t in (X, W1, b1, W2, b2))
    if X.dim() != 2:
        raise MlplabError(f"X must be a matrix of shape (N, d), got shape {tuple(X.shape)}",
                          hint="stack the input vectors as rows")
    d = X.shape[1]
    if W1.dim() != 2 or W1.shape[0] != d:
        raise MlplabError(f"W1 must have shape ({d}, h) to match X's {d} columns, got {tuple(W1.shape)}",
                          hint="W1 is (inputs x hidden units), as in the assignment")
    h = W1.shape[1]
    if b1.numel() != h or b1.dim() > 2 or (b1.dim() == 2 and b1.shape[0] != 1):
        raise MlplabError(f"b1 must have shape ({h},) or (1, {h}), got {tuple(b1.shape)}",
                          hint="one bias per hidden unit")
    if W2.numel() != h or W2.dim() > 2 or (W2.dim() == 2 and W2.shape[1] != 1):
        raise MlplabError(f"W2 must have shape ({h}, 1) or ({h},), got {tuple(W2.shape)}",
                          hint="one weight per hidden unit, a single output neuron")
    if b2.numel() != 1:
        raise MlplabError(f"b2 must be a single number, got shape {tuple(b2.shape)}",
                          hint="the output layer has one neuron")
    return X, W1, b1.reshape(h), W2.reshape(h, 1), b2.reshape(1)


def forward(X: torch.Tensor, activ_func1: str | Activation, W1: torch.Tensor, b1: torch.Tensor | float,
            activ_func2: str | Activation, W2: torch.Tensor, b2: torch.Tensor | float) -> ForwardResult:
    """Forward pass of the 3-2-1 network of the assignment (any N x d input, h hidden units).

    Argument order is the assignment's: forward(X, activ_func1, W1, b1, activ_func2, W2, b2).

    >>> X = torch.tensor([[0., -2., 1.]])
    >>> W1 = torch.tensor([[1.0, -2.5], [-1.5, -1.0], [0.5, -1.5]])
    >>> out = forward(X, "identity", W1, [0.5, 2.0], "identity", torch.tensor([0.1, -2.0]), 0.5)
    >>> round(out.y_hat.item(), 2), tuple(out.A1.shape)
    (-4.1, (1, 2))
    """
    X, W1, b1, W2, b2 = as_layer_params(X, W1, b1, W2, b2)
    sigma1, sigma2 = get_activation(activ_func1), get_activation(activ_func2)
    Z1 = X @ W1 + b1  # (N, h); b1 broadcasts like 1_N b1 in the assignment
    A1 = sigma1(Z1)  # (N, h)
    z2 = A1 @ W2 + b2  # (N, 1)
    y_hat = sigma2(z2)  # (N, 1)
    return ForwardResult(Z1, A1, z2, y_hat)
