"""Wires the servicers, health, reflection and metrics into one asyncio gRPC server, and runs it until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

# The stubs know only the thread-pool versions; these are the asyncio ones shipped beside them.
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.reflection import aio as reflection_aio  # type: ignore[attr-defined]
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from service.answering import Answerer
from service.calls import CallGuard
from service.classifier_servicer import ClassifierServicer
from service.config import ServiceConfig
from service.errors import without_passwords
from service.follower import RegistryFollower
from service.forwards import ForwardBatcher
from service.generated.inference import grpc_predict_v2_pb2 as v2_pb
from service.generated.inference import grpc_predict_v2_pb2_grpc as v2_grpc
from service.generated.mnist37.v1 import classifier_pb2 as api_pb
from service.generated.mnist37.v1 import classifier_pb2_grpc as api_grpc
from service.http_connections import ConnectionWatch
from service.http_protocol import JsonErrorHandler
from service.inference_servicer import InferenceServicer
from service.live import CHAMPION, SHADOW, LiveMetrics
from service.metrics import ServiceMetrics
from service.predictor import ServedModel
from service.rest import build_app
from service.shadow import Shadow

logger = logging.getLogger(__name__)

SERVICE_NAMES = (
    api_pb.DESCRIPTOR.services_by_name["Classifier"].full_name,
    v2_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
)
# v1 reflection carries the same messages as v1alpha under another service name; tools now ask for v1.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


class Service:
    """The gRPC server, its health, the registry follower and the forward batcher. Made, started and
    stopped on the event loop that runs it; only the follower's thread and the forward thread work
    off that loop."""

    def __init__(self, config: ServiceConfig) -> None:
        self._loop = asyncio.get_running_loop()  # grpc.aio's server and health bind to it
        self.replica = config.replica_name or socket.gethostname()
        self.metrics = ServiceMetrics(config.model_name, config.alias, self.replica)
        self.forwards = ForwardBatcher(config.max_batch)
        self.follower = RegistryFollower(config, on_change=self._model_changed, on_refusal=self.metrics.refusal_changed)
        self.live = LiveMetrics(self.metrics.registry, self.replica)
        self.shadow_follower, self.shadow = self._shadow(config)
        self.answers = Answerer(self.forwards, self.live, self.shadow)
        self.guard = CallGuard(
            self.metrics,
            config.max_in_flight,
            config.max_streams,
            Path(config.token_file).read_text().strip() if config.token_file else "",
            self.replica,
            config.stream_idle_seconds,
        )
        self.metrics.count_in_flight(lambda: self.guard.in_flight)
        self.health = health_aio.HealthServicer()
        self._draining = False  # from the start of stop(): balancers take this replica out
        self.server = grpc.aio.server(
            interceptors=[self.guard],
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                ("grpc.so_reuseport", 0),  # a second server on a taken port must fail, not share it
                *_connection_age(config),
            ],
        )
        api_grpc.add_ClassifierServicer_to_server(
            ClassifierServicer(self.follower, self.answers, config.max_batch, self.replica), self.server
        )
        v2_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(
                self.follower, self.answers, config.model_name, config.max_batch, self.ready, self.replica
            ),
            self.server,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        _add_reflection(self.server)
        self.port = _bind(self.server, config)
        # The HTTP side shares the loop, the follower, the forwards and the guard's slots and token.
        self._http: web.AppRunner | None = None
        self._http_listener: asyncio.Server | None = None
        self._connections = ConnectionWatch(
            config.http_idle_seconds,
            config.http_read_seconds,
            lambda reason: self.metrics.http_timeouts.labels(reason).inc(),
        )
        self._http_socket = _bind_http(config) if config.http_port else None
        self.http_port = self._http_socket.getsockname()[1] if self._http_socket else 0
        self._config = config

    def _shadow(self, config: ServiceConfig) -> tuple[RegistryFollower | None, Shadow | None]:
        """The shadow alias's own follower, under the same loading rules, and the shadow it feeds;
        neither with no shadow alias set. The shadow never touches health: it answers no one."""
        if not config.shadow_alias:
            return None, None
        alias = config.shadow_alias
        self.metrics.following(alias)

        def changed(model: ServedModel) -> None:
            self.metrics.model_changed(model)
            self.live.serving(SHADOW, model)

        follower = RegistryFollower(
            config,
            on_change=changed,
            on_refusal=lambda refusal: self.metrics.refusal_changed(refusal, alias),
            alias=alias,
            repeat_warnings=False,
        )
        shadow = Shadow(alias, follower, self.forwards, self.live, config.shadow_share, config.shadow_queue_images)
        return follower, shadow

    def _model_changed(self, model: ServedModel) -> None:
        """The follower's thread hands a new model's SERVING to the loop, where health's watchers live.
        Not waited for, so that a follower never hangs on a loop that is shutting down."""
        self.metrics.model_changed(model)
        self.live.serving(CHAMPION, model)
        if not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._set_health(health_pb2.HealthCheckResponse.SERVING), self._loop)

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)

    async def start(self, follow: bool = True) -> None:
        """NOT_SERVING until a model loads; start answering calls and, unless told not to, following the alias."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        if self._http_socket is not None:
            app = build_app(
                self._config,
                self.follower,
                self.answers,
                self.guard,
                self.metrics,
                self.ready,
                self.replica,
                self._connections,
            )
            connection_options: dict[str, Any] = {
                "access_log": None,  # requests are counted in the metrics, not logged one by one
                "keepalive_timeout": self._config.http_idle_seconds,  # also closes a connection slow to send headers
                # What is left of a refused body is read for as long as a body may take, so that its client
                # reads the answer rather than a reset; then the connection is closed.
                "lingering_time": self._config.http_read_seconds,
            }
            self._http = web.AppRunner(app, shutdown_timeout=self._config.grace_seconds, **connection_options)
            await self._http.setup()
            server = self._http.server
            assert server is not None  # made by setup
            # Not a SockSite: each connection's protocol is made here, as the server itself would make it but
            # answering unparseable HTTP in JSON, and goes under the watch, which counts those closed as idle.
            self._http_listener = await self._loop.create_server(
                self._connections.protocols(
                    lambda: JsonErrorHandler(
                        server, loop=self._loop, counted=self.metrics.unparsed_http, **connection_options
                    )
                ),
                sock=self._http_socket,
                ssl=_ssl_context(self._config),
                # A TLS handshake is sending nothing yet: it gets the idle limit, not asyncio's own minute.
                ssl_handshake_timeout=self._config.http_idle_seconds if self._config.tls_cert else None,
            )
        if follow:
            self.follower.start()
            if self.shadow_follower is not None:
                self.shadow_follower.start()

    def ready(self) -> bool:
        """Whether a balancer should send calls here, as v2's server-ready answers over gRPC and HTTP:
        a model is served and no drain has begun. gRPC health says the same as SERVING."""
        return not self._draining and self.follower.current() is not None

    async def stop(self, grace: float, drain: float = 0.0) -> None:
        """Not ready first; after `drain` seconds refuse new calls; in-flight ones finish within `grace`."""
        self._draining = True
        await self.health.enter_graceful_shutdown()
        drain = min(drain, grace)
        await asyncio.sleep(drain)  # still answering, so health checks can observe NOT_SERVING
        await asyncio.gather(self.server.stop(grace - drain), self._stop_http())
        await asyncio.to_thread(self.follower.stop)  # it may be mid-poll
        if self.shadow_follower is not None:
            await asyncio.to_thread(self.shadow_follower.stop)
        if self.shadow is not None:
            self.shadow.close()
        self.forwards.close()

    async def _stop_http(self) -> None:
        if self._http_listener is not None:
            self._http_listener.close()  # no new connections
        if self._http is not None:
            await self._http.cleanup()  # lets in-flight requests finish, then closes every connection
        elif self._http_socket is not None:
            self._http_socket.close()


def _connection_age(config: ServiceConfig) -> list[tuple[str, int]]:
    if not config.max_connection_age_seconds:
        return []
    return [
        ("grpc.max_connection_age_ms", round(config.max_connection_age_seconds * 1000)),
        ("grpc.max_connection_age_grace_ms", round(config.max_connection_age_grace_seconds * 1000)),
    ]


def _bind(server: grpc.aio.Server, config: ServiceConfig) -> int:
    """Bind config.host:config.port (0 picks a free port), with TLS when configured; the port bound."""
    address = f"{config.host}:{config.port}"
    credentials = _credentials(config)
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as err:
        raise OSError(f"cannot bind gRPC to {address}: {err} (is another server using the port?)") from None
    if port == 0:
        raise OSError(f"cannot bind gRPC to {address} (is another server using the port?)")
    return port


def _bind_http(config: ServiceConfig) -> socket.socket:
    """Bind config.http_host:config.http_port now, so that a taken port fails at start-up as gRPC's does."""
    host = config.http_host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, config.http_port), family=family, reuse_port=False)
    except OSError as err:
        raise OSError(f"cannot bind HTTP to {config.http_host}:{config.http_port}: {err.strerror}") from None


def _ssl_context(config: ServiceConfig) -> ssl.SSLContext | None:
    """The gRPC side's certificate, key and client CA, for HTTPS."""
    if not config.tls_cert:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    if config.tls_client_ca:
        context.load_verify_locations(config.tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _credentials(config: ServiceConfig) -> grpc.ServerCredentials | None:
    if not config.tls_cert:
        return None
    pair = (Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes())
    client_ca = Path(config.tls_client_ca).read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


def _add_reflection(server: grpc.aio.Server) -> None:
    # v1 is listed under its v1alpha name only: its descriptor is not in this process's pool.
    names = (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
    servicer = reflection_aio.ReflectionServicer(names)  # type: ignore[attr-defined]  # the stubs take it for grpc.aio
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    info = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": info}),)
    )


def serve(config: ServiceConfig) -> int:
    """Run on this thread's event loop until SIGTERM or SIGINT, then drain and return 0."""
    return asyncio.run(_serve(config))


async def _metrics_endpoint(config: ServiceConfig, registry: CollectorRegistry) -> web.AppRunner | None:
    """Prometheus's endpoint on the event loop, at /metrics (and /): unlike prometheus_client's own server,
    which keeps a thread for each connection for as long as its client likes, an idle or slow connection
    is closed after --http-idle-seconds, as on the HTTP port."""
    if not config.metrics_port:
        return None
    app = web.Application()
    for path in ("/metrics", "/"):
        app.router.add_get(path, make_aiohttp_handler(registry))
    # A scrape takes milliseconds: shutting down need not wait the default minute for one.
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=config.http_idle_seconds, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.metrics_host, config.metrics_port).start()
    except OSError as err:
        await runner.cleanup()
        raise OSError(f"cannot bind metrics to {config.metrics_host}:{config.metrics_port}: {err}") from None
    return runner


async def _serve(config: ServiceConfig) -> int:
    service = Service(config)
    metrics = await _metrics_endpoint(config, service.metrics.registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stopping, signum, stop, config.grace_seconds)
    await service.start()
    logger.info(
        "serving %s@%s%s from %s: gRPC on %s:%d, %s%s (%s)",
        config.model_name,
        config.alias,
        f" with @{config.shadow_alias} in shadow" if config.shadow_alias else "",
        without_passwords(config.tracking_uri),
        config.host,
        service.port,
        f"HTTP on {config.http_host}:{service.http_port}" if service.http_port else "HTTP off",
        " with TLS" if config.tls_cert else "",
        f"metrics on {config.metrics_host}:{config.metrics_port}" if config.metrics_port else "metrics off",
    )
    await stop.wait()
    await service.stop(config.grace_seconds, config.drain_seconds)
    if metrics is not None:
        await metrics.cleanup()
    logger.info("stopped")
    return 0


def _stopping(signum: int, stop: asyncio.Event, grace: float) -> None:
    logger.info("received %s; draining for up to %.0fs", signal.Signals(signum).name, grace)
    stop.set()
