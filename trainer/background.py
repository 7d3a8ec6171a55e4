"""Writes to an MLflow run made from a thread of their own, so training never waits on the store."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Protocol

from mlflow import MlflowClient
from mlflow.entities import Metric

Job = Callable[[MlflowClient], object]  # what a job returns is ignored


def _log_metrics(client: MlflowClient, run_id: str, metrics: list[Metric]) -> None:
    client.log_batch(run_id, metrics=metrics)


class Writer(Protocol):
    """Where a run's records go: RunWriter for a tracked run; bench/train.py's baseline drops them."""

    def put(self, metrics: dict[str, float], step: int) -> None: ...
    def submit(self, job: Job) -> None: ...
    def close(self) -> None: ...


class RunWriter:
    """Writes to one run from a background thread, in the order things were put, so neither the
    training loop nor the figures wait on the store. After the first write it takes, the writer
    lingers up to `linger` seconds for more, and metrics that have queued up go out together in
    log_batch calls: the tutorial's 200 logged points cost 1.5 s of CPU as one call each, which
    the training threads on a 2-core machine pay for. MLflow's own asynchronous logging polls its
    queue with a one-second timeout, which made every flush and end_run wait up to a second; this
    one stops lingering as soon as it is closed."""

    _BATCH_LIMIT = 1000  # metrics per log_batch call, as the tracking API allows

    def __init__(self, run_id: str, client: MlflowClient | None = None, linger: float = 0.5) -> None:
        self._run_id = run_id
        self._client = client or MlflowClient()
        self._linger = linger
        self._queue: queue.Queue[list[Metric] | Job | None] = queue.Queue()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._drain, name="mlflow-writer", daemon=True)
        self._thread.start()

    def put(self, metrics: dict[str, float], step: int) -> None:
        timestamp = int(time.time() * 1000)
        self._queue.put([Metric(key, float(value), timestamp, step) for key, value in metrics.items()])

    def submit(self, job: Job) -> None:
        """Run `job(client)` on the writer's thread, after everything put before it."""
        self._queue.put(job)

    def close(self) -> None:
        """Wait until everything put so far is written; raise the first error the writer met."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error

    def _take(self) -> list[list[Metric] | Job | None]:
        """Wait for the first item, then take what arrives within the linger time or until close."""
        items = [self._queue.get()]
        deadline = time.monotonic() + self._linger
        with contextlib.suppress(queue.Empty):
            while items[-1] is not None:
                items.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
        return items

    def _drain(self) -> None:
        while True:
            items = self._take()
            metrics: list[Metric] = []
            for item in items:
                if isinstance(item, list):
                    metrics.extend(item)
                    continue
                self._write_metrics(metrics)  # keep metrics before a job ahead of it
                metrics = []
                if item is None:
                    return
                self._run(item)
            self._write_metrics(metrics)

    def _write_metrics(self, batch: list[Metric]) -> None:
        for i in range(0, len(batch), self._BATCH_LIMIT):
            self._run(partial(_log_metrics, run_id=self._run_id, metrics=batch[i : i + self._BATCH_LIMIT]))

    def _run(self, job: Job) -> None:
        if self._error is not None:
            return  # the run is failing anyway; the first error is the one to report
        try:
            job(self._client)
        except Exception as err:
            self._error = err
