"""A hand-written forward and backward pass for `MLP`, writing into buffers allocated once.

For a batch X (n, d) and hidden layers k = 1..L-1 (weights W_k of shape (n_k, n_{k-1}) as in `nn.Linear`):

    Z_k = A_{k-1} W_kᵀ + b_k,   A_k = relu(Z_k) ⊙ M_k            (A_0 = X; M_k = dropout mask, 0 or 1/(1-p))
    z_L = A_{L-1} W_Lᵀ + b_L,   loss = mean_i −log softmax(z_L)_i[y_i]

and backwards, with dz_L = (softmax(z_L) − onehot(y)) / n:

    dW_k = dZ_kᵀ A_{k-1},   db_k = Σ_i dZ_k,   dA_{k-1} = dZ_k W_k,   dZ_{k-1} = dA_{k-1} ⊙ M_{k-1} ⊙ [A_{k-1} > 0]

To save passes over memory (at batch 6400 each elementwise pass over a layer costs as much as a tenth of its
matrix products), the buffers hold A'_k = relu(Z_k) ⊙ m_k with a 0/1 mask m_k, and the scale s = 1/(1-p) is
folded into the matrix products as their `alpha`: Z_{k+1} = s·A'_k W_{k+1}ᵀ + b, dW_{k+1} = s·dZ_{k+1}ᵀ A'_k,
dA'_k = s·dZ_{k+1} W_{k+1}. Then dZ_k = dA'_k ⊙ m_k ⊙ [Z_k > 0] = dA'_k ⊙ [A'_k > 0], a single ReLU-gate pass
that needs neither the mask nor Z_k again. With `softmax_output` the loss is the cross-entropy of the probabilities
s = softmax(z_L), as `F.cross_entropy(model(X), y)` computes it: ds = (softmax(s) − onehot) / n and
dz_L = s ⊙ (ds − Σ_j ds_j s_j).

Why by hand: autograd records a graph and allocates every intermediate on each step; at batch 64 on a CPU that
bookkeeping costs as much as the matrix products. Here a step is ~10 kernel calls per layer, no allocation.
The gradients are checked against float64 autograd in tests/test_mnist_model.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlplab.mnist.dropout import DropoutStream
from mlplab.mnist.model import MLP

_threshold_backward = torch.ops.aten.threshold_backward.grad_input


def _grad(param: torch.Tensor) -> torch.Tensor:
    assert param.grad is not None
    return param.grad


class ManualBackprop:
    """Computes the loss and writes the gradients into each parameter's `.grad` (then call `optimizer.step()`).

    Dropout masks come from a `DropoutStream` on `generator` (on the model's device), so a run is reproducible
    and resumable from the generator's state; `dropout_masks()` returns the last step's (for tests).

    >>> _ = torch.manual_seed(0); model = MLP(4, [3], 2, 0.0)
    >>> engine = ManualBackprop(model, batch_size=5, generator=torch.Generator().manual_seed(0))
    >>> loss = engine.step(torch.randn(5, 4), torch.tensor([0, 1, 1, 0, 1]))
    >>> model.linears()[0].weight.grad.shape
    torch.Size([3, 4])
    """

    def __init__(self, model: MLP, batch_size: int, generator: torch.Generator,
                 dropout: DropoutStream | None = None) -> None:
        self.model = model
        self.generator = generator
        self.p = float(model.dropout_rate)
        self.dropout = dropout if dropout is not None else DropoutStream(generator, self.p)
        self.softmax_output = model.softmax_output
        self.layers = model.linears()
        first = self.layers[0].weight
        dtype, device = first.dtype, first.device
        for layer in self.layers:  # gradients live in fixed buffers that the optimizer reads
            layer.weight.grad = torch.zeros_like(layer.weight)
            layer.bias.grad = torch.zeros_like(layer.bias)
        widths = [layer.out_features for layer in self.layers]
        self._Z = [torch.empty(batch_size, w, dtype=dtype, device=device) for w in widths]  # Z_k, then A_k
        self._M = [torch.empty(batch_size, w, dtype=dtype, device=device) for w in widths[:-1]]  # masks
        self._dA = [torch.empty(batch_size, w, dtype=dtype, device=device) for w in widths[:-1]]
        self._X = torch.empty(batch_size, self.layers[0].in_features, dtype=dtype, device=device)
        self._y = torch.empty(batch_size, dtype=torch.long, device=device)
        self._logp = torch.empty(batch_size, widths[-1], dtype=dtype, device=device)
        self._minus_one = torch.full((batch_size, 1), -1.0, dtype=dtype, device=device)
        self.masks: list[torch.Tensor] = []
        # Views made once: creating a transpose or a slice is a few microseconds, a step at batch 6 about 1 ms.
        self._W = [layer.weight for layer in self.layers]
        self._Wt = [layer.weight.t() for layer in self.layers]
        self._b = [layer.bias for layer in self.layers]
        self._dW = [_grad(layer.weight) for layer in self.layers]
        self._db = [_grad(layer.bias) for layer in self.layers]
        self._views: dict[int, dict[str, list[torch.Tensor]]] = {}

    def _buffers(self, n: int) -> dict[str, list[torch.Tensor]]:
        """The first n rows of every buffer (cached: a run uses the batch size and one last, smaller size)."""
        if n not in self._views:
            self._views[n] = {"Z": [t[:n] for t in self._Z], "M": [t[:n] for t in self._M],
                              "dA": [t[:n] for t in self._dA],
                              "io": [self._X[:n], self._y[:n], self._logp[:n], self._minus_one[:n]]}
        return self._views[n]

    def inputs(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The engine's own input buffers X (n, d) and y (n,), for callers that gather batches themselves."""
        X, y = self._buffers(n)["io"][:2]
        return X, y

    @torch.no_grad()
    def step_indices(self, X_all: torch.Tensor, y_all: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Gather the batch rows `index` into the input buffers (no allocation), then `step`."""
        X, y = self.inputs(index.shape[0])
        torch.index_select(X_all, 0, index, out=X)
        torch.index_select(y_all, 0, index, out=y)
        return self.step(X, y)

    @torch.no_grad()
    def step(self, X: torch.Tensor, y: torch.Tensor, masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Forward and backward on one batch X (n, d), y (n,); returns the mean loss (0-dim, on device).
        `masks` (0/1, one (n, n_k) tensor per hidden layer) replaces the draws from the dropout stream."""
        buffers = self._buffers(X.shape[0])
        A = [X]  # A[0] = X, then A'_k (unscaled masked activations)
        self.masks = []
        s = 1.0 / (1.0 - self.p)
        L = len(self.layers)
        for k in range(L - 1):
            Z = buffers["Z"][k]
            torch.addmm(self._b[k], A[-1], self._Wt[k], alpha=s if k > 0 else 1.0, out=Z)  # Z_k (n, n_k)
            if self.p > 0:
                if masks is not None:
                    M = masks[k]
                else:
                    M = buffers["M"][k]
                    self.dropout.fill(M)  # m_k: 1 keeps a unit, 0 drops it
                Z.mul_(M)
                self.masks.append(M)
            A.append(Z.relu_())  # A'_k = relu(Z_k) ⊙ m_k
        z = buffers["Z"][-1]
        torch.addmm(self._b[-1], A[-1], self._Wt[-1], alpha=s if L > 1 else 1.0, out=z)  # z_L (n, C)
        loss, dZ = self._loss_and_output_grad(z, y, buffers["io"][2], buffers["io"][3])
        for k in range(L - 1, -1, -1):
            alpha = s if k > 0 else 1.0  # layer k reads s·A'_{k-1}, or X unscaled
            torch.addmm(self._dW[k], dZ.t(), A[k], beta=0, alpha=alpha, out=self._dW[k])  # dW_k (n_k, n_{k-1})
            torch.sum(dZ, 0, out=self._db[k])  # db_k (n_k,)
            if k > 0:
                dA = buffers["dA"][k - 1]
                torch.addmm(dA, dZ, self._W[k], beta=0, alpha=alpha, out=dA)  # dA'_{k-1} (n, n_{k-1})
                _threshold_backward(dA, A[k], 0, grad_input=dA)  # dZ_{k-1} = dA'_{k-1} ⊙ [A'_{k-1} > 0]
                dZ = dA
        return loss

    def dropout_masks(self) -> list[torch.Tensor]:
        """The last step's dropout masks as multipliers of relu(Z_k): 0 or 1/(1-p) (copies, for checking)."""
        return [M / (1.0 - self.p) for M in self.masks]

    def _loss_and_output_grad(self, z: torch.Tensor, y: torch.Tensor, logp: torch.Tensor,
                              minus_one: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = z.shape[0]
        if not self.softmax_output:
            torch.log_softmax(z, 1, out=logp)
            loss = F.nll_loss(logp, y)
            dz = logp.exp_()  # softmax(z), reusing the buffer
            dz.scatter_add_(1, y[:, None], minus_one)  # − onehot(y)
            return loss, dz.mul_(1.0 / n)
        s = torch.softmax(z, 1)  # the model's output: probabilities (n, C)
        torch.log_softmax(s, 1, out=logp)
        loss = F.nll_loss(logp, y)
        ds = logp.exp_()
        ds.scatter_add_(1, y[:, None], minus_one)
        ds.mul_(1.0 / n)
        dz = s * (ds - (ds * s).sum(1, keepdim=True))  # softmax Jacobian applied to ds
        return loss, dz
