"""MNIST 3s and 7s as flat uint8 tensors, with a seeded train/validation split."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.datasets import MNIST

THREE, SEVEN = 3, 7
PIXELS = 784
DEFAULT_DATA_DIR = Path("data")


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


def resolve_data_dir(flag: str | None) -> tuple[Path, bool]:
    """Where MNIST lives and whether it may be downloaded: `--data-dir`, `MNIST_DATA_DIR`, else ./data."""
    if flag:
        return Path(flag), False
    env = os.environ.get("MNIST_DATA_DIR")
    if env:
        return Path(env), False
    return DEFAULT_DATA_DIR, True


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
            "or allow the download into ./data"
        ) from err
    return select_3v7(mnist.data, mnist.targets)


def load_dataset(data_dir: str | None, seed: int, val_fraction: float = 0.1) -> Dataset3v7:
    """Read MNIST, keep 3s and 7s, and hold out a seeded validation share of the train split."""
    root, download = resolve_data_dir(data_dir)
    full_train = _read_split(root, train=True, download=download)
    test = _read_split(root, train=False, download=download)
    order = torch.randperm(len(full_train), generator=torch.Generator().manual_seed(seed))
    n_val = round(len(full_train) * val_fraction)
    val_idx, train_idx = order[:n_val], order[n_val:]
    train = Split(full_train.images[train_idx], full_train.labels[train_idx])
    val = Split(full_train.images[val_idx], full_train.labels[val_idx])
    return Dataset3v7(train=train, val=val, test=test, root=root)
