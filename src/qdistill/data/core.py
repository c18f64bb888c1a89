"""Shared types and constants of the data sub-package: the error, the containers, the catalog.

Everything here is cheap to import (no dataset is touched). The catalog holds the
published facts the loaders check against: file names, MD5 of the *uncompressed* IDX
files (from the dataset authors, see shared/reference/datasets.md) and mirrors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import QdistillError

# The built-in dataset names and their aliases live in the dataset table (registry.py).

ENV_DATA_DIR = "QDISTILL_DATA_DIR"
ENV_CACHE_DIR = "QDISTILL_CACHE_DIR"
ENV_OFFLINE = "QDISTILL_OFFLINE"

# The four IDX files of MNIST and Fashion-MNIST, in the order (train x, train y, test x,
# test y). These constants are the ONLY file names the downloader ever writes.
IDX_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# MD5 of the uncompressed IDX content as published (repackagers re-gzip, so .gz hashes
# differ between sources while the content must not).
OFFICIAL_MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}

# Mirrors serving "<mirror><file>.gz", tried in order (the ones torchvision lists).
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}

# Where Debian's `dataset-fashion-mnist` package puts the gzipped IDX files.
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

CLASS_NAMES: dict[str, list[str]] = {
    "mnist": [str(i) for i in range(10)],
    "digits": [str(i) for i in range(10)],
    "fashion-mnist": [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ],
    "cifar10": [
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    ],
}

# What ImageSet (and every loader's arrays) may hold: uint8 0..255 or float32 in [0, 1].
IMAGE_DTYPES: tuple[torch.dtype, ...] = (torch.uint8, torch.float32)

CHECKSUM_OK = "ok"
CHECKSUM_MISMATCH = "mismatch: not the official file"


class DataError(QdistillError):
    """A dataset is missing, corrupt or mis-specified; the message says which file and what to do.

    Subclasses :class:`qdistill.errors.QdistillError`, so the CLI prints it as one line.
    ``sources_tried`` is filled when every source of a dataset failed (for ``data info``).
    """

    def __init__(self, message: str, sources_tried: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.sources_tried = sources_tried or []


def cache_dir() -> Path:
    """Where decoded datasets and downloads live: $QDISTILL_CACHE_DIR, else
    $XDG_CACHE_HOME/qdistill, else ~/.cache/qdistill. Not created here."""
    explicit = os.environ.get(ENV_CACHE_DIR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "qdistill"
    return Path.home() / ".cache" / "qdistill"


@dataclass
class ImageSet:
    """Images (N, C, H, W) with int64 labels already remapped to 0..K-1.

    Images are uint8 0..255 — 4x less memory than float32 (MNIST train: 47 MB instead
    of 188 MB), scaled by 1/255 when used — or float32 already in [0, 1] (a user's own
    float data, kept as given). ``indices`` are the positions of these images in the raw
    split they were taken from (train split for train/val, test split for test); None
    when not applicable.
    """

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype not in IMAGE_DTYPES or self.images.dim() != 4:
            raise DataError(
                f"ImageSet images must be uint8 (0..255) or float32 (0..1) (N,C,H,W), got "
                f"{self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.images.dtype == torch.float32 and self.images.numel():
            lo, hi = torch.aminmax(self.images)
            if not (float(lo) >= 0.0 and float(hi) <= 1.0):  # NaN fails both
                raise DataError(f"ImageSet float32 images must be in [0, 1] (no NaN), got "
                                f"{float(lo):g}..{float(hi):g}")
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise DataError(f"ImageSet labels must be int64 (N,), got {self.labels.dtype}")
        if self.labels.shape[0] != self.images.shape[0]:
            raise DataError(
                f"ImageSet has {self.images.shape[0]} images but {self.labels.shape[0]} labels"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def float_images(self) -> torch.Tensor:
        """Pixels as a new float32 tensor in [0, 1]: uint8 x / 255 (the paper's
        ``ToTensor()``), float32 images copied as they are."""
        if self.images.dtype == torch.uint8:
            return self.images.float().div_(255.0)
        return self.images.clone()

    def to(self, device: torch.device | str) -> ImageSet:
        """A copy on ``device`` (indices stay on the CPU: they are bookkeeping)."""
        return ImageSet(self.images.to(device), self.labels.to(device), self.indices)


@dataclass
class RawDataset:
    """A whole dataset as published: both splits, original labels, where it came from.

    ``checksums`` maps file name -> "ok" / "mismatch: not the official file" / "not
    checked (why)". ``sources_tried`` lists every source in lookup order with what
    happened there (used / skipped: reason / not reached).
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: list[str]
    source: str
    checksums: dict[str, str]
    sources_tried: list[dict[str, str]] = field(default_factory=list)


@dataclass
class LoadedArrays:
    """Internal: a dataset as numpy arrays (read-only, shared by the in-memory cache).

    ``arrays`` keys: train_images (N,C,H,W) uint8 (or float32 in [0, 1]), train_labels
    (N,) int64 in 0..K-1 (K = len(class_names)), test_images, test_labels. The public
    :class:`RawDataset` is built from this by copying.
    """

    name: str
    arrays: dict[str, np.ndarray]
    class_names: list[str]
    source: str
    checksums: dict[str, str]
    sources_tried: list[dict[str, str]] = field(default_factory=list)
