"""What pytest needs before it imports anything of mlplab (the doctests in src/ included)."""

import importlib.util
import os

import torch

# Without a GPU, Triton's interpreter runs the fused training kernels on CPU tensors. Triton reads this when the
# kernels are defined, so it is set before any module is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# The kernels' module imports triton, which the CUDA wheels of torch bring and `make dev` installs.
collect_ignore = [] if importlib.util.find_spec("triton") else ["src/mlplab/mnist/fused_kernels.py"]
