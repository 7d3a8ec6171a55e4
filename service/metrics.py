"""Prometheus metrics for every RPC: counts by method and status code, latency, the served version."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service.predictor import ServedModel


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "mnist37_grpc_requests",
            "RPCs handled, by method and status code",
            ["method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mnist37_grpc_latency_seconds",
            "RPC latency, by method",
            ["method"],
            registry=self.registry,
            buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.served = Gauge(
            "mnist37_served_model_version",
            "Registry version being served (0: none)",
            ["model", "alias"],
            registry=self.registry,
        )

    def model_changed(self, model: ServedModel) -> None:
        self.served.labels(model.name, model.alias).set(float(model.version))

    def observe(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.requests.labels(method, code.name).inc()
        self.latency.labels(method).observe(seconds)


def _code(context: grpc.ServicerContext, failed: bool) -> grpc.StatusCode:
    code = context.code()  # type: ignore[attr-defined]  # set by context.abort / set_code; None means OK unless the handler raised
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK


class MetricsInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps each handler to time it and count its status code."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]
        observe = self._metrics.observe

        def unary(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
                start, failed = time.perf_counter(), True
                try:
                    response = behavior(request, context)
                    failed = False
                    return response
                finally:
                    observe(method, _code(context, failed), time.perf_counter() - start)

            return wrapped

        def streaming(behavior: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
            def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                start, failed = time.perf_counter(), True
                try:
                    yield from behavior(request, context)
                    failed = False
                finally:
                    observe(method, _code(context, failed), time.perf_counter() - start)

            return wrapped

        serialize = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **serialize)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **serialize)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), **serialize)
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), **serialize)
