"""The networks: each maps (N, 784) floats in [0, 1] to the logit that the image is a 3, and a network
that abstains also to the logit that it is neither a 3 nor a 7."""

from __future__ import annotations

import itertools

import torch
from torch import nn

# MNIST's pixel mean and standard deviation, so callers can send raw [0, 1] pixels.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class Network(nn.Module):
    """(N, 784) floats in [0, 1] → (N,) logits that each image is a 3, or, if `abstains`, (N, 2):
    that logit and the logit that the image is neither a 3 nor a 7."""

    abstains = False

    def first_layer_weights(self) -> torch.Tensor:
        """(K, H, W): one map per unit or filter of the first layer, for the weights figure."""
        raise NotImplementedError


class SingleLayer(Network):
    """The tutorial's network: one linear unit over raw pixels, read through a sigmoid."""

    def __init__(self, init_std: float = 1.0) -> None:
        super().__init__()
        self.linear = nn.Linear(784, 1)
        nn.init.normal_(self.linear.weight, std=init_std)
        nn.init.normal_(self.linear.bias, std=init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)  # (N,)

    def first_layer_weights(self) -> torch.Tensor:
        return self.linear.weight.detach().reshape(1, 28, 28)


class MLP(Network):
    """784-128-1 with ReLU."""

    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.hidden = nn.Linear(784, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - MNIST_MEAN) / MNIST_STD
        return self.out(torch.relu(self.hidden(x))).squeeze(-1)

    def first_layer_weights(self) -> torch.Tensor:
        return self.hidden.weight.detach().reshape(-1, 28, 28)


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    # A stride-2 convolution downsamples by itself: no pooling pass, a quarter of the outputs to
    # compute, and the same accuracy given a few more epochs.
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class CNN(Network):
    """Stride-2 3×3 conv blocks (by default 16, 32 channels: 28×28 → 14×14 → 7×7) and a small head,
    with a second output for "neither" if it `abstains`."""

    def __init__(
        self,
        channels: tuple[int, ...] = (16, 32),
        hidden: int = 64,
        dropout: float = 0.3,
        abstains: bool = False,
    ) -> None:
        super().__init__()
        self.abstains = abstains
        widths = (1, *channels)
        self.features = nn.Sequential(*(_conv_block(a, b) for a, b in itertools.pairwise(widths)))
        self.features.to(memory_format=torch.channels_last)  # oneDNN's native layout on the CPU
        side = 28
        for _ in channels:
            side = (side + 1) // 2  # each block's strided, padded convolution halves the side, rounding up
        # Dropout on the hidden units rather than the flattened features: a far cheaper mask.
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels[-1] * side * side, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, 2 if abstains else 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x - MNIST_MEAN) / MNIST_STD).reshape(-1, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        out = self.head(self.features(x))
        return out if self.abstains else out.squeeze(-1)

    def first_layer_weights(self) -> torch.Tensor:
        conv = self.features[0][0]  # type: ignore[index]
        assert isinstance(conv, nn.Conv2d)
        return conv.weight.detach()[:, 0]  # (16, 3, 3)


class Probability(nn.Module):
    """What gets exported and served: p(three) = sigmoid(logit), shape (N,); from a network that
    abstains, (N, 2): p(three) and the "neither" score, p(neither 3 nor 7) = sigmoid(second logit)."""

    def __init__(self, net: Network) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))
