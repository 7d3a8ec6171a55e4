"""The HTTP side's JSON answers, and aiohttp's protocol for one connection with what it answers on its
own made like them: HTTP it cannot parse (a header line over its limit, a broken request line) gets a
JSON error that is counted, and is logged in one line rather than with a traceback."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.compression_utils import HAS_BROTLI, HAS_ZSTD
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError
from aiohttp.web_protocol import _ErrInfo
from aiohttp.web_request import BaseRequest

from service.errors import bounded

FAILED = "the server failed on this request; its log says why"  # the why is for the log, not the client
UNREADABLE = "the request body could not be read as its Content-Encoding says"


# What aiohttp decompresses, one coding to a body; any other header it would pass the body on undecoded.
CODINGS = ("gzip", "deflate") + (("br",) if HAS_BROTLI else ()) + (("zstd",) if HAS_ZSTD else ())


def unreadable_coding(header: str) -> str | None:
    """What is wrong with a Content-Encoding header for a body, or None if aiohttp decodes it."""
    coding = header.strip().lower()
    if coding in ("", "identity") or coding in CODINGS:
        return None
    return f"expected no Content-Encoding or one of {', '.join(CODINGS)}, got {header!r}"


def reply(content: object, status: int = 200) -> web.Response:
    """A JSON response, typed exactly application/json: JSON has no charset parameter, and clients
    (KServe's among them) read an error's message only from a body of exactly that type."""
    return web.Response(body=json.dumps(content).encode(), status=status, content_type="application/json")


def error(status: int, message: str) -> web.Response:
    return reply({"error": bounded(message)}, status)


def _first_line(exc: HttpProcessingError) -> str:
    """aiohttp's message for what it could not parse, whose later lines quote the client's bytes."""
    lines = exc.message.splitlines()
    return lines[0].rstrip(":") if lines else type(exc).__name__


def unparseable(exc: HttpProcessingError) -> str:
    return f"could not parse the request as HTTP/1.1: {_first_line(exc)}"


class MalformedHttpInOneLine(logging.Filter):
    """aiohttp logs a client's unparseable HTTP as an error with a traceback, once a request: any client
    could fill the log so. Such a record becomes one line at WARNING; the server's own errors stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = "a malformed HTTP request, answered 400: %s", (_first_line(exc),)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_malformed_http() -> None:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedHttpInOneLine) for f in server_log.filters):
        server_log.addFilter(MalformedHttpInOneLine())


class JsonErrorHandler(web.RequestHandler):
    """What aiohttp answers itself, before any route or middleware runs, as a JSON `{"error": ...}` with
    `counted(status)` called: the middleware, which answers and counts every other request, never sees
    these. aiohttp still logs them and closes the connection after the answer."""

    __slots__ = ("_counted",)

    def __init__(self, manager: web.Server, *, counted: Callable[[int], None], **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._counted = counted

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs it, and raises if an answer has begun
        if isinstance(exc, ContentEncodingError) and not HAS_ZSTD and "(zstd)" in exc.message:
            # A coding aiohttp knows but cannot decode here, refused at the headers as the unknown ones are.
            status, text = 415, str(unreadable_coding("zstd"))
        elif isinstance(exc, ContentEncodingError):  # a body that came with its headers
            text = f"{UNREADABLE} ({_first_line(exc)})"
        elif isinstance(exc, HttpProcessingError):
            text = unparseable(exc)
        else:
            text = FAILED
        response = error(status, text)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.force_close()
        self._counted(status)
        return response

    def data_received(self, data: bytes) -> None:
        # A body whose framing breaks after its request began (a malformed chunk) is queued by aiohttp as
        # an error to answer once the request being answered is done; that request's read of the body
        # would wait for the rest until its time limit and end in a 408. The read fails now instead, with
        # what broke, so the client gets its 400 at once.
        request, queued = self._current_request, len(self._messages)
        super().data_received(data)
        if request is None or request.content.is_eof():
            return
        for message, _ in list(self._messages)[queued:]:
            if isinstance(message, _ErrInfo) and isinstance(message.exc, HttpProcessingError):
                request.content.set_exception(message.exc)
                return


def pipelined(protocol: object) -> bool:
    """Whether requests that arrived pipelined on `protocol`'s connection wait their turn to be answered."""
    # aiohttp's queue of parsed requests, of which it offers no public view.
    return isinstance(protocol, JsonErrorHandler) and bool(protocol._messages)
