"""Training: seed, build and fit a recipe's network, and evaluate it on any split."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainer import outliers
from trainer.augment import strokes
from trainer.data import Dataset3v7, Split
from trainer.mining import HardNegatives
from trainer.models import Network
from trainer.recipes import Loss, Recipe

OUTLIER = -1.0  # the label of an image that is neither a 3 (1.0) nor a 7 (0.0)


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    errors: int
    p_three: torch.Tensor  # (N,) on the CPU
    neither: torch.Tensor | None = None  # (N,) p(neither 3 nor 7) from a network that abstains


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 0: the untrained network
    train_loss: float | None  # None at epoch 0
    val: Evaluation


def loss_fn(kind: Loss, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Labels 1.0 for a 3, 0.0 for a 7 and, for a network that abstains (logits (N, 2)), OUTLIER for
    neither: its loss adds "is it neither?" over every image to "3 or 7?" over the 3s and 7s."""
    if logits.ndim == 2:
        known = (labels != OUTLIER).float()
        neither = F.binary_cross_entropy_with_logits(logits[:, 1], 1 - known)
        # The mean over the known digits as a weighted sum: selecting them by a mask costs more each step.
        three = F.binary_cross_entropy_with_logits(logits[:, 0], labels.clamp(min=0), weight=known, reduction="sum")
        return neither + three / known.sum()
    if kind == "mse":
        return F.mse_loss(torch.sigmoid(logits), labels)
    return F.binary_cross_entropy_with_logits(logits, labels)


@torch.inference_mode()
def logits_of(net: nn.Module, images: torch.Tensor, device: torch.device, batch: int = 512) -> torch.Tensor:
    """`net` in eval mode on (N, 784) uint8 images, in batches: (N,) or (N, 2) logits on the CPU."""
    net.eval()
    return torch.cat(
        [net(images[i : i + batch].to(device).float().div_(255.0)).cpu() for i in range(0, len(images), batch)]
    )


def evaluate(net: nn.Module, split: Split, loss: Loss, device: torch.device) -> Evaluation:
    """Loss, accuracy and p(three) of `net` on a split, 0.5 the decision threshold; and from a network
    that abstains, each image's p(neither)."""
    logits = logits_of(net, split.images, device)
    labels = split.labels
    p_three = torch.sigmoid(logits if logits.ndim == 1 else logits[:, 0])
    errors = int(((p_three >= 0.5).float() != labels).sum())
    return Evaluation(
        loss=float(loss_fn(loss, logits, labels)),
        accuracy=1.0 - errors / len(split),
        errors=errors,
        p_three=p_three,
        neither=None if logits.ndim == 1 else torch.sigmoid(logits[:, 1]),
    )


MADE_POOL = 4096  # made non-digits drawn once per run; augmentation varies them from step to step


def _with_outliers(
    recipe: Recipe,
    x: torch.Tensor,
    y: torch.Tensor,
    others: torch.Tensor,
    made: torch.Tensor,
    generator: torch.Generator,
    miner: HardNegatives | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of 3s and 7s plus `recipe.outliers` as many outliers, labelled OUTLIER: other MNIST
    digits (uint8) and, `recipe.made_share` of them, made images (floats), drawn by `miner` if given;
    each batch of images as `x`, `others` and `made` hold them, one image or its stroke variants to a row."""
    count = round(len(y) * recipe.outliers)
    n_made = math.floor(count * recipe.made_share + 1e-9)  # 0.57 × 100 is a hair under 57 in floats
    which_others = torch.randint(len(others), (count - n_made,), generator=generator).to(others.device)
    if miner is None:
        which_made = torch.randint(len(made), (n_made,), generator=generator).to(made.device)
    else:
        which_made = miner.draw(n_made, generator).to(made.device)
    picked, drawn = others.index_select(0, which_others), made.index_select(0, which_made)
    x = torch.cat([x, picked.float().div_(255.0), drawn])
    return x, torch.cat([y, torch.full((count,), OUTLIER, device=y.device)])


def _batches(n: int, size: int | None, generator: torch.Generator) -> Iterator[slice | torch.Tensor]:
    """Index sets for one epoch: one slice for full-batch descent, else a seeded shuffle."""
    if size is None or size >= n:
        yield slice(None)  # no gather: the whole split as it lies
        return
    yield from torch.randperm(n, generator=generator).split(size)


def _optimizer(
    recipe: Recipe, net: nn.Module, steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    if recipe.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:  # "adamw"
        # Fused: one kernel for every parameter, where the default loops over them step by step.
        opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay, fused=True)
    if recipe.schedule == "onecycle":
        return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps)
    return opt, None


def fit(
    net: nn.Module,
    recipe: Recipe,
    train: Split,
    val: Split,
    device: torch.device,
    seed: int,
    on_epoch: Callable[[EpochStats], None],
    others: torch.Tensor | None = None,
) -> None:
    """Train `net` in place; call `on_epoch` every `recipe.log_every` epochs and after the last.
    others: (M, 784) uint8 images that are neither 3 nor 7, for a recipe that abstains."""
    if recipe.abstains and (others is None or len(others) == 0):
        raise ValueError(f"recipe {recipe.name} abstains: it needs images of other digits to train on")
    generator = torch.Generator().manual_seed(seed)
    x_all = train.floats().to(device)  # (N, 784)
    y_all = train.labels.to(device)
    # What augmentation blends between, each image's thinner and thicker strokes, once per run
    # rather than again in every batch.
    stacked: Callable[[torch.Tensor], torch.Tensor] = (
        strokes if recipe.augmentation is not None else lambda images: images
    )
    miner: HardNegatives | None = None
    if recipe.abstains:
        assert others is not None
        # The digits already converted to floats.
        made_pool = outliers.made(MADE_POOL, x_all.cpu(), generator, dict(recipe.made_weights)).to(device)
        made = stacked(made_pool)
        others = stacked(others.to(device))
        if recipe.made_mined:
            miner = HardNegatives(made_pool, recipe.made_mined)
    x_all = stacked(x_all)
    augment = None if recipe.augmentation is None else recipe.augmentation.sampler(generator)
    per_epoch = 1 if recipe.batch_size is None else math.ceil(len(train) / recipe.batch_size)
    opt, schedule = _optimizer(recipe, net, per_epoch * recipe.epochs)
    for epoch in range(1, recipe.epochs + 1):
        net.train()
        total, seen = 0.0, 0
        for idx in _batches(len(train), recipe.batch_size, generator):
            if isinstance(idx, torch.Tensor):
                idx = idx.to(device)
                # index_select gathers whole rows at about twice the speed of indexing on the CPU.
                x, y = x_all.index_select(0, idx), y_all.index_select(0, idx)
            else:
                x, y = x_all[idx], y_all[idx]
            if recipe.abstains:
                assert others is not None
                x, y = _with_outliers(recipe, x, y, others, made, generator, miner)
            if augment is not None:
                x = augment(x)
            loss = loss_fn(recipe.loss, net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if schedule is not None:
                schedule.step()
            total += float(loss.detach()) * len(y)
            seen += len(y)
        if epoch % recipe.log_every == 0 or epoch == recipe.epochs:
            on_epoch(EpochStats(epoch, total / seen, evaluate(net, val, recipe.loss, device)))
        if miner is not None and epoch < recipe.epochs:
            miner.refresh(net)  # the next epoch's draws, by the network as this one left it


def train(
    recipe: Recipe,
    data: Dataset3v7,
    device: torch.device,
    seed: int,
    on_epoch: Callable[[EpochStats], None] = lambda stats: None,
) -> Network:
    """Seed, build and fit `recipe`'s network on data.train; `on_epoch` sees the untrained network
    (epoch 0), then every `recipe.log_every` epochs and the last, validated on data.val."""
    torch.manual_seed(seed)
    net = recipe.build().to(device)
    on_epoch(EpochStats(0, None, evaluate(net, data.val, recipe.loss, device)))
    fit(net, recipe, data.train, data.val, device, seed, on_epoch, data.train_others.images)
    return net
