"""bench.variants' own arithmetic; its whole run is in test_scripts.py."""

from __future__ import annotations

import numpy as np
import torch

from bench.variants import ShiftedViews, rejected_at_made_share
from trainer.models import Network


def test_the_frontier_threshold_rejects_exactly_the_made_share() -> None:
    made = np.arange(100.0)  # scores 0..99: rejecting 99% of them accepts the lowest, 0
    scores = np.array([0.0, 0.5, 1.0, 50.0])
    assert rejected_at_made_share(scores, made, 0.99) == 0.75  # all but the one at 0
    assert rejected_at_made_share(scores, made, 0.98) == 0.25  # accepts 0 and 1: only 50 is above
    assert rejected_at_made_share(scores, made, 1.0) == 1.0  # every made image rejected, so all of these
    assert rejected_at_made_share(scores, np.arange(2000.0), 0.99) == 0.25  # 20 accepted, 0..19


class _Probe(Network):
    """Logits that read the image: the centre pixel, and the sum of every pixel."""

    abstains = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, 14 * 28 + 14], x.sum(1)], 1)


def test_shifted_views_average_nine_one_pixel_shifts_with_empty_pixels_coming_in() -> None:
    centre, corner = torch.zeros(784), torch.zeros(784)
    centre[14 * 28 + 14] = 1.0
    corner[0] = 1.0
    logits = ShiftedViews(_Probe())(torch.stack([centre, corner]))
    assert logits.shape == (2, 2)
    # The centre pixel stays in all nine views, at the centre in one of them.
    assert torch.allclose(logits[0], torch.tensor([1 / 9, 1.0]))
    # A corner pixel leaves the image in the five views shifted towards it: no wrap-around.
    assert torch.allclose(logits[1], torch.tensor([0.0, 4 / 9]))
