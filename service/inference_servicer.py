"""inference.GRPCInferenceService: the Open Inference Protocol (v2) over the served model."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version as package_version

import grpc

from service.answering import Answerer
from service.errors import NotFoundError
from service.generated.inference import grpc_predict_v2_pb2 as pb
from service.generated.inference import grpc_predict_v2_pb2_grpc as pb_grpc
from service.pixels import PIXELS, decoded
from service.predictor import ModelSource, ServedModel, require_model
from service.v2_tensors import INPUT, output_arrays, outputs_of, request_images, requested_outputs

PLATFORM = "pytorch_torch_export"


def _check_name(requested: str, served: str) -> None:
    if requested != served:
        raise NotFoundError(f"unknown model {requested!r}; this server serves {served!r}")


def _check_version(requested: str, model: ServedModel) -> None:
    """An empty version means whichever is served; any other must be the one this call reads."""
    if requested and requested != model.version:
        raise NotFoundError(f"version {requested!r} of {model.name!r} is not served; version {model.version!r} is")


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Errors are raised as the service's own exceptions; the call guard turns them into status codes."""

    def __init__(
        self,
        models: ModelSource,
        answers: Answerer,
        model_name: str,
        max_batch: int,
        ready: Callable[[], bool],
        replica: str = "",
    ) -> None:
        self._models = models
        self._ready = ready  # a model is served and the server is not draining
        self._answers = answers
        self._name = model_name
        self._max_batch = max_batch
        self._replica = replica

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._ready())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ModelReadyResponse:
        model = self._models.current()
        _check_name(request.name, self._name)
        if model is not None:
            _check_version(request.version, model)
        return pb.ModelReadyResponse(ready=model is not None)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="mnist37", version=package_version("mnist37"), extensions=[])

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ModelMetadataResponse:
        _check_name(request.name, self._name)
        model = require_model(self._models)
        _check_version(request.version, model)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=self._name,
            versions=[model.version],
            platform=PLATFORM,
            # Each input once, with one datatype, so a client can build its request from this alone.
            inputs=[tensor(name=INPUT, datatype="FP32", shape=[-1, PIXELS])],
            outputs=[tensor(name=n, datatype=t, shape=[-1]) for n, t in outputs_of(model).items()],
        )

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ModelInferResponse:
        _check_name(request.model_name, self._name)
        # A wrong version is named as such, whatever the inputs; the version checked is the version that
        # answers, even if the alias moves while they are decoded.
        model = require_model(self._models)
        _check_version(request.model_version, model)
        shape = list(request.inputs[0].shape) if len(request.inputs) == 1 else []
        declared = shape[0] if len(shape) == 2 else 0  # checked by request_images
        images = await decoded(declared, lambda: request_images(request, self._max_batch))
        outputs = requested_outputs([o.name for o in request.outputs], model)
        predictions = await self._answers(model, images)
        arrays = output_arrays(predictions)
        datatypes = outputs_of(model)
        response = pb.ModelInferResponse(model_name=self._name, model_version=predictions.version, id=request.id)
        if self._replica:  # which server computed it, for clients behind a balancer (tritonclient reads it)
            response.parameters["replica"].string_param = self._replica
        for name in outputs:
            response.outputs.add(name=name, datatype=datatypes[name], shape=[len(predictions.digits)])
            response.raw_output_contents.append(arrays[name].tobytes())
        return response
