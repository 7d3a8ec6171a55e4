"""One way every call is answered, whatever its protocol: the champion's forward, then, once the call
has its answer, the live metrics and the shadow."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from service.live import CHAMPION, LiveMetrics
from service.predictor import Predictions, RunForward, ServedModel, predict_digits
from service.shadow import Shadow


@dataclass(frozen=True)
class ShadowStatus:
    """The shadow beside one champion version, as GetModelInfo and model metadata show it."""

    alias: str
    version: str  # empty while the shadow alias has no version served
    compared: int  # images both versions answered
    agreement: float  # the share of them answered alike (the same digit, or both neither)
    dropped: int  # images the shadow did not answer (queue full, or its forward failed)


class Answerer:
    def __init__(self, forward: RunForward, live: LiveMetrics, shadow: Shadow | None = None) -> None:
        self._forward = forward
        self._live = live
        self._shadow = shadow

    async def __call__(self, model: ServedModel, images: np.ndarray) -> Predictions:
        """`model`'s answer to images (N, 784); what watches it runs on the loop's next turn, once
        the call has returned its answer to be sent."""
        predictions = await predict_digits(self._forward, model, images)
        asyncio.get_running_loop().call_soon(self._watch, images, predictions)
        return predictions

    def shadow_status(self, champion: ServedModel) -> ShadowStatus | None:
        """None with no shadow alias set."""
        if self._shadow is None:
            return None
        model = self._shadow.models.current()
        version = model.version if model else ""
        agreement = self._live.agreement(champion.version, version)
        return ShadowStatus(
            self._shadow.alias, version, agreement.compared, agreement.share, self._live.dropped_images()
        )

    def _watch(self, images: np.ndarray, predictions: Predictions) -> None:
        self._live.answered(CHAMPION, predictions)
        if self._shadow is not None:
            self._shadow.offer(images, predictions)
