"""HTTP connections that hold the server without asking for anything: closed after --http-idle-seconds,
and counted by why, idle (nothing sent) or slow (a request begun and never finished).

aiohttp closes such connections itself but says nothing about it, so the service closes them first
and counts each: aiohttp's own timer is left behind this one as a backstop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

IDLE = "idle"  # nothing sent since the connection opened or its last answer
HEADERS = "headers"  # part of a request sent, and the rest not within the time


class _Connection:
    __slots__ = ("busy", "partial", "waiting_since")

    def __init__(self, now: float) -> None:
        self.busy = 0  # requests being answered; pipelined ones may overlap
        self.partial = False  # bytes arrived while nothing was being answered
        self.waiting_since = now


class ConnectionWatch:
    """Knows each open connection's state from its bytes (`protocols`) and its requests (`started`,
    `finished`, called by the HTTP middleware), and every `period` closes the ones that have waited
    `idle_seconds` with no request being answered, telling `closed` why."""

    def __init__(self, idle_seconds: float, closed: Callable[[str], None]) -> None:
        self._idle = idle_seconds
        self._closed = closed
        self._period = min(1.0, idle_seconds / 4)  # closes within a quarter of the limit past it
        self._open: dict[asyncio.BaseTransport, _Connection] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeping: asyncio.TimerHandle | None = None

    @property
    def backstop_seconds(self) -> float:
        """aiohttp's own keep-alive limit: late enough that this watch always closes first."""
        return self._idle + 4 * self._period

    def protocols(self, make: Callable[[], asyncio.BaseProtocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for `loop.create_server` that puts each of `make`'s protocols under watch."""
        return lambda: _Watched(make(), self)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._sweeping = self._loop.call_later(self._period, self._sweep)

    def stop(self) -> None:
        if self._sweeping is not None:
            self._sweeping.cancel()
            self._sweeping = None

    def started(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is not None and (connection := self._open.get(transport)):
            connection.busy += 1

    def finished(self, transport: asyncio.BaseTransport | None) -> None:
        if transport is not None and (connection := self._open.get(transport)):
            connection.busy = max(0, connection.busy - 1)
            if not connection.busy:
                connection.waiting_since = self._now()
                connection.partial = False

    def _now(self) -> float:
        return (self._loop or asyncio.get_running_loop()).time()

    def opened(self, transport: asyncio.BaseTransport) -> None:
        self._open[transport] = _Connection(self._now())

    def received(self, transport: asyncio.BaseTransport) -> None:
        connection = self._open.get(transport)
        if connection is not None and not connection.busy:
            connection.partial = True

    def lost(self, transport: asyncio.BaseTransport) -> None:
        self._open.pop(transport, None)

    def _sweep(self) -> None:
        now = self._now()
        for transport, connection in list(self._open.items()):
            if not connection.busy and now - connection.waiting_since >= self._idle:
                del self._open[transport]
                self._closed(HEADERS if connection.partial else IDLE)
                transport.close()  # aiohttp's handler sees the connection lost and ends as for any client's close
        if self._loop is not None and self._sweeping is not None:
            self._sweeping = self._loop.call_later(self._period, self._sweep)


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
        return self._inner.eof_received()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._watch.lost(self._transport)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()
