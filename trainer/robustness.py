"""Fixed, seedless distortions of the test split: how the model holds up to real-world handwriting."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from trainer.augment import dilate, erode
from trainer.data import Split
from trainer.loop import evaluate
from trainer.recipes import Loss

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


def _thin(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (x + erode(x))  # a full 3×3 erosion erases most MNIST strokes; half of it thins them


DISTORTIONS: dict[str, Distortion] = {
    "shift_3x2": _shift(3, 2),  # 3 pixels right, 2 down
    "zoom_out": _zoom(0.8),
    "zoom_in": _zoom(1.15),
    "thick": dilate,
    "thin": _thin,
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
