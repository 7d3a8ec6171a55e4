"""Hard negatives: made non-digits drawn, in part, by how readily the network takes them for a 3 or a 7.

Most made images are turned away within a few epochs, and drawing them uniformly spends most steps on
images the network already rejects. Once an epoch the pool is scored by the network as it stands, and
a share of the draws goes to each image in proportion to its probability of being accepted; the rest
stay uniform, so that no kind is forgotten (bench/README.md measures what it buys)."""

from __future__ import annotations

import torch
from torch import nn

SCORE_BATCH = 1024


class HardNegatives:
    """Draws indices into a pool of outliers: before the first refresh uniformly, as the trainer draws
    them without mining (the same calls on the generator); after it, `share` of the probability in
    proportion to each image's probability of being accepted, the rest spread evenly."""

    def __init__(self, pool: torch.Tensor, share: float) -> None:
        """pool: (N, 784) float images in [0, 1], each as the network would see it unvaried."""
        if not 0 < share <= 1:
            raise ValueError(f"the mined share is a share of the draws, above 0 and at most 1, not {share}")
        self._pool = pool
        self._share = share
        self._weights: torch.Tensor | None = None

    def refresh(self, net: nn.Module) -> None:
        """Score the pool with `net` (an abstaining network, left in eval mode) and weight the draws."""
        # On the CPU, where the trainer's generator draws, whatever device the network is on.
        accepted = torch.sigmoid(-neither_logits(net, self._pool)).cpu()
        spread = (1 - self._share) / len(accepted)
        self._weights = spread + self._share * accepted / accepted.sum()

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n indices into the pool, with replacement."""
        if self._weights is None:
            return torch.randint(len(self._pool), (n,), generator=generator)
        return torch.multinomial(self._weights, n, replacement=True, generator=generator)


@torch.inference_mode()
def neither_logits(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(N,) "neither" logits of an abstaining network on (N, 784) float images, in eval mode."""
    net.eval()
    return torch.cat([net(images[i : i + SCORE_BATCH])[:, 1] for i in range(0, len(images), SCORE_BATCH)])
