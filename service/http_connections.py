"""HTTP connections that held the server without asking for anything, counted by why: idle (nothing
sent) or headers (a request begun and never finished); connections whose client stops reading its
answers (answer), closed here; and connections whose client has shut its sending side after a
request (a half-close, as `nc -N` does), kept open until that request's answer.

aiohttp closes them itself, after its keep-alive limit (--http-idle-seconds), and knows best when:
not while a request is queued or being answered, nor before an answer is written. It says nothing
when it does, so each connection is watched from outside, and a close is counted as one of these
when nothing else explains it: the client neither closed nor reset it, no request was being
answered, the last request's body had been read to its end (else aiohttp closes after reading what
is left of it, not for idleness), and the limit had passed since the connection opened or its last
answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import StreamReader

IDLE = "idle"  # nothing sent since the connection opened or its last answer
HEADERS = "headers"  # part of a request sent, and the rest not within the limit
ANSWER = "answer"  # answers the client did not read: the server's sending stalled past the limit
SLACK_SECONDS = 0.001  # clocks read a moment apart


class _Connection:
    __slots__ = ("body", "busy", "client_closed", "partial", "stalled", "waiting_since")

    def __init__(self, now: float) -> None:
        self.busy = 0  # requests being answered; pipelined ones may overlap
        self.partial = False  # bytes arrived while nothing was being answered
        self.waiting_since = now
        self.client_closed = False
        # The body of the request begun last: the one being answered, or else the last answered.
        self.body: StreamReader | None = None
        # While the client reads too slowly for the server's writes: the timer that ends the connection.
        self.stalled: asyncio.TimerHandle | None = None


class ConnectionWatch:
    """Each open connection's state from its bytes (`protocols`) and its requests (`started` and
    `finished`, called by the HTTP middleware); `closed(reason)` for each close that was aiohttp's
    keep-alive limit, or answers left unread for `answer_seconds`; `half_closed` for whether an answer
    should close its connection."""

    def __init__(self, idle_seconds: float, answer_seconds: float, closed: Callable[[str], None]) -> None:
        self._idle = idle_seconds
        self._answer = answer_seconds
        self._closed = closed
        self._open: dict[asyncio.BaseTransport, _Connection] = {}

    def protocols(self, make: Callable[[], asyncio.BaseProtocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for `loop.create_server` that puts each of `make`'s protocols under watch."""
        return lambda: _Watched(make(), self)

    def started(self, transport: asyncio.BaseTransport | None, body: StreamReader) -> None:
        if transport is not None and (connection := self._open.get(transport)):
            connection.busy += 1
            connection.body = body

    def cut_short(self, transport: asyncio.BaseTransport | None, body: StreamReader) -> bool:
        """Whether the client has ended its side short of this body, which can now never be whole."""
        connection = self._open.get(transport) if transport is not None else None
        return connection is not None and connection.client_closed and not body.is_eof()

    def finished(self, transport: asyncio.BaseTransport | None, queued: bool) -> None:
        """A request answered; `queued`: whether requests that arrived pipelined behind it wait their turn."""
        if transport is not None and (connection := self._open.get(transport)):
            connection.busy = max(0, connection.busy - 1)
            if not connection.busy:
                connection.waiting_since = asyncio.get_running_loop().time()
                connection.partial = queued

    def opened(self, transport: asyncio.BaseTransport) -> None:
        self._open[transport] = _Connection(asyncio.get_running_loop().time())

    def received(self, transport: asyncio.BaseTransport) -> None:
        connection = self._open.get(transport)
        if connection is None or connection.busy:
            return
        # Bytes after an answer begin the next request, unless they are the rest of a refused body.
        if connection.body is None or connection.body.is_eof():
            connection.partial = True

    def client_closed(self, transport: asyncio.BaseTransport) -> bool:
        """The client will send nothing more. Whether to keep the connection open to answer: yes while a
        request whose body has all arrived is being answered, or a next one has begun to arrive; not when
        nothing was asked, nor for a body that can now never be whole."""
        connection = self._open.get(transport)
        if connection is None or transport.is_closing():
            # Closing already: the end is the client's answer to the server's own close (TLS's
            # close_notify), not the client's doing.
            return False
        connection.client_closed = True
        if connection.busy:
            return connection.body is not None and connection.body.is_eof()
        return connection.partial

    def half_closed(self, transport: asyncio.BaseTransport | None) -> bool:
        """Whether the client has sent all it will: its answer is the connection's last."""
        connection = self._open.get(transport) if transport is not None else None
        return connection is not None and connection.client_closed

    def paused(self, transport: asyncio.BaseTransport) -> None:
        """The server's writes outran the client's reading: unless it reads again within the limit, the
        connection ends, else aiohttp would wait on it for as long as the client cares to hold it."""
        connection = self._open.get(transport)
        if connection is not None and connection.stalled is None:
            connection.stalled = asyncio.get_running_loop().call_later(self._answer, self._stalled, transport)

    def resumed(self, transport: asyncio.BaseTransport) -> None:
        connection = self._open.get(transport)
        if connection is not None and connection.stalled is not None:
            connection.stalled.cancel()
            connection.stalled = None

    def _stalled(self, transport: asyncio.BaseTransport) -> None:
        if self._open.pop(transport, None) is not None and isinstance(transport, asyncio.WriteTransport):
            self._closed(ANSWER)  # here, and not again as the close is seen
            transport.abort()  # what is left unsent is left unsent: the client was not reading it

    def lost(self, transport: asyncio.BaseTransport, exc: Exception | None) -> None:
        """Before aiohttp hears of it, while the last body is as the close found it."""
        connection = self._open.pop(transport, None)
        if connection is None:
            return
        if connection.stalled is not None:
            connection.stalled.cancel()
        if connection.body is not None and not connection.body.is_eof():
            if not connection.busy:
                # The rest of a refused body, which aiohttp would go on waiting for until its lingering
                # limit with no client left to send it: its wait ends now.
                connection.body.feed_eof()
            return  # its body was never read to the end: aiohttp's lingering close, not idleness
        if exc is not None or connection.client_closed or connection.busy:
            return
        waited = asyncio.get_running_loop().time() - connection.waiting_since
        if waited + SLACK_SECONDS >= self._idle:
            self._closed(HEADERS if connection.partial else IDLE)


class _Watched(asyncio.Protocol):
    """Passes every event to aiohttp's protocol, telling the watch of opens, bytes and closes."""

    def __init__(self, inner: asyncio.BaseProtocol, watch: ConnectionWatch) -> None:
        self._inner = inner
        self._watch = watch
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._watch.opened(transport)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._transport is not None:
            self._watch.received(self._transport)
        self._inner.data_received(data)  # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        """True keeps the connection open to write the answer (aiohttp alone would close it now). TLS has
        no half-close: asyncio closes its connections whatever this returns, and warns if it is True."""
        if self._transport is None:
            return self._inner.eof_received()  # type: ignore[attr-defined]
        keep_open = self._watch.client_closed(self._transport)
        tls = self._transport.get_extra_info("sslcontext") is not None
        return self._inner.eof_received() or (keep_open and not tls)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._watch.lost(self._transport, exc)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._watch.paused(self._transport)
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._watch.resumed(self._transport)
        self._inner.resume_writing()
