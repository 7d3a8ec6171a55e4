"""MNIST's test digits re-drawn as a person draws them with a mouse on the page: each digit thinned to
its skeleton, traced with a round pen of varying width on a canvas the page's size, then made
MNIST-style by the same steps the page and the CLI client take. Seeded, so every run sees the same."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from service.client.images import mnist_style

# Half the page's pad with half its pen (service/page/page.js): the same drawing, with far fewer
# pixels to trace and make MNIST-style.
CANVAS = 140
PEN = CANVAS / 14
SEED = 20261203
# What a hand varies: how large the digit is drawn on the pad (the height of MNIST's 20-pixel box, in
# canvas pixels), the pen's width around the page's, and the wobble of the trace, in MNIST pixels.
DRAWN_SIZE = (0.4 * CANVAS, 0.9 * CANVAS)
PEN_SCALE = (0.8, 1.25)
WOBBLE_PX = 0.35

# The eight neighbours of a pixel in Zhang and Suen's order: P2 (north), then clockwise to P9.
_NEIGHBOURS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))


def skeleton(ink: np.ndarray) -> np.ndarray:
    """(N, H, W) bool strokes → their one-pixel-wide skeletons (Zhang and Suen's thinning, 1984)."""
    img = np.pad(ink.astype(bool), ((0, 0), (1, 1), (1, 1)))
    h, w = img.shape[1:]
    while True:
        changed = False
        for step in (0, 1):
            p = [img[:, 1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx] for dy, dx in _NEIGHBOURS]
            count = sum(q.astype(np.int8) for q in p)
            transitions = sum((~p[i] & p[(i + 1) % 8]).astype(np.int8) for i in range(8))
            n, e, s, w_ = p[0], p[2], p[4], p[6]
            # The first sub-step peels the south and east edges (and north-west corners), the second
            # the north and west ones; a pixel that keeps its stroke connected is not peeled.
            keep = (n & e & s) | (e & s & w_) if step == 0 else (n & e & w_) | (n & s & w_)
            centre = img[:, 1:-1, 1:-1]
            remove = centre & (count >= 2) & (count <= 6) & (transitions == 1) & ~keep
            if remove.any():
                centre[remove] = False
                changed = True
        if not changed:
            return img[:, 1:-1, 1:-1]


def _trace(bones: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One skeleton (28, 28) bool → a white-on-black canvas (CANVAS, CANVAS) uint8, each pair of
    neighbouring skeleton pixels joined by a round-ended stroke."""
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    ys, xs = np.nonzero(bones)
    if len(ys) == 0:
        return np.asarray(canvas)
    scale = rng.uniform(*DRAWN_SIZE) / 20.0  # canvas pixels per MNIST pixel
    points = np.stack([xs, ys], 1).astype(np.float64) + rng.normal(0, WOBBLE_PX, (len(ys), 2))
    points = (points - points.mean(0)) * scale + CANVAS / 2
    # The width swells and thins along the strokes: a slow wave across the pad.
    base = PEN * rng.uniform(*PEN_SCALE)
    wave, phase = rng.normal(0, 2 * np.pi / CANVAS, 2), rng.uniform(0, 2 * np.pi)
    widths = base * (1 + 0.25 * np.sin(points @ wave + phase))
    index = -np.ones((28, 28), dtype=np.int64)
    index[ys, xs] = np.arange(len(ys))
    draw = ImageDraw.Draw(canvas)
    for k, (x, y) in enumerate(zip(xs, ys, strict=True)):
        (px, py), r = points[k], widths[k] / 2
        draw.ellipse((px - r, py - r, px + r, py + r), fill=255)
        for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):  # each neighbouring pair once
            if 0 <= y + dy < 28 and 0 <= x + dx < 28 and (j := index[y + dy, x + dx]) >= 0:
                width = round((widths[k] + widths[j]) / 2)
                draw.line((px, py, *points[j]), fill=255, width=width)
    return np.asarray(canvas)


def redrawn(images: np.ndarray, seed: int = SEED) -> np.ndarray:
    """images: (N, 784) uint8 MNIST digits → (N, 784) uint8, each re-drawn with a mouse as above."""
    rng = np.random.default_rng(seed)
    bones = skeleton(images.reshape(-1, 28, 28) > 127)
    return np.stack([mnist_style(_trace(b, rng)) for b in bones])
