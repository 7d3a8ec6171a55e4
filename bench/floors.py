"""The floor under the service: bare grpcio servers on the ModelInfer path, to run as their own process.

Run: `.venv/bin/python bench/floors.py echo|fixed --port N` (until SIGTERM or SIGINT).

- `echo` answers with the request's own bytes, neither parsed nor serialized: gRPC's own cost.
- `fixed` parses each ModelInferRequest and answers with a prebuilt ModelInferResponse shaped like the
  service's (outputs `digit` and `p_three` of N rows in raw_output_contents): the protocol's own cost.

Both get the thread pool and message limits of `python -m service`'s defaults, so that they differ
from it by the work the service does, not by how they are set up.
"""

from __future__ import annotations

import argparse
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
from service.generated.inference import grpc_predict_v2_pb2 as pb  # noqa: E402
from service.generated.inference import grpc_predict_v2_pb2_grpc as pb_grpc  # noqa: E402

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


def create_floor(kind: str, port: int) -> tuple[grpc.Server, int]:
    """A floor server of `kind` ("echo" or "fixed") bound to 127.0.0.1:port; returns (server, port)."""
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
    else:
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(FixedInferenceServicer(), server)
    return server, server.add_insecure_port(f"127.0.0.1:{port}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["echo", "fixed"], help="which floor to serve")
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
