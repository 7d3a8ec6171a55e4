"""The shadow: a second alias's version answers the same images as the champion, after the champion
has answered, and only ever into the metrics.

Its work waits in a bounded queue; what the queue cannot take is dropped and counted. It is forwarded
on a thread of its own, on one torch thread, and only while no call's forward runs or waits (so it
takes the other core, never the calls' place in line): a call that arrives during a shadow forward
goes straight to its own, and a shadow can never fail a call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from service.errors import first_line
from service.forwards import ForwardBatcher
from service.live import SHADOW, LiveMetrics
from service.predictor import ModelSource, PredictFn, Predictions, ServedModel, predict_digits

logger = logging.getLogger(__name__)

# The most images one shadow forward takes: a forward of the calls' size, on one torch thread.
SHADOW_FORWARD_IMAGES = 16
# Nobody waits for the shadow's answers: gathering its work for a moment makes a few forwards of many
# calls' images instead of one per call, whose fixed cost each (the hand-over, the metrics) would fall
# on the loop that reads the calls.
SHADOW_GATHER_SECONDS = 0.01


@dataclass(frozen=True)
class _Work:
    model: ServedModel
    images: np.ndarray
    champion: Predictions


class Shadow:
    def __init__(
        self,
        alias: str,
        models: ModelSource,
        forwards: ForwardBatcher,
        live: LiveMetrics,
        share: float,
        max_queued: int,
    ) -> None:
        self.alias = alias
        self.models = models
        self._forwards = forwards
        self._live = live
        self._share = share
        self._max_queued = max_queued
        self._credit = 0.0  # a call is shadowed each time the share adds up to a whole one
        self._queue: deque[_Work] = deque()
        self._queued = 0  # images
        self._drainer: asyncio.Task[None] | None = None
        self._failing: str | None = None  # the version whose failure was last logged
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")

    def offer(self, images: np.ndarray, champion: Predictions) -> None:
        """Called on the loop once the champion has answered; takes the call's images, or drops them."""
        model = self.models.current()
        if model is None:
            return  # nothing to compare with: not work dropped
        self._credit += self._share
        if self._credit < 1:
            return
        self._credit -= 1
        if self._queued + len(images) > self._max_queued:
            self._live.dropped("queue_full", len(images))
            return
        for start in range(0, len(images), SHADOW_FORWARD_IMAGES):
            end = start + SHADOW_FORWARD_IMAGES
            self._queue.append(_Work(model, images[start:end], sliced(champion, start, end)))
        self._queued += len(images)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._queue:
            await asyncio.sleep(SHADOW_GATHER_SECONDS)  # the offering call's answer goes out meanwhile
            if self._forwards.busy:
                continue  # calls' forwards first; its queue fills meanwhile, and then drops
            batch = self._take()
            images = batch[0].images if len(batch) == 1 else np.concatenate([work.images for work in batch])
            model = batch[0].model
            start = time.perf_counter()
            try:
                shadow = await predict_digits(self._background, model, images)
            except Exception as err:  # a failing shadow only ever shows in the metrics and the log
                self._live.dropped("failed", len(images))
                if self._failing != model.version:
                    self._failing = model.version
                    logger.warning("shadow version %s failed: %s", model.version, first_line(err))
                continue
            self._live.shadow_forward(time.perf_counter() - start)
            self._live.answered(SHADOW, shadow)
            champions = [work.champion for work in batch]
            if all(champion.version == champions[0].version for champion in champions):
                self._live.compared(joined(champions), shadow)
                continue
            offset = 0  # the champion moved between these calls: each compared under its own version
            for work in batch:
                self._live.compared(work.champion, sliced(shadow, offset, offset + len(work.images)))
                offset += len(work.images)

    def _take(self) -> list[_Work]:
        """The oldest queued work of one shadow version, up to SHADOW_FORWARD_IMAGES."""
        batch = [self._queue.popleft()]
        images = len(batch[0].images)
        while self._queue and self._queue[0].model is batch[0].model:
            if images + len(self._queue[0].images) > SHADOW_FORWARD_IMAGES:
                break
            batch.append(self._queue.popleft())
            images += len(batch[-1].images)
        self._queued -= images
        return batch

    async def _background(self, predict: PredictFn, images: np.ndarray) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._thread, _on_one_thread, predict, images)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


def _on_one_thread(predict: PredictFn, images: np.ndarray) -> np.ndarray:
    # The setting is this thread's own; the other core stays the calls'.
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    return np.asarray(predict(images))


def sliced(predictions: Predictions, start: int, end: int) -> Predictions:
    """The answers to images start..end of a call."""
    known, score = predictions.known, predictions.ood_score
    return Predictions(
        predictions.digits[start:end],
        predictions.p_three[start:end],
        predictions.version,
        None if known is None else known[start:end],
        None if score is None else score[start:end],
    )


def joined(parts: list[Predictions]) -> Predictions:
    """Answers to several calls of one version, as one."""
    if len(parts) == 1:
        return parts[0]
    known = [p.known for p in parts]
    scores = [p.ood_score for p in parts]
    return Predictions(
        np.concatenate([p.digits for p in parts]),
        np.concatenate([p.p_three for p in parts]),
        parts[0].version,
        None if any(k is None for k in known) else np.concatenate(known),  # type: ignore[arg-type]
        None if any(s is None for s in scores) else np.concatenate(scores),  # type: ignore[arg-type]
    )
