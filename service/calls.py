"""One interceptor in front of every call: the token, the limits on calls and streams, spent deadlines,
malformed messages, and the call's status code and latency in the metrics."""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc

from service.metrics import ServiceMetrics

HEALTH_SERVICE = "grpc.health.v1.Health"


class CallPool(ThreadPoolExecutor):
    """The server's workers; gRPC submits one task per call, so the tasks held are the calls in flight."""

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self._lock = threading.Lock()
        self.in_flight = 0  # running or queued

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            self.in_flight += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._finished(None)
            raise
        future.add_done_callback(self._finished)
        return future

    def _finished(self, future: Future[Any] | None) -> None:
        with self._lock:
            self.in_flight -= 1


class _Malformed:
    """Stands in for a request whose bytes did not parse, so the call can answer INVALID_ARGUMENT."""

    def __init__(self, error: Exception, message_type: str) -> None:
        self.message = f"the request is not a valid {message_type} message: {error}"


def _parsing(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    owner = getattr(deserializer, "__self__", None)
    message_type = getattr(getattr(owner, "DESCRIPTOR", None), "full_name", "protobuf")

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as err:
            return _Malformed(err, message_type)

    return parse


def _final_code(context: grpc.ServicerContext, failed: bool) -> grpc.StatusCode:
    code = context.code()  # type: ignore[attr-defined]  # set by abort/set_code; None means OK unless it raised
    if isinstance(code, grpc.StatusCode):
        return code
    if not context.is_active():  # the client went away: cancelled, or its deadline ran out
        remaining = context.time_remaining()
        return (
            grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0 else grpc.StatusCode.CANCELLED
        )
    return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK


class CallGuard(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps each handler; health checks need no token, so orchestrators can probe a locked server."""

    def __init__(
        self, metrics: ServiceMetrics, pool: CallPool, max_in_flight: int, max_streams: int, token: str = ""
    ) -> None:
        self._metrics = metrics
        self._pool = pool
        self._max_in_flight = max_in_flight
        self._streams = threading.BoundedSemaphore(max_streams)
        self._max_streams = max_streams
        self._authorization = f"Bearer {token}".encode() if token else b""
        self._wrapped: dict[
            tuple[str, bool], tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]
        ] = {}

    def _admit(self, context: grpc.ServicerContext, service: str) -> None:
        if self._authorization and service != HEALTH_SERVICE:
            sent = dict(context.invocation_metadata()).get("authorization", "")
            sent_bytes = sent.encode() if isinstance(sent, str) else sent
            if not hmac.compare_digest(sent_bytes, self._authorization):
                context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "missing or wrong token: send the metadata 'authorization: Bearer <token>'",
                )
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the call's deadline passed before it started")

    def _checked(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        for i, request in enumerate(requests):
            if isinstance(request, _Malformed):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"message {i}: {request.message}")
            yield request

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        path = handler_call_details.method
        service = path.strip("/").rpartition("/")[0]
        # Counted as the call arrives, before gRPC queues it; health checks are never turned away.
        overloaded = service != HEALTH_SERVICE and self._pool.in_flight >= self._max_in_flight
        # Wrapping a handler builds several closures; done once per method rather than once per call.
        key = (path, overloaded)
        cached = self._wrapped.get(key)
        if cached is None or cached[0] is not handler:
            cached = (handler, self._wrap(handler, path, overloaded))
            self._wrapped[key] = cached
        return cached[1]

    def _wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], path: str, overloaded: bool
    ) -> grpc.RpcMethodHandler[Any, Any]:
        service, _, method = path.strip("/").rpartition("/")
        streaming = handler.request_streaming or handler.response_streaming
        guard = self

        def begin(request: Any, context: grpc.ServicerContext) -> Any:
            """Admit the call or abort it; a stream takes its slot last, once nothing else can abort."""
            if overloaded:
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{guard._max_in_flight} calls are running or queued, this server's limit (--max-in-flight); "
                    "try again later",
                )
            guard._admit(context, service)
            if isinstance(request, _Malformed):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            if streaming and not guard._streams.acquire(blocking=False):
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{guard._max_streams} streams are open, this server's limit (--max-streams); try again later",
                )
            return guard._checked(request, context) if handler.request_streaming else request

        def unary(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
                start, failed, admitted = time.perf_counter(), True, False
                try:
                    request = begin(request, context)
                    admitted = True
                    response = behavior(request, context)
                    failed = False
                    return response
                finally:
                    if admitted and streaming:
                        guard._streams.release()
                    guard._metrics.observe(method, _final_code(context, failed), time.perf_counter() - start)

            return wrapped

        def stream(behavior: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
            def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                start, failed, admitted = time.perf_counter(), True, False
                try:
                    request = begin(request, context)
                    admitted = True
                    yield from behavior(request, context)
                    failed = False
                finally:
                    if admitted:
                        guard._streams.release()
                    guard._metrics.observe(method, _final_code(context, failed), time.perf_counter() - start)

            return wrapped

        kwargs = {
            "request_deserializer": _parsing(handler.request_deserializer),
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **kwargs)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **kwargs)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), **kwargs)
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream), **kwargs)
