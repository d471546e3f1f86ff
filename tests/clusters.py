"""Small learnable stand-ins for MNIST, shared by the trainer tests."""

from __future__ import annotations

import torch

from mlplab.mnist.data import MnistSplit


def gaussian_clusters(n: int, d: int, seed: int, centre_seed: int, spread: float = 1.0) -> MnistSplit:
    """n points around ten fixed Gaussian centres in d dimensions (the centres come from `centre_seed`, the
    points and their labels from `seed`), labelled by their centre: learnable, not trivially."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(10, d, generator=torch.Generator().manual_seed(centre_seed))
    y = torch.randint(0, 10, (n,), generator=g)
    return MnistSplit(centres[y] + spread * torch.randn(n, d, generator=g), y)
