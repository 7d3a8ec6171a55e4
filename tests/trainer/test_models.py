"""The networks: shapes, the tutorial's saturated start, and an exact pt2 round trip."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from trainer.models import CNN, MLP, Network, Probability, SingleLayer


@pytest.mark.parametrize("net", [SingleLayer(), MLP(), CNN()])
def test_networks_map_flat_images_to_one_logit_each(net: Network) -> None:
    net.eval()
    assert net(torch.rand(5, 784)).shape == (5,)
    p = Probability(net)(torch.rand(3, 784))
    assert p.shape == (3,) and bool(((p >= 0) & (p <= 1)).all())


@pytest.mark.parametrize(("net", "shape"), [(SingleLayer(), (1, 28, 28)), (MLP(), (128, 28, 28)), (CNN(), (16, 3, 3))])
def test_first_layer_weights_are_one_map_per_unit_or_filter(net: Network, shape: tuple[int, ...]) -> None:
    assert net.first_layer_weights().shape == shape


def test_a_cnn_takes_any_number_of_conv_blocks() -> None:
    net = CNN(channels=(16, 32, 64), hidden=32, abstains=True).eval()  # 28 → 14 → 7 → 4
    assert net(torch.rand(3, 784)).shape == (3, 2) and net.first_layer_weights().shape == (16, 3, 3)


def test_article_init_saturates_the_sigmoid() -> None:
    """Why the tutorial cannot learn: N(0, 1) weights over ~150 lit pixels put logits far from 0."""
    torch.manual_seed(0)
    x = torch.zeros(1000, 784)
    x[:, :150] = 1.0
    assert SingleLayer(init_std=1.0)(x).abs().median() > 4  # sigmoid'(4) < 0.02
    assert SingleLayer(init_std=0.01)(x).abs().median() < 0.5


def test_cnn_survives_the_pt2_round_trip_in_channels_last(tmp_path: Path) -> None:
    """The served CNN keeps its weights channels-last (faster on the CPU); export, save and load are exact."""
    torch.manual_seed(0)
    net = CNN()
    for module in net.modules():  # non-trivial running statistics, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    served = Probability(net).eval()
    program = torch.export.export(served, (torch.rand(5, 784),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No complete tensor found in the group")
        torch.export.save(program, tmp_path / "cnn.pt2")
    loaded = torch.export.load(tmp_path / "cnn.pt2").module()
    x = torch.rand(64, 784)
    with torch.inference_mode():
        assert torch.equal(loaded(x), served(x))
