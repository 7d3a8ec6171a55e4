"""Fixed distortions of the test split (the random ones from their own seeds): how the model holds up
to real-world handwriting."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from trainer.augment import dilate, elastic_offsets, erode
from trainer.data import Split
from trainer.loop import evaluate
from trainer.recipes import Loss
from trainer.redraw import redrawn

Distortion = Callable[[torch.Tensor], torch.Tensor]  # (N, 1, 28, 28) floats → same shape


def _shift(dx: int, dy: int) -> Distortion:
    def apply(x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x, shifts=(dy, dx), dims=(2, 3))  # MNIST's 4-pixel border keeps wrap-around empty

    return apply


def _zoom(factor: float) -> Distortion:
    def apply(x: torch.Tensor) -> torch.Tensor:
        theta = torch.tensor([[1 / factor, 0.0, 0.0], [0.0, 1 / factor, 0.0]]).expand(len(x), 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False)

    return apply


def _rotate(degrees: float) -> Distortion:
    def apply(x: torch.Tensor) -> torch.Tensor:
        cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]]).expand(len(x), 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, align_corners=False)

    return apply


ELASTIC_SEED = 20261203


def _elastic(x: torch.Tensor) -> torch.Tensor:
    # Simard et al.'s strength, from a seed of its own.
    offsets = elastic_offsets(len(x), 34.0, 4.0, torch.Generator().manual_seed(ELASTIC_SEED))
    identity = F.affine_grid(torch.eye(2, 3).expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, identity + offsets, align_corners=False)


def _mouse(x: torch.Tensor) -> torch.Tensor:
    pixels = x.mul(255).round().to(torch.uint8).reshape(-1, 784).numpy()
    return torch.from_numpy(redrawn(pixels)).float().div(255).reshape(x.shape)


def _thin(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (x + erode(x))  # a full 3×3 erosion erases most MNIST strokes; half of it thins them


DISTORTIONS: dict[str, Distortion] = {
    "shift_3x2": _shift(3, 2),  # 3 pixels right, 2 down
    "zoom_out": _zoom(0.8),
    "zoom_in": _zoom(1.15),
    "thick": dilate,
    "thin": _thin,
    # Turned left (anticlockwise as seen) and right by 15°.
    "rotate_left_15": _rotate(15.0),
    "rotate_right_15": _rotate(-15.0),
    "elastic": _elastic,
    "mouse": _mouse,  # re-drawn as a person draws with a mouse on the page (trainer/redraw.py)
}


def distorted(images: torch.Tensor, name: str) -> torch.Tensor:
    """images: (N, 784) uint8 → the distorted images as (N, 784) uint8."""
    x = images.float().div(255.0).reshape(-1, 1, 28, 28)
    out = DISTORTIONS[name](x).clamp(0, 1).mul(255.0).round()
    return out.to(torch.uint8).reshape(-1, 784)


def accuracies(
    net: torch.nn.Module, test: Split, loss: Loss, device: torch.device, threshold: float | None = None
) -> dict[str, float]:
    """Accuracy on each distorted copy of `test`, keyed robust_accuracy_<distortion>; with the
    "neither" threshold of a network that abstains, also the share rejected, robust_rejected_<distortion>."""
    metrics = {}
    for name in DISTORTIONS:
        evaluation = evaluate(net, Split(distorted(test.images, name), test.labels), loss, device)
        metrics[f"robust_accuracy_{name}"] = evaluation.accuracy
        if threshold is not None and evaluation.neither is not None:
            metrics[f"robust_rejected_{name}"] = float((evaluation.neither > threshold).float().mean())
    return metrics
