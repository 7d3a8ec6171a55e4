"""Augmentation: shapes, ranges, seeding, and stroke thickness against torch's own pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.augment import Augmentation, dilate, erode


def test_augmentation_keeps_shape_range_and_is_seeded() -> None:
    x = torch.zeros(4, 784)
    x[:, 300:500] = 1.0
    aug = Augmentation()
    a = aug(x, torch.Generator().manual_seed(0))
    b = aug(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)


def test_dilation_and_erosion_equal_torch_max_pooling() -> None:
    x = torch.rand(8, 1, 28, 28)
    assert torch.equal(dilate(x), F.max_pool2d(x, 3, stride=1, padding=1))
    assert torch.equal(erode(x), -F.max_pool2d(-x, 3, stride=1, padding=1))  # borders included
