"""`python -m trainer`: train one recipe, track it in MLflow, register it and maybe promote it."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import mlflow
import torch
from mlflow import MlflowClient
from mlflow.models.model import ModelInfo
from tqdm import tqdm

from trainer import registry, robustness
from trainer.background import RunWriter
from trainer.config import ConfigError, TrainConfig, parse_config
from trainer.data import Dataset3v7, DataUnavailableError, Split, load_dataset
from trainer.loop import EpochStats, evaluate, fit
from trainer.registry import Promotion
from trainer.tracking import RunLog, Stopwatch, recipe_params

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    metrics: dict[str, float]
    version: str | None
    promotion: Promotion | None
    wall_seconds: float
    mlflow_seconds: float  # waiting on MLflow

    def summary(self, config: TrainConfig) -> str:
        acc, errors = self.metrics["test_accuracy"], int(self.metrics["test_errors"])
        line = f"run {self.run_id} · {config.recipe.name} · test accuracy {100 * acc:.2f}% ({errors} errors)"
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


def _robustness_metrics(net: torch.nn.Module, test: Split, loss: str, device: torch.device) -> dict[str, float]:
    return {
        f"robust_accuracy_{name}": evaluate(
            net, Split(robustness.distorted(test.images, name), test.labels), loss, device
        ).accuracy
        for name in robustness.DISTORTIONS
    }


def train_and_log(
    config: TrainConfig, data: Dataset3v7, device: torch.device, log: RunLog
) -> tuple[torch.nn.Module, dict[str, float]]:
    """Train, evaluate and draw the figures, handing every record to `log`; returns the trained
    network and its final metrics. Everything else run() does is MLflow's."""
    recipe = config.recipe
    torch.manual_seed(config.seed)
    net = recipe.build().to(device)
    train = data.train if config.limit is None else data.train.subset(config.limit)
    log.initial(evaluate(net, data.val, recipe.loss, device))
    quiet = config.quiet or not sys.stderr.isatty()
    with tqdm(total=recipe.epochs, desc=recipe.name, unit="epoch", disable=quiet, leave=False) as bar:

        def on_epoch(stats: EpochStats) -> None:
            log.epoch(stats)
            bar.update(stats.epoch - bar.n)
            bar.set_postfix(
                train_loss=f"{stats.train_loss:.4f}",
                val_loss=f"{stats.val.loss:.4f}",
                val_acc=f"{100 * stats.val.accuracy:.2f}%",
            )

        fit(net, recipe, train, data.val, device, config.seed, on_epoch)
    test = evaluate(net, data.test, recipe.loss, device)
    metrics = {
        "val_accuracy": log.history.val_accuracy[-1],
        "test_loss": test.loss,
        "test_accuracy": test.accuracy,
        "test_errors": float(test.errors),
        **_robustness_metrics(net, data.test, recipe.loss, device),
    }
    log.final({k: v for k, v in metrics.items() if k != "val_accuracy"})
    weights = net.first_layer_weights().cpu().numpy()  # type: ignore[operator]
    log.figures(recipe.name, weights, data, test)
    return net, metrics


def _register(config: TrainConfig, run_id: str, info: ModelInfo, metrics: dict[str, float]) -> tuple[str, Promotion]:
    client = MlflowClient()
    recipe = config.recipe
    tags = registry.version_tags(metrics) | {"recipe": recipe.name, "seed": str(config.seed)}
    description = (
        f"{recipe.name} recipe, seed {config.seed}: test accuracy {100 * metrics['test_accuracy']:.2f}% "
        f"({int(metrics['test_errors'])} errors), validation accuracy {100 * metrics['val_accuracy']:.2f}%."
    )
    version = registry.register(client, config.model_name, info.model_uri, info.model_id, run_id, tags, description)
    number = str(version.version)  # an int from some stores, a string from others
    promotion = registry.promote(
        client, config.model_name, config.alias, number, metrics["val_accuracy"], config.force_promote
    )
    return number, promotion


def run(config: TrainConfig) -> TrainingResult:
    """Train and track one run; the MLflow run ends FAILED on an error and KILLED on Ctrl-C."""
    start = time.perf_counter()
    device = pick_device(config.device)
    data = load_dataset(config.data_dir, config.seed)
    watch = Stopwatch()
    with watch.timing():
        mlflow.set_experiment(config.experiment)
        active = mlflow.start_run(run_name=f"{config.recipe.name}-seed{config.seed}")
    log = RunLog(active.info.run_id, watch, RunWriter(active.info.run_id))
    try:
        log.params(recipe_params(config.recipe) | {"seed": config.seed, "device": device.type, "limit": config.limit})
        log.dataset(data)
        net, metrics = train_and_log(config, data, device, log)
        log.flush()
        info = log.model(net, data.test.floats()[:5].numpy())
        version, promotion = (None, None)
        if config.register:
            with log.watch.timing():
                version, promotion = _register(config, active.info.run_id, info, metrics)
    except KeyboardInterrupt:
        log.abandon()
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        log.abandon()
        mlflow.end_run("FAILED")
        raise
    with log.watch.timing():
        mlflow.end_run("FINISHED")
    return TrainingResult(
        run_id=active.info.run_id,
        metrics=metrics,
        version=version,
        promotion=promotion,
        wall_seconds=time.perf_counter() - start,
        mlflow_seconds=log.watch.seconds,
    )


def main(argv: Sequence[str] | None = None, config: TrainConfig | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if config is None:
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
