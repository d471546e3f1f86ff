"""`SimpleMLP`: the assignment's two-layer network as an `nn.Module`, with its own weights, autograd and GD.

Same constructor, method names and call shapes as the assignment's example code, with its bugs fixed
(docs/seed-errata.md):
- activations are torch callables (or names), not NumPy functions, so autograd works;
- `set_weights` accepts the assignment's shapes W1 (d, h), b1 (1, h) or (h,), W2 (h, 1), b2 scalar;
- `compute_gradients` clears old gradients first, so calling it every epoch does not accumulate them,
  and it differentiates w.r.t. a copy of x instead of flipping `requires_grad` on the caller's tensor;
- `gradient_descent` updates `self.fc1.weight` etc. (the assignment writes `self.model.fc1_weight`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from mlplab.errors import MlplabError
from mlplab.twolayer.activations import Activation, get_activation

GradTuple = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class SimpleMLP(nn.Module):
    """x -> fc1 -> activ_func1 -> fc2 -> activ_func2, i.e. y_hat = sigma_2(sigma_1(x W1 + b1) W2 + b2).

    >>> model = SimpleMLP(input_size=3, hidden_size=2, output_size=1, activ_func1="relu", activ_func2="sigmoid")
    >>> model.set_weights([[1.0, -2.5], [-1.5, -1.0], [0.5, -1.5]], [[0.5, 2.0]], [[0.1], [-2.0]], 0.5)
    >>> round(model(torch.tensor([[0.0, -2.0, 1.0]])).item(), 2)
    0.02
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int,
                 activ_func1: str | Activation, activ_func2: str | Activation,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("output_size", output_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise MlplabError(f"SimpleMLP: {name} must be a positive integer, got {value!r}",
                                  hint="e.g. input_size=3, hidden_size=2, output_size=1")
        self.fc1 = nn.Linear(input_size, hidden_size, dtype=dtype)  # weight (h, d), bias (h,)
        self.fc2 = nn.Linear(hidden_size, output_size, dtype=dtype)  # weight (o, h), bias (o,)
        self.activ_func1: Callable[[torch.Tensor], torch.Tensor] = get_activation(activ_func1)
        self.activ_func2: Callable[[torch.Tensor], torch.Tensor] = get_activation(activ_func2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activ_func2(self.fc2(self.activ_func1(self.fc1(x))))

    def set_weights(self, W1: torch.Tensor, b1: torch.Tensor, W2: torch.Tensor, b2: torch.Tensor | float) -> None:
        """Copy the weights in, shaped as the assignment writes them: W1 (d, h) and W2 (h, o) are stored
        transposed, as nn.Linear wants."""
        weight1, weight2 = self.fc1.weight, self.fc2.weight  # (h, d), (o, h)
        h, d = weight1.shape
        o = weight2.shape[0]
        W1, W2 = self._as_param(W1, "W1"), self._as_param(W2, "W2")
        b1, b2 = self._as_param(b1, "b1"), self._as_param(b2, "b2")
        if W2.dim() == 1 and o == 1:
            W2 = W2.reshape(-1, 1)  # the assignment's w2 as a plain vector
        for name, value, shape in (("W1", W1, (d, h)), ("W2", W2, (h, o))):
            if tuple(value.shape) != shape:
                raise MlplabError(f"set_weights: {name} must have shape {shape} (inputs x outputs), "
                                  f"got {tuple(value.shape)}",
                                  hint="pass W as in the assignment, not nn.Linear's (out, in)")
        for name, value, n in (("b1", b1, h), ("b2", b2, o)):
            if value.numel() != n or (value.dim() == 2 and value.shape[0] != 1) or value.dim() > 2:
                raise MlplabError(f"set_weights: {name} must hold {n} numbers, shape ({n},) or (1, {n}), "
                                  f"got {tuple(value.shape)}", hint="one bias per unit of the layer")
        with torch.no_grad():
            self.fc1.weight.copy_(W1.T)
            self.fc1.bias.copy_(b1.reshape(h))  # the assignment's copy_ of a (1, h) bias into (h,) raises
            self.fc2.weight.copy_(W2.T)
            self.fc2.bias.copy_(b2.reshape(o))

    def _as_param(self, value: torch.Tensor | float, name: str) -> torch.Tensor:
        ref = self.fc1.weight
        tensor = torch.as_tensor(value).to(dtype=ref.dtype, device=ref.device)
        if not torch.isfinite(tensor).all():
            raise MlplabError(f"set_weights: {name} contains NaN or infinite values", hint="pass finite numbers")
        return tensor

    def compute_gradients(self, x: torch.Tensor, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                          y_gt: torch.Tensor) -> GradTuple:
        """Loss and its gradients: (loss, x.grad, fc1.weight.grad, fc1.bias.grad, fc2.weight.grad, fc2.bias.grad).

        Old parameter gradients are cleared first, so repeated calls return the gradient at the current
        weights instead of a running sum. Shapes follow nn.Linear: fc1.weight.grad is (h, d) = dW1^T.
        """
        self.zero_grad(set_to_none=True)
        x = torch.as_tensor(x).detach().to(self.fc1.weight.dtype).clone().requires_grad_(True)
        if x.dim() != 2 or x.shape[1] != self.fc1.in_features:
            raise MlplabError(f"compute_gradients: x must have shape (N, {self.fc1.in_features}), "
                              f"got {tuple(x.shape)}", hint="one input vector per row")
        y_hat = self.forward(x)
        loss = loss_fn(y_hat, torch.as_tensor(y_gt).to(y_hat).reshape(y_hat.shape))
        loss.backward()
        grads = (x.grad, self.fc1.weight.grad, self.fc1.bias.grad, self.fc2.weight.grad, self.fc2.bias.grad)
        assert all(g is not None for g in grads)  # every leaf took part in the forward pass
        return (loss.detach(), *grads)  # type: ignore[return-value]

    def gradient_descent(self, step_size: float, fc1_weight_grad: torch.Tensor, fc1_bias_grad: torch.Tensor,
                         fc2_weight_grad: torch.Tensor, fc2_bias_grad: torch.Tensor) -> None:
        """One step theta <- theta - step_size * grad for all four parameters, outside autograd."""
        with torch.no_grad():
            for param, grad, name in ((self.fc1.weight, fc1_weight_grad, "fc1_weight_grad"),
                                      (self.fc1.bias, fc1_bias_grad, "fc1_bias_grad"),
                                      (self.fc2.weight, fc2_weight_grad, "fc2_weight_grad"),
                                      (self.fc2.bias, fc2_bias_grad, "fc2_bias_grad")):
                if tuple(grad.shape) != tuple(param.shape):
                    raise MlplabError(f"gradient_descent: {name} has shape {tuple(grad.shape)}, the parameter "
                                      f"{tuple(param.shape)}", hint="pass the gradients compute_gradients returned")
                param -= step_size * grad

    def weights(self) -> dict[str, torch.Tensor]:
        """The parameters back in the assignment's shapes: W1 (d, h), b1 (1, h), W2 (h, o), b2 (o,)."""
        return {"W1": self.fc1.weight.detach().T.clone(), "b1": self.fc1.bias.detach().reshape(1, -1).clone(),
                "W2": self.fc2.weight.detach().T.clone(), "b2": self.fc2.bias.detach().clone()}
