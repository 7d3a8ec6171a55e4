"""The robustness distortions: each does what its name says, on uint8 images, and is scored per name."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from trainer.data import Split
from trainer.models import SingleLayer
from trainer.robustness import DISTORTIONS, accuracies, distorted


def _one_pixel(row: int, col: int) -> torch.Tensor:
    image = torch.zeros(1, 784, dtype=torch.uint8)
    image[0, row * 28 + col] = 255
    return image


@pytest.mark.parametrize("name", [n for n in DISTORTIONS if n.startswith("shift")])
def test_a_shift_moves_strokes_by_what_its_name_says(name: str) -> None:
    found = re.fullmatch(r"shift_(\d+)x(\d+)", name)
    assert found, f"{name}: expected shift_<right>x<down>"
    right, down = map(int, found.groups())
    moved = distorted(_one_pixel(10, 12), name).reshape(28, 28)
    assert moved[10 + down, 12 + right] == 255 and int(moved.sum()) == 255


def test_thick_dilates_and_thin_goes_half_way_to_erosion() -> None:
    images = torch.randint(0, 256, (6, 784), dtype=torch.uint8)
    x = images.float().div(255).reshape(-1, 1, 28, 28)
    thick = F.max_pool2d(x, 3, stride=1, padding=1)
    thin = 0.5 * (x - F.max_pool2d(-x, 3, stride=1, padding=1))
    for name, expected in (("thick", thick), ("thin", thin)):
        reference = expected.mul(255).round().to(torch.uint8).reshape(-1, 784)
        assert torch.equal(distorted(images, name), reference), name


def _vertical_bar() -> torch.Tensor:
    image = torch.zeros(28, 28, dtype=torch.uint8)
    image[4:24, 13:15] = 255
    return image.reshape(1, 784)


def test_a_rotation_turns_the_way_its_name_says() -> None:
    for name, top_moves in (("rotate_left_15", -1), ("rotate_right_15", 1)):
        turned = distorted(_vertical_bar(), name).reshape(28, 28).float()
        columns = torch.arange(28.0)
        top = float((turned[4:9] * columns).sum() / turned[4:9].sum())
        bottom = float((turned[19:24] * columns).sum() / turned[19:24].sum())
        assert (top - bottom) * top_moves > 2, name  # anticlockwise as seen: the top goes left


def test_elastic_and_mouse_distortions_are_the_same_every_run() -> None:
    images = torch.zeros(3, 784, dtype=torch.uint8)
    images[:, 200:500:3] = 255
    for name in ("elastic", "mouse"):
        assert torch.equal(distorted(images, name), distorted(images, name)), name


@pytest.mark.parametrize("name", sorted(DISTORTIONS))
def test_every_distortion_keeps_uint8_images_of_the_same_shape(name: str) -> None:
    images = torch.randint(0, 256, (4, 784), dtype=torch.uint8)
    out = distorted(images, name)
    assert out.dtype == torch.uint8 and out.shape == images.shape and not torch.equal(out, images)


def test_accuracies_name_one_score_per_distortion() -> None:
    test = Split(torch.randint(0, 256, (20, 784), dtype=torch.uint8), torch.randint(0, 2, (20,)).float())
    scores = accuracies(SingleLayer(), test, "bce", torch.device("cpu"))
    assert set(scores) == {f"robust_accuracy_{name}" for name in DISTORTIONS}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
