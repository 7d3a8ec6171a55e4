"""The floor under the service, and the rungs between it and the service: grpcio servers on the
ModelInfer path, each to run as its own process.

Run: `.venv/bin/python bench/floors.py KIND --port N [--aio]` (until SIGTERM or SIGINT).

- `echo` answers with the request's own bytes, neither parsed nor serialized: gRPC's own cost.
- `fixed` parses each ModelInferRequest and answers with a prebuilt ModelInferResponse shaped like the
  service's (outputs `digit` and `p_three` of N rows in raw_output_contents): the protocol's own cost.
- `decode` also decodes the images as the service does (`request_images`), then answers as `fixed`.
- `model` also runs them through the version @champion points at in $MLFLOW_TRACKING_URI, loaded
  and called as the service does (`predict_digits` through its coalescing `Forwards`), then answers
  as `fixed`.
- `servicer` is the service's own `ModelInfer` on that version, its response built from the answer:
  the service without its call guard, metrics, health or registry polling.

By default a kind runs on grpcio's thread-pool server with the pool size `python -m service` had
before it moved to asyncio: the floor as the serving benchmark defines it. With --aio it runs on
grpc.aio, the server the service runs on, so that each rung differs from the next by the work one
stage of the service does. `model` and `servicer` need --aio: the service's code they run is async.
Both get the service's default message limits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The service's proto package; tritonclient defines the same one, so the two never meet in one process.
from service.batching import Forwards  # noqa: E402
from service.config import ServiceConfig  # noqa: E402
from service.follower import RegistryFollower  # noqa: E402
from service.generated.inference import grpc_predict_v2_pb2 as pb  # noqa: E402
from service.inference_servicer import InferenceServicer, request_images  # noqa: E402
from service.predictor import predict_digits  # noqa: E402
from service.status import require_model  # noqa: E402

KINDS = ("echo", "fixed", "decode", "model", "servicer")
ASYNC_ONLY = ("model", "servicer")
THREAD_POOL_WORKERS = 16  # the service's pool before it moved to asyncio

SERVICE = "inference.GRPCInferenceService"
MODEL_INFER = f"/{SERVICE}/ModelInfer"
LIMITS = [
    ("grpc.max_receive_message_length", ServiceConfig.max_message_bytes),
    ("grpc.max_send_message_length", ServiceConfig.max_message_bytes),
]


class FixedAnswers:
    """One prebuilt response per batch size, copied out for each request."""

    def __init__(self) -> None:
        self._responses: dict[int, bytes] = {}

    def _response(self, rows: int) -> pb.ModelInferResponse:
        response = pb.ModelInferResponse(model_name="floor", model_version="1")
        response.outputs.add(name="digit", datatype="INT32", shape=[rows])
        response.outputs.add(name="p_three", datatype="FP32", shape=[rows])
        response.raw_output_contents.append(np.full(rows, 3, np.int32).tobytes())
        response.raw_output_contents.append(np.ones(rows, np.float32).tobytes())
        return response

    def __call__(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        rows = int(request.inputs[0].shape[0]) if request.inputs else 0
        if rows not in self._responses:  # built once per size, then only copied out
            self._responses[rows] = self._response(rows).SerializeToString()
        return pb.ModelInferResponse.FromString(self._responses[rows])


def _served() -> RegistryFollower:
    """The version @champion points at in $MLFLOW_TRACKING_URI, loaded once as the service loads it."""
    config = ServiceConfig(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    follower = RegistryFollower(config)
    follower.sync_once()
    if follower.current() is None:
        sys.exit(f"no version to serve from {config.tracking_uri}: {follower.problem()}")
    return follower


def _answer(kind: str) -> Callable[[Any], Any]:
    """What a synchronous rung does with a request (echo, fixed or decode)."""
    fixed, max_batch = FixedAnswers(), ServiceConfig.max_batch
    if kind == "echo":
        return lambda request: request
    if kind == "fixed":
        return fixed

    def decode(request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        request_images(request, max_batch)
        return fixed(request)

    return decode


def _answer_async(kind: str) -> Callable[[Any], Awaitable[Any]]:
    """What a rung on grpc.aio does with a request."""
    if kind not in ASYNC_ONLY:
        answer = _answer(kind)

        async def simple(request: Any) -> Any:
            return answer(request)

        return simple
    models, forwards, max_batch = _served(), Forwards(ServiceConfig.max_batch), ServiceConfig.max_batch
    if kind == "servicer":
        servicer = InferenceServicer(models, forwards, ServiceConfig.model_name, max_batch)
        return lambda request: servicer.ModelInfer(request, None)  # type: ignore[arg-type]  # it never reads the context
    fixed = FixedAnswers()

    async def model(request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        images = request_images(request, max_batch)
        await predict_digits(forwards, require_model(models), images)
        return fixed(request)

    return model


def _handler(kind: str, behavior: Callable[..., Any]) -> grpc.GenericRpcHandler[Any, Any]:
    if kind == "echo":  # no (de)serializers: raw bytes both ways
        method = grpc.unary_unary_rpc_method_handler(behavior)
    else:
        method = grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=pb.ModelInferRequest.FromString,
            response_serializer=pb.ModelInferResponse.SerializeToString,
        )
    return grpc.method_handlers_generic_handler(SERVICE, {"ModelInfer": method})


def create_floor(kind: str, port: int) -> tuple[grpc.Server, int]:
    """A thread-pool server of `kind` bound to 127.0.0.1:port; returns (server, port)."""
    if kind in ASYNC_ONLY:
        raise ValueError(f"{kind} runs the service's async code: serve it with --aio")
    answer = _answer(kind)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=THREAD_POOL_WORKERS), options=LIMITS)
    server.add_generic_rpc_handlers([_handler(kind, lambda request, context: answer(request))])
    return server, server.add_insecure_port(f"127.0.0.1:{port}")


async def serve_aio(kind: str, port: int, stop: asyncio.Event) -> None:
    answer = _answer_async(kind)

    async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return await answer(request)

    server = grpc.aio.server(options=LIMITS)
    server.add_generic_rpc_handlers([_handler(kind, behavior)])
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"{kind} floor on grpc.aio on 127.0.0.1:{bound}", flush=True)
    await stop.wait()
    await server.stop(grace=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=KINDS, help="which floor or rung to serve")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: 0, a free one)")
    p.add_argument("--aio", action="store_true", help="serve on grpc.aio, as the service does (default: thread pool)")
    args = p.parse_args()
    if args.aio:

        async def run() -> None:
            stop = asyncio.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
            await serve_aio(args.kind, args.port, stop)

        asyncio.run(run())
        return
    if args.kind in ASYNC_ONLY:
        p.error(f"{args.kind} runs the service's async code: add --aio")
    server, port = create_floor(args.kind, args.port)
    server.start()
    print(f"{args.kind} floor on 127.0.0.1:{port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
