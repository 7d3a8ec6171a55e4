"""MNIST 3s and 7s as flat uint8 tensors, with a seeded train/validation split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.datasets import MNIST

THREE, SEVEN = 3, 7
PIXELS = 784


class DataUnavailableError(RuntimeError):
    """MNIST could be neither read from disk nor downloaded."""


@dataclass(frozen=True)
class Split:
    """Images (N, 784) uint8 in [0, 255] and labels (N,) float32: 1.0 for a 3, 0.0 for a 7."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def floats(self) -> torch.Tensor:
        """Images as float32 in [0, 1], the model's input."""
        return self.images.float().div_(255.0)

    def subset(self, count: int) -> Split:
        return Split(self.images[:count], self.labels[:count])


@dataclass(frozen=True)
class Dataset3v7:
    train: Split
    val: Split
    test: Split
    root: Path


def select_3v7(images: torch.Tensor, targets: torch.Tensor) -> Split:
    """Keep the 3s and 7s of an MNIST split; label 3 as 1 and 7 as 0."""
    keep = (targets == THREE) | (targets == SEVEN)
    flat = images[keep].reshape(-1, PIXELS).contiguous()
    labels = (targets[keep] == THREE).to(torch.float32)
    return Split(flat, labels)


def _read_split(root: Path, train: bool, download: bool) -> Split:
    try:
        mnist = MNIST(root=str(root), train=train, download=download)
    except (RuntimeError, OSError) as err:
        how = "download failed" if download else "files not found"
        raise DataUnavailableError(
            f"MNIST is not available at {root} ({how}: {str(err).splitlines()[0]}); "
            "point --data-dir or MNIST_DATA_DIR at a folder holding MNIST/raw, "
            "or set neither to download it into ./data"
        ) from err
    return select_3v7(mnist.data, mnist.targets)


def load_dataset(root: str | Path, seed: int, download: bool = False, val_fraction: float = 0.1) -> Dataset3v7:
    """Read MNIST from root/MNIST/raw (fetching it first if `download`), keep 3s and 7s, and hold
    out a seeded validation share of the train split."""
    root = Path(root)
    full_train = _read_split(root, train=True, download=download)
    test = _read_split(root, train=False, download=download)
    order = torch.randperm(len(full_train), generator=torch.Generator().manual_seed(seed))
    n_val = round(len(full_train) * val_fraction)
    val_idx, train_idx = order[:n_val], order[n_val:]
    train = Split(full_train.images[train_idx], full_train.labels[train_idx])
    val = Split(full_train.images[val_idx], full_train.labels[val_idx])
    return Dataset3v7(train=train, val=val, test=test, root=root)
