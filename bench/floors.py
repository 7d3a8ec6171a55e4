"""The floor under the service, and the rungs between it and the service: grpcio servers on the
ModelInfer path, each to run as its own process.

Run: `.venv/bin/python bench/floors.py KIND --port N` (until SIGTERM or SIGINT).

- `echo` answers with the request's own bytes, neither parsed nor serialized: gRPC's own cost.
- `fixed` parses each ModelInferRequest and answers with a prebuilt ModelInferResponse shaped like the
  service's (outputs `digit` and `p_three` of N rows in raw_output_contents): the protocol's own cost.
- `decode` also decodes the images as the service does (`request_images`), then answers as `fixed`.
- `model` also runs them through the version @champion points at in $MLFLOW_TRACKING_URI, loaded
  and called as the service does (`predict_digits`), then answers as `fixed`.
- `servicer` is the service's own `ModelInfer` on that version, its response built from the answer:
  the service without its call guard, metrics, health or registry polling.

All get the thread pool and message limits of `python -m service`'s defaults, so that each differs
from the next by the work one stage of the service does, not by how it is set up.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The service's proto package; tritonclient defines the same one, so the two never meet in one process.
from service.config import ServiceConfig  # noqa: E402
from service.follower import RegistryFollower  # noqa: E402
from service.generated.inference import grpc_predict_v2_pb2 as pb  # noqa: E402
from service.generated.inference import grpc_predict_v2_pb2_grpc as pb_grpc  # noqa: E402
from service.inference_servicer import InferenceServicer, request_images  # noqa: E402
from service.predictor import predict_digits  # noqa: E402
from service.status import require_model  # noqa: E402

KINDS = ("echo", "fixed", "decode", "model", "servicer")

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


class FixedInferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Parses the request and answers with one prebuilt response per batch size."""

    def __init__(self) -> None:
        self._responses: dict[int, bytes] = {}

    def _response(self, rows: int) -> pb.ModelInferResponse:
        response = pb.ModelInferResponse(model_name="floor", model_version="1")
        response.outputs.add(name="digit", datatype="INT32", shape=[rows])
        response.outputs.add(name="p_three", datatype="FP32", shape=[rows])
        response.raw_output_contents.append(np.full(rows, 3, np.int32).tobytes())
        response.raw_output_contents.append(np.ones(rows, np.float32).tobytes())
        return response

    def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.ServicerContext) -> pb.ModelInferResponse:
        rows = int(request.inputs[0].shape[0]) if request.inputs else 0
        if rows not in self._responses:  # built once per size, then only copied out
            self._responses[rows] = self._response(rows).SerializeToString()
        return pb.ModelInferResponse.FromString(self._responses[rows])


class StagedServicer(FixedInferenceServicer):
    """Decodes the images as the service does and, given the models, predicts them as it does; then
    answers the fixed response."""

    def __init__(self, models: RegistryFollower | None, max_batch: int) -> None:
        super().__init__()
        self._models = models
        self._max_batch = max_batch

    def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.ServicerContext) -> pb.ModelInferResponse:
        images = request_images(request, self._max_batch)
        if self._models is not None:
            predict_digits(require_model(self._models, context), images)
        return super().ModelInfer(request, context)


def _served() -> RegistryFollower:
    """The version @champion points at in $MLFLOW_TRACKING_URI, loaded once as the service loads it."""
    config = ServiceConfig(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    follower = RegistryFollower(config)
    follower.sync_once()
    if follower.current() is None:
        sys.exit(f"no version to serve from {config.tracking_uri}: {follower.problem()}")
    return follower


def create_floor(kind: str, port: int) -> tuple[grpc.Server, int]:
    """A server of `kind` (one of KINDS) bound to 127.0.0.1:port; returns (server, port)."""
    defaults = ServiceConfig()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=defaults.workers),
        options=[
            ("grpc.max_receive_message_length", defaults.max_message_bytes),
            ("grpc.max_send_message_length", defaults.max_message_bytes),
        ],
    )
    if kind == "echo":
        handler = grpc.unary_unary_rpc_method_handler(_echo)  # no (de)serializers: raw bytes both ways
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {"ModelInfer": handler})]
        )
    elif kind == "fixed":
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(FixedInferenceServicer(), server)
    elif kind == "servicer":
        servicer = InferenceServicer(_served(), defaults.model_name, defaults.max_batch)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    else:
        models = _served() if kind == "model" else None
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(StagedServicer(models, defaults.max_batch), server)
    return server, server.add_insecure_port(f"127.0.0.1:{port}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=KINDS, help="which floor or rung to serve")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: 0, a free one)")
    args = p.parse_args()
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
