"""One interceptor in front of every call: the token, the limits on calls and streams, spent deadlines,
malformed messages, the service's errors as status codes, and each call's code and latency in the
metrics.

Every call runs on the server's one event loop, so the counts below need no lock: nothing else
touches them, and no other call runs between a check and the update that follows it.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from service.metrics import ServiceMetrics
from service.status import status_of

HEALTH_SERVICE = "grpc.health.v1.Health"
STREAM_END_WAIT_SECONDS = 0.02

if TYPE_CHECKING:  # the stubs' generics; at run time these classes take no parameters
    Context = grpc.aio.ServicerContext[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
    Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    Interceptor = grpc.aio.ServerInterceptor


class _Refused(Exception):
    """Ends a call with a status; the guard sets it only after the call is counted, so a client
    that has its answer finds it in the metrics."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


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


def _final_code(context: Context, failed: bool, gone: bool) -> grpc.StatusCode:
    """gone: gRPC cancelled the call because the client went away (it cancelled, or its deadline ran out)."""
    code = context.code()  # set by the guard or an abort; None means OK unless it raised
    if isinstance(code, grpc.StatusCode):
        return code
    if gone:
        remaining = context.time_remaining()
        return (
            grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0 else grpc.StatusCode.CANCELLED
        )
    return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK


def _set_status(err: Exception, context: Context) -> None:
    """The status a refusal or a servicer's error stands for; anything else is a bug, and re-raised."""
    if isinstance(err, _Refused):
        code, message = err.code, err.message
    else:
        mapped = status_of(err)
        if mapped is None:
            raise err
        code, message = mapped, str(err)
    context.set_code(code)
    context.set_details(message)


class CallGuard(Interceptor):
    """Wraps each handler; health checks need no token and are never turned away, so orchestrators can
    probe a locked or full server."""

    def __init__(self, metrics: ServiceMetrics, max_in_flight: int, max_streams: int, token: str = "") -> None:
        self._metrics = metrics
        self._max_in_flight = max_in_flight
        self._max_streams = max_streams
        self._authorization = f"Bearer {token}".encode() if token else b""
        self.in_flight = 0  # calls started and not yet answered, health checks aside
        self.open_streams = 0
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(  # type: ignore[override]  # None, as gRPC's own lookup gives, for an unknown method
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # gRPC answers UNIMPLEMENTED; counted under one label, whatever the path
            self._metrics.unknown_method()
            return None
        path = handler_call_details.method
        # Wrapping a handler builds several closures; done once per method rather than once per call.
        cached = self._wrapped.get(path)
        if cached is None or cached[0] is not handler:
            cached = (handler, self._wrap(handler, path))
            self._wrapped[path] = cached
        return cached[1]

    def _admit(self, context: Context, service: str) -> None:
        if self._authorization and service != HEALTH_SERVICE:
            sent = dict(context.invocation_metadata() or ()).get("authorization", "")
            sent_bytes = sent.encode() if isinstance(sent, str) else sent
            if not hmac.compare_digest(sent_bytes, self._authorization):
                raise _Refused(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "missing or wrong token: send the metadata 'authorization: Bearer <token>'",
                )
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise _Refused(grpc.StatusCode.DEADLINE_EXCEEDED, "the call's deadline passed before it started")

    async def _checked(self, requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        i = 0
        async for request in requests:
            if isinstance(request, _Malformed):
                raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, f"message {i}: {request.message}")
            yield request
            i += 1
        # A client that cancels, or vanishes, ends its requests as if it had closed them; gRPC tells
        # of the cancellation a moment later, by cancelling this task. Waiting that moment before the
        # answer is final lets the call end (and be counted) as cancelled rather than as answered, at
        # the price of that moment at the end of each stream.
        await asyncio.sleep(STREAM_END_WAIT_SECONDS)
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:  # its requests ended because its deadline did
            raise _Refused(grpc.StatusCode.DEADLINE_EXCEEDED, "the call's deadline passed")

    def _wrap(self, handler: Handler, path: str) -> Handler:
        service, _, method = path.strip("/").rpartition("/")
        counted = service != HEALTH_SERVICE  # health checks take no slot and are never turned away
        limited = counted and (handler.request_streaming or handler.response_streaming)  # takes a stream slot
        guard = self

        def begin(request: Any, context: Context) -> Any:
            """Admit the call or refuse it; a stream takes its slot last, once nothing else can refuse it."""
            guard._admit(context, service)
            if isinstance(request, _Malformed):
                raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            if limited:
                if guard.open_streams >= guard._max_streams:
                    raise _Refused(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"{guard._max_streams} streams are open, this server's limit (--max-streams); try again later",
                    )
                guard.open_streams += 1
            return guard._checked(request, context) if handler.request_streaming else request

        def enter() -> bool:
            """Take a call slot, or refuse the call when every slot is taken; health checks take none."""
            if not counted:
                return False
            if guard.in_flight >= guard._max_in_flight:
                raise _Refused(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{guard._max_in_flight} calls are running or queued, this server's limit (--max-in-flight); "
                    "try again later",
                )
            guard.in_flight += 1
            return True

        def unary(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def wrapped(request: Any, context: Context) -> Any:
                start, failed, gone, slot, admitted = time.perf_counter(), True, False, False, False
                try:
                    slot = enter()
                    request = begin(request, context)
                    admitted = True
                    response = await behavior(request, context)
                    failed = False
                    return response
                except Exception as err:
                    _set_status(err, context)
                    return None
                except asyncio.CancelledError:
                    gone = True
                    raise
                finally:
                    if slot:
                        guard.in_flight -= 1
                    if admitted and limited:
                        guard.open_streams -= 1
                    guard._metrics.observe(method, _final_code(context, failed, gone), time.perf_counter() - start)

            return wrapped

        def stream(behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
            async def wrapped(request: Any, context: Context) -> AsyncIterator[Any]:
                start, failed, gone, slot, admitted = time.perf_counter(), True, False, False, False
                try:
                    slot = enter()
                    request = begin(request, context)
                    admitted = True
                    async for response in behavior(request, context):
                        yield response
                    failed = False
                except Exception as err:
                    _set_status(err, context)
                except (asyncio.CancelledError, GeneratorExit):
                    # Cancelled where it waits, or closed where it yields: gRPC stopped taking the
                    # responses because the client went away.
                    gone = True
                    raise
                finally:
                    if slot:
                        guard.in_flight -= 1
                    if admitted and limited:
                        guard.open_streams -= 1
                    guard._metrics.observe(method, _final_code(context, failed, gone), time.perf_counter() - start)

            return wrapped

        kwargs = {
            "request_deserializer": _parsing(handler.request_deserializer),
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **kwargs)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **kwargs)
        # A streaming handler either yields its responses or, as health's Watch does, writes them to
        # the context from a coroutine; each is wrapped in the same kind.
        behavior: Any = handler.unary_stream or handler.stream_stream  # the stubs type them synchronous
        assert behavior is not None
        wrapped = unary(behavior) if inspect.iscoroutinefunction(behavior) else stream(behavior)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(wrapped, **kwargs)
        return grpc.stream_stream_rpc_method_handler(wrapped, **kwargs)
