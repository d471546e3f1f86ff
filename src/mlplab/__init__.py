"""mlplab: the two-layer MLP of the seed assignment, by hand and in PyTorch, and MNIST with an MLP.

>>> import mlplab
>>> out = mlplab.forward([[0., -2., 1.]], "relu", [[1., -2.5], [-1.5, -1.], [.5, -1.5]], [.5, 2.],
...                      "sigmoid", [.1, -2.], .5)
>>> round(out.y_hat.item(), 2)
0.02
"""

from __future__ import annotations

__version__ = "0.1.0"

from mlplab.activations import ACTIVATIONS, get_activation, identity, relu, sigmoid
from mlplab.device import get_device
from mlplab.errors import MlplabError
from mlplab.forward import ForwardResult, forward
from mlplab.problem import Problem, load_problem

__all__ = [
    "ACTIVATIONS",
    "ForwardResult",
    "MlplabError",
    "Problem",
    "__version__",
    "forward",
    "get_activation",
    "get_device",
    "identity",
    "load_problem",
    "relu",
    "sigmoid",
]
