"""Hard negatives: made images drawn by how readily the network takes them for a digit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainer.mining import HardNegatives


class Accepts(nn.Module):
    """A stand-in abstaining network: its "neither" logit is 10 for every image but those whose first
    pixel is 1, which it takes for a digit (logit -10)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        neither = torch.where(x[:, 0] == 1, -10.0, 10.0)
        return torch.stack([torch.zeros_like(neither), neither], 1)


def _pool(n: int = 100) -> torch.Tensor:
    pool = torch.zeros(n, 784)
    pool[7, 0] = 1.0  # the one image the network accepts
    return pool


def test_before_the_first_refresh_it_draws_as_the_unmined_trainer_does() -> None:
    miner = HardNegatives(_pool(), share=0.5)
    drawn = miner.draw(64, torch.Generator().manual_seed(3))
    assert torch.equal(drawn, torch.randint(100, (64,), generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("share", [0.25, 0.5, 1.0])
def test_after_a_refresh_the_share_goes_to_what_the_network_accepts(share: float) -> None:
    miner = HardNegatives(_pool(), share=share)
    net = Accepts()
    miner.refresh(net)
    assert not net.training  # scored as the network answers, without dropout
    drawn = miner.draw(20_000, torch.Generator().manual_seed(0))
    accepted = float((drawn == 7).float().mean())
    # The accepted image: nearly all of the mined share, and its part of the even rest.
    assert accepted == pytest.approx(share + (1 - share) / 100, abs=0.015)
    if share < 1:
        assert len(set(drawn.tolist())) == 100  # the rest: every image, evenly


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_a_share_outside_0_to_1_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="mined share"):
        HardNegatives(_pool(), share=share)
