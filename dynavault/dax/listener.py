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
        self._server = await asyncio.start_server(self._serve, self.host, self.port, ssl=self.ssl_context,
                                                  reuse_port=self.reuse_port or None, limit=_READ_BYTES)
        sock = self._server.sockets[0].getsockname()
        return sock[0], sock[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._open):
                writer.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5)
            except TimeoutError:
                pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._open) >= MAX_CONNECTIONS:
            writer.close()
            return
        self._open.add(writer)
        connection_id = self.new_connection_id()
        connection = _Connection(self, reader, writer, connection_id)
        try:
            await connection.run()
        except (_Close, CborStreamError, ConnectionError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError) as exc:
            log.debug("DAX connection %d closed: %s", connection_id, type(exc).__name__)
        except Exception:
            log.exception("DAX connection %d failed", connection_id)
        finally:
            connection.close()
            self._open.discard(writer)
            self.connection_closed(connection_id)
            writer.close()

    def request_id(self) -> str:
        return f"{self._rng.getrandbits(208):052X}"


class _Connection:
    def __init__(self, server: DaxListener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 connection_id: int) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.connection_id = connection_id
        self.decoder = StreamDecoder()
        self.auth: P.Authorization | None = None
        self.auth_error: AWSError | None = None
        self.user_agent = ""
        peer = writer.get_extra_info("peername") or ("127.0.0.1", 0)
        local = writer.get_extra_info("sockname") or ("127.0.0.1", 0)
        self.peer_ip = str(peer[0])
        self.local = (str(local[0]), int(local[1]))
        self._caller: Caller | None = None
        self._request: Request | None = None
        self.transport = writer.transport
        self.loop = asyncio.get_running_loop()
        self.last_read = self.loop.time()
        self.idle = False
        self._idle_timer = self.loop.call_later(IDLE_SECONDS, self._watch_idle)

    def close(self) -> None:
        self._idle_timer.cancel()

    async def value(self):
        while True:
            value = self.decoder.next()
            if value is not StreamDecoder.NEED_MORE:
                return value
            data = await self.reader.read(_READ_BYTES)
            if not data:
                raise _Close("end of stream" if not self.idle else "idle")
            self.last_read = self.loop.time()
            self.decoder.feed(data)

    def _watch_idle(self) -> None:
        """Close a connection that sent nothing for IDLE_SECONDS: one timer per connection, moved on only when
        it fires (a timer armed and cancelled around every read would cost more than the read)."""
        quiet = self.loop.time() - self.last_read
        if quiet >= IDLE_SECONDS:
            self.idle = True
            self.writer.close()
            return
        self._idle_timer = self.loop.call_later(IDLE_SECONDS - quiet, self._watch_idle)

    async def run(self) -> None:
        if await self.value() != P.MAGIC:
            raise _Close("not a DAX client")
        await self.value()  # layering: 0
        session = await self.value()
        if session is not None and not isinstance(session, (bytes, str)):
            raise _Close("bad session id")
        hello = await self.value()
        if isinstance(hello, dict) and isinstance(hello.get("UserAgent"), str):
            self.user_agent = hello["UserAgent"][:512]
        await self.value()  # types: 0
        while True:
            if await self.value() != 1:
                raise _Close("not a request")
            method = await self.value()
            count = P.ARG_COUNTS.get(method) if isinstance(method, int) else None
            if count is None:
                # its arguments cannot be skipped without knowing them: the stream is lost
                raise _Close("unknown method")
            start = self.decoder.consumed
            args = []
            for _ in range(count):
                args.append(await self.value())
                if self.decoder.consumed - start > MAX_REQUEST_BYTES:
                    raise _Close("request too large")
            if method == P.AUTHORIZE_CONNECTION:
                self._authorize(args)
                continue
            await self._answer(method, args)

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

    async def _answer(self, method: int, args: list) -> None:
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
                body = await self._run(method, args)
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
        if self.server.settle is not None and (self.server.pending is None or self.server.pending()):
            try:
                await self.server.settle()
            except Exception:
                log.exception("fsync failed; DAX %s not acknowledged", name)
                status = 500
                payload = self._error(AWSError("InternalServerError", "Internal server error", 500))
        if self.server.observe is not None:
            self.server.observe("dax", name, status)
        self.writer.write(payload)
        if self.transport.get_write_buffer_size() > _READ_BYTES:
            # a client that does not read its answers: wait for it (an answer sent whole costs no wait)
            await self.writer.drain()
        if close_after:
            raise _Close("authentication failed")

    async def _run(self, method: int, args: list) -> bytes:
        request = self._request
        if request is None:  # one per signed-in principal: made again at each authorizeConnection
            request = self._request = Request(self.server.engine, self.caller(), self.server.port)
        request.begin()
        handler = _METHODS[method]
        if self.server.threaded:
            result = await asyncio.to_thread(handler, request, *args)
        else:
            result = handler(request, *args)
        if isinstance(result, operations.Raw):
            return result.data
        return cbor2.dumps(result)

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
