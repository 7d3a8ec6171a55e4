"""Twenty non-digits of kinds the training never made (patterns, drawn shapes, letters and signs), for
checking that "neither" turns away what it was never shown: the suite's and bench.variants' own."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from service.client.images import mnist_style


def _drawn(draw: Callable[[ImageDraw.ImageDraw], None]) -> np.ndarray:
    """Something drawn in white on a black 112×112 square, then made MNIST-style as the CLI client does."""
    canvas = Image.new("L", (112, 112), 0)
    draw(ImageDraw.Draw(canvas))
    return mnist_style(np.asarray(canvas))


def _glyph(text: str) -> Callable[[ImageDraw.ImageDraw], None]:
    return lambda d: d.text((56, 56), text, fill=255, anchor="mm", font=ImageFont.load_default(size=80))


def _shirt(d: ImageDraw.ImageDraw) -> None:
    d.polygon([(30, 20), (82, 20), (100, 45), (85, 52), (80, 95), (32, 95), (27, 52), (12, 45)], fill=200)


def _house(d: ImageDraw.ImageDraw) -> None:
    d.rectangle((30, 55, 82, 95), outline=255, width=6)
    d.line((24, 60, 56, 25, 88, 60), fill=255, width=6)


def _star(d: ImageDraw.ImageDraw) -> None:
    points = [(56, 10), (67, 42), (100, 42), (73, 62), (84, 96), (56, 75), (28, 96), (39, 62), (12, 42), (45, 42)]
    d.polygon(points, fill=255)


def _smiley(d: ImageDraw.ImageDraw) -> None:
    d.ellipse((15, 15, 97, 97), outline=255, width=6)
    d.ellipse((38, 40, 48, 50), fill=255)
    d.ellipse((64, 40, 74, 50), fill=255)
    d.arc((35, 45, 77, 80), 20, 160, fill=255, width=6)


def _grid(d: ImageDraw.ImageDraw) -> None:
    for at in (25, 56, 87):
        d.line((at, 10, at, 100), fill=255, width=4)
        d.line((10, at, 100, at), fill=255, width=4)


def non_digits() -> dict[str, np.ndarray]:
    """Images that are not digits, of kinds the training never made: (784,) uint8 each."""
    ys, xs = np.indices((28, 28))
    raw = {
        "checkerboard": ((ys // 4 + xs // 4) % 2 * 255),
        "stripes": (xs // 3 % 2 * 255),
        "diagonal stripes": ((xs + ys) // 4 % 2 * 255),
        "radial gradient": np.clip(255 - 18 * np.hypot(ys - 13.5, xs - 13.5), 0, 255),
        "white": np.full((28, 28), 255),
    }
    made = {name: image.astype(np.uint8).reshape(784) for name, image in raw.items()}
    shapes = {"shirt": _shirt, "house": _house, "star": _star, "smiley": _smiley, "grid": _grid}
    made |= {name: _drawn(draw) for name, draw in shapes.items()}
    made |= {f"glyph {g}": _drawn(_glyph(g)) for g in ("A", "H", "K", "M", "W", "X", "#", "@", "%", "&")}
    return made
