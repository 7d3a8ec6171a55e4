"""Wires the servicers, health, reflection and metrics into one gRPC server, and runs it until SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from service.classifier_servicer import ClassifierServicer
from service.config import ServiceConfig
from service.follower import RegistryFollower
from service.generated.inference import grpc_predict_v2_pb2 as v2_pb
from service.generated.inference import grpc_predict_v2_pb2_grpc as v2_grpc
from service.generated.mnist37.v1 import classifier_pb2 as api_pb
from service.generated.mnist37.v1 import classifier_pb2_grpc as api_grpc
from service.inference_servicer import InferenceServicer
from service.metrics import MetricsInterceptor, ServiceMetrics
from service.predictor import ServedModel

logger = logging.getLogger(__name__)

SERVICE_NAMES = (
    api_pb.DESCRIPTOR.services_by_name["Classifier"].full_name,
    v2_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
)


@dataclass
class Service:
    server: grpc.Server
    port: int
    follower: RegistryFollower
    health: health.HealthServicer
    metrics: ServiceMetrics

    def mark_serving(self, model: ServedModel) -> None:
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.metrics.model_changed(model)

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


def create_service(config: ServiceConfig, follower: RegistryFollower | None = None) -> Service:
    """Build the server bound to config.host:config.port (0 picks a free port); start() runs it."""
    metrics = ServiceMetrics()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="grpc"),
        interceptors=[MetricsInterceptor(metrics)],
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
        ],
    )
    holder: list[Service] = []
    follower = follower or RegistryFollower(config, on_change=lambda m: holder[0].mark_serving(m))

    def current_model(context: grpc.ServicerContext) -> ServedModel:
        model = follower.current()
        if model is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, follower.problem())
        return model

    api_grpc.add_ClassifierServicer_to_server(ClassifierServicer(current_model, config.max_batch), server)
    v2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(current_model, follower.current, config.model_name, config.max_batch), server
    )
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(f"{config.host}:{config.port}")
    if port == 0:
        raise OSError(f"cannot bind gRPC port {config.host}:{config.port}")
    service = Service(server, port, follower, health_servicer, metrics)
    holder.append(service)
    return service


def serve(config: ServiceConfig) -> int:
    """Run until SIGTERM or SIGINT, then drain and return 0."""
    service = create_service(config)
    if config.metrics_port:
        start_http_server(config.metrics_port, registry=service.metrics.registry)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("received %s; draining for up to %.0fs", signal.Signals(signum).name, config.grace_seconds)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    service.start()
    logger.info(
        "serving %s@%s from %s on port %d (metrics on %s)",
        config.model_name,
        config.alias,
        config.tracking_uri,
        service.port,
        config.metrics_port or "off",
    )
    # Wake every 0.2 s rather than block in one wait: Python runs signal handlers only on the main
    # thread, between bytecodes, and a wait with no timeout may not return to the interpreter when
    # the kernel hands the signal to one of gRPC's threads (a CI run saw SERVING 3 s after SIGTERM).
    while not stop.wait(0.2):
        pass
    service.shutdown(config.grace_seconds, config.drain_seconds)
    logger.info("stopped")
    return 0
