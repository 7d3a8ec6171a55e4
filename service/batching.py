"""Concurrent calls share one forward pass: whoever finds the model idle runs everything queued.

A single image through the exported program costs far more in per-call overhead than in arithmetic,
so when many clients call at once, one forward over all their images answers them for little more
than the price of one. There is no batching thread and no timer: a caller that finds no forward
running runs one itself, with every request queued by then (its own included), so a lone client
waits for nothing but its own forward.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from service.predictor import PredictFn


@dataclass
class _Job:
    images: np.ndarray  # (n, 784)
    output: np.ndarray | None = None
    error: BaseException | None = None
    finished: bool = False


class CoalescingPredictor:
    """A PredictFn that merges the images of concurrent calls into one call of `predict`."""

    def __init__(self, predict: PredictFn, images_per_forward: int) -> None:
        self._predict = predict
        self._limit = images_per_forward
        self._cond = threading.Condition()
        self._queue: list[_Job] = []
        self._running = False

    def __call__(self, images: np.ndarray) -> np.ndarray:
        job = _Job(images)
        with self._cond:
            self._queue.append(job)
            while not job.finished:
                if self._running:
                    self._cond.wait()
                    continue
                self._running = True
                batch = self._take()
                self._cond.release()
                try:
                    self._run(batch)
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._cond.notify_all()
        if job.error is not None:
            raise job.error
        assert job.output is not None
        return job.output

    def _take(self) -> list[_Job]:
        """The oldest jobs, up to the image limit (always at least one)."""
        batch: list[_Job] = []
        images = 0
        while self._queue and (not batch or images + len(self._queue[0].images) <= self._limit):
            job = self._queue.pop(0)
            batch.append(job)
            images += len(job.images)
        return batch

    def _run(self, batch: list[_Job]) -> None:
        try:
            images = batch[0].images if len(batch) == 1 else np.concatenate([job.images for job in batch])
            out = np.asarray(self._predict(images))
            if out.shape[:1] != images.shape[:1]:
                raise ValueError(f"expected {len(images)} outputs, got shape {out.shape}")
            start = 0
            for job in batch:
                job.output = out[start : start + len(job.images)]
                start += len(job.images)
        except Exception as err:  # every caller in the batch gets the error; the next batch is unaffected
            for job in batch:
                job.error = err
        finally:
            for job in batch:
                job.finished = True
