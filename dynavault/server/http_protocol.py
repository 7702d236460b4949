"""The server's HTTP/1.1 protocol: httptools on an asyncio Protocol, calling the app without ASGI messages.

uvicorn still runs the server (sockets, signals, lifespan, graceful shutdown) and instantiates this class per
connection; what it no longer does is the per-request ASGI machinery (scope dict, request/response cycle
object, an Event and message dicts for the body, two sends and a header regex per response), which cost about
as much CPU as a GetItem's table lookup, decrypt and tree walk together. The app gets a Request (exchange.py)
with its headers already a dict of str and answers in one socket send; the web console and any other ASGI
application still get ASGI (Request.asgi()).

What a client can make the server hold or wait for stays bounded as before (connection.py):
- the request line and headers together at most ``max_head_bytes``, else 431 and the connection is closed;
- a request must arrive whole within ``request_timeout`` seconds of its first byte, and a new connection
  must start one within that time (slowloris), else 408 / closed; an idle keep-alive connection is closed
  after ``timeout_keep_alive`` (uvicorn's setting); one timer per connection serves both, re-armed only when
  it fires (not per request);
- at most ``max_connections`` open connections (and requests in flight): past that 503;
- a body is buffered only while the app reads it: past 64 KiB unread the socket stops being read, and the
  body of a request already answered (refused before its body was read) is parsed and dropped;
- pipelined requests are answered one at a time, in order; reading pauses while one waits, and the next
  starts only when the socket's write buffer is below its high-water mark.
Malformed requests get uvicorn's answers: 400 "Invalid HTTP request received." and the connection closed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import urllib.parse
import zlib
from collections import deque
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE
from uvicorn.protocols.utils import get_local_addr, get_remote_addr

from .exchange import Disconnected, Request, asgi_scope

log = logging.getLogger("dynavault.server")

#: request line + headers of one request (AWS's Application Load Balancer: 64 KiB of request headers)
MAX_HEAD_BYTES = 64 * 1024
#: unread body bytes buffered before the socket stops being read
HIGH_WATER = 64 * 1024

_400_MSG = b"Invalid HTTP request received."
_400 = (STATUS_LINE[400] + b"content-type: text/plain; charset=utf-8\r\ncontent-length: "
        + str(len(_400_MSG)).encode() + b"\r\nconnection: close\r\n\r\n" + _400_MSG)
_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: 31\r\nconnection: close\r\n\r\nRequest Header Fields Too Large")
_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: 15\r\nconnection: close\r\n\r\nRequest Timeout")
_500 = (STATUS_LINE[500] + b"content-type: text/plain; charset=utf-8\r\ncontent-length: 21\r\n"
        b"connection: close\r\n\r\nInternal Server Error")
_503_BODY = (b'{"__type":"com.amazon.coral.service#ServiceUnavailableException",'
             b'"message":"The service is currently unavailable or busy."}')
_503_CRC = str(zlib.crc32(_503_BODY)).encode()
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _HeadTooLarge(Exception):
    pass


def _overloaded_headers() -> list[tuple[bytes, bytes]]:
    """The answer past ``max_connections``: 503 (retried by every AWS SDK), then the connection closes. It
    carries a request id and crc32 like every DynamoDB answer (the id from the OS: this path is rare)."""
    return [(b"content-type", b"application/x-amz-json-1.0"), (b"content-length", str(len(_503_BODY)).encode()),
            (b"x-amz-crc32", _503_CRC), (b"x-amzn-requestid", f"{secrets.randbits(208):052X}".encode())]


async def _resume(coro, waiting_on) -> None:
    """Carry on a coroutine started outside any Task (HttpProtocol._start) from the point where it waits on the
    future ``waiting_on`` (None: it yielded to let the loop run, as asyncio.sleep(0) does), as a Task would:
    resumed when that future is done, reading its outcome itself; cancelling this Task cancels that future,
    which the coroutine then sees where it waits."""
    while True:
        if waiting_on is None:
            await asyncio.sleep(0)
        else:
            waiting_on._asyncio_future_blocking = False
            try:
                await waiting_on
            except BaseException:  # noqa: S110 - the coroutine takes the outcome from the future itself
                pass
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return


class Exchange(Request):
    """One request on a connection of ours: its body as the parser delivers it, its response in one send."""

    __slots__ = ("proto", "keep_alive", "expect", "parts", "buffered", "complete", "responded", "disconnected",
                 "waiter", "overloaded")

    def __init__(self, proto: HttpProtocol, method: str, path: str, raw_path: str, query: str,
                 headers: dict[str, str], keep_alive: bool, expect: bool) -> None:
        super().__init__(method, path, raw_path, query, headers, proto.client, proto.server, proto.conn_id)
        self.proto = proto
        self.keep_alive = keep_alive
        self.expect = expect  # the client waits for "100 Continue" before it sends the body
        self.parts: list[bytes] = []
        self.buffered = 0
        self.complete = False
        self.responded = False
        self.disconnected = False
        self.waiter: asyncio.Future | None = None
        self.overloaded = False

    # -- parser side -----------------------------------------------------------------------------------------
    def on_body(self, data: bytes) -> None:
        if self.responded:
            return  # answered without its body (refused early): the rest is dropped
        self.parts.append(data)
        self.buffered += len(data)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)
        elif self.buffered > HIGH_WATER:
            self.proto.pause_reading()

    def on_complete(self) -> None:
        self.complete = True
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def on_lost(self) -> None:
        self.disconnected = True
        self.on_complete()

    # -- app side --------------------------------------------------------------------------------------------
    async def chunk(self) -> tuple[bytes, bool]:
        if not self.parts and not self.complete:
            if self.expect:
                self.expect = False
                if not self.proto.transport.is_closing():
                    self.proto.transport.write(_CONTINUE)
            while not self.parts and not self.complete:
                self.waiter = self.proto.loop.create_future()
                self.proto.resume_reading()
                await self.waiter
        if self.disconnected:
            raise Disconnected
        parts = self.parts
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        self.buffered = 0
        if not self.complete:
            self.proto.resume_reading()
        return data, not self.complete

    async def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.send(status, headers, body)

    async def respond_lines(self, status: int, lines: bytes, body: bytes) -> None:
        self.send_lines(status, lines, body)

    def send(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.send_lines(status, b"".join([b"%s: %s\r\n" % pair for pair in headers]), body)

    def send_lines(self, status: int, lines: bytes, body: bytes) -> None:
        """The whole response in one write (head and body together: one send, one wake-up of the client)."""
        if self.responded:
            raise RuntimeError("response already sent")
        self.responded = True
        self.parts.clear()
        proto = self.proto
        transport = proto.transport
        if self.disconnected or transport.is_closing():
            proto.response_done(self)
            return
        transport.write(b"".join((STATUS_LINE[status], proto.date_lines(), lines,
                                  b"\r\n" if self.keep_alive else b"connection: close\r\n\r\n",
                                  body if self.method != "HEAD" else b"")))
        if not self.keep_alive:
            transport.close()
        proto.response_done(self)

    def asgi(self) -> tuple[dict, Any, Any]:
        scope = asgi_scope(self)
        start: list = []
        parts: list[bytes] = []

        async def receive() -> dict:
            if self.responded:
                return {"type": "http.disconnect"}
            try:
                body, more = await self.chunk()
            except Disconnected:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": body, "more_body": more}

        async def send(message: dict) -> None:
            kind = message["type"]
            if kind == "http.response.start" and not start:
                start[:] = [message["status"], list(message.get("headers", []))]
            elif kind == "http.response.body" and start and not self.responded:
                parts.append(message.get("body", b""))
                if not message.get("more_body", False):
                    status, headers = start
                    body = b"".join(parts)
                    if not any(n.lower() == b"content-length" for n, _ in headers):
                        headers.append((b"content-length", str(len(body)).encode()))
                    self.send(status, [(n.lower(), v) for n, v in headers], body)
            else:
                raise RuntimeError(f"unexpected ASGI message {kind!r}")

        return scope, receive, send


class HttpProtocol(asyncio.Protocol):
    """One client connection. uvicorn's Server makes one per connection (``config``, ``server_state``, its
    connection and task sets, are uvicorn's), so shutdown, lifespan and signals stay uvicorn's."""

    #: set per server by connection.protocol_class
    registry: Any = None
    request_timeout: float = 60.0
    max_connections: int = 0
    max_head_bytes: int = MAX_HEAD_BYTES

    def __init__(self, config, server_state, app_state: dict | None = None, _loop=None) -> None:
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        # The app's own entry (DynavaultApp.handle); any other application is spoken to in ASGI.
        self.handle = getattr(self.app, "handle", None)
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.keep_alive_timeout = float(config.timeout_keep_alive)
        self.parser = httptools.HttpRequestParser(self)
        try:  # answer the first of pipelined requests even when the client closes its side after sending
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        except AttributeError:  # httptools < 0.6.3
            pass
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int | None] | None = None
        self.conn_id = 0
        self.current: Exchange | None = None  # the request being answered
        self.parsing: Exchange | None = None  # the request whose body the parser delivers
        self.pipeline: deque[Exchange] = deque()
        self.ready: Exchange | None = None  # to start when the parser returns
        self.read_paused = False
        self.write_paused = False
        self.closing = False
        self._default: list | None = None
        self._default_lines = b""
        # the request head being parsed
        self.url = b""
        self.raw: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.head_done = False
        # timers: one per connection, for the request deadline and the keep-alive timeout
        self.reading_since: float | None = None
        self.idle_since: float | None = None
        self.timer: asyncio.TimerHandle | None = None

    # -- connection ------------------------------------------------------------------------------------------
    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.connections.add(self)
        self.transport = transport
        self.client = get_remote_addr(transport)
        self.server = get_local_addr(transport)
        if self.registry is not None:
            self.conn_id = self.registry.new_id()
        # A connection that never sends a request is held to the same deadline as a slow one.
        self.reading_since = self.loop.time()
        self._arm(self.request_timeout or self.keep_alive_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for ex in (self.current, *self.pipeline):
            if ex is not None:
                ex.on_lost()
        if self.parsing is not None:
            self.parsing.on_lost()
        self.pipeline.clear()
        if exc is None:
            self.transport.close()
        if self.registry is not None:
            self.registry.closed(self.conn_id)

    def eof_received(self) -> None:
        pass

    def shutdown(self) -> None:
        """uvicorn's graceful stop: close when idle, else after the response in progress."""
        self.closing = True
        if self.current is None:
            self.transport.close()
        else:
            self.current.keep_alive = False
            for ex in self.pipeline:
                ex.keep_alive = False

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self.pipeline:
            self.read_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._start_next()

    def date_lines(self) -> bytes:
        """The headers uvicorn keeps current for every response (the Date header), as head lines."""
        default = self.server_state.default_headers
        if default is not self._default:
            self._default = default
            self._default_lines = b"".join([b"%s: %s\r\n" % pair for pair in default])
        return self._default_lines

    # -- bytes in --------------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        head_done = self.head_done
        if not head_done:
            # Count what arrives while a request's head is incomplete (httptools would buffer it without bound).
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            log.warning("Unsupported upgrade request.")
        except httptools.HttpParserError:
            self.ready = None
            if self.transport.is_closing():
                return  # refused from inside the parser (431)
            log.warning("Invalid HTTP request received.")
            self.transport.write(_400)
            self.transport.close()
            return
        if not head_done and not self.head_done and self.head_bytes > self.max_head_bytes:
            self.ready = None
            self._refuse_head()
            return
        ex = self.ready
        if ex is not None:
            self.ready = None
            self._start(ex)

    def _refuse_head(self) -> None:
        if not self.transport.is_closing():
            log.warning("request head over %d bytes from %s; answered 431", self.max_head_bytes, self.client)
            self.transport.write(_431)
            self.transport.close()

    # -- httptools callbacks ---------------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.raw = []
        self.reading_since = self.loop.time()
        self.idle_since = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True
        raw = self.raw
        if self.head_bytes > self.max_head_bytes and (
                len(self.url) + sum(len(n) + len(v) + 4 for n, v in raw) > self.max_head_bytes):
            self._refuse_head()
            raise _HeadTooLarge  # stops the parser; data_received sees the connection closing and stays quiet
        # names lower-case; llhttp keeps trailing whitespace, which RFC 9110 §5.5 excludes from a value
        headers = {n.decode("latin-1").lower(): v.rstrip(b" \t").decode("latin-1") for n, v in raw}
        if len(headers) != len(raw):  # a repeated header: its values joined, in order
            headers = {}
            for n, v in raw:
                key, text = n.decode("latin-1").lower(), v.rstrip(b" \t").decode("latin-1")
                headers[key] = f"{headers[key]},{text}" if key in headers else text
        expect = headers.get("expect")
        expect = expect is not None and expect.lower() == "100-continue"
        parser = self.parser
        method = parser.get_method().decode("ascii")
        url = self.url
        if url == b"/":
            path = raw_path = "/"
            query = ""
        else:
            parsed = httptools.parse_url(url)
            raw = parsed.path
            raw_path = path = raw.decode("ascii")  # non-ASCII: the parser's error, 400 (as uvicorn)
            if "%" in path:
                path = urllib.parse.unquote(path)
            query = (parsed.query or b"").decode("latin-1")
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        ex = Exchange(self, method, path, raw_path, query, headers, keep_alive and not self.closing, expect)
        cap = self.max_connections
        if cap and (len(self.connections) > cap or len(self.tasks) >= cap):
            ex.overloaded = True
        self.parsing = ex
        if self.current is None and not self.pipeline and not self.write_paused:
            # Started once the parser has taken in what this read brought (its body, usually whole)
            self.current = self.ready = ex
        else:
            self.pipeline.append(ex)
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is not None:
            ex.on_body(body)

    def on_message_complete(self) -> None:
        self.head_done = False
        self.head_bytes = 0
        self.reading_since = None
        ex = self.parsing
        if ex is not None:
            self.parsing = None
            ex.on_complete()

    # -- requests --------------------------------------------------------------------------------------------
    def _start(self, ex: Exchange) -> None:
        """Run the request's coroutine at once, in this callback: most requests (a GetItem whose body came
        with its head) finish without waiting, and need no Task and no further turn of the loop. One that
        waits (for its body, the group commit, a thread) goes on in a Task from where it stopped."""
        self.current = ex
        coro = self._run(ex)
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return
        task = self.loop.create_task(_resume(coro, waiting_on))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _start_next(self) -> None:
        if self.current is None and self.pipeline and not self.write_paused and not self.transport.is_closing():
            self._start(self.pipeline.popleft())
            self.resume_reading()

    async def _run(self, ex: Exchange) -> None:
        try:
            if ex.overloaded:
                ex.keep_alive = False
                ex.send(503, _overloaded_headers(), _503_BODY)
            elif self.handle is not None:
                await self.handle(ex)
            else:
                await self.app(*ex.asgi())
        except BaseException as exc:
            log.error("Exception in the HTTP application", exc_info=exc)
            if not ex.responded:
                ex.responded = True
                if not self.transport.is_closing():
                    self.transport.write(_500)
                self.transport.close()
                self.response_done(ex)
            else:
                self.transport.close()
            if not isinstance(exc, Exception):
                raise
        else:
            if not ex.responded:
                if not ex.disconnected:
                    log.error("the application returned without answering")
                    if not self.transport.is_closing():
                        self.transport.write(_500)
                self.transport.close()
                ex.responded = True
                self.response_done(ex)

    def response_done(self, ex: Exchange) -> None:
        self.server_state.total_requests += 1
        if self.current is ex:
            self.current = None
        if self.transport.is_closing():
            return
        if self.pipeline:
            # on the next turn of the loop: a request answered at once must not start the next one inside its
            # own call (a read full of pipelined requests would nest as deep as it is long)
            self.loop.call_soon(self._start_next)
        else:
            self.idle_since = self.loop.time()
            # the rest of a body answered unread is read to be dropped
            self.resume_reading()

    # -- time limits -----------------------------------------------------------------------------------------
    def _arm(self, delay: float) -> None:
        if delay > 0:
            self.timer = self.loop.call_later(delay, self._check_time)

    def _check_time(self) -> None:
        self.timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        limit = self.request_timeout
        since = self.reading_since
        if since is not None:
            if limit > 0:
                left = since + limit - now
                if left <= 0:
                    log.warning("request from %s not received within %ss; connection closed", self.client, limit)
                    if not self.head_done:
                        self.transport.write(_408)
                    # With the head read, the app waits for the body: closing ends that wait (a disconnect).
                    self.transport.close()
                    return
                self._arm(left)
                return
        elif self.current is None and not self.pipeline and self.idle_since is not None:
            left = self.idle_since + self.keep_alive_timeout - now
            if left <= 0:
                self.transport.close()
                return
            self._arm(left if limit <= 0 else min(left, limit))
            return
        self._arm(limit if limit > 0 else self.keep_alive_timeout)
