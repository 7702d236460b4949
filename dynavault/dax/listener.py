"""The DAX data-plane listener: an asyncio TCP server (TLS when given an ``ssl.SSLContext``) speaking the
official DAX clients' CBOR protocol.

Per connection: the opening handshake, then requests one at a time (the protocol allows one in flight), each
answered after what it wrote is durable. Anything that is not the protocol (a wrong magic, an unknown method,
a value the CBOR scanner refuses) closes the connection with one debug line: a hostile stream costs a
bounded buffer and never a traceback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import cbor2

from dynavault.caller import Caller
from dynavault.errors import AWSError, IntegrityError

from . import multi, operations
from . import protocol as P
from .cbor_stream import CborStreamError, StreamDecoder
from .operations import Engine, Request

log = logging.getLogger("dynavault.dax")

#: a connection that sends nothing this long is closed (the clients' pools reap idle connections sooner)
IDLE_SECONDS = 600.0
#: open DAX connections at once; past this a new one is closed at once
MAX_CONNECTIONS = 1024
#: one request's arguments together (DynamoDB's largest requests are ~16 MB): a stream past it is closed
MAX_REQUEST_BYTES = 17 * 1024 * 1024
_READ_BYTES = 65536
_OK = b"\x80"  # an empty error header: the call succeeded
_INLINE = object()

_METHODS: dict[int, Callable] = {
    P.DEFINE_KEY_SCHEMA: operations.define_key_schema,
    P.DEFINE_ATTRIBUTE_LIST: operations.define_attribute_list,
    P.DEFINE_ATTRIBUTE_LIST_ID: operations.define_attribute_list_id,
    P.GET_ITEM: operations.get_item,
    P.PUT_ITEM: operations.put_item,
    P.UPDATE_ITEM: operations.update_item,
    P.DELETE_ITEM: operations.delete_item,
    P.QUERY: operations.query,
    P.SCAN: operations.scan,
    P.BATCH_GET_ITEM: multi.batch_get_item,
    P.BATCH_WRITE_ITEM: multi.batch_write_item,
    P.TRANSACT_WRITE_ITEMS: multi.transact_write_items,
    P.TRANSACT_GET_ITEMS: multi.transact_get_items,
}


class _Close(Exception):
    """End this connection quietly."""


@dataclass
class DaxListener:
    engine: Engine
    #: (access key, signature, string to sign, session token) -> protocol.Authorization; raises AWSError
    authorize: Callable[..., P.Authorization]
    host: str = "127.0.0.1"
    port: int = 8111
    ssl_context: ssl.SSLContext | None = None
    #: a connection id from the HTTP server's sequence (the table-key cache is per connection) and the hook
    #: that drops a closed connection's cache entries
    new_connection_id: Callable[[], int] = lambda: random.getrandbits(62)
    connection_closed: Callable[[int], None] = lambda _id: None
    #: waits until what the request wrote is on disk (group commit); None: commits are durable already
    settle: Callable[[], Awaitable[None]] | None = None
    #: whether settle() would wait (None: always call it)
    pending: Callable[[], bool] | None = None
    #: run the engine in a thread (a remote key service may block)
    threaded: bool = False
    observe: Callable[[str, str, int], None] | None = None
    reuse_port: bool = False
    _server: asyncio.base_events.Server | None = None
    _open: set = field(default_factory=set)
    _rng: random.Random = field(default_factory=lambda: random.Random(secrets.randbits(128)))

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), self.host, self.port,
                                                ssl=self.ssl_context, reuse_port=self.reuse_port or None)
        sock = self._server.sockets[0].getsockname()
        return sock[0], sock[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self._open):
                connection.transport.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5)
            except TimeoutError:
                pass

    def request_id(self) -> str:
        return f"{self._rng.getrandbits(208):052X}"


class _Connection(asyncio.Protocol):
    """One client connection. Its bytes are decoded as they arrive and each whole request is answered at once,
    inside the read callback; only a request that has to wait (for the group commit, or for a thread when the
    engine may block) runs as a task, with reading paused until its answer is written, so answers keep the
    order of the requests."""

    def __init__(self, server: DaxListener) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.connection_id = 0
        self.decoder = StreamDecoder()
        self.auth: P.Authorization | None = None
        self.auth_error: AWSError | None = None
        self.user_agent = ""
        self.peer_ip = "127.0.0.1"
        self.local = ("127.0.0.1", 0)
        self._caller: Caller | None = None
        self._request: Request | None = None
        #: the protocol's steps (a generator fed one decoded value at a time)
        self._steps = self._protocol()
        #: a request is being answered by a task: values wait in the decoder until it is done
        self._busy = False
        self._closed = False
        self._eof = False
        self._writing_paused = False
        self.loop = asyncio.get_running_loop()
        self.last_read = self.loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None

    # ---- the transport's callbacks -------------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        server = self.server
        if len(server._open) >= MAX_CONNECTIONS:
            self._closed = True
            transport.close()
            return
        server._open.add(self)
        self.connection_id = server.new_connection_id()
        peer = transport.get_extra_info("peername") or ("127.0.0.1", 0)
        local = transport.get_extra_info("sockname") or ("127.0.0.1", 0)
        self.peer_ip = str(peer[0])
        self.local = (str(local[0]), int(local[1]))
        next(self._steps)
        self._idle_timer = self.loop.call_later(IDLE_SECONDS, self._watch_idle)

    def connection_lost(self, exc) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self in self.server._open:
            self.server._open.discard(self)
            self.server.connection_closed(self.connection_id)
        self._closed = True

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self.last_read = self.loop.time()
        # unbounded? no: a busy connection reads nothing (reading is paused), and an idle one decodes what came
        # at once, leaving at most one partial value, which the decoder caps
        self.decoder.feed(data)
        if not self._busy:
            self._pump()

    def eof_received(self) -> bool:
        if self._busy:  # the client stopped sending: its last answer is still owed
            self._eof = True
            return True
        self._close("end of stream")
        return False

    def pause_writing(self) -> None:
        # a client that does not read its answers: read no more requests from it until it does
        self._writing_paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if not self._busy:
            self.transport.resume_reading()

    def _watch_idle(self) -> None:
        """Close a connection that sent nothing for IDLE_SECONDS: one timer per connection, moved on only when
        it fires (a timer armed and cancelled around every read would cost more than the read)."""
        quiet = self.loop.time() - self.last_read
        if quiet >= IDLE_SECONDS:
            self._close("idle")
            return
        self._idle_timer = self.loop.call_later(IDLE_SECONDS - quiet, self._watch_idle)

    def _close(self, why: str) -> None:
        if not self._closed:
            log.debug("DAX connection %d closed: %s", self.connection_id, why)
            self._closed = True
            self.transport.close()

    # ---- the stream --------------------------------------------------------------------------------------
    def _pump(self) -> None:
        """Hand the decoded values to the protocol's steps until the decoder needs more bytes, the connection
        closes, or a request has to wait (a task then calls this again)."""
        steps = self._steps
        decoder = self.decoder
        try:
            while not self._busy and not self._closed:
                value = decoder.next()
                if value is StreamDecoder.NEED_MORE:
                    return
                steps.send(value)
        except (_Close, CborStreamError, StopIteration) as exc:
            self._close(type(exc).__name__ + (f": {exc}" if str(exc) else ""))
        except Exception:
            log.exception("DAX connection %d failed", self.connection_id)
            self._close("failed")

    def _protocol(self):
        """The protocol's steps: each ``yield`` takes the next decoded value."""
        if (yield) != P.MAGIC:
            raise _Close("not a DAX client")
        yield  # layering: 0
        session = yield
        if session is not None and not isinstance(session, (bytes, str)):
            raise _Close("bad session id")
        hello = yield
        if isinstance(hello, dict) and isinstance(hello.get("UserAgent"), str):
            self.user_agent = hello["UserAgent"][:512]
        yield  # types: 0
        decoder = self.decoder
        while True:
            if (yield) != 1:
                raise _Close("not a request")
            method = yield
            count = P.ARG_COUNTS.get(method) if isinstance(method, int) else None
            if count is None:
                # its arguments cannot be skipped without knowing them: the stream is lost
                raise _Close("unknown method")
            start = decoder.consumed
            args = []
            for _ in range(count):
                args.append((yield))
                if decoder.consumed - start > MAX_REQUEST_BYTES:
                    raise _Close("request too large")
            if method == P.AUTHORIZE_CONNECTION:
                self._authorize(args)
                continue
            self._answer(method, args)

    def _authorize(self, args: list) -> None:
        if isinstance(args[4], str):
            self.user_agent = args[4][:512]
        try:
            auth = self.server.authorize(args[0], args[1], args[2], args[3])
        except AWSError as err:
            self.auth, self.auth_error = None, err
            return
        self.auth, self.auth_error = auth, None
        self._caller = None
        self._request = None

    def caller(self) -> Caller:
        if self._caller is None:
            auth = self.auth
            self._caller = Caller(account=auth.account, region=auth.region, principal_arn=auth.principal_arn,
                                  access_key=auth.access_key, connection_id=self.connection_id,
                                  source_ip=self.peer_ip, user_agent=self.user_agent,
                                  endpoint=f"{self.local[0]}:{self.local[1]}")
        return self._caller

    # ---- answering ---------------------------------------------------------------------------------------
    def _answer(self, method: int, args: list) -> None:
        server = self.server
        if server.threaded and method != P.ENDPOINTS and self.auth is not None and self.auth_error is None:
            self._wait(self._answer_in_thread(method, args))
            return
        name, status, payload, close_after = self._respond(method, args, _INLINE)
        if server.settle is not None and (server.pending is None or server.pending()):
            self._wait(self._finish_settled(name, status, payload, close_after))
            return
        self._send(name, status, payload, close_after)

    def _wait(self, coro) -> None:
        """Answer this request in a task; no other value is read until its answer is written."""
        self._busy = True
        self.transport.pause_reading()
        self.loop.create_task(coro)

    async def _answer_in_thread(self, method: int, args: list) -> None:
        try:
            result = await asyncio.to_thread(self._run_handler, method, args)
        except Exception as exc:  # judged by _respond, as when run inline
            result = exc
        name, status, payload, close_after = self._respond(method, args, result)
        await self._finish_settled(name, status, payload, close_after)

    async def _finish_settled(self, name: str, status: int, payload: bytes, close_after: bool) -> None:
        server = self.server
        try:
            if server.settle is not None:
                try:
                    await server.settle()
                except Exception:
                    log.exception("fsync failed; DAX %s not acknowledged", name)
                    status = 500
                    payload = self._error(AWSError("InternalServerError", "Internal server error", 500))
            self._send(name, status, payload, close_after)
        finally:
            self._busy = False
            if not self._closed:
                if not self._writing_paused:
                    self.transport.resume_reading()
                self._pump()
                if self._eof and not self._busy:
                    self._close("end of stream")

    def _send(self, name: str, status: int, payload: bytes, close_after: bool) -> None:
        if self.server.observe is not None:
            self.server.observe("dax", name, status)
        if self._closed:
            return
        self.transport.write(payload)
        if close_after:
            self._close("authentication failed")

    def _respond(self, method: int, args: list, done) -> tuple[str, int, bytes, bool]:
        """(operation name, status, answer bytes, close after sending) for one request. ``done``: the handler's
        result (or exception) when it ran elsewhere, else _INLINE (it runs here)."""
        name = P.OPERATION_NAMES.get(method, "unknown")
        close_after = False
        status = 200
        try:
            if self.auth_error is not None:
                close_after = True
                raise self.auth_error
            if self.auth is None:
                close_after = True
                raise AWSError("MissingAuthenticationTokenException", "Request is missing Authentication Token")
            if time.time() - self.auth.signed_at > P.MAX_SKEW_SECONDS:
                close_after = True
                raise AWSError("MissingAuthenticationTokenException",
                               "The connection's authorization expired: authorize it again")
            if method == P.ENDPOINTS:
                body = cbor2.dumps(self._endpoints())
            else:
                if done is _INLINE:
                    done = self._run_handler(method, args)
                elif isinstance(done, BaseException):
                    raise done
                body = done.data if isinstance(done, operations.Raw) else cbor2.dumps(done)
            payload = _OK + body
        except AWSError as err:
            status = err.status
            payload = self._error(err)
        except IntegrityError:
            log.error("integrity error on DAX %s: a stored blob failed authentication", name)
            status = 500
            payload = self._error(AWSError("InternalServerError", "Internal server error", 500))
        except Exception:
            log.exception("internal error on DAX %s", name)
            status = 500
            payload = self._error(AWSError("InternalServerError", "Internal server error", 500))
        return name, status, payload, close_after

    def _run_handler(self, method: int, args: list):
        request = self._request
        if request is None:  # one per signed-in principal: made again at each authorizeConnection
            request = self._request = Request(self.server.engine, self.caller(), self.server.port)
        request.begin()
        return _METHODS[method](request, *args)

    def _endpoints(self) -> list:
        host, port = self.local
        address = ipaddress.ip_address(host.split("%")[0])
        region = self.auth.region if self.auth else "us-east-1"
        return [{0: 1, 1: self.server.host if not _is_wildcard(self.server.host) else host,
                 2: address.packed, 3: port, 4: 1, 5: f"{region}a", 6: 0}]

    def _error(self, err: AWSError) -> bytes:
        detail = [self.server.request_id(), err.code, err.status]
        if err.extra and "dax_cancellation_reasons" in err.extra:
            detail.append(err.extra["dax_cancellation_reasons"])
        return (cbor2.dumps(P.error_codes(err.code)) + cbor2.dumps(err.message or err.code)
                + cbor2.dumps(detail))


def _is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")
