"""Client TCP connections: identity, and the limits that hold before a request reaches the app.

uvicorn's httptools protocol is subclassed so each request's ASGI scope carries the id of the
connection it arrived on, and listeners hear when a connection closes (the table-key cache is
per connection: DESIGN.md "Key cache").

It also bounds what a client can make the server hold or wait for, none of which uvicorn's httptools
protocol does by itself:
- the request line and headers together at most MAX_HEAD_BYTES (AWS's Application Load Balancer allows
  64 KiB of request headers), else 431 and the connection is closed;
- a request must arrive whole (headers and body) within ``request_timeout`` seconds of its first byte, and
  a new connection must start a request within that time (slowloris), else 408 / closed; an idle keep-alive
  connection between requests keeps uvicorn's own timeout;
- at most ``max_connections`` open connections (and requests in flight): past that a request gets 503,
  which every AWS SDK retries.
The checks are a counter and a timestamp per request; the deadline timer is armed at most once per
``request_timeout`` per connection, not per request, to keep GetItem cheap.

A response to a POST leaves in one socket send (uvicorn sends the head and the body apart): see _OneWriteCycle.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import zlib
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

log = logging.getLogger("dynavault.server")

SCOPE_KEY = "dynavault.connection"
#: request line + headers of one request (ALB: 64 KiB of request headers)
MAX_HEAD_BYTES = 64 * 1024

_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: 31\r\nconnection: close\r\n\r\nRequest Header Fields Too Large")
_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: 15\r\nconnection: close\r\n\r\nRequest Timeout")
_503_BODY = (b'{"__type":"com.amazon.coral.service#ServiceUnavailableException",'
             b'"message":"The service is currently unavailable or busy."}')
_503_CRC = str(zlib.crc32(_503_BODY)).encode()


class _HeadTooLarge(Exception):
    pass


class Connections:
    """Connection ids and who hears of a closed connection: one per runtime (built by build_runtime and
    handed to the protocol class), so two servers in one process never share ids or listeners."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._close_listeners: list[Callable[[int], None]] = []

    def new_id(self) -> int:
        return next(self._ids)

    def on_closed(self, listener: Callable[[int], None]) -> None:
        """``listener(connection id)`` runs when a client connection closes (registered while wiring)."""
        self._close_listeners.append(listener)

    def closed(self, connection_id: int) -> None:
        for listener in self._close_listeners:
            try:
                listener(connection_id)
            except Exception:  # a listener bug must not break the server
                log.exception("connection close listener failed")


async def _overloaded(scope, receive, send) -> None:
    """The answer past ``max_connections``: 503 (retried by every AWS SDK), then the connection closes. It
    carries a request id and crc32 like every DynamoDB answer (the id from the OS: this path is rare)."""
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/x-amz-json-1.0"),
        (b"content-length", str(len(_503_BODY)).encode()),
        (b"x-amz-crc32", _503_CRC),
        (b"x-amzn-requestid", f"{secrets.randbits(208):052X}".encode()),
        (b"connection", b"close"),
    ]})
    await send({"type": "http.response.body", "body": _503_BODY})


class _HeadBuffer:
    """Stands in for the transport while uvicorn writes a response's head: keeps the bytes."""

    __slots__ = ("real", "data")

    def __init__(self, real) -> None:
        self.real = real
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def __getattr__(self, name: str):
        return getattr(self.real, name)


class _HeadFirst:
    """Stands in for the transport while uvicorn writes the body: the held head goes out in the same send."""

    __slots__ = ("real", "head")

    def __init__(self, real, head: bytes) -> None:
        self.real = real
        self.head = head

    def write(self, data: bytes) -> None:
        head, self.head = self.head, b""
        self.real.write(head + data if head else data)

    def __getattr__(self, name: str):
        return getattr(self.real, name)


class _OneWriteCycle(RequestResponseCycle):
    """uvicorn's request/response cycle, with a POST's response head held back until the body is sent, so both
    leave in one socket send: one send, and one wake-up of the client, per response instead of two (the
    responses are small and the app sends the body right after the head)."""

    _held: bytes | None = None

    async def send(self, message) -> None:  # type: ignore[override]
        kind = message["type"]
        if kind == "http.response.start" and not self.response_started and self.scope["method"] == "POST":
            real = self.transport
            buffer = _HeadBuffer(real)
            self.transport = buffer  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = real
            if buffer.data:
                self._held = buffer.data
            return
        held = self._held
        if held is not None:
            self._held = None
            real = self.transport
            if kind != "http.response.body":
                real.write(held)
            else:
                self.transport = _HeadFirst(real, held)  # type: ignore[assignment]
                try:
                    await super().send(message)
                finally:
                    self.transport = real
                return
        await super().send(message)


class TrackedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that tags every request with its connection id and enforces the limits above."""

    _dynavault_conn_id = 0
    #: set per server by protocol_class (not ``connections``: uvicorn's protocol has its own)
    registry: Connections
    #: seconds for a request's headers and body to arrive (0: no limit)
    request_timeout: float = 60.0
    #: open connections (and requests in flight) before requests get 503 (0: no limit)
    max_connections: int = 0
    max_head_bytes: int = MAX_HEAD_BYTES

    _head_bytes = 0
    _head_done = False
    _reading_since: float | None = None
    _deadline = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._dynavault_conn_id = self.registry.new_id()
        super().connection_made(transport)
        # A connection that never sends a request is held to the same deadline as a slow one.
        self._reading_since = self.loop.time()
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._head_done:
            super().data_received(data)
            return
        # Count what arrives while a request's head is incomplete (httptools would buffer it without bound).
        self._head_bytes += len(data)
        super().data_received(data)
        if not self._head_done and self._head_bytes > self.max_head_bytes:
            self._refuse_head()

    def _refuse_head(self) -> None:
        if not self.transport.is_closing():
            log.warning("request head over %d bytes from %s; answered 431", self.max_head_bytes, self.client)
            self.transport.write(_431)
            self.transport.close()

    def send_400_response(self, msg: str) -> None:  # uvicorn's answer to a parser error
        if self.transport.is_closing():
            return  # the head was refused with 431 from inside the parser (on_headers_complete)
        super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[SCOPE_KEY] = self._dynavault_conn_id  # type: ignore[literal-required]
        self._reading_since = self.loop.time()
        if self._deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._head_done = True
        # A head that arrived whole in one read: measured exactly, but only when that read was large.
        if self._head_bytes > self.max_head_bytes and (
            len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers) > self.max_head_bytes
        ):
            self._refuse_head()
            # Stops the parser; uvicorn reports it as a parser error, whose 400 send_400_response skips.
            raise _HeadTooLarge
        cap = self.max_connections
        if cap and (len(self.connections) > cap or len(self.tasks) >= cap):
            app, self.app = self.app, _overloaded
            try:
                super().on_headers_complete()
            finally:
                self.app = app
        else:
            super().on_headers_complete()
        cycle = getattr(self, "cycle", None)
        if type(cycle) is RequestResponseCycle:
            # Its task has not run yet: every send it makes goes through _OneWriteCycle.send.
            cycle.__class__ = _OneWriteCycle

    def on_message_complete(self) -> None:
        self._head_done = False
        self._head_bytes = 0
        self._reading_since = None
        super().on_message_complete()

    def _arm(self, delay: float | None = None) -> None:
        if self.request_timeout > 0:
            self._deadline = self.loop.call_later(delay or self.request_timeout, self._check_deadline)

    def _check_deadline(self) -> None:
        self._deadline = None
        since = self._reading_since
        if since is None or self.transport.is_closing():
            return  # between requests (uvicorn's keep-alive timeout applies) or handling one
        left = since + self.request_timeout - self.loop.time()
        if left > 0:
            self._arm(left)
            return
        log.warning("request from %s not received within %ss; connection closed", self.client, self.request_timeout)
        if not self._head_done:
            self.transport.write(_408)
        # With the head read, the app is waiting for the body: closing ends that wait (it sees a disconnect).
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)
        self.registry.closed(self._dynavault_conn_id)


def protocol_class(connections: Connections, *, request_timeout: float,
                   max_connections: int) -> type[TrackedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, carrying the runtime's connection registry
    and the configured limits."""
    return type("DynavaultHttpProtocol", (TrackedHttpToolsProtocol,),
                {"registry": connections, "request_timeout": float(request_timeout),
                 "max_connections": int(max_connections)})
