"""Augmentation: shapes, ranges, seeding, and stroke thickness against torch's own pooling and
against blending towards each stroke variant in turn."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from trainer.augment import Augmentation, affine_grid, dilate, elastic_offsets, erode, strokes


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


def test_stroke_variants_of_uint8_images_are_those_of_their_floats_bit_for_bit() -> None:
    images = torch.randint(0, 256, (300, 784), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    images[:, :28] = 255  # ink along the border, where dilation and erosion meet the padding
    floats = images.float().div_(255.0)
    stacks = strokes(floats)
    assert stacks.shape == (300, 4, 784) and strokes(images).dtype == torch.uint8
    assert torch.equal(strokes(images).float().div_(255.0), stacks)
    square = floats.reshape(-1, 1, 28, 28)
    once = dilate(square)
    for variant, expected in zip(stacks.unbind(1), (square, erode(square), once, dilate(once)), strict=True):
        assert torch.equal(variant, expected.reshape(-1, 784))


def test_stroke_width_blends_as_blending_towards_every_variant_and_keeping_one() -> None:
    images = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(2)).mul_(255).round_().div_(255)
    once, eroded = dilate(images), erode(images)
    for thinner, thicker in ((0.5, 1.5), (0.0, 1.0), (0.3, 0.0)):
        aug = Augmentation(thinner=thinner, thicker=thicker)
        blended = aug._thickness(strokes(images.reshape(-1, 784)), torch.Generator().manual_seed(3))
        sign = torch.rand(64, generator=torch.Generator().manual_seed(3)) * 2 - 1
        amount = torch.where(sign < 0, sign * thinner, sign * thicker).view(64, 1, 1, 1)
        thick = images + amount.clamp(0, 1) * (once - images)
        if thicker > 1:
            thick = thick + (amount - 1).clamp(0, 1) * (dilate(once) - once)
        expected = torch.where(amount >= 0, thick, images + amount.neg() * (eroded - images))
        assert torch.equal(blended, expected)  # bit for bit: the shortcut must not change what a run trains


def test_affine_grid_equals_torch_affine_grid() -> None:
    generator = torch.Generator().manual_seed(0)
    angle, zoom = torch.rand(16, generator=generator) * 2 - 1, 0.8 + 0.4 * torch.rand(16, generator=generator)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    tx, ty = torch.rand(16, generator=generator) - 0.5, torch.rand(16, generator=generator) - 0.5
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    expected = F.affine_grid(theta, [16, 1, 28, 28], align_corners=False)
    torch.testing.assert_close(affine_grid(cos, sin, tx, ty), expected, rtol=0, atol=1e-6)


def _augmented_ink(aug: Augmentation, n: int = 64) -> torch.Tensor:
    x = torch.zeros(n, 784)
    x[:, 14 * 28 + 14] = 1.0  # one lit pixel in the middle of each image
    return aug(x, torch.Generator().manual_seed(1)).reshape(n, 28, 28).sum((1, 2))


def test_strokes_thicken_past_one_dilation_only_when_asked() -> None:
    still = {"shift_px": 0.0, "scale": 0.0, "rotate_deg": 0.0, "thinner": 0.0}
    once, twice = _augmented_ink(Augmentation(**still, thicker=1.0)), _augmented_ink(Augmentation(**still, thicker=2.0))
    assert float(once.max()) <= 9 + 1e-4  # no further than one dilation reaches
    assert float(twice.max()) > 9 + 1e-4 and float(twice.max()) <= 25 + 1e-4  # towards a second, never past it
    assert float(twice.min()) >= 1 - 1e-4  # thickening only: no stroke lost


def test_a_run_draws_its_elastic_fields_once_and_each_image_takes_one() -> None:
    still = Augmentation(shift_px=0.0, scale=0.0, rotate_deg=0.0, thinner=0.0, thicker=0.0)
    x = torch.rand(4, 784)
    assert torch.allclose(still(x, torch.Generator()), x, atol=1e-5)  # nothing asked, nothing moved
    wobbly = Augmentation(**{**still.__dict__, "elastic_px": 34.0})
    augment = wobbly.sampler(torch.Generator().manual_seed(0), pool=2)
    batches = [augment(strokes(x)) for _ in range(3)]
    assert not torch.allclose(batches[0], x, atol=1e-2)
    # Two fields in the pool: over three batches of four, some image meets the same field twice.
    assert any(torch.equal(a[i], b[i]) for a, b in itertools.pairwise(batches) for i in range(4))


def test_elastic_distortion_moves_strokes_by_a_seeded_smooth_field() -> None:
    offsets = elastic_offsets(8, 34.0, 4.0, torch.Generator().manual_seed(0))
    assert offsets.shape == (8, 28, 28, 2)
    assert torch.equal(offsets, elastic_offsets(8, 34.0, 4.0, torch.Generator().manual_seed(0)))
    pixels = offsets * 14  # grid_sample's units to pixels
    assert 0.3 < float(pixels.std()) < 4.0  # Simard's strength: a pixel or so, not the whole square
    neighbours = (pixels[:, 1:] - pixels[:, :-1]).abs().mean()
    assert float(neighbours) < 0.25 * float(pixels.abs().mean())  # smooth: neighbours move together
