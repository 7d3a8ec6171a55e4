"""Everything a run writes to MLflow: params, curves, the dataset, figures and the pt2 model."""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import asdict
from types import TracebackType
from typing import Any

import mlflow
import numpy as np
import torch
from matplotlib import pyplot as plt
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.models.model import ModelInfo

from trainer import figures
from trainer.data import Dataset3v7, Split
from trainer.loop import EpochStats, Evaluation
from trainer.models import Network, Probability
from trainer.neither import Report
from trainer.recipes import Recipe

# Tells the MLflow UI to open the experiment in its model-training view rather than the GenAI one.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
# How a version that abstains computes its score, in its MLmodel metadata beside the threshold.
OOD_SCORE = "p(neither 3 nor 7): the program's second output; above ood_threshold the image is neither"


def recipe_params(recipe: Recipe) -> dict[str, Any]:
    """The recipe flattened into MLflow params (augmentation settings prefixed)."""
    params = {k: v for k, v in asdict(recipe).items() if k not in ("augmentation", "made_weights")}
    params.update({f"made_weight_{kind}": weight for kind, weight in recipe.made_weights})
    params["recipe"] = params.pop("name")
    params["batch_size"] = recipe.batch_size or "full"
    augmentation = recipe.augmentation
    params["augmentation"] = augmentation is not None
    if augmentation is not None:
        params.update({f"augment_{k}": v for k, v in asdict(augmentation).items()})
    return params


def _model_requirements() -> list[str]:
    """What the served model needs; given so that MLflow does not spend seconds inferring it."""
    return [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]


class RunLog:
    """One MLflow run, from start to end. Epoch metrics are sent in batches about once a
    `flush_seconds` of training, since one call per point costs more than the training of a short
    recipe; everything else is written when it is handed over. Leaving the `with` block ends the
    run FINISHED, FAILED on an error, or KILLED on Ctrl-C."""

    def __init__(self, experiment: str, run_name: str, flush_seconds: float = 1.0) -> None:
        self.history: list[EpochStats] = []
        self._experiment = experiment
        self._run_name = run_name
        self._flush_seconds = flush_seconds
        self._pending: list[Metric] = []
        self._flushed_at = time.monotonic()
        self.run_id = ""

    def __enter__(self) -> RunLog:
        self._client = MlflowClient()
        experiment = mlflow.set_experiment(self._experiment)
        self._client.set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND)
        self.run_id = mlflow.start_run(run_name=self._run_name).info.run_id
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.flush()
            mlflow.end_run("FINISHED")
            return
        with contextlib.suppress(Exception):  # keep the curves so far; the original error is the one to report
            self.flush()
        mlflow.end_run("KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED")

    def params(self, params: dict[str, Any]) -> None:
        mlflow.log_params(params)

    def datasets(self, data: Dataset3v7, abstains: bool) -> None:
        """The three splits as MLflow dataset inputs, with their context; for a network that abstains,
        also the other digits it learns "neither" from and is tested on."""
        named: list[tuple[str, str, np.ndarray, np.ndarray]] = [
            ("mnist-3v7-training", "training", data.train.images.numpy(), data.train.labels.numpy()),
            ("mnist-3v7-validation", "validation", data.val.images.numpy(), data.val.labels.numpy()),
            ("mnist-3v7-test", "test", data.test.images.numpy(), data.test.labels.numpy()),
        ]
        if abstains:
            named += [
                (
                    "mnist-other-digits-training",
                    "training",
                    data.train_others.images.numpy(),
                    data.train_others.digits.numpy(),
                ),
                ("mnist-other-digits-test", "test", data.test_others.images.numpy(), data.test_others.digits.numpy()),
            ]
        source = str(data.root.resolve())
        with warnings.catch_warnings():
            # A local path matches two of MLflow's dataset source types; it picks one and warns.
            warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
            datasets = [
                mlflow.data.from_numpy(images, targets=targets, source=source, name=name)  # type: ignore[attr-defined]
                for name, _, images, targets in named
            ]
        mlflow.log_inputs(datasets, contexts=[c for _, c, _, _ in named], tags_list=[None] * len(datasets))

    def epoch(self, stats: EpochStats) -> None:
        """One point of the curves; epoch 0, the untrained network, has no train loss."""
        self.history.append(stats)
        metrics = {"val_loss": stats.val.loss, "val_accuracy": stats.val.accuracy}
        if stats.train_loss is not None:
            metrics["train_loss"] = stats.train_loss
        self._add(metrics, stats.epoch)
        if time.monotonic() - self._flushed_at >= self._flush_seconds:
            self.flush()

    def final(self, metrics: dict[str, float]) -> None:
        """Test-split metrics, at the last epoch's step: logging the model links that step's metrics
        to it, so the model's page shows these and the trained network's validation figures."""
        self._add(metrics, self.history[-1].epoch)
        self.flush()

    def figures(self, title: str, net: Network, test: Split, evaluation: Evaluation, report: Report | None) -> None:
        for name, fig in figures.for_run(title, self.history, net, test, evaluation, report).items():
            mlflow.log_figure(fig, f"figures/{name}")
            plt.close(fig)

    def model(self, net: Network, example: np.ndarray, ood_threshold: float | None) -> ModelInfo:
        """Log p(three) as a torch.export (pt2) program: signature float32 (-1, 784) → (-1,), or (-1, 2)
        with p(neither) from a network that abstains, whose threshold goes in the model's metadata;
        at the last epoch's step, where final() put the metrics MLflow links to it."""
        served = Probability(net).eval().cpu()
        metadata = None
        if ood_threshold is not None:
            metadata = {"ood_threshold": ood_threshold, "ood_score": OOD_SCORE}
        with warnings.catch_warnings():
            # Channels-last weights are not "complete" tensors to the pt2 packer, so it rebuilds each
            # from its storage and warns; on the CPU that is exact (a test compares the outputs).
            warnings.filterwarnings("ignore", message="No complete tensor found in the group")
            return mlflow.pytorch.log_model(
                served,
                name="model",
                input_example=example,
                serialization_format="pt2",
                step=self.history[-1].epoch,  # not 0, where the untrained network's metrics are
                pip_requirements=_model_requirements(),
                # The service loads and smoke-tests every version before serving it, and the tests
                # load logged models, so MLflow's own load-and-predict check is skipped.
                validate_serving_input=False,
                metadata=metadata,
            )

    def flush(self) -> None:
        """Send the epoch metrics gathered since the last flush."""
        if self._pending:
            self._client.log_batch(self.run_id, metrics=self._pending)
            self._pending = []
        self._flushed_at = time.monotonic()

    def _add(self, metrics: dict[str, float], step: int) -> None:
        timestamp = int(time.time() * 1000)
        self._pending.extend(Metric(key, float(value), timestamp, step) for key, value in metrics.items())
