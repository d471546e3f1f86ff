"""MNIST as two in-memory tensors, normalized once: the form the fast trainer slices batches from.

`load_mnist` reads the cache only (see `mlplab.mnist.fetch` for how files get there), checks every file
and never downloads. Pixels become `(x / 255 - MEAN) / STD`, where MEAN and STD are the mean and standard
deviation of all 60000 x 784 training pixels scaled to [0, 1] (0.13066 and 0.30811, rounded to four digits;
the same constants as PyTorch's MNIST example). `tests/test_mnist_real.py` recomputes them from the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlplab.errors import MlplabError
from mlplab.mnist.fetch import MNIST_FILES, MnistFile, cached_path, default_data_dir, md5_hex
from mlplab.mnist.idx import parse_idx, read_idx_bytes

MEAN = 0.1307
STD = 0.3081
NUM_CLASSES = 10
IMAGE_SIDE = 28


@dataclass(frozen=True, eq=False)
class MnistSplit:
    """One split held in memory: `images` (N, 784) float32 and `labels` (N,) int64 in 0..9.

    >>> s = MnistSplit(torch.zeros(3, 784), torch.tensor([0, 1, 9]))
    >>> len(s), s.to("cpu").images.shape
    (3, torch.Size([3, 784]))
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.ndim != 2 or self.labels.ndim != 1 or len(self.images) != len(self.labels):
            raise MlplabError(f"an MNIST split needs images (N, D) and labels (N,), got {tuple(self.images.shape)} "
                              f"and {tuple(self.labels.shape)}", hint="pass one label per image row")

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> MnistSplit:
        """The same split on `device` (the whole tensors move once; batches are then slices)."""
        return MnistSplit(self.images.to(device), self.labels.to(device))

    def fingerprint(self) -> str:
        """A short hash of the shapes, every label and 1,024 evenly spaced image rows: what a resumed run checks
        to know it trains on the data it started with (sampled rows keep it cheap on the full 188 MB set).

        >>> a, b = MnistSplit(torch.zeros(3, 4), torch.arange(3)), MnistSplit(torch.ones(3, 4), torch.arange(3))
        >>> a.fingerprint() != b.fingerprint()
        True
        """
        import hashlib

        rows = torch.unique(torch.linspace(0, max(0, len(self) - 1), steps=min(1024, len(self))).long())
        digest = hashlib.sha256(f"{tuple(self.images.shape)} {self.images.dtype}".encode())
        digest.update(self.labels.detach().cpu().to(torch.int64).numpy().tobytes())
        digest.update(self.images[rows.to(self.images.device)].detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]


def load_mnist(data_dir: Path | None = None, *, normalize: bool = True,
               verify: bool = True) -> tuple[MnistSplit, MnistSplit]:
    """(train, test) from the cache in `data_dir` (default `default_data_dir()`); never downloads.

    Each file is checked: IDX header and length always; MD5 when `verify` (turn it off only for synthetic
    test files); shapes (N, 28, 28) and (N,), matching N, labels in 0..9. With `normalize=False` the images
    are the raw pixels as float32 in 0..255.

    >>> import tempfile
    >>> load_mnist(Path(tempfile.mkdtemp()))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    mlplab.errors.MlplabError: MNIST is not in ... (missing train-images-idx3-ubyte, ...); run `mlplab data fetch ...
    """
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    specs = list(MNIST_FILES.values())
    absent = [spec.name for spec in specs if cached_path(folder, spec.name) is None]
    if absent:
        raise MlplabError(
            f"MNIST is not in {folder} (missing {', '.join(absent)})",
            hint=f"run `mlplab data fetch{'' if data_dir is None else f' --data-dir {folder}'}`, or put the four "
                 f"IDX files (uncompressed or .gz) into {folder} by hand; see docs/mnist-data.md")
    arrays = {spec.name: _read_checked(folder, spec, verify) for spec in specs}
    train = _split(arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"], "train", normalize)
    test = _split(arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"], "t10k", normalize)
    return train, test


def normalize_pixels(pixels: torch.Tensor) -> torch.Tensor:
    """Raw 0..255 pixels -> `(x / 255 - MEAN) / STD` as float32.

    >>> normalize_pixels(torch.tensor([0, 255], dtype=torch.uint8))
    tensor([-0.4242,  2.8215])
    """
    return pixels.to(torch.float32).div_(255.0).sub_(MEAN).div_(STD)


def _read_checked(folder: Path, spec: MnistFile, verify: bool) -> np.ndarray:
    path = cached_path(folder, spec.name)
    assert path is not None  # checked by the caller
    data = read_idx_bytes(path)
    array = parse_idx(data, str(path))  # first, since "truncated" says more than a checksum mismatch
    if verify and (digest := md5_hex(data)) != spec.md5:
        raise MlplabError(f"{path} has the wrong checksum (MD5 {digest}, expected {spec.md5}): it is corrupt "
                          "or not the original MNIST file",
                          hint="run `mlplab data fetch`, which replaces it, or check it with `mlplab data verify`")
    expected_ndim = len(spec.shape)
    if array.dtype != np.uint8 or array.ndim != expected_ndim or array.shape[1:] != spec.shape[1:]:
        raise MlplabError(f"{path} holds a {array.dtype} array of shape {array.shape}, expected uint8 of shape "
                          f"(N{''.join(f', {n}' for n in spec.shape[1:])})",
                          hint="replace it with the original MNIST file (`mlplab data fetch`)")
    return array


def _split(images: np.ndarray, labels: np.ndarray, prefix: str, normalize: bool) -> MnistSplit:
    if len(images) != len(labels):
        raise MlplabError(f"{prefix}-images has {len(images)} images but {prefix}-labels has {len(labels)} labels",
                          hint="the two files come from different sets; fetch both again (`mlplab data fetch`)")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise MlplabError(f"{prefix}-labels contains the label {int(labels.max())}, expected 0..9",
                          hint="replace it with the original MNIST file (`mlplab data fetch`)")
    pixels = torch.from_numpy(images).reshape(len(images), IMAGE_SIDE * IMAGE_SIDE)  # (N, 784) uint8
    X = normalize_pixels(pixels) if normalize else pixels.to(torch.float32)
    return MnistSplit(X, torch.from_numpy(labels).to(torch.int64))
