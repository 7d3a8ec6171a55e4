"""Made images that are not a 3 or a 7, for teaching "neither": blank and noisy squares, scribbles,
shapes, inverted digits, and 3s and 7s shrunk, blown up or cut in half. Besides these, only MNIST's
other eight digits teach it, so that anything else it is checked on stays unseen."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

Maker = Callable[[int, torch.Tensor, torch.Generator], torch.Tensor]  # (n, digits (M, 784), gen) → (n, 784)

# Pixel centres at integer coordinates 0..27, row (y) and column (x) of each pixel.
_Y, _X = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def _pick(digits: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n of `digits` at random, as (n, 1, 28, 28)."""
    return digits[torch.randint(len(digits), (n,), generator=generator)].reshape(n, 1, 28, 28)


def _smooth(x: torch.Tensor, passes: int) -> torch.Tensor:
    """(n, 784) → blurred by `passes` 3×3 box filters and rescaled to a peak of 1."""
    images = x.reshape(-1, 1, 28, 28)
    for _ in range(passes):
        images = F.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)
    peak = images.flatten(1).amax(1).clamp_min(1e-6).view(-1, 1, 1, 1)
    return (images / peak).reshape(-1, 784)


def blank(n: int, digits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Empty squares: black half the time, else one grey level, with a faint ramp."""
    level = _uniform((n, 1), 0.0, 1.0, generator) * (torch.rand(n, 1, generator=generator) < 0.5)
    slope = _uniform((n, 2), -0.3, 0.3, generator)
    ramp = slope[:, :1] * (_X.reshape(1, 784) / 27 - 0.5) + slope[:, 1:] * (_Y.reshape(1, 784) / 27 - 0.5)
    return (level + ramp * (level > 0)).clamp(0, 1)


def noise(n: int, digits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Speckle of any density, blurred into blotches half the time."""
    density = _uniform((n, 1), 0.03, 1.0, generator)
    x = torch.rand(n, 784, generator=generator) * (torch.rand(n, 784, generator=generator) < density)
    blotchy = torch.rand(n, generator=generator) < 0.5
    return torch.where(blotchy.view(n, 1), _smooth(x, 2), x)


def _segments_field(a: torch.Tensor, b: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """Ink of line segments a→b, each (n, k, 2) in (x, y) pixels, `width` (n, 1) → (n, 784)."""
    p = torch.stack([_X.reshape(-1), _Y.reshape(-1)], 1)  # (784, 2)
    ab = (b - a).unsqueeze(2)  # (n, k, 1, 2)
    ap = p.view(1, 1, 784, 2) - a.unsqueeze(2)  # (n, k, 784, 2)
    t = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-6)).clamp(0, 1)  # (n, k, 784)
    distance = (ap - t.unsqueeze(-1) * ab).norm(dim=-1).amin(1)  # (n, 784)
    return (width - distance + 0.5).clamp(0, 1)


def scribbles(n: int, digits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A pen wandering at random: polylines of 3 to 6 straight strokes."""
    points = _uniform((n, 7, 2), 3.0, 25.0, generator)
    a, b = points[:, :-1].clone(), points[:, 1:].clone()
    strokes = torch.randint(3, 7, (n, 1), generator=generator)
    unused = torch.arange(6).view(1, 6) >= strokes  # strokes past the count redraw the first one
    a[unused] = a[:, :1].expand_as(a)[unused]
    b[unused] = b[:, :1].expand_as(b)[unused]
    return _segments_field(a, b, _uniform((n, 1), 0.6, 2.0, generator))


def shapes(n: int, digits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """An ellipse or a box, outlined or filled (filled ones textured), anywhere and of any size."""
    centre = _uniform((n, 2, 1), 7.0, 21.0, generator)
    radius = _uniform((n, 2, 1), 3.0, 12.0, generator)
    dx, dy = (_X.reshape(1, 784) - centre[:, 0]) / radius[:, 0], (_Y.reshape(1, 784) - centre[:, 1]) / radius[:, 1]
    box = torch.rand(n, 1, generator=generator) < 0.5
    r = torch.where(box, torch.maximum(dx.abs(), dy.abs()), torch.sqrt(dx * dx + dy * dy))
    scale = radius.amin(1)  # pixels per unit of r, roughly
    width = _uniform((n, 1), 0.8, 2.5, generator)
    outline = (width - (r - 1).abs() * scale + 0.5).clamp(0, 1)
    texture = 0.4 + 0.6 * _smooth(torch.rand(n, 784, generator=generator), 1)
    filled = ((1 - r) * scale + 0.5).clamp(0, 1) * texture
    return torch.where(torch.rand(n, 1, generator=generator) < 0.5, outline, filled)


def _resampled(images: torch.Tensor, zoom: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """(n, 1, 28, 28) zoomed by `zoom` (n,) about the centre and moved by `shift` (n, 2) in [-1, 1] units."""
    inverse = 1 / zoom
    zeros = torch.zeros_like(zoom)
    theta = torch.stack(
        [torch.stack([inverse, zeros, shift[:, 0]], 1), torch.stack([zeros, inverse, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, align_corners=False).reshape(-1, 784)


def tiny(n: int, digits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A 3 or 7 shrunk to a quarter to under half its size, anywhere in the square."""
    zoom = _uniform((n,), 0.25, 0.45, generator)
    room = (1 - zoom).unsqueeze(1) * 0.8
    return _resampled(_pick(digits, n, generator), zoom, _uniform((n, 2), -1.0, 1.0, generator) * room)


def huge(n: int, digits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A 3 or 7 blown up 2.2 to 3.5 times, so that only a piece of it shows."""
    zoom = _uniform((n,), 2.2, 3.5, generator)
    return _resampled(_pick(digits, n, generator), zoom, _uniform((n, 2), -0.5, 0.5, generator))


def cut(n: int, digits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The top or the bottom third of a 3 or 7. Not a side half, which can still be a 3, nor the top
    half, which of a 7 is a 7 with a short stem."""
    images = _pick(digits, n, generator).reshape(n, 784)
    keep_top = torch.rand(n, 1, generator=generator) < 0.5
    row = torch.where(keep_top, _uniform((n, 1), 9.0, 12.0, generator), _uniform((n, 1), 16.0, 19.0, generator))
    above = _Y.reshape(1, 784) < row
    return images * (above == keep_top)


def inverted(n: int, digits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Dark ink on a light square: not how the service's input is drawn."""
    return 1 - _pick(digits, n, generator).reshape(n, 784)


MAKERS: dict[str, Maker] = {
    "blank": blank,
    "noise": noise,
    "scribbles": scribbles,
    "shapes": shapes,
    "tiny": tiny,
    "huge": huge,
    "cut": cut,
    "inverted": inverted,
}


def made(
    n: int, digits: torch.Tensor, generator: torch.Generator, weights: Mapping[str, float] | None = None
) -> torch.Tensor:
    """n made non-digits, every kind about equally often, or as often as its weight (a kind not named
    weighs 1): (n, 784) floats in [0, 1]. digits: (M, 784) floats, the 3s and 7s that the scaled, cut
    and inverted kinds start from."""
    if weights:
        unknown = set(weights) - set(MAKERS)
        if unknown:
            raise ValueError(f"unknown made kinds {sorted(unknown)}; expected some of {list(MAKERS)}")
        odds = torch.tensor([float(weights.get(name, 1.0)) for name in MAKERS])
        kind = torch.multinomial(odds, n, replacement=True, generator=generator)
    else:
        kind = torch.randint(len(MAKERS), (n,), generator=generator)
    out = torch.empty(n, 784)
    for k, maker in enumerate(MAKERS.values()):
        chosen = (kind == k).nonzero().squeeze(1)
        if len(chosen):
            out[chosen] = maker(len(chosen), digits, generator)
    return out.clamp_(0, 1)


def made_per_kind(per_kind: int, digits: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """`per_kind` images of every kind, from their own seed: for measuring, never for training."""
    generator = torch.Generator().manual_seed(seed)
    return {name: maker(per_kind, digits, generator).clamp(0, 1) for name, maker in MAKERS.items()}
