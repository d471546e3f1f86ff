"""What the trainer's two shortcuts around `torch.optim.Adam.step()` share: which Adam they can stand in for,
and its step counters as views of one tensor.

Both shortcuts (`epoch.FusedAdamStep`, torch's fused kernel called directly, and `native_step.NativeStep`, the
compiled small-batch step) update the optimizer's own state tensors, so its state dict, checkpoints and resume
are those of `optimizer.step()`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def plain_adam(optimizer: torch.optim.Optimizer) -> bool:
    """torch's own Adam class with one parameter group, no amsgrad, maximize or decoupled decay, a float lr.

    >>> plain_adam(torch.optim.Adam([torch.zeros(2, requires_grad=True)])), plain_adam(
    ...     torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1))
    (True, False)
    """
    if type(optimizer) is not torch.optim.Adam or len(optimizer.param_groups) != 1:
        return False
    g = optimizer.param_groups[0]
    return not (g["amsgrad"] or g["maximize"] or g.get("decoupled_weight_decay")) and isinstance(g["lr"], float)


def shared_step_counter(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack the step counters of `params` into one float32 tensor and give the optimizer state views of it,
    so one `add_` (or one C loop) advances them all instead of a per-tensor `_foreach_add_` (50 us here at
    batch 6). Returns the stacked tensor."""
    states = [optimizer.state[p] for p in params]
    steps = torch.stack([s["step"].to(torch.float32) for s in states])
    for state, view in zip(states, steps.unbind(0)):
        state["step"] = view
    return steps
