"""MLflow work kept off the training loop's path: per-epoch metrics written from a thread, and the
one-off costs of logging a model paid while the network trains."""

from __future__ import annotations

import contextlib
import queue
import threading
import time

from mlflow import MlflowClient
from mlflow.entities import Metric


class MetricWriter:
    """Writes metrics from a background thread, batching whatever has queued up, so the training
    loop never waits on the store. MLflow's own asynchronous logging polls its queue with a
    one-second timeout, which made every flush and end_run wait up to a second; this one wakes
    as soon as it is closed."""

    _BATCH_LIMIT = 1000  # metrics per log_batch call, as the tracking API allows

    def __init__(self, run_id: str, client: MlflowClient | None = None) -> None:
        self._run_id = run_id
        self._client = client or MlflowClient()
        self._queue: queue.Queue[list[Metric] | None] = queue.Queue()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._drain, name="mlflow-metrics", daemon=True)
        self._thread.start()

    def put(self, metrics: dict[str, float], step: int) -> None:
        timestamp = int(time.time() * 1000)
        self._queue.put([Metric(key, float(value), timestamp, step) for key, value in metrics.items()])

    def close(self) -> None:
        """Wait until everything put so far is written; raise the first error the writer met."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error

    def _drain(self) -> None:
        while True:
            items = [self._queue.get()]  # wait for the first, then take whatever else has queued
            with contextlib.suppress(queue.Empty):
                while True:
                    items.append(self._queue.get_nowait())
            self._write([metric for item in items if item is not None for metric in item])
            if None in items:
                return

    def _write(self, batch: list[Metric]) -> None:
        if self._error is not None:
            return  # the run is failing anyway; the first error is the one to report
        try:
            for i in range(0, len(batch), self._BATCH_LIMIT):
                self._client.log_batch(self._run_id, metrics=batch[i : i + self._BATCH_LIMIT])
        except Exception as err:
            self._error = err


class ModelLoggingWarmup:
    """The first model a process logs pays one-off costs: importing torch.export's machinery (~0.6 s)
    and MLflow's scan of every installed package, which it checks the model's requirements against
    (~0.6 s). This pays them on a background thread while the network trains; the run waits for
    whatever is left before it logs the model, and counts that wait as MLflow's."""

    def __init__(self) -> None:
        self._thread = threading.Thread(target=self._warm, name="model-logging-warmup", daemon=True)
        self._thread.start()

    @staticmethod
    def _warm() -> None:
        # Only an optimisation: if these internals move in a later release, logging is just slower.
        with contextlib.suppress(Exception):
            import torch._functorch.aot_autograd
            import torch.export._trace  # noqa: F401
            from mlflow.utils.requirements_utils import _init_packages_to_modules_map

            _init_packages_to_modules_map()

    def wait(self) -> None:
        self._thread.join()
