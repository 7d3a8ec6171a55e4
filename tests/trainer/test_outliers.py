"""Made non-digits: every kind is an image of the model's input format, differs from the digits it
starts from, and comes out the same from the same seed."""

from __future__ import annotations

import pytest
import torch

from trainer.outliers import MAKERS, made, made_per_kind


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """Stand-in strokes, enough for the kinds built from digits: a bar across the top and a stem down
    the length of each square, the stem in a different column each time."""
    x = torch.zeros(8, 28, 28)
    x[:, 5:8, 6:22] = 1.0
    for k in range(8):
        x[k, 5:24, 6 + 2 * k : 8 + 2 * k] = 1.0
    return x.reshape(8, 784)


@pytest.mark.parametrize("kind", list(MAKERS))
def test_every_kind_makes_images_in_the_input_format(kind: str, digits: torch.Tensor) -> None:
    images = MAKERS[kind](40, digits, torch.Generator().manual_seed(0)).clamp(0, 1)
    assert images.shape == (40, 784) and images.dtype == torch.float32
    assert torch.isfinite(images).all()
    assert len({tuple(row.tolist()) for row in images}) > 1  # not one image 40 times


@pytest.mark.parametrize("kind", ["tiny", "huge", "cut", "inverted"])
def test_kinds_made_from_digits_change_them(kind: str, digits: torch.Tensor) -> None:
    images = MAKERS[kind](40, digits, torch.Generator().manual_seed(0))
    assert (images - digits[0]).abs().sum(1).min() > 10  # at least ten pixels' worth of ink differs


def test_tiny_digits_keep_their_ink_small_and_cut_ones_lose_half(digits: torch.Tensor) -> None:
    tiny = MAKERS["tiny"](40, digits, torch.Generator().manual_seed(0))
    cut = MAKERS["cut"](40, digits, torch.Generator().manual_seed(0))
    assert (tiny.sum(1) < 0.25 * digits[0].sum()).all()
    assert (cut.sum(1) < 0.75 * digits[0].sum()).all()


def test_the_same_seed_makes_the_same_images_and_every_kind_appears(digits: torch.Tensor) -> None:
    a = made(400, digits, torch.Generator().manual_seed(3))
    b = made(400, digits, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    per_kind = made_per_kind(5, digits, seed=1)
    assert list(per_kind) == list(MAKERS) and all(v.shape == (5, 784) for v in per_kind.values())


def test_weights_choose_how_often_each_kind_is_made(digits: torch.Tensor) -> None:
    only = {kind: 0.0 for kind in MAKERS if kind != "inverted"}
    inverted = made(50, digits, torch.Generator().manual_seed(0), only)
    assert (inverted.mean(1) > 0.6).all()  # light squares, every one
    mixed = made(50, digits, torch.Generator().manual_seed(0))
    assert (mixed.mean(1) < 0.6).any()
    with pytest.raises(ValueError, match="unknown made kinds"):
        made(5, digits, torch.Generator().manual_seed(0), {"squiggles": 1.0})
