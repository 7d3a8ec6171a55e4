"""Wires the servicers, health, reflection and metrics into one gRPC server, and runs it until SIGTERM."""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from prometheus_client import start_http_server

from service.calls import CallGuard, CallPool
from service.classifier_servicer import ClassifierServicer
from service.config import ServiceConfig
from service.follower import RegistryFollower
from service.generated.inference import grpc_predict_v2_pb2 as v2_pb
from service.generated.inference import grpc_predict_v2_pb2_grpc as v2_grpc
from service.generated.mnist37.v1 import classifier_pb2 as api_pb
from service.generated.mnist37.v1 import classifier_pb2_grpc as api_grpc
from service.inference_servicer import InferenceServicer
from service.metrics import ServiceMetrics
from service.predictor import ServedModel

logger = logging.getLogger(__name__)

SERVICE_NAMES = (
    api_pb.DESCRIPTOR.services_by_name["Classifier"].full_name,
    v2_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
)
# v1 reflection carries the same messages as v1alpha under another service name; tools now ask for v1.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


@dataclass
class Service:
    server: grpc.Server
    port: int
    follower: RegistryFollower
    health: health.HealthServicer
    metrics: ServiceMetrics

    def start(self) -> None:
        self.server.start()
        self.follower.start()

    def shutdown(self, grace: float, drain: float = 0.0) -> None:
        """NOT_SERVING first; after `drain` seconds refuse new calls; in-flight ones finish within `grace`."""
        self.health.enter_graceful_shutdown()
        drain = min(drain, grace)
        time.sleep(drain)  # still answering, so health checks can observe NOT_SERVING
        self.server.stop(grace - drain).wait()
        self.follower.stop()


def _credentials(config: ServiceConfig) -> grpc.ServerCredentials | None:
    if not config.tls_cert:
        return None
    pair = (Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes())
    client_ca = Path(config.tls_client_ca).read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


def _add_reflection(server: grpc.Server) -> None:
    # v1 is listed under its v1alpha name only: its descriptor is not in this process's pool.
    names = (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
    servicer = reflection.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    info = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": info}),)
    )


def create_service(config: ServiceConfig) -> Service:
    """Build the server bound to config.host:config.port (0 picks a free port); start() runs it."""
    metrics = ServiceMetrics(config.model_name, config.alias)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    def on_model_changed(model: ServedModel) -> None:
        for name in ("", *SERVICE_NAMES):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        metrics.model_changed(model)

    follower = RegistryFollower(config, on_change=on_model_changed, on_refusal=metrics.refusal_changed)
    token = Path(config.token_file).read_text().strip() if config.token_file else ""
    pool = CallPool(max_workers=config.workers, thread_name_prefix="grpc")
    server = grpc.server(
        pool,
        interceptors=[CallGuard(metrics, pool, config.max_in_flight, config.max_streams, token)],
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),  # a second server on a taken port must fail, not share it
        ],
    )
    api_grpc.add_ClassifierServicer_to_server(ClassifierServicer(follower, config.max_batch), server)
    v2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(follower, config.model_name, config.max_batch), server
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    _add_reflection(server)
    address = f"{config.host}:{config.port}"
    credentials = _credentials(config)
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as err:
        raise OSError(f"cannot bind gRPC to {address}: {err} (is another server using the port?)") from None
    if port == 0:
        raise OSError(f"cannot bind gRPC to {address} (is another server using the port?)")
    return Service(server, port, follower, health_servicer, metrics)


def serve(config: ServiceConfig) -> int:
    """Run until SIGTERM or SIGINT, then drain and return 0."""
    service = create_service(config)
    if config.metrics_port:
        try:
            start_http_server(config.metrics_port, addr=config.metrics_host, registry=service.metrics.registry)
        except OSError as err:
            raise OSError(f"cannot bind metrics to {config.metrics_host}:{config.metrics_port}: {err}") from None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s; draining for up to %.0fs", signal.Signals(signum).name, config.grace_seconds)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    service.start()
    logger.info(
        "serving %s@%s from %s on %s:%d%s (metrics on %s)",
        config.model_name,
        config.alias,
        config.tracking_uri,
        config.host,
        service.port,
        " with TLS" if config.tls_cert else "",
        f"{config.metrics_host}:{config.metrics_port}" if config.metrics_port else "off",
    )
    # Wake every 0.2 s rather than block in one wait: Python runs signal handlers only on the main
    # thread, between bytecodes, and a wait with no timeout may not return when the kernel hands
    # the signal to one of gRPC's threads.
    while not stop.wait(0.2):
        pass
    service.shutdown(config.grace_seconds, config.drain_seconds)
    logger.info("stopped")
    # Nothing is left to clean up; collecting torch's and MLflow's objects at exit would only delay
    # the exit that orchestrators wait for.
    gc.freeze()
    return 0
