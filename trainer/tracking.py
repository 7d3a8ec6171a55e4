"""Everything a run writes to MLflow: params, curves, figures, the dataset and the pt2 model."""

from __future__ import annotations

import contextlib
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from mlflow.entities import Dataset as DatasetEntity
from mlflow.entities import DatasetInput, InputTag, Param
from mlflow.models.model import ModelInfo
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from trainer import figures
from trainer.background import Writer
from trainer.data import Dataset3v7
from trainer.loop import EpochStats, Evaluation
from trainer.models import Probability
from trainer.recipes import Recipe

# What the served model needs; pinned so MLflow does not spend seconds inferring it.
MODEL_REQUIREMENTS = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]


@dataclass
class Stopwatch:
    """Seconds spent inside MLflow calls, so the benchmark can report logging's share."""

    seconds: float = 0.0

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start


@dataclass
class History:
    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)

    def add(self, stats: EpochStats) -> None:
        self.epochs.append(stats.epoch)
        self.train_loss.append(stats.train_loss)
        self.val_loss.append(stats.val.loss)
        self.val_accuracy.append(stats.val.accuracy)


def recipe_params(recipe: Recipe) -> dict[str, Any]:
    """The recipe flattened into MLflow params (augmentation settings prefixed)."""
    params = {k: v for k, v in asdict(recipe).items() if k != "augmentation"}
    params["recipe"] = params.pop("name")
    params["batch_size"] = recipe.batch_size or "full"
    augmentation = recipe.augmentation
    params["augmentation"] = augmentation is not None
    if augmentation is not None:
        params.update({f"augment_{k}": v for k, v in asdict(augmentation).items()})
    return params


# A local path matches MLflow's local-artifact dataset source twice; it picks one and warns. Set
# once here rather than with catch_warnings, which is not thread-safe: the datasets are built on
# the writer's thread.
warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")


def _dataset_inputs(data: Dataset3v7) -> list[DatasetInput]:
    inputs = []
    for context, split in (("training", data.train), ("validation", data.val), ("test", data.test)):
        dataset = mlflow.data.from_numpy(  # type: ignore[attr-defined]
            split.images.numpy(),
            targets=split.labels.numpy(),
            source=str(data.root.resolve()),
            name=f"mnist-3v7-{context}",
        )
        context_tag = InputTag(MLFLOW_DATASET_CONTEXT, context)
        inputs.append(DatasetInput(DatasetEntity(**dataset.to_dict()), tags=[context_tag]))
    return inputs


class RunLog:
    """Writes one training run into the active MLflow run."""

    def __init__(self, run_id: str, watch: Stopwatch, writer: Writer) -> None:
        self.watch = watch
        self.history = History()
        self._run_id = run_id
        self._writer = writer
        self._scratch = tempfile.TemporaryDirectory(prefix="mnist37-figures-")  # until the writer is done

    def params(self, params: dict[str, Any]) -> None:
        batch = [Param(key, str(value)) for key, value in params.items()]
        with self.watch.timing():
            self._writer.submit(lambda client: client.log_batch(self._run_id, params=batch))

    def epoch(self, stats: EpochStats) -> None:
        self.history.add(stats)
        metrics = {"train_loss": stats.train_loss, "val_loss": stats.val.loss, "val_accuracy": stats.val.accuracy}
        with self.watch.timing():
            self._writer.put(metrics, step=stats.epoch)

    def initial(self, val: Evaluation) -> None:
        """Step 0: the untrained network, so curves show where training started."""
        with self.watch.timing():
            self._writer.put({"val_loss": val.loss, "val_accuracy": val.accuracy}, step=0)

    def dataset(self, data: Dataset3v7) -> None:
        """The three splits as MLflow dataset inputs; their digests are computed on the writer's thread."""
        with self.watch.timing():
            self._writer.submit(lambda client: client.log_inputs(self._run_id, datasets=_dataset_inputs(data)))

    def final(self, metrics: dict[str, float]) -> None:
        """Test-split metrics, at the last epoch's step: logging the model links that step's metrics
        to it, so the model's page shows these and the trained network's validation figures."""
        with self.watch.timing():
            self._writer.put(metrics, step=self.history.epochs[-1])

    def figures(self, title: str, weights: np.ndarray, data: Dataset3v7, test: Evaluation) -> None:
        labels = data.test.labels.numpy()
        p_three = test.p_three.numpy()
        h = self.history
        drawn: dict[str, Figure] = {
            "loss_curves.png": figures.loss_curves(h.epochs, h.train_loss, h.val_loss, h.val_accuracy, title),
            "weights.png": figures.weight_maps(weights, f"{title}: learned first-layer weights"),
            "confusion_matrix.png": figures.confusion_matrix(
                labels, (p_three >= 0.5).astype(labels.dtype), f"{title}: test split"
            ),
            "misclassified.png": figures.misclassified_grid(data.test.images.numpy(), labels, p_three),
        }
        for name, fig in drawn.items():  # rendering PNGs is drawing, not logging
            fig.savefig(Path(self._scratch.name) / name)
            plt.close(fig)
        with self.watch.timing():
            self._writer.submit(lambda client: client.log_artifacts(self._run_id, self._scratch.name, "figures"))

    def model(self, net: torch.nn.Module, example: np.ndarray) -> ModelInfo:
        """Log p(three) as a torch.export (pt2) program: signature float32 (-1, 784) → (-1,). Call
        flush() first: MLflow links the metrics already logged at the last epoch's step to the model."""
        served = Probability(net).eval().cpu()
        with self.watch.timing(), warnings.catch_warnings():
            # Channels-last weights are not "complete" tensors to the pt2 packer, so it rebuilds each
            # from its storage and warns; on the CPU that is exact (a test compares the outputs).
            warnings.filterwarnings("ignore", message="No complete tensor found in the group")
            return mlflow.pytorch.log_model(
                served,
                name="model",
                input_example=example,
                serialization_format="pt2",
                step=self.history.epochs[-1],  # not 0, where the untrained network's metrics are
                pip_requirements=MODEL_REQUIREMENTS,
                # MLflow would load the saved program back and run the example through it (~0.1 s);
                # the service does that to every version before serving it, and tests load each
                # logged model with mlflow.pyfunc.load_model and pickle disallowed.
                validate_serving_input=False,
            )

    def flush(self) -> None:
        """Wait for everything handed to the writer (metrics, params, figures) to reach the store."""
        with self.watch.timing():
            try:
                self._writer.close()
            finally:
                self._scratch.cleanup()

    def abandon(self) -> None:
        """On a failing run: keep the curves written so far, but let the original error through."""
        with contextlib.suppress(Exception):
            self.flush()
