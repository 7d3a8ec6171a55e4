"""The MNIST test split's 3s and 7s, read from torchvision's raw files without torch."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

THREE, SEVEN = 3, 7


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file (MNIST's format: big-endian header, then uint8 data), optionally gzipped."""
    gzipped = path.with_name(path.name + ".gz")
    opened = gzipped if not path.exists() and gzipped.exists() else path
    raw = gzip.decompress(opened.read_bytes()) if opened.suffix == ".gz" else opened.read_bytes()
    header = np.frombuffer(raw[:4], ">i4")[0]
    if header != magic:
        raise ValueError(f"{opened}: not an MNIST IDX file (magic {header}, expected {magic})")
    dims = np.frombuffer(raw[4 : 4 + 4 * (magic & 0xFF)], ">i4")
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def load_test_split(data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(N, 784) uint8 images and their digits, from `data_dir`, else $MNIST_DATA_DIR, else ./data."""
    root = Path(data_dir or os.environ.get("MNIST_DATA_DIR") or "data") / "MNIST" / "raw"
    try:
        images = read_idx(root / "t10k-images-idx3-ubyte", 2051)
        labels = read_idx(root / "t10k-labels-idx1-ubyte", 2049)
    except OSError as err:
        raise OSError(
            f"MNIST's test split is not at {root} ({err.strerror or err}); point --data-dir or MNIST_DATA_DIR at "
            "a folder holding MNIST/raw, or train once with `python -m trainer`, which downloads it to ./data"
        ) from None
    keep = (labels == THREE) | (labels == SEVEN)
    return images[keep].reshape(-1, 784), labels[keep].astype(np.int64)
