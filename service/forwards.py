"""The forward batcher: concurrent calls of one version share a forward, and a cheap one runs on the loop."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from service.predictor import PredictFn

# The longest a forward may hold the event loop; longer ones go to the forward thread. About what
# the hand-over to that thread and back costs: a forward that holds the loop for longer keeps other
# calls from being read, and so from queueing to share the next forward (bench/README.md).
LOOP_BUDGET_SECONDS = 0.00025


# Forwards of this many images or fewer run on one torch thread; larger ones on torch's default
# number. Measured with the CNN in the service: one thread lowered a single image's latency and left
# many clients' requests/s as they were; a whole service on one thread loses large batches' speed
# (bench/README.md).
ONE_THREAD_MAX_IMAGES = 16


@dataclass
class _Job:
    predict: PredictFn  # the served version's, read once by the call: one version answers it
    images: np.ndarray  # (n, 784)
    answer: asyncio.Future[np.ndarray]


def _timed(predict: PredictFn, images: np.ndarray, threads: int) -> tuple[np.ndarray, float]:
    """predict(images) on `threads` torch threads, and the seconds it took, timed where it runs: the
    hand-over to the thread is not the forward's cost, and counting it would keep a cheap version off
    the loop for good."""
    # The setting is the calling thread's own, where the forward's parallel work starts. It is left
    # as set, and changed only when a forward needs the other count: changing it back after every
    # forward measured slower than leaving it.
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    out = np.asarray(predict(images))
    return out, time.perf_counter() - start


def _checked(out: np.ndarray, images: np.ndarray) -> np.ndarray:
    if out.shape[:1] != images.shape[:1]:
        raise ValueError(f"expected {len(images)} outputs, got shape {out.shape}")
    return out


class ForwardBatcher:
    """Runs the server's forward passes, one at a time, each over the queued calls of one version.

    A single image costs far more in per-call overhead than in arithmetic, so one forward over many
    callers' images answers them for little more than one. There is no timer: a call that finds no
    forward running has its own at once; calls that arrive meanwhile queue for the next. Where a
    forward runs is measured, not configured: on the loop when the version has shown it costs no
    more than the hand-over to the forward thread, on that thread otherwise, so the loop keeps
    answering health checks and reading calls."""

    def __init__(self, images_per_forward: int, loop_budget: float = LOOP_BUDGET_SECONDS) -> None:
        self._limit = images_per_forward
        self._budget = loop_budget
        self._queue: list[_Job] = []
        self._running = False
        self._drainer: asyncio.Task[None] | None = None
        # Seconds per image of each version's last forward; only the last few versions are kept.
        self._cost: dict[PredictFn, float] = {}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")
        self._threads = torch.get_num_threads()  # torch's default, or what OMP_NUM_THREADS says

    async def __call__(self, predict: PredictFn, images: np.ndarray) -> np.ndarray:
        """predict(images), sharing the forward with other calls queued for the same version."""
        if not self._running and self._cheap(predict, len(images)):
            # Nothing is queued while no forward runs, so this call would be a batch of its own:
            # it runs here and now, without the queue's task and future.
            return self._forward(predict, images)
        loop = asyncio.get_running_loop()
        job = _Job(predict, images, loop.create_future())
        self._queue.append(job)
        if not self._running:
            # Its own task rather than this call's: a caller that goes away must not strand the queue.
            # Held here, since the loop keeps only a weak reference to a task.
            self._running = True
            self._drainer = loop.create_task(self._drain())
        return await job.answer

    @property
    def busy(self) -> bool:
        """Whether a forward is running off the loop or calls wait for one: the shadow waits until not."""
        return self._running

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    async def _drain(self) -> None:
        try:
            while batch := self._take():
                await self._run(batch)
        finally:
            self._running = False

    def _take(self) -> list[_Job]:
        """The oldest waiting jobs of one version, up to the image limit (always at least one); jobs
        whose caller went away (cancelled, or past its deadline) are dropped unforwarded."""
        self._queue = [job for job in self._queue if not job.answer.done()]
        batch: list[_Job] = []
        images = 0
        for job in self._queue:
            if batch and (job.predict is not batch[0].predict or images + len(job.images) > self._limit):
                break
            batch.append(job)
            images += len(job.images)
        del self._queue[: len(batch)]
        return batch

    def _cheap(self, predict: PredictFn, images: int) -> bool:
        """Whether this version's last forward says this many images take no longer than the budget."""
        cost = self._cost.get(predict)
        return cost is not None and cost * images <= self._budget

    def _torch_threads(self, images: int) -> int:
        return 1 if images <= ONE_THREAD_MAX_IMAGES else self._threads

    def _forward(self, predict: PredictFn, images: np.ndarray) -> np.ndarray:
        """A forward on the loop."""
        out, seconds = _timed(predict, images, self._torch_threads(len(images)))
        self._remember(predict, seconds / len(images))
        return _checked(out, images)

    async def _run(self, batch: list[_Job]) -> None:
        predict = batch[0].predict
        try:
            images = batch[0].images if len(batch) == 1 else np.concatenate([job.images for job in batch])
            if self._cheap(predict, len(images)):
                out = self._forward(predict, images)
            else:
                loop = asyncio.get_running_loop()
                threads = self._torch_threads(len(images))
                out, seconds = await loop.run_in_executor(self._thread, _timed, predict, images, threads)
                self._remember(predict, seconds / len(images))
                out = _checked(out, images)
        except Exception as err:  # every caller in the batch gets the error; the next batch is unaffected
            for job in batch:
                if not job.answer.done():
                    job.answer.set_exception(err)
            return
        start = 0
        for job in batch:
            if not job.answer.done():
                job.answer.set_result(out[start : start + len(job.images)])
            start += len(job.images)

    def _remember(self, predict: PredictFn, seconds_per_image: float) -> None:
        if predict not in self._cost and len(self._cost) >= 4:
            self._cost.clear()
        self._cost[predict] = seconds_per_image
