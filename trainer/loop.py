"""Training: seed, build and fit a recipe's network, and evaluate it on any split."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainer.data import Dataset3v7, Split
from trainer.models import Network
from trainer.recipes import Loss, Recipe


@dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float
    errors: int
    p_three: torch.Tensor  # (N,) on the CPU


@dataclass(frozen=True)
class EpochStats:
    epoch: int  # 0: the untrained network
    train_loss: float | None  # None at epoch 0
    val: Evaluation


def loss_fn(kind: Loss, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if kind == "mse":
        return F.mse_loss(torch.sigmoid(logits), labels)
    return F.binary_cross_entropy_with_logits(logits, labels)


@torch.inference_mode()
def evaluate(net: nn.Module, split: Split, loss: Loss, device: torch.device, batch: int = 512) -> Evaluation:
    """Loss, accuracy and p(three) of `net` on a split, 0.5 the decision threshold."""
    net.eval()
    logits = torch.cat(
        [net(split.images[i : i + batch].to(device).float().div_(255.0)).cpu() for i in range(0, len(split), batch)]
    )
    labels = split.labels
    p_three = torch.sigmoid(logits)
    errors = int(((p_three >= 0.5).float() != labels).sum())
    return Evaluation(
        loss=float(loss_fn(loss, logits, labels)),
        accuracy=1.0 - errors / len(split),
        errors=errors,
        p_three=p_three,
    )


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
        opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
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
) -> None:
    """Train `net` in place; call `on_epoch` every `recipe.log_every` epochs and after the last."""
    generator = torch.Generator().manual_seed(seed)
    x_all = train.floats().to(device)  # (N, 784)
    y_all = train.labels.to(device)
    per_epoch = 1 if recipe.batch_size is None else math.ceil(len(train) / recipe.batch_size)
    opt, schedule = _optimizer(recipe, net, per_epoch * recipe.epochs)
    for epoch in range(1, recipe.epochs + 1):
        net.train()
        total, seen = 0.0, 0
        for idx in _batches(len(train), recipe.batch_size, generator):
            if isinstance(idx, torch.Tensor):
                idx = idx.to(device)
            x, y = x_all[idx], y_all[idx]
            if recipe.augmentation is not None:
                x = recipe.augmentation(x, generator)
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
    fit(net, recipe, data.train, data.val, device, seed, on_epoch)
    return net
