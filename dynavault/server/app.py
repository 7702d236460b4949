"""The ASGI application: one port, one table of handlers keyed by X-Amz-Target.

A request goes: method and Content-Type (else DynamoDB's 404) -> size limit -> target lookup -> SigV4 on the
headers (before any body is read; a small body of a request refused here is still parsed first, so that a body
that is not JSON is a SerializationException as in DynamoDB) -> body -> SigV4 over the body's bytes ->
decompress -> JSON parse -> shape validation -> handler(caller, body) -> JSON response with x-amzn-RequestId
and x-amz-crc32, compressed when large and the client accepts it.
Every failure becomes an AWS JSON error body; a bug becomes a logged 500, never a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

try:
    # ISA-L's CRC-32 (carry-less multiply): the same checksum as zlib.crc32 at ~1/18 of its cost, which on a
    # 20-item Query's 22 KB answer was 8 % of the request's instructions
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - the same function, slower
    from zlib import crc32

from dynavault.caller import Caller
from dynavault.errors import AWSError, IntegrityError, MustBlock, deferrable
from dynavault.small_ints import small_int

from .access_log import AccessLog
from .content_coding import (
    COMPRESS_MIN_BYTES,
    MAX_BODY_BYTES,
    accepted_encoding,
    compress,
    decompress,
    too_large,
)
from .durability import GroupCommit
from .exchange import AsgiRequest, Disconnected, Request
from .sigv4 import Identity, SigV4Verifier

log = logging.getLogger("dynavault.server")

Handler = Callable[[Caller, dict], dict]

JSON_10 = "application/x-amz-json-1.0"
JSON_11 = "application/x-amz-json-1.1"
#: plain JSON, which DynamoDB also accepts (and echoes) for its JSON protocol
JSON_PLAIN = "application/json"
_CORAL = "com.amazon.coral.service#"
_CORAL_VALIDATE = "com.amazon.coral.validate#"
_CORS_EXPOSE = b"x-amzn-RequestId,x-amzn-ErrorType,x-amz-crc32,Date"
_KNOWN_TYPES = frozenset((JSON_10, JSON_11, JSON_PLAIN))
_CONTENT_TYPES = {JSON_10: JSON_10.encode(), JSON_11: JSON_11.encode(), JSON_PLAIN: JSON_PLAIN.encode(),
                  "text/plain": b"text/plain"}
#: what DynamoDB answers to anything but a POST (or a CORS preflight) and to a body of an unknown Content-Type
#: (recorded by dynalite's tests against the live service: 404, this body, x-amz-crc32 3552371480)
_NOT_FOUND_BODY = b"<UnknownOperationException/>\n"
#: a request refused before authentication has its body read only up to this size (announced by
#: Content-Length), so that a body that is not JSON is answered SerializationException as DynamoDB answers
#: (it parses the body before it looks at the target or the signature); larger bodies are not read unsigned
_EARLY_BODY_BYTES = 64 * 1024
_HOST_RE = re.compile(r"(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")
#: Callers kept for reuse (see DynavaultApp._caller), and the longest user agent kept with one: the table
#: stays small whatever clients send
_MAX_CALLERS = 4096
_MAX_KEPT_AGENT = 512


@dataclass(frozen=True, slots=True)
class ServiceFront:
    """How one AWS service is spoken on the wire."""

    name: str  # "dynamodb", "dynamodbstreams", "kms", "cloudtrail"
    target_prefix: str  # e.g. "DynamoDB_20120810"
    signing_name: str  # SigV4 credential-scope service
    error_prefix: str  # __type namespace for service errors
    content_type: str
    #: optional request validator: (operation, body) -> the body as handlers get it (members sent as JSON
    #: null removed); raises AWSError
    validate: Callable[[str, dict], dict] | None = None


@dataclass(frozen=True, slots=True)
class Route:
    front: ServiceFront
    operation: str
    handler: Handler


class RouteTable:
    """Target string -> route; built once from each service's ``operations()`` mapping."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._prefixes: dict[str, ServiceFront] = {}

    def mount(self, front: ServiceFront, operations: dict[str, Handler]) -> None:
        self._prefixes[front.target_prefix] = front
        for op, handler in operations.items():
            self._routes[f"{front.target_prefix}.{op}"] = Route(front, op, handler)

    def get(self, target: str) -> Route | None:
        return self._routes.get(target)

    def front_for(self, target: str) -> ServiceFront | None:
        prefix, _, _ = target.rpartition(".")
        return self._prefixes.get(prefix)


class _RequestIds:
    """Request ids from a fast PRNG seeded by the OS: unique in practice and cheap (a CSPRNG draw per
    request cost ~4 % of a GetItem). Ids need not be secret; a counter would leak the request rate.

    DynamoDB's ids are 52 characters of [0-9A-Z] (these use [0-9A-F]); KMS and CloudTrail use version-4 UUIDs.
    An answer that belongs to no service (a 404, the health check, an unknown target) is DynamoDB's."""

    def __init__(self) -> None:
        self._rng = random.Random(secrets.randbits(256))

    def __call__(self, front: ServiceFront | None) -> str:
        if front is None or front.name.startswith("dynamodb"):
            # 26 random bytes as 52 hex digits: a third of the cost of formatting a 208-bit int as hex
            return self._rng.randbytes(26).hex().upper()
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


def _error_body(err: AWSError, front: ServiceFront | None) -> bytes:
    if err.type_prefix is not None:
        prefix = err.type_prefix
    elif front is None:
        prefix = _CORAL
    elif err.code == "ValidationException" and front.name.startswith("dynamodb"):
        prefix = _CORAL_VALIDATE
    else:
        prefix = front.error_prefix
    body: dict[str, Any] = {"__type": prefix + err.code}
    if err.message is not None:
        # AWS's front end spells the key with a capital M for this one type (as dynalite records).
        body["Message" if err.code == "SerializationException" else "message"] = err.message
    if err.extra:
        body.update(err.extra)
    return orjson.dumps(body)


def cors_origins(setting: str) -> frozenset[str]:
    """``--cors-origin``: comma-separated origins allowed to read responses from a browser; ``*`` for any."""
    return frozenset(o.strip() for o in setting.split(",") if o.strip())


class DynavaultApp:
    """ASGI entry point. ``on_startup``/``on_shutdown`` are called from the lifespan protocol."""

    def __init__(
        self,
        routes: RouteTable,
        verifier: SigV4Verifier,
        *,
        default_region: str = "us-east-1",
        metrics: Callable[[], tuple[bytes, str]] | None = None,
        on_startup: Callable[[], Any] | None = None,
        on_shutdown: Callable[[], Any] | None = None,
        observe: Callable[[str, str, int], None] | None = None,
        trusted_service_keys: frozenset[str] = frozenset(),
        durability: GroupCommit | None = None,
        cors: frozenset[str] = frozenset(),
        access_log: AccessLog | None = None,
        offload: Callable[[str, str], str] | None = None,
    ) -> None:
        self.routes = routes
        self.verifier = verifier
        self.default_region = default_region
        self.metrics = metrics
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        self.observe = observe
        self.trusted_service_keys = trusted_service_keys
        self.durability = durability
        #: origins given Access-Control-* headers; empty: none (a web page must not drive a local server)
        self.cors = cors
        #: one line per request (access_log.py); None: off, and the request path pays one test for it
        self.access_log = access_log
        #: (service, operation) -> "loop" | "defer" | "thread": where a handler runs when the database's key
        #: service is remote (None: always on the loop). "defer": on the loop until it would wait on KMS.
        self.offload = offload
        self._request_id = _RequestIds()  # per app: its PRNG state is nobody else's
        self._callers: dict[tuple, Caller] = {}
        #: the web console's ASGI handler for /console (set by the runtime), or None
        self.console: Callable[..., Any] | None = None
        #: injected faults (faults.FaultRegistry, set by the runtime), or None
        self.faults: Any = None

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.handle(AsgiRequest(scope, receive, send))
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.on_startup:
                        result = self.on_startup()
                        if hasattr(result, "__await__"):
                            await result
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    if self.on_shutdown:
                        result = self.on_shutdown()
                        if hasattr(result, "__await__"):
                            await result
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def handle(self, req: Request) -> None:
        """Serve one HTTP request (from our protocol, or from an ASGI server through AsgiRequest)."""
        path = req.path
        if self.console is not None and (path == "/console" or path.startswith("/console/")):
            await self.console(*req.asgi())
            return
        headers = req.headers
        origin = headers.get("origin")
        method = req.method
        if method == "OPTIONS":
            allowed = self._allowed_origin(origin)
            if allowed is not None:
                await self._preflight(req, allowed)
                return
        elif method in ("GET", "HEAD"):
            await self._get(req, origin)
            return
        content_type = headers.get("content-type", "")
        if content_type not in _KNOWN_TYPES:
            content_type = content_type.split(";")[0].strip()
        known_type = content_type in _KNOWN_TYPES
        if method != "POST" or (not known_type and _has_body(headers)):
            # DynamoDB's answer to any other method (an OPTIONS that is no allowed preflight included) and to a
            # body it cannot read as JSON: 404, not a JSON error.
            await self._respond(req, 404, _NOT_FOUND_BODY, "", self._request_id(None), origin)
            return

        target = headers.get("x-amz-target", "")
        route = self.routes.get(target)
        front = route.front if route else self.routes.front_for(target)
        if not known_type:
            content_type = front.content_type if front else JSON_10
        request_id = self._request_id(front)
        status = 200
        query = req.query
        started = time.perf_counter() if self.access_log is not None else 0.0
        caller = params = None
        try:
            length = headers.get("content-length")
            if length is not None and (small_int(length, 64) or 0) > MAX_BODY_BYTES:
                raise too_large()
            if route is None:
                await self._early_parse(req)
                raise AWSError("UnknownOperationException", None, type_prefix=_CORAL)
            # Headers first: an unsigned request or an unknown key is answered before its body is read (the
            # connection layer then discards the rest of the body without keeping it).
            try:
                pending = self.verifier.authenticate(headers, route.front.signing_name, query)
            except AWSError:
                await self._early_parse(req)
                raise
            body = await self._read_body(req)
            identity = self.verifier.check_body(pending, method, req.raw_path or "/", query, headers, body)
            if "content-encoding" in headers:
                body = decompress(body, headers["content-encoding"])
            params = self._parse_json(body)
            if route.front.validate is not None:
                params = route.front.validate(route.operation, params)
            caller = self._caller(req, identity, headers.get("user-agent", ""))
            cred = identity.credential
            if cred.access_key_id in self.trusted_service_keys and "x-dynavault-on-behalf-of" in headers:
                if pending.check and "x-dynavault-on-behalf-of" not in pending.signed:
                    # Whom the request acts for must be covered by the signature, or a captured request
                    # could be replayed for another caller.
                    raise AWSError("InvalidSignatureException", "'X-Dynavault-On-Behalf-Of' must be a "
                                   "'SignedHeader' in the AWS Authorization.", type_prefix=_CORAL)
                caller = self._on_behalf(caller, headers["x-dynavault-on-behalf-of"])
            if self.faults is not None and self.faults.active:  # injected before the handler: nothing written
                await self.faults.before(route.front.name, route.operation, caller, params)
            if self.offload is None:
                result = route.handler(caller, params)
            else:
                result = await self._run_off_loop(route, caller, params)
            payload = orjson.dumps(result) if result else b"{}"
        except Disconnected:
            return  # nobody to answer; nothing was done
        except AWSError as err:
            status = err.status
            payload = _error_body(err, front)
        except IntegrityError:
            log.error("integrity error on %s (request %s): a stored blob failed authentication", target, request_id)
            status = 500
            payload = _error_body(AWSError("InternalServerError", "Internal server error", 500), front)
        except Exception:
            log.exception("internal error on %s (request %s)", target, request_id)
            status = 500
            payload = _error_body(AWSError("InternalServerError", "Internal server error", 500), front)
        durability = self.durability
        if durability is not None and durability.pending():
            # Whatever this request wrote or saw must be on disk before it is acknowledged (group commit).
            try:
                await self.durability.settle()
            except Exception:
                log.exception("fsync failed; request %s not acknowledged", request_id)
                status = 500
                payload = _error_body(AWSError("InternalServerError", "Internal server error", 500), front)
        if self.observe is not None:
            # Fixed labels for targets that name no operation: a client must not be able to grow /metrics.
            if route is not None:
                self.observe(route.front.name, route.operation, status)
            else:
                self.observe(front.name if front else "unknown", "unknown", status)
        coding = None
        if len(payload) >= COMPRESS_MIN_BYTES and "accept-encoding" in headers:
            coding = accepted_encoding(headers["accept-encoding"])
            if coding is not None:
                payload = compress(payload, coding)
        if self.access_log is not None:
            self._log_access(req, route, front, request_id, caller, params, status, payload, started)
        await self._respond(req, status, payload, content_type, request_id, origin, coding)

    async def _run_off_loop(self, route: Route, caller: Caller, params: dict) -> dict:
        """A handler that may wait on a remote KMS runs in a thread, so a slow key service stalls only the
        requests that need it; one that needs a key only on a cache miss starts on the loop and moves to a
        thread when it misses (it raises MustBlock before changing anything)."""
        where = self.offload(route.front.name, route.operation)
        if where == "defer":
            try:
                with deferrable():
                    return route.handler(caller, params)
            except MustBlock:
                pass
        elif where == "loop":
            return route.handler(caller, params)
        return await asyncio.to_thread(route.handler, caller, params)

    async def _early_parse(self, req: Request) -> None:
        """For a request about to be refused before its body is read: read a small uncompressed body and raise
        SerializationException if it is not JSON, the error DynamoDB checks first."""
        headers = req.headers
        length = headers.get("content-length", "")
        if (not 0 < (small_int(length) or 0) <= _EARLY_BODY_BYTES
                or headers.get("content-encoding", "identity").strip().lower() != "identity"):
            return
        self._parse_json(await self._read_body(req))

    @staticmethod
    def _endpoint(req: Request) -> str:
        """host:port this server was reached at: the request's Host header when it is a host name or address,
        else the listening socket's address."""
        host = req.headers.get("host", "")
        if host and _HOST_RE.fullmatch(host):
            return host
        server = req.server or ("127.0.0.1", 0)
        name = f"[{server[0]}]" if ":" in str(server[0]) else str(server[0])
        return f"{name}:{server[1]}" if server[1] is not None else name

    def _log_access(self, req: Request, route: Route | None, front: ServiceFront | None,
                    request_id: str, caller: Caller | None, params: dict | None, status: int, payload: bytes,
                    started: float) -> None:
        headers = req.headers
        length = headers.get("content-length", "")
        self.access_log.request(
            request_id=request_id, service=route.front.name if route else (front.name if front else "unknown"),
            operation=route.operation if route else "unknown", caller=caller, params=params, status=status,
            payload=payload, bytes_in=small_int(length) or 0, started=started,
            peer=(req.client or ("-", 0))[0], user_agent=headers.get("user-agent", ""))

    def _caller(self, req: Request, identity: Identity, user_agent: str) -> Caller:
        """The request's Caller. Immutable, so one is kept per (connection, identity, user agent, Host) and
        shared by that connection's requests: a keep-alive client sends the same ones each time (the endpoint
        is worked out from the Host header only when a Caller is made)."""
        client = req.client or ("127.0.0.1", 0)
        cred = identity.credential
        connection_id = req.connection_id or hash(client)
        host = req.headers.get("host", "")
        key = (connection_id, client[0], cred.access_key_id, cred.account_id, cred.principal_arn, identity.region,
               user_agent, host)
        caller = self._callers.get(key)
        if caller is None:
            endpoint = self._endpoint(req)
            caller = Caller(
                account=cred.account_id,
                region=identity.region,
                principal_arn=cred.principal_arn,
                access_key=cred.access_key_id,
                connection_id=connection_id,
                source_ip=client[0],
                user_agent=user_agent,
                endpoint=endpoint,
            )
            if len(user_agent) <= _MAX_KEPT_AGENT and len(host) <= _MAX_KEPT_AGENT:
                if len(self._callers) >= _MAX_CALLERS:
                    self._callers.clear()
                self._callers[key] = caller
        return caller

    @staticmethod
    def _on_behalf(caller: Caller, header: str) -> Caller:
        """A trusted database acting for one of its callers (what DynamoDB does with AWS KMS)."""
        try:
            who = orjson.loads(header)
            return Caller(
                account=str(who["account"]),
                region=caller.region,
                principal_arn=str(who["principal"]),
                access_key=caller.access_key,
                connection_id=caller.connection_id,
                source_ip=caller.source_ip,
                user_agent=caller.user_agent,
                endpoint=caller.endpoint,
                via_service=who.get("via") or None,
                is_service=bool(who.get("service")),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise AWSError("IncompleteSignatureException", "Malformed x-dynavault-on-behalf-of header",
                           type_prefix=_CORAL) from None

    @staticmethod
    async def _read_body(req: Request) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk, more = await req.chunk()
            if chunk:
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise too_large()
                chunks.append(chunk)
            if not more:
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @staticmethod
    def _parse_json(body: bytes) -> dict:
        if not body.strip():
            return {}
        try:
            params = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise AWSError("SerializationException", None, type_prefix=_CORAL) from None
        if not isinstance(params, dict):
            raise AWSError("SerializationException", "Start of list found where not expected.", type_prefix=_CORAL)
        return params

    async def _get(self, req: Request, origin: str | None) -> None:
        path = req.path
        request_id = self._request_id(None)
        if path == "/metrics" and self.metrics is not None:
            data, ctype = self.metrics()
            await self._respond(req, 200, data, ctype, request_id, origin)
            return
        if path in ("/", ""):
            # DynamoDB names itself here ("healthy: dynamodb.us-east-1.amazonaws.com "); this server names the
            # host and port it was reached at.
            body = f"healthy: {self._endpoint(req)} ".encode()
            await self._respond(req, 200, body, "text/plain", request_id, origin)
            return
        await self._respond(req, 404, _NOT_FOUND_BODY, "", request_id, origin)

    def _allowed_origin(self, origin: str | None) -> bytes | None:
        """The Access-Control-Allow-Origin value for ``origin``, or None: only configured origins get one."""
        if origin is None or not self.cors:
            return None
        if origin in self.cors:
            return origin.encode("latin-1")
        if "*" in self.cors:
            return b"*"
        return None

    async def _preflight(self, req: Request, allowed: bytes) -> None:
        """A CORS preflight from an allowed origin (any other OPTIONS is answered 404, as DynamoDB answers it)."""
        out = [
            (b"content-length", b"0"),
            (b"x-amz-crc32", b"0"),  # of the empty body
            (b"x-amzn-requestid", self._request_id(None).encode()),
            (b"access-control-allow-origin", allowed),
            (b"access-control-allow-methods", b"GET,POST,OPTIONS"),
            (b"access-control-allow-headers",
             (req.headers.get("access-control-request-headers") or "*").encode("latin-1")),
            (b"access-control-max-age", b"172800"),
            (b"access-control-expose-headers", _CORS_EXPOSE),
            (b"vary", b"Origin"),
        ]
        await req.respond(200, out, b"")

    async def _respond(self, req: Request, status: int, payload: bytes, content_type: str, request_id: str | None,
                       origin: str | None, coding: str | None = None) -> None:
        # content-length, then x-amz-crc32 over the bytes sent (compressed or not), as DynamoDB computes it
        lines = b"content-length: %d\r\nx-amz-crc32: %d\r\n" % (len(payload), crc32(payload))
        if content_type:
            lines = b"content-type: %s\r\n%s" % (_CONTENT_TYPES.get(content_type) or content_type.encode(), lines)
        if coding is not None:
            lines += b"content-encoding: %s\r\n" % coding.encode()
        if request_id is not None:
            lines += b"x-amzn-requestid: %s\r\n" % request_id.encode()
        if origin is not None and self.cors:
            allowed = self._allowed_origin(origin)  # None unless CORS is configured for this origin
            if allowed is not None:
                lines += b"access-control-allow-origin: %s\r\naccess-control-expose-headers: %s\r\nvary: Origin\r\n" % (
                    allowed, _CORS_EXPOSE)
        await req.respond_lines(status, lines, payload)


def _has_body(headers: dict[str, str]) -> bool:
    """Whether the request carries a body (announced by its headers; the body itself is not read yet)."""
    length = headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "transfer-encoding" in headers
