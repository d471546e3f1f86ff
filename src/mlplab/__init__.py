"""mlplab: the two-layer MLP of the assignment, by hand and in PyTorch, and MNIST with an MLP.

>>> import mlplab
>>> out = mlplab.forward([[0., -2., 1.]], "relu", [[1., -2.5], [-1.5, -1.], [.5, -1.5]], [.5, 2.],
...                      "sigmoid", [.1, -2.], .5)
>>> round(out.y_hat.item(), 2)
0.02
"""

from __future__ import annotations

__version__ = "0.1.0"

from mlplab.device import get_device
from mlplab.errors import MlplabError
from mlplab.twolayer.activations import ACTIVATIONS, get_activation, identity, relu, sigmoid
from mlplab.twolayer.byhand import derive_by_hand
from mlplab.twolayer.decision import classify_pairs, predict_labels, predict_labels_from_logits
from mlplab.twolayer.descent import descent_curves, gradient_descent_run, verdict
from mlplab.twolayer.forward import ForwardResult, forward
from mlplab.twolayer.forward_tables import table1, table2
from mlplab.twolayer.gradcheck import check_gradients, relative_error
from mlplab.twolayer.gradients import Gradients, backward
from mlplab.twolayer.losses import MSE, binary_cross_entropy, binary_cross_entropy_with_logits, mse
from mlplab.twolayer.netdraw import draw_network
from mlplab.twolayer.problem import Problem, load_problem
from mlplab.twolayer.simple_mlp import SimpleMLP

__all__ = [
    "ACTIVATIONS",
    "MSE",
    "ForwardResult",
    "Gradients",
    "MlplabError",
    "Problem",
    "SimpleMLP",
    "__version__",
    "backward",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "check_gradients",
    "classify_pairs",
    "derive_by_hand",
    "descent_curves",
    "draw_network",
    "forward",
    "get_activation",
    "get_device",
    "gradient_descent_run",
    "identity",
    "load_problem",
    "mse",
    "predict_labels",
    "predict_labels_from_logits",
    "relative_error",
    "relu",
    "sigmoid",
    "table1",
    "table2",
    "verdict",
]
