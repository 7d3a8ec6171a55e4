"""mnist37.v1.Classifier: translates our own API to arrays and back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import numpy as np

from service.answering import Answerer
from service.errors import InvalidInputError
from service.generated.mnist37.v1 import classifier_pb2 as pb
from service.generated.mnist37.v1 import classifier_pb2_grpc as pb_grpc
from service.pixels import check_batch_size, decoded, from_floats, from_uint8, packed_floats
from service.predictor import ModelSource, Predictions, require_model


def image_array(image: pb.Image, what: str) -> np.ndarray:
    """One pb.Image → (1, 784) float32 in [0, 1]."""
    has_floats, has_bytes = len(image.floats) > 0, len(image.uint8) > 0
    if has_floats == has_bytes:
        got = "both" if has_floats else "neither"
        raise InvalidInputError(f"{what}: set exactly one of floats (784 float32) or uint8 (784 bytes), got {got}")
    if has_floats:
        # Read in one copy, so nothing is saved by checking the count first: from_floats checks it.
        return from_floats(packed_floats(image, "floats"), count=1, what=what)
    return from_uint8(image.uint8, count=1, what=what)


def _messages(predictions: Predictions) -> list[pb.Prediction]:
    messages = [
        pb.Prediction(digit=int(d), p_three=float(p), model_version=predictions.version)
        for d, p in zip(predictions.digits, predictions.p_three, strict=True)
    ]
    if predictions.known is not None and predictions.ood_score is not None:
        for message, known, score in zip(messages, predictions.known, predictions.ood_score, strict=True):
            message.known, message.ood_score = bool(known), float(score)
    return messages


class ClassifierServicer(pb_grpc.ClassifierServicer):
    """Errors are raised as the service's own exceptions; the call guard turns them into status codes."""

    def __init__(self, models: ModelSource, answers: Answerer, max_batch: int, replica: str = "") -> None:
        self._models = models
        self._answers = answers
        self._max_batch = max_batch
        self._replica = replica

    async def Classify(
        self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ClassifyResponse:
        images = image_array(request.image, "image")
        predictions = await self._answers(require_model(self._models), images)
        return pb.ClassifyResponse(prediction=_messages(predictions)[0], request_id=request.request_id)

    async def ClassifyBatch(
        self, request: pb.ClassifyBatchRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ClassifyBatchResponse:
        if not request.images:
            raise InvalidInputError("images: empty batch; expected 1 or more images")
        check_batch_size(len(request.images), self._max_batch)
        images = await decoded(
            len(request.images),
            lambda: np.concatenate([image_array(im, f"images[{i}]") for i, im in enumerate(request.images)]),
        )
        model = require_model(self._models)  # one version for all
        predictions = await self._answers(model, images)
        return pb.ClassifyBatchResponse(predictions=_messages(predictions), model_version=predictions.version)

    async def ClassifyStream(
        self,
        request_iterator: AsyncIterator[pb.ClassifyRequest],
        context: grpc.aio.ServicerContext[object, object],
    ) -> AsyncIterator[pb.ClassifyResponse]:
        i = 0
        async for request in request_iterator:
            images = image_array(request.image, f"message {i}: image")
            # Each message is answered by the version served when it arrives.
            predictions = await self._answers(require_model(self._models), images)
            yield pb.ClassifyResponse(prediction=_messages(predictions)[0], request_id=request.request_id)
            i += 1

    async def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ModelInfo:
        model = require_model(self._models)  # UNAVAILABLE names a refused version while none is served
        info = pb.ModelInfo(
            name=model.name,
            alias=model.alias,
            version=model.version,
            run_id=model.run_id,
            test_accuracy=model.test_accuracy,
            recipe=model.recipe,
            replica=self._replica,
        )
        info.loaded_at.FromDatetime(model.loaded_at)
        if model.ood_threshold is not None:
            info.can_abstain, info.ood_threshold = True, model.ood_threshold
        if model.expected_neither_share is not None:
            info.expected_neither_share = model.expected_neither_share
        refusal = self._models.refusal()
        if refusal is not None:
            info.refused_version, info.refused_reason = refusal.version, refusal.reason
        shadow = self._answers.shadow_status(model)
        if shadow is not None:
            info.shadow.CopyFrom(
                pb.Shadow(
                    alias=shadow.alias,
                    version=shadow.version,
                    compared=shadow.compared,
                    agreement=shadow.agreement,
                    dropped=shadow.dropped,
                )
            )
        return info
