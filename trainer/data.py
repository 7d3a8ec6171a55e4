"""MNIST 3s and 7s as flat uint8 tensors, with a seeded train/validation split, and the other eight
digits, which teach and test "neither 3 nor 7"."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from service.client.mnist import read_idx

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
class OtherDigits:
    """MNIST's 0, 1, 2, 4, 5, 6, 8 and 9: images (N, 784) uint8 and their digits (N,) int64."""

    images: torch.Tensor
    digits: torch.Tensor

    def __len__(self) -> int:
        return int(self.digits.shape[0])

    def subset(self, count: int) -> OtherDigits:
        return OtherDigits(self.images[:count], self.digits[:count])


@dataclass(frozen=True)
class Dataset3v7:
    train: Split
    val: Split
    test: Split
    root: Path
    # Outliers: the train split's other digits teach "neither"; the test split's only measure it.
    train_others: OtherDigits
    test_others: OtherDigits


def select_3v7(images: torch.Tensor, targets: torch.Tensor) -> Split:
    """Keep the 3s and 7s of an MNIST split; label 3 as 1 and 7 as 0."""
    keep = (targets == THREE) | (targets == SEVEN)
    flat = images[keep].reshape(-1, PIXELS).contiguous()
    labels = (targets[keep] == THREE).to(torch.float32)
    return Split(flat, labels)


def select_others(images: torch.Tensor, targets: torch.Tensor) -> OtherDigits:
    """Keep every digit of an MNIST split but the 3s and 7s."""
    keep = (targets != THREE) & (targets != SEVEN)
    return OtherDigits(images[keep].reshape(-1, PIXELS).contiguous(), targets[keep].clone())


def _download(root: Path) -> None:
    # torchvision only to fetch the files: it is among a run's slowest imports, and the files, once on
    # disk, are read without it.
    from torchvision.datasets import MNIST

    MNIST(root=str(root), train=True, download=True)
    MNIST(root=str(root), train=False, download=True)


def _read_split(root: Path, train: bool, download: bool) -> tuple[Split, OtherDigits]:
    raw = root / "MNIST" / "raw"
    prefix = "train" if train else "t10k"
    try:
        if download and not (raw / f"{prefix}-labels-idx1-ubyte").exists():
            _download(root)
        images = read_idx(raw / f"{prefix}-images-idx3-ubyte", 2051)
        digits = read_idx(raw / f"{prefix}-labels-idx1-ubyte", 2049)
        if images.shape[0] != digits.shape[0] or images.shape[1:] != (28, 28):
            raise ValueError(f"{len(images)} images of {images.shape[1:]} pixels for {len(digits)} labels")
    except (RuntimeError, OSError, ValueError) as err:
        how = "download failed" if download else "files not found or unreadable"
        raise DataUnavailableError(
            f"MNIST is not available at {root} ({how}: {str(err).splitlines()[0]}); "
            "point --data-dir or MNIST_DATA_DIR at a folder holding MNIST/raw, "
            "or set neither to download it into ./data"
        ) from err
    pixels, targets = torch.from_numpy(images.copy()), torch.from_numpy(digits.astype(np.int64))
    return select_3v7(pixels, targets), select_others(pixels, targets)


def load_dataset(root: str | Path, seed: int, download: bool = False, val_fraction: float = 0.1) -> Dataset3v7:
    """Read MNIST from root/MNIST/raw (fetching it first if `download`), keep 3s and 7s, and hold
    out a seeded validation share of the train split's 3s and 7s."""
    root = Path(root)
    full_train, train_others = _read_split(root, train=True, download=download)
    test, test_others = _read_split(root, train=False, download=download)
    order = torch.randperm(len(full_train), generator=torch.Generator().manual_seed(seed))
    n_val = round(len(full_train) * val_fraction)
    val_idx, train_idx = order[:n_val], order[n_val:]
    train = Split(full_train.images[train_idx], full_train.labels[train_idx])
    val = Split(full_train.images[val_idx], full_train.labels[val_idx])
    return Dataset3v7(train, val, test, root, train_others, test_others)
