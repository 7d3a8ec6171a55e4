"""`python -m trainer`: train one recipe, track it in MLflow, register it and maybe promote it."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
from mlflow import MlflowClient
from mlflow.models.model import ModelInfo
from tqdm import tqdm

from trainer import neither, registry, robustness
from trainer.config import ConfigError, TrainConfig, parse_config
from trainer.data import Dataset3v7, DataUnavailableError, load_dataset
from trainer.loop import EpochStats, Evaluation, evaluate, train
from trainer.models import Network
from trainer.recipes import Recipe
from trainer.registry import Promotion
from trainer.tracking import RunLog, recipe_params


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    metrics: dict[str, float]
    version: str | None
    promotion: Promotion | None

    def summary(self, config: TrainConfig) -> str:
        acc, errors = self.metrics["test_accuracy"], int(self.metrics["test_errors"])
        line = f"run {self.run_id} · {config.recipe.name} · test accuracy {100 * acc:.2f}% ({errors} errors)"
        if "ood_threshold" in self.metrics:
            rejected, accepted = self.metrics["test_rejected_share"], self.metrics["test_others_accepted_share"]
            line += (
                f" · neither: {100 * rejected:.2f}% of 3s/7s rejected, {100 * accepted:.2f}% of other digits accepted"
            )
        if self.version is None:
            return f"{line} · not registered (--no-register)"
        assert self.promotion is not None
        moved = "moved" if self.promotion.moved else "stayed"
        return f"{line} · {config.model_name} version {self.version} · @{config.alias} {moved}: {self.promotion.reason}"


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (try --device cpu or auto)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def final_metrics(
    net: Network, data: Dataset3v7, recipe: Recipe, device: torch.device
) -> tuple[Evaluation, neither.Report | None, dict[str, float]]:
    """The trained network on the validation and test splits, and on distorted test images; for a
    network that abstains, its calibrated threshold and what it rejects and accepts."""
    test = evaluate(net, data.test, recipe.loss, device)
    val = evaluate(net, data.val, recipe.loss, device)
    report = neither.measure(net, data, val, test, device) if net.abstains else None
    metrics = {
        "val_accuracy": val.accuracy,
        "test_loss": test.loss,
        "test_accuracy": test.accuracy,
        "test_errors": float(test.errors),
        **({} if report is None else report.metrics),
        **robustness.accuracies(net, data.test, recipe.loss, device, None if report is None else report.threshold),
    }
    return test, report, metrics


@contextmanager
def progress(recipe: Recipe, quiet: bool) -> Iterator[Callable[[EpochStats], None]]:
    """A per-epoch bar with the current losses on a terminal; nothing with --quiet or through a pipe."""
    with tqdm(
        total=recipe.epochs, desc=recipe.name, unit="epoch", disable=quiet or not sys.stderr.isatty(), leave=False
    ) as bar:

        def show(stats: EpochStats) -> None:
            losses = {} if stats.train_loss is None else {"train_loss": f"{stats.train_loss:.4f}"}
            bar.update(stats.epoch - bar.n)
            bar.set_postfix(
                losses | {"val_loss": f"{stats.val.loss:.4f}", "val_acc": f"{100 * stats.val.accuracy:.2f}%"}
            )

        yield show


def _register(config: TrainConfig, run_id: str, info: ModelInfo, metrics: dict[str, float]) -> tuple[str, Promotion]:
    client = MlflowClient()
    recipe = config.recipe
    tags = registry.version_tags(metrics) | {"recipe": recipe.name, "seed": str(config.seed)}
    description = (
        f"{recipe.name} recipe, seed {config.seed}: test accuracy {100 * metrics['test_accuracy']:.2f}% "
        f"({int(metrics['test_errors'])} errors), validation accuracy {100 * metrics['val_accuracy']:.2f}%."
    )
    if "ood_threshold" in metrics:
        description += (
            f" Says neither 3 nor 7 above ood_score {metrics['ood_threshold']:.3g}: on the test split it rejects "
            f"{100 * metrics['test_rejected_share']:.2f}% of 3s and 7s and accepts "
            f"{100 * metrics['test_others_accepted_share']:.2f}% of the other digits."
        )
    else:
        description += " Cannot say neither 3 nor 7."
    version = registry.register(client, config.model_name, info.model_uri, info.model_id, run_id, tags, description)
    number = str(version.version)  # an int from some stores, a string from others
    promotion = registry.promote(
        client, config.model_name, config.alias, number, metrics["val_accuracy"], config.force_promote
    )
    return number, promotion


def run(config: TrainConfig) -> TrainingResult:
    """Train and track one run; the MLflow run ends FAILED on an error and KILLED on Ctrl-C."""
    recipe = config.recipe
    device = pick_device(config.device)
    data = load_dataset(config.data_dir, config.seed, download=config.download)
    training = data
    if config.limit is not None:
        training = replace(
            data, train=data.train.subset(config.limit), train_others=data.train_others.subset(config.limit)
        )
    with RunLog(config.experiment, run_name=f"{recipe.name}-seed{config.seed}") as log:
        log.params(recipe_params(recipe) | {"seed": config.seed, "device": device.type, "limit": config.limit})
        log.datasets(data, recipe.abstains)
        with progress(recipe, config.quiet) as show:

            def on_epoch(stats: EpochStats) -> None:
                log.epoch(stats)
                show(stats)

            net = train(recipe, training, device, config.seed, on_epoch)
        test, report, metrics = final_metrics(net, data, recipe, device)
        log.final({k: v for k, v in metrics.items() if k != "val_accuracy"})  # val_accuracy is on the curve
        log.figures(recipe.name, net, data.test, test, report)
        info = log.model(net, data.test.floats()[:5].numpy(), None if report is None else report.threshold)
        version, promotion = _register(config, log.run_id, info, metrics) if config.register else (None, None)
    return TrainingResult(log.run_id, metrics, version, promotion)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 done, 1 data missing, 2 bad settings, 130 interrupted."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = parse_config(argv)  # exits 2 with a one-line error on bad flags
    try:
        result = run(config)
    except (DataUnavailableError, ConfigError) as err:
        print(f"python -m trainer: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ConfigError) else 1
    except KeyboardInterrupt:
        print("python -m trainer: interrupted; run marked KILLED, no alias moved", file=sys.stderr)
        return 130
    print(result.summary(config))
    return 0
