"""Batched augmentation for real-world handwriting: position, scale, slant, stroke thickness and the
wobble of a hand (elastic distortion), applied together."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Drawing a smooth random field per batch costs as much as the rest of the augmentation; a run draws
# a pool once, and each image takes one at random, under its own random affine transform.
ELASTIC_POOL = 4096


@dataclass(frozen=True)
class Augmentation:
    shift_px: float = 2.0  # uniform in ±shift_px, each axis
    scale: float = 0.12  # zoom uniform in 1 ± scale
    rotate_deg: float = 10.0
    # Stroke width: blend towards an eroded (thinner) stroke by up to `thinner` (0..1), or towards a
    # dilated one by up to `thicker` (0..2: past 1, from one dilation towards two).
    thinner: float = 0.5
    thicker: float = 0.5
    elastic_px: float = 0.0  # Simard's alpha: the size of the smoothed random displacement, 0 for none
    elastic_sigma_px: float = 4.0  # the smoothing's standard deviation

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x: (N, 784) floats in [0, 1] → a randomly transformed copy of the same shape."""
        return self.sampler(generator, pool=len(x))(strokes(x))

    def sampler(self, generator: torch.Generator, pool: int = ELASTIC_POOL) -> Callable[[torch.Tensor], torch.Tensor]:
        """The augmentation for a whole run, batch after batch: like calling it, but on each image's
        `strokes`, worked out once for every image a run can draw, and with the elastic displacements
        drawn once, `pool` of them, and picked at random for each image. (N, STROKES, 784) floats in
        [0, 1] → (N, 784)."""
        fields = elastic_offsets(pool, self.elastic_px, self.elastic_sigma_px, generator) if self.elastic_px else None

        def apply(x: torch.Tensor) -> torch.Tensor:
            images = self._thickness(x, generator)
            elastic = None
            if fields is not None:
                elastic = fields.index_select(0, torch.randint(len(fields), (len(x),), generator=generator))
            return self._warp(images, generator, elastic).reshape(-1, 784)

        return apply

    def _uniform(self, n: int, half_width: float, generator: torch.Generator) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * half_width

    def _warp(self, images: torch.Tensor, generator: torch.Generator, elastic: torch.Tensor | None) -> torch.Tensor:
        """The affine transform and the elastic displacement in one resampling."""
        n = images.shape[0]
        zoom = 1 + self._uniform(n, self.scale, generator)
        angle = self._uniform(n, math.radians(self.rotate_deg), generator)
        # The grid is in [-1, 1] coordinates: one pixel is 2/28.
        tx = self._uniform(n, self.shift_px * 2 / 28, generator)
        ty = self._uniform(n, self.shift_px * 2 / 28, generator)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        grid = affine_grid(*(t.to(images.device) for t in (cos, sin, tx, ty)))
        if elastic is not None:
            grid = grid + elastic.to(images.device)
        return F.grid_sample(images, grid, align_corners=False, padding_mode="zeros")

    def _thickness(self, stacks: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = stacks.shape[0]
        images, eroded, once, twice = (variant.view(n, 1, 28, 28) for variant in stacks.unbind(1))
        # Half the images thinned by up to `thinner`, half thickened by up to `thicker`.
        sign = torch.rand(n, generator=generator) * 2 - 1
        amount = torch.where(sign < 0, sign * self.thinner, sign * self.thicker).to(stacks.device).view(n, 1, 1, 1)
        # Each image moves towards its eroded or its dilated stroke, and past one dilation towards two:
        # element for element the same arithmetic as blending towards both and keeping one, in half
        # the passes over the batch. A thinned image's second step adds 0 × (twice − once), exactly 0.
        thickened = amount >= 0
        towards = torch.where(thickened, once, eroded)
        blended = towards.sub_(images).mul_(torch.where(thickened, amount.clamp(0, 1), amount.neg())).add_(images)
        if self.thicker > 1:
            blended.add_((twice - once).mul_((amount - 1).clamp(0, 1)))
        return blended


STROKES = 4  # the variants `strokes` stacks: the image, eroded, dilated once, dilated twice
_STROKES_CHUNK = 256  # images at a time: a chunk's intermediate results stay in the cache


def strokes(images: torch.Tensor) -> torch.Tensor:
    """(N, 784) images, uint8 or floats → (N, STROKES, 784) of the same type: each image, thinned by
    one erosion and thickened by one and by two dilations, for the augmentation to blend between.
    A uint8 stack, divided by 255 later, equals the stack of the images divided by 255 bit for bit:
    the maximum and minimum of values commute with that division."""
    stacks = torch.empty((len(images), STROKES, 784), dtype=images.dtype, device=images.device)
    for start in range(0, len(images), _STROKES_CHUNK):
        chunk = images[start : start + _STROKES_CHUNK].reshape(-1, 1, 28, 28)
        exact = chunk.float()  # uint8 values are whole numbers, exact as floats
        once = dilate(exact)
        variants = torch.cat([exact, erode(exact), once, dilate(once)], 1)
        stacks[start : start + _STROKES_CHUNK] = variants.reshape(-1, STROKES, 784).to(images.dtype)
    return stacks


# The centres of the 28 pixels along an axis in grid_sample's [-1, 1] units (align_corners=False).
_CENTRES = (torch.arange(28.0) * 2 + 1) / 28 - 1


def affine_grid(cos: torch.Tensor, sin: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """F.affine_grid for 28×28 images and the rotation-and-zoom matrices [[cos, -sin, tx], [sin, cos,
    ty]], each argument (N,): the (N, 28, 28, 2) sampling grid, written elementwise, because
    affine_grid's batched product of tiny matrices is slow on the CPU."""
    x, y = _CENTRES.to(cos.device).view(1, 1, 28), _CENTRES.to(cos.device).view(1, 28, 1)
    cos, sin, tx, ty = (t.view(-1, 1, 1) for t in (cos, sin, tx, ty))
    return torch.stack([cos * x - sin * y + tx, sin * x + cos * y + ty], -1)


def elastic_offsets(n: int, alpha_px: float, sigma_px: float, generator: torch.Generator) -> torch.Tensor:
    """Simard et al.'s elastic distortion for 28×28 images: a uniform random displacement per pixel,
    smoothed by a Gaussian of `sigma_px` and scaled by `alpha_px`, as (n, 28, 28, 2) offsets in
    grid_sample's [-1, 1] units, to add to a sampling grid."""
    field = torch.rand(n * 2, 28, 28, generator=generator) * 2 - 1
    # The separable Gaussian as one symmetric matrix across the image (zero outside the square),
    # applied along rows, then, transposed, along columns: two large matrix products, where conv2d
    # over single-channel images takes a slow path on the CPU.
    radius = math.ceil(2 * sigma_px)
    distance = torch.arange(28.0).view(-1, 1) - torch.arange(28.0).view(1, -1)
    smooth = torch.exp(-0.5 * (distance / sigma_px) ** 2) * (distance.abs() <= radius)
    smooth = smooth / torch.exp(-0.5 * (torch.arange(-radius, radius + 1.0) / sigma_px) ** 2).sum()
    field = (field.reshape(-1, 28) @ smooth).view(-1, 28, 28).transpose(1, 2)
    field = (field.reshape(-1, 28) @ smooth).view(-1, 28, 28).transpose(1, 2)
    # Contiguous, each image's field one block: a batch of fields picked from a pool then adds to its
    # sampling grid at memory speed rather than by strided reads.
    return (field * alpha_px * 2 / 28).view(n, 2, 28, 28).permute(0, 2, 3, 1).contiguous()


def dilate(images: torch.Tensor) -> torch.Tensor:
    """Thicker strokes: each pixel the maximum of its 3×3 neighbourhood, (N, 1, H, W) → same shape.
    The same as F.max_pool2d(images, 3, stride=1, padding=1), as two 1-D passes of elementwise
    maxima, because pooling takes a slow path on the CPU for single-channel 28×28 batches."""
    padded = F.pad(images, (1, 1, 1, 1), value=-math.inf)
    rows = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def erode(images: torch.Tensor) -> torch.Tensor:
    """Thinner strokes: each pixel the minimum of its 3×3 neighbourhood."""
    return -dilate(-images)
