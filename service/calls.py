"""The call guard: one interceptor that admits, limits, maps errors and counts every call."""

from __future__ import annotations

import asyncio
import hmac
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from service.errors import bounded, status_of
from service.metrics import ServiceMetrics

HEALTH_SERVICE = "grpc.health.v1.Health"
# The Open Inference Protocol's own health checks, answered as HTTP answers /v2/health/live and /ready.
V2_HEALTH = {("inference.GRPCInferenceService", "ServerLive"), ("inference.GRPCInferenceService", "ServerReady")}
REPLICA_KEY = "mnist37-replica"
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
    context.set_details(bounded(message))


@dataclass(frozen=True)
class _Method:
    service: str
    name: str  # as the metrics label it
    counted: bool  # takes a call slot; health checks take none and are never turned away
    limited: bool  # a stream of ours: takes a stream slot too
    request_streaming: bool


@dataclass
class _Held:
    """The slots one call has taken, given back when it ends."""

    call: bool = False
    stream: bool = False


class CallGuard(Interceptor):
    """Wraps each handler; health checks need no token and are never turned away, so orchestrators can
    probe a locked or full server.

    Every call runs on the server's one event loop, so the counts need no lock: no other call runs
    between a check and the update that follows it."""

    def __init__(
        self,
        metrics: ServiceMetrics,
        max_in_flight: int,
        max_streams: int,
        token: str = "",
        replica: str = "",
        stream_idle_seconds: float = 60.0,
    ) -> None:
        self._metrics = metrics
        self._stream_idle = stream_idle_seconds
        # Every answer names the replica that gave it, in its trailing metadata, for checking a balancer.
        self.replica_metadata = ((REPLICA_KEY, replica),) if replica else ()
        self._max_in_flight = max_in_flight
        self._max_streams = max_streams
        self._token = token.encode()
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
        # A wrapped handler is built once per method rather than once per call.
        cached = self._wrapped.get(path)
        if cached is None or cached[0] is not handler:
            cached = (handler, self._wrap(handler, path))
            self._wrapped[path] = cached
        return cached[1]

    # The call slots and the token are shared with the HTTP side: one limit and one token for the service.
    def take_call_slot(self) -> bool:
        """Take one of the --max-in-flight slots; False when every one is taken."""
        if not self.slot_free():
            return False
        self.in_flight += 1
        return True

    def slot_free(self) -> bool:
        return self.in_flight < self._max_in_flight

    def give_back_call_slot(self) -> None:
        self.in_flight -= 1

    def full_message(self) -> str:
        return (
            f"{self._max_in_flight} calls are running or queued, this server's limit (--max-in-flight); try again later"
        )

    def authorized(self, sent: str | bytes) -> bool:
        """Whether an authorization value is "Bearer <the token>", or no token is set."""
        if not self._token:
            return True
        # surrogateescape: aiohttp keeps a header's bytes that are not UTF-8 that way; they are compared as sent.
        raw = sent.encode("utf-8", "surrogateescape") if isinstance(sent, str) else sent
        scheme, _, credentials = raw.partition(b" ")
        # The scheme's name is case-insensitive (RFC 9110): bearer and BEARER are Bearer.
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.lstrip(b" "), self._token)

    def _admit(self, request: Any, context: Context, method: _Method, held: _Held) -> Any:
        """Take a call slot, check the token and the deadline, refuse a malformed request, and take a
        stream slot last, once nothing else can refuse the call; the request to hand the handler."""
        if method.counted:
            if not self.take_call_slot():
                raise _Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, self.full_message())
            held.call = True
        if self._token and method.counted:  # health checks need none: no metadata read without a token
            sent = dict(context.invocation_metadata() or ()).get("authorization", "")
            if not self.authorized(sent):
                raise _Refused(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "missing or wrong token: send the metadata 'authorization: Bearer <token>'",
                )
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise _Refused(grpc.StatusCode.DEADLINE_EXCEEDED, "the call's deadline passed before it started")
        if isinstance(request, _Malformed):
            raise _Refused(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        if method.limited:
            if self.open_streams >= self._max_streams:
                raise _Refused(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{self._max_streams} streams are open, this server's limit (--max-streams); try again later",
                )
            self.open_streams += 1
            held.stream = True
        return self._checked(request, context) if method.request_streaming else request

    @asynccontextmanager
    async def _accounted(self, context: Context, method: _Method) -> AsyncIterator[_Held]:
        """Around one call: its error as a status (a bug is re-raised), its slots given back, and its
        final code and latency observed, whether it was answered, refused, failed or abandoned."""
        start, failed, gone = time.perf_counter(), True, False
        held = _Held()
        context.set_trailing_metadata(self.replica_metadata)
        try:
            yield held
            failed = False
        except Exception as err:
            _set_status(err, context)
        except (asyncio.CancelledError, GeneratorExit):
            # Cancelled where it waits, or closed where it yields: gRPC stopped the call because the
            # client went away.
            gone = True
            raise
        finally:
            if held.call:
                self.give_back_call_slot()
            if held.stream:
                self.open_streams -= 1
            self._metrics.observe(method.name, _final_code(context, failed, gone), time.perf_counter() - start)

    async def _checked(self, requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        i = 0
        while True:
            try:
                # A stream that sends nothing would hold its slot for good: --max-streams of them, every slot.
                async with asyncio.timeout(self._stream_idle):
                    request = await anext(requests)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise _Refused(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"no message on this stream for {self._stream_idle:g}s (--stream-idle-seconds)",
                ) from None
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

    def _unary(self, behavior: Callable[..., Awaitable[Any]], method: _Method) -> Callable[..., Awaitable[Any]]:
        async def wrapped(request: Any, context: Context) -> Any:
            async with self._accounted(context, method) as held:
                return await behavior(self._admit(request, context, method, held), context)
            return None  # refused or failed: the status is on the context

        return wrapped

    def _stream(
        self, behavior: Callable[..., AsyncIterator[Any]], method: _Method
    ) -> Callable[..., AsyncIterator[Any]]:
        async def wrapped(request: Any, context: Context) -> AsyncIterator[Any]:
            async with self._accounted(context, method) as held:
                async for response in behavior(self._admit(request, context, method, held), context):
                    yield response

        return wrapped

    def _wrap(self, handler: Handler, path: str) -> Handler:
        service, _, name = path.strip("/").rpartition("/")
        counted = service != HEALTH_SERVICE and (service, name) not in V2_HEALTH
        streaming = handler.request_streaming or handler.response_streaming
        method = _Method(service, name, counted, counted and streaming, handler.request_streaming)
        kwargs = {
            "request_deserializer": _parsing(handler.request_deserializer),
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(self._unary(handler.unary_unary, method), **kwargs)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(self._unary(handler.stream_unary, method), **kwargs)
        # A streaming handler either yields its responses or, as health's Watch does, writes them to
        # the context from a coroutine; each is wrapped in the same kind.
        behavior: Any = handler.unary_stream or handler.stream_stream  # the stubs type them synchronous
        assert behavior is not None
        wrapped = (
            self._unary(behavior, method) if inspect.iscoroutinefunction(behavior) else self._stream(behavior, method)
        )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(wrapped, **kwargs)
        return grpc.stream_stream_rpc_method_handler(wrapped, **kwargs)
