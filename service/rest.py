"""The HTTP side: the Open Inference Protocol's REST API and the drawing page, on the gRPC server's event loop."""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version as package_version
from pathlib import Path

from aiohttp import HttpVersion11, web
from aiohttp.http_exceptions import HttpProcessingError

from service.answering import Answerer
from service.calls import CallGuard
from service.config import ServiceConfig
from service.errors import NotFoundError, NotServingError, http_status_of
from service.http_connections import ConnectionWatch
from service.http_protocol import (
    FAILED,
    UNREADABLE,
    error,
    pipelined,
    quiet_malformed_http,
    reply,
    unparseable,
    unreadable_coding,
)
from service.metrics import UNMATCHED_ROUTE, ServiceMetrics
from service.pixels import PIXELS, decoded
from service.predictor import ModelSource, ServedModel, require_model
from service.rest_tensors import HEADER_LENGTH, infer_request, infer_response, split_body
from service.v2_tensors import INPUT, outputs_of, requested_outputs

logger = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("page")
PAGE_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
# Everything the page needs comes from this server; nothing may run that it did not send.
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
# What an infer body may say it is: JSON; binary tensors after JSON (or no type at all, which aiohttp
# reads as octet-stream); and what `curl -d` says of any body unless told otherwise.
BODY_TYPES = ("application/json", "application/octet-stream", "application/x-www-form-urlencoded")
# The status counted for a request whose client closed the connection before its body arrived (as
# nginx logs it): there is no one left to send it to.
CLIENT_CLOSED = 499
REPLICA_HEADER = "Mnist37-Replica"  # which server answered, as gRPC's trailing metadata says
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ExpectHandler = Callable[[web.Request], Awaitable[None]]
CONTINUE = "100-continue"  # the one expectation HTTP/1.1 defines


class Refused(Exception):
    """Ends a request with an HTTP status of the HTTP side's own: 401, 408, 413, 415, 417, 429, 501 (and
    499, sent to no one)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _explained(err: web.HTTPException, request: web.Request) -> str:
    if err.status == 404:
        return f"no such route: {request.method} {request.path} (the API is under /v2; the page is at /)"
    if err.status == 405:
        return f"{request.method} is not allowed on {request.path}; allowed: {err.headers.get('Allow', 'none')}"
    return err.text or err.reason


class RestApi:
    """The REST routes over the served model: HTTP ⇄ arrays, nothing else. Errors are raised as the
    service's own exceptions and answered by the guard middleware."""

    def __init__(
        self,
        models: ModelSource,
        answers: Answerer,
        model_name: str,
        max_batch: int,
        ready: Callable[[], bool],
        replica: str = "",
    ) -> None:
        self._models = models
        self._ready = ready  # a model is served and the server is not draining
        self._replica = replica
        self._answers = answers
        self._name = model_name
        self._max_batch = max_batch

    def routes(self, app: web.Application, expect: ExpectHandler) -> None:
        prefixes = ("/v2/models/{model}", "/v2/models/{model}/versions/{version}")
        # aiohttp tries routes in the order they were added: infer, the busiest, first.
        for prefix in prefixes:
            app.router.add_post(f"{prefix}/infer", self.infer, expect_handler=expect)
        for prefix in prefixes:
            app.router.add_get(prefix, self.model_metadata, expect_handler=expect)
            app.router.add_get(f"{prefix}/ready", self.model_ready, expect_handler=expect)
        app.router.add_get("/v2", self.server_metadata, expect_handler=expect)
        app.router.add_get("/v2/health/live", self.server_live, expect_handler=expect)
        app.router.add_get("/v2/health/ready", self.server_ready, expect_handler=expect)

    def _check_name(self, request: web.Request) -> None:
        name = request.match_info["model"]
        if name != self._name:
            raise NotFoundError(f"unknown model {name!r}; this server serves {self._name!r}")

    def served(self, request: web.Request) -> ServedModel:
        """The model the URL names, read once for the whole request: 404 for another name or version."""
        self._check_name(request)
        model = require_model(self._models)
        version = request.match_info.get("version", "")
        if version and version != model.version:
            raise NotFoundError(f"version {version!r} of {self._name!r} is not served; version {model.version!r} is")
        return model

    async def server_live(self, request: web.Request) -> web.Response:
        return reply({"live": True})

    async def server_ready(self, request: web.Request) -> web.Response:
        ready = self._ready()
        return reply({"ready": ready}, 200 if ready else 503)

    async def server_metadata(self, request: web.Request) -> web.Response:
        extensions = ["binary_tensor_data"]
        return reply({"name": "mnist37", "version": package_version("mnist37"), "extensions": extensions})

    async def model_ready(self, request: web.Request) -> web.Response:
        self.served(request)
        return reply({"name": self._name, "ready": True})

    async def model_metadata(self, request: web.Request) -> web.Response:
        model = self.served(request)
        return reply(
            {
                "name": self._name,
                "versions": [model.version],
                "platform": "pytorch_torch_export",
                # Each input once, with one datatype (UINT8 is accepted too), as on gRPC.
                "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, PIXELS]}],
                "outputs": [{"name": n, "datatype": t, "shape": [-1]} for n, t in outputs_of(model).items()],
                "parameters": self._parameters(model),
            }
        )

    def _parameters(self, model: ServedModel) -> dict[str, str | float | int]:
        """The protocol's parameters are strings, numbers or booleans: no key for what is not there."""
        parameters: dict[str, str | float | int] = {}
        if model.ood_threshold is not None:
            parameters["ood_threshold"] = model.ood_threshold
        if model.expected_neither_share is not None:
            parameters["expected_neither_share"] = model.expected_neither_share
        shadow = self._answers.shadow_status(model)
        if shadow is not None:
            parameters |= {
                "shadow_alias": shadow.alias,
                "shadow_version": shadow.version,
                "shadow_compared": shadow.compared,
                "shadow_agreement": shadow.agreement,
                "shadow_dropped": shadow.dropped,
            }
        return parameters

    async def infer(self, request: web.Request) -> web.Response:
        # The version checked is the version that answers, even if the alias moves while the body is
        # decoded. The guard has refused a wrong model, version or Content-Type before reading the body,
        # and bounded its size and the time it may take.
        model = self.served(request)
        body = await request.read()
        # A body of N×784 bytes holds at most N images (fewer as floats or JSON): a large one is parsed
        # and decoded off the loop, in one hand-over.
        parsed = await decoded(
            len(body) // PIXELS,
            lambda: infer_request(*split_body(body, request.headers.get(HEADER_LENGTH)), self._max_batch),
        )
        names = requested_outputs(parsed.outputs, model)
        predictions = await self._answers(model, parsed.images)
        payload, header_length = infer_response(
            parsed, names, outputs_of(model), self._name, predictions, self._replica
        )
        if header_length is None:
            return web.Response(body=payload, content_type="application/json")
        return web.Response(
            body=payload, content_type="application/octet-stream", headers={HEADER_LENGTH: str(header_length)}
        )


def page_routes(app: web.Application, model_name: str, expect: ExpectHandler) -> None:
    """The drawing page at / and its assets under /page/, read once; the page is told the model's name."""
    assets: dict[str, tuple[bytes, str]] = {}
    for path in sorted(PAGE.glob("*")):
        if path.suffix in PAGE_TYPES:
            assets[path.name] = (path.read_bytes(), PAGE_TYPES[path.suffix])
    if "index.html" not in assets:
        return
    index = assets.pop("index.html")[0].replace(b"{{MODEL_NAME}}", html.escape(model_name, quote=True).encode())

    async def page(request: web.Request) -> web.Response:
        return web.Response(body=index, content_type="text/html", charset="utf-8")

    async def asset(request: web.Request) -> web.Response:
        found = assets.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        return web.Response(body=found[0], content_type=found[1], charset="utf-8")

    app.router.add_get("/", page, expect_handler=expect)
    app.router.add_get("/page/{name}", asset, expect_handler=expect)


def unmatched_route(app: web.Application, expect: ExpectHandler) -> None:
    """The last route, taking whatever no other route does, as aiohttp would answer it (405 naming the
    methods the path allows, else 404), so that its Expect header reaches `expect` too: for a request
    that matches no route, aiohttp's own handler sends a 100 even for a body over the limit, and a
    plain-text 417 that no middleware sees."""
    others = list(app.router.resources())

    async def unmatched(request: web.Request) -> web.StreamResponse:
        allowed: set[str] = set()
        for resource in others:
            allowed |= (await resource.resolve(request))[1]
        if allowed:
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        raise web.HTTPNotFound()

    app.router.add_route("*", "/{path:.*}", unmatched, expect_handler=expect, name=UNMATCHED_ROUTE)


def _listed(request: web.Request, header: str) -> list[str]:
    """Every value of a comma-separated header's lines, lowercased; empty ones dropped, as HTTP says to."""
    return [
        value.strip().lower()
        for line in request.headers.getall(header, [])
        for value in line.split(",")
        if value.strip()
    ]


def _route(request: web.Request) -> str:
    """The route a request matched, as the metrics name it."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None and resource.name != UNMATCHED_ROUTE else UNMATCHED_ROUTE


def _wrong_type(request: web.Request) -> bool:
    """Whether a POST, an infer (the one route that reads a body), has a body of a type it cannot read."""
    return request.method == "POST" and request.content_type not in BODY_TYPES


def _transfer_codings(request: web.Request) -> list[str]:
    """The transfer codings a request's body came in, other than chunked, lowercased: aiohttp reads
    `gzip, chunked` as chunked and passes the body on still compressed."""
    return [coding for coding in _listed(request, "Transfer-Encoding") if coding != "chunked"]


def _guarded(route: str) -> bool:
    """Whether a route needs the token and a call slot: the API's, but not health or the page."""
    return route.startswith("/v2/models") or route == "/v2"


class HttpGuard:
    """One middleware in front of every request: the token and the call slots shared with gRPC, the
    body's size and time, every error as a JSON body, CORS, and each request's status in the metrics.
    Health and the page need no token and take no slot, as gRPC's health checks."""

    def __init__(
        self,
        guard: CallGuard,
        metrics: ServiceMetrics,
        read_seconds: float,
        max_body_bytes: int,
        cors_origins: str,
        connections: ConnectionWatch | None = None,
        named: Callable[[web.Request], object] = lambda request: None,
    ) -> None:
        """named: raises NotFoundError for a model or version in a request's path that is not served, and
        NotServingError while no version is."""
        self._guard = guard
        self._named = named
        self._metrics = metrics
        self._read_seconds = read_seconds
        self._max_body_bytes = max_body_bytes
        self._connections = connections
        origins = {o.strip() for o in cors_origins.split(",") if o.strip()}
        self._any_origin = "*" in origins
        self._origins = origins - {"*"}

    @web.middleware
    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        route = _route(request)
        slot = False
        unreadable = False
        if self._connections is not None:
            self._connections.started(request.transport, request.content)
        try:
            if any(value != CONTINUE for value in _listed(request, "Expect")):
                sent = ", ".join(request.headers.getall("Expect"))
                raise Refused(417, f"expected no Expect header or 'Expect: {CONTINUE}', got {sent!r}")
            if codings := _transfer_codings(request):
                # As HTTP says to answer a transfer coding a server does not implement.
                raise Refused(
                    501,
                    f"expected Transfer-Encoding chunked alone, got {', '.join(codings)} too "
                    "(a compressed body says so in Content-Encoding)",
                )
            if request.method == "OPTIONS" and self._allowed(request):
                response: web.StreamResponse = self._preflight()
            elif route == UNMATCHED_ROUTE:
                response = await handler(request)  # a 404 or 405 whatever the body, which is not read
            else:
                if _guarded(route):
                    if not self._authorized(request):
                        raise Refused(401, "missing or wrong token: send the header 'Authorization: Bearer <token>'")
                    if not self._guard.take_call_slot():
                        raise Refused(429, self._guard.full_message())
                    slot = True
                response = await self._answer(request, handler)
        except Refused as err:
            response = error(err.status, str(err))
            if err.status == 401:
                response.headers["WWW-Authenticate"] = "Bearer"
            elif err.status == 429:
                response.headers["Retry-After"] = "1"  # slots free as calls end, within the second
        except web.RequestPayloadError:
            # The body is not what its Content-Encoding says: the rest of it cannot be read either.
            unreadable = True
            response = error(400, f"{UNREADABLE} ({request.headers.get('Content-Encoding', 'identity')})")
        except HttpProcessingError as err:  # its framing broke partway (JsonErrorHandler): nor can the rest be read
            unreadable = True
            response = error(400, unparseable(err))
        except web.HTTPException as err:  # aiohttp's own: no route, a wrong method, a body over the limit
            response = error(err.status, _explained(err, request))
            if "Allow" in err.headers:
                response.headers["Allow"] = err.headers["Allow"]
        except Exception as err:
            status = http_status_of(err)
            if status is None:
                logger.exception("HTTP %s %s failed", request.method, request.path)
                status, message = 500, FAILED
            else:
                message = str(err)
            response = error(status, message)
        finally:
            if slot:
                self._guard.give_back_call_slot()
            if self._connections is not None:
                self._connections.finished(request.transport, pipelined(request.protocol))
        self._headers(request, response)
        if unreadable or self._last_asked(request):
            # Nothing more will come on this connection, or nothing more of it can be read; nor will the
            # rest of a body left unread: aiohttp need not wait for it.
            response.force_close()
            request.content.feed_eof()
        self._metrics.observe_http(route, response.status, time.perf_counter() - start)
        return response

    async def expect(self, request: web.Request) -> None:
        """aiohttp's call, before the middleware, for a request with an Expect header: the interim
        `100 Continue` only to an HTTP/1.1 client whose body would be read. A body over the limit, a
        missing token, no free call slot or no route gets its refusal from the middleware instead, and
        an expectation other than 100-continue its 417, so that every one of them is a counted JSON error."""
        if set(_listed(request, "Expect")) != {CONTINUE} or request.version != HttpVersion11:
            return
        route = _route(request)
        if route == UNMATCHED_ROUTE:
            return  # a 404 or 405, whatever the body
        refused = _guarded(route) and (
            not self._authorized(request) or not self._guard.slot_free() or not self._serves(request)
        )
        if refused or self._over_limit(request) or _wrong_type(request) or _transfer_codings(request):
            return
        try:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        except ConnectionResetError:  # the client is gone; reading its body tells the middleware so (499)
            return
        request.writer.output_size = 0  # as aiohttp's own handler does: the response has not begun

    def _last_asked(self, request: web.Request) -> bool:
        """Whether the client has sent all it will and no request it sent is left to answer."""
        if self._connections is None or not self._connections.half_closed(request.transport):
            return False
        return not pipelined(request.protocol)

    def _serves(self, request: web.Request) -> bool:
        try:
            self._named(request)
        except (NotFoundError, NotServingError):
            return False
        return True

    def _authorized(self, request: web.Request) -> bool:
        return self._guard.authorized(request.headers.get("Authorization", ""))

    def _over_limit(self, request: web.Request) -> bool:
        declared = request.content_length
        return declared is not None and declared > self._max_body_bytes

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._over_limit(request):
            # Refused before a byte of it is read: else a slow client over the limit would wait out the
            # read's time limit and get a 408 for what is a 413.
            raise Refused(413, f"a body of {request.content_length} bytes is over the limit of {self._max_body_bytes}")
        self._named(request)  # a 404 for another model or version, before its body is read
        if _wrong_type(request):
            expected = "application/json (or binary tensors)"
            raise Refused(415, f"expected Content-Type {expected}, got {request.content_type}")
        if request.body_exists and (coding := unreadable_coding(request.headers.get("Content-Encoding", ""))):
            raise Refused(415, coding)
        # A body already whole needs no timer: one less for the loop to schedule and cancel per call.
        if request.body_exists and not request.content.is_eof():
            if self._connections is not None and self._connections.cut_short(request.transport, request.content):
                # The client ended its side short of the body, which can now never be whole: as if it had
                # closed the whole connection. A refusal that needs no body (above) is still sent.
                if request.transport is not None:
                    request.transport.close()
                raise Refused(CLIENT_CLOSED, "the client ended its side of the connection before its body arrived")
            try:
                async with asyncio.timeout(self._read_seconds):
                    await request.read()  # kept by the request: the handler's read returns it at once
            except TimeoutError:
                self._metrics.http_timeouts.labels("body").inc()
                raise Refused(408, f"the request body did not arrive within {self._read_seconds:g}s") from None
            except ConnectionResetError:  # the client's doing, not the server's: no traceback in the log
                raise Refused(CLIENT_CLOSED, "the client closed the connection before its body arrived") from None
        return await handler(request)

    def _allowed(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        return origin is not None and (self._any_origin or origin in self._origins)

    def _preflight(self) -> web.Response:
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": f"Authorization, Content-Type, {HEADER_LENGTH}",
                "Access-Control-Max-Age": "600",
            },
        )

    def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        if self._guard.replica_metadata:
            response.headers[REPLICA_HEADER] = self._guard.replica_metadata[0][1]
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        if self._allowed(request):
            response.headers["Access-Control-Allow-Origin"] = "*" if self._any_origin else request.headers["Origin"]
            response.headers["Access-Control-Expose-Headers"] = HEADER_LENGTH
            response.headers["Vary"] = "Origin"


def build_app(
    config: ServiceConfig,
    models: ModelSource,
    answers: Answerer,
    guard: CallGuard,
    metrics: ServiceMetrics,
    ready: Callable[[], bool],
    replica: str = "",
    connections: ConnectionWatch | None = None,
) -> web.Application:
    """The REST API and the page, behind the guard, for a Service to run beside its gRPC server."""
    quiet_malformed_http()
    api = RestApi(models, answers, config.model_name, config.max_batch, ready, replica)
    middleware = HttpGuard(
        guard,
        metrics,
        config.http_read_seconds,
        config.max_message_bytes,
        config.cors_origins,
        connections,
        named=lambda request: "model" in request.match_info and api.served(request),
    )
    app = web.Application(
        middlewares=[middleware.handle],
        client_max_size=config.max_message_bytes,
    )
    api.routes(app, middleware.expect)
    page_routes(app, config.model_name, middleware.expect)
    unmatched_route(app, middleware.expect)
    return app
