"""Batched augmentation for real-world handwriting: position, scale, slant and stroke thickness."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    shift_px: float = 2.0  # uniform in ±shift_px, each axis
    scale: float = 0.12  # zoom uniform in 1 ± scale
    rotate_deg: float = 10.0
    thickness: float = 0.5  # blend towards a dilated (thicker) or eroded (thinner) stroke, 0..1

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x: (N, 784) floats in [0, 1] → a randomly transformed copy of the same shape."""
        images = x.reshape(-1, 1, 28, 28)
        images = self._thickness(images, generator)
        images = self._affine(images, generator)
        return images.reshape(-1, 784)

    def _uniform(self, n: int, half_width: float, generator: torch.Generator) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * half_width

    def _affine(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = images.shape[0]
        zoom = 1 + self._uniform(n, self.scale, generator)
        angle = self._uniform(n, math.radians(self.rotate_deg), generator)
        # affine_grid works in [-1, 1] coordinates: one pixel is 2/28.
        tx = self._uniform(n, self.shift_px * 2 / 28, generator)
        ty = self._uniform(n, self.shift_px * 2 / 28, generator)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, align_corners=False, padding_mode="zeros")

    def _thickness(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = images.shape[0]
        amount = self._uniform(n, self.thickness, generator).to(images.device).view(n, 1, 1, 1)
        towards = torch.where(amount > 0, dilate(images), erode(images))
        return images + amount.abs() * (towards - images)


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
