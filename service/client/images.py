"""Photos and scans of a digit → MNIST-style 28×28 input: dark background, cropped, 20×20 box, centred by mass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def mnist_style(gray: np.ndarray) -> np.ndarray:
    """gray: (H, W) uint8, either polarity → (784,) uint8 with a white digit on black, as MNIST draws it."""
    img = gray.astype(np.float32)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    if border.mean() > 127:  # dark ink on light paper: invert
        img = 255.0 - img
    img -= np.median(border if border.mean() <= 127 else 255.0 - border)  # paper tone → 0
    img = np.clip(img, 0, None)
    if img.max() <= 0:
        return np.zeros(784, dtype=np.uint8)
    img *= 255.0 / img.max()
    rows, cols = np.nonzero(img > 0.15 * 255)
    img = img[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = img.shape
    scale = 20.0 / max(h, w)  # longest side to 20 pixels, aspect kept
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    fitted = np.asarray(Image.fromarray(img.astype(np.uint8)).resize(size, Image.Resampling.LANCZOS), np.float32)
    canvas = np.zeros((28, 28), np.float32)
    top, left = (28 - size[1]) // 2, (28 - size[0]) // 2
    canvas[top : top + size[1], left : left + size[0]] = fitted
    # Shift so the centre of mass sits at the centre, as in MNIST.
    ys, xs = np.indices(canvas.shape)
    mass = canvas.sum()
    dy, dx = round(13.5 - (ys * canvas).sum() / mass), round(13.5 - (xs * canvas).sum() / mass)
    canvas = np.roll(canvas, (dy, dx), axis=(0, 1))
    return np.clip(canvas, 0, 255).astype(np.uint8).reshape(784)


def load_image(path: Path) -> np.ndarray:
    """A PNG/JPEG file → (784,) uint8 MNIST-style pixels."""
    with Image.open(path) as im:
        return mnist_style(np.asarray(im.convert("L")))


def load_npy(path: Path) -> np.ndarray:
    """A .npy of shape (784,), (28, 28), (N, 784) or (N, 28, 28), uint8 or float in [0, 1] → (N, 784)."""
    array = np.load(path, allow_pickle=False)
    if array.size % 784:
        raise ValueError(f"{path}: expected a multiple of 784 values, got shape {array.shape}")
    return array.reshape(-1, 784)
