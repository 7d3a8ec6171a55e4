"""Networks, augmentation and the loop, checked against independent references."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from trainer.augment import Augmentation, _max3x3
from trainer.loop import loss_fn
from trainer.models import CNN, MLP, Probability, SingleLayer
from trainer.recipes import RECIPES


@pytest.mark.parametrize("net", [SingleLayer(), MLP(), CNN()])
def test_networks_map_flat_images_to_one_logit_each(net: torch.nn.Module) -> None:
    net.eval()
    assert net(torch.rand(5, 784)).shape == (5,)
    p = Probability(net)(torch.rand(3, 784))
    assert p.shape == (3,) and bool(((p >= 0) & (p <= 1)).all())


def test_article_init_saturates_the_sigmoid() -> None:
    """Why the tutorial cannot learn: N(0, 1) weights over ~150 lit pixels put logits far from 0."""
    torch.manual_seed(0)
    x = torch.zeros(1000, 784)
    x[:, :150] = 1.0
    assert SingleLayer(init_std=1.0)(x).abs().median() > 4  # sigmoid'(4) < 0.02
    assert SingleLayer(init_std=0.01)(x).abs().median() < 0.5


def test_mse_loss_matches_a_hand_computed_reference() -> None:
    logits, labels = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([1.0, 0.0, 1.0])
    p = 1 / (1 + torch.exp(-logits))
    assert torch.isclose(loss_fn("mse", logits, labels), ((p - labels) ** 2).mean())
    bce = -(labels * torch.log(p) + (1 - labels) * torch.log(1 - p)).mean()
    assert torch.isclose(loss_fn("bce", logits, labels), bce)


def test_augmentation_keeps_shape_range_and_is_seeded() -> None:
    x = torch.zeros(4, 784)
    x[:, 300:500] = 1.0
    aug = Augmentation()
    a = aug(x, torch.Generator().manual_seed(0))
    b = aug(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 and not torch.equal(a, x)


def test_stroke_thickening_equals_torch_max_pooling() -> None:
    x = torch.rand(8, 1, 28, 28)
    assert torch.equal(_max3x3(x), F.max_pool2d(x, 3, stride=1, padding=1))
    assert torch.equal(-_max3x3(-x), -F.max_pool2d(-x, 3, stride=1, padding=1))  # thinning, borders included


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


def test_flags_override_recipe_and_keep_enough_logged_points() -> None:
    article = RECIPES["article"]
    assert article.with_overrides(None, None, None).log_every == 10  # 2000 epochs → 200 points
    short = article.with_overrides(300, 0.5, None)
    assert (short.epochs, short.lr, short.log_every) == (300, 0.5, 3)
    assert RECIPES["cnn"].with_overrides(2, None, 64).batch_size == 64
