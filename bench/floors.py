"""The floors under the service: bare grpcio servers on the ModelInfer path, each to run as its own process.

Run: `python -m bench.floors KIND --port N [--aio]` (until SIGTERM or SIGINT).

- `echo` answers with the request's own bytes, neither parsed nor serialized: gRPC's own cost.
- `fixed` parses each ModelInferRequest and answers with a prebuilt ModelInferResponse shaped like the
  service's (outputs `digit` and `p_three` of N rows in raw_output_contents): the protocol's own cost.

By default a floor runs on grpcio's thread-pool server with the pool size `python -m service` had
before it moved to asyncio: the floor as the serving benchmark defines it. With --aio it runs on
grpc.aio, the server the service runs on. Both take messages up to the service's default limit.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb

KINDS = ("echo", "fixed")
SERVICE = "inference.GRPCInferenceService"
MODEL_INFER = f"/{SERVICE}/ModelInfer"
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # the service's default limit, and more than 1024 float32 images need
THREAD_POOL_WORKERS = 16  # the service's pool before it moved to asyncio
LIMITS = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]


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


def _answer(kind: str) -> Callable[[Any], Any]:
    """What the floor does with a request: echo its bytes, or answer the parsed request with a fixed response."""
    return (lambda request: request) if kind == "echo" else FixedAnswers()


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
    answer = _answer(kind)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=THREAD_POOL_WORKERS), options=LIMITS)
    server.add_generic_rpc_handlers([_handler(kind, lambda request, context: answer(request))])
    return server, server.add_insecure_port(f"127.0.0.1:{port}")


async def serve_aio(kind: str, port: int, stop: asyncio.Event) -> None:
    """A grpc.aio server of `kind` on 127.0.0.1:port until `stop` is set."""
    answer = _answer(kind)

    async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return answer(request)

    server = grpc.aio.server(options=LIMITS)
    server.add_generic_rpc_handlers([_handler(kind, behavior)])
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"{kind} floor on grpc.aio on 127.0.0.1:{bound}", flush=True)
    await stop.wait()
    await server.stop(grace=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=KINDS, help="which floor to serve")
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
