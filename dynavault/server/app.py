"""The ASGI application: one port, one table of handlers keyed by X-Amz-Target.

A request goes: size limit -> target lookup -> SigV4 on the headers (before any body is read) -> body ->
SigV4 over the body's bytes -> decompress -> JSON parse -> shape validation -> handler(caller, body) -> JSON
response with x-amzn-RequestId and x-amz-crc32.
Every failure becomes an AWS JSON error body; a bug becomes a logged 500, never a stack trace.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from dynavault.caller import Caller
from dynavault.errors import AWSError, IntegrityError

from .access_log import AccessLog
from .connection import SCOPE_KEY
from .durability import GroupCommit
from .sigv4 import Identity, SigV4Verifier

log = logging.getLogger("dynavault.server")

Handler = Callable[[Caller, dict], dict]

#: DynamoDB's request size limit (BatchWriteItem and TransactWriteItems top out near 16 MB).
MAX_BODY_BYTES = 16 * 1024 * 1024
JSON_10 = "application/x-amz-json-1.0"
JSON_11 = "application/x-amz-json-1.1"
_CORAL = "com.amazon.coral.service#"
_CORAL_VALIDATE = "com.amazon.coral.validate#"
_CORS_EXPOSE = b"x-amzn-RequestId,x-amzn-ErrorType,x-amz-crc32,Date"
_CONTENT_TYPES = {JSON_10: JSON_10.encode(), JSON_11: JSON_11.encode(), "text/plain": b"text/plain"}
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
    #: optional request validator: (operation, body) -> None, raises AWSError
    validate: Callable[[str, dict], None] | None = None


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

    DynamoDB's ids are 52 characters of [0-9A-F]; KMS and CloudTrail use version-4 UUIDs."""

    def __init__(self) -> None:
        self._rng = random.Random(secrets.randbits(256))

    def __call__(self, front: ServiceFront | None) -> str:
        if front is not None and front.name.startswith("dynamodb"):
            return f"{self._rng.getrandbits(208):052X}"
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
        body["message"] = err.message
    if err.extra:
        body.update(err.extra)
    return orjson.dumps(body)


def _too_large() -> AWSError:
    return AWSError("RequestEntityTooLarge", "Request Entity Too Large", 413, type_prefix=_CORAL)


def _inflate(body: bytes, wbits: int) -> bytes:
    """Decode with the output capped at MAX_BODY_BYTES: a bomb costs at most that much memory, then 413."""
    d = zlib.decompressobj(wbits)
    out = d.decompress(body, MAX_BODY_BYTES + 1)
    if len(out) > MAX_BODY_BYTES or d.unconsumed_tail:
        raise _too_large()
    return out


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise AWSError("SerializationException", f"Unsupported Content-Encoding: {encoding}", type_prefix=_CORAL)
    try:
        return _inflate(body, wbits)
    except zlib.error:
        if encoding == "deflate":  # some clients send raw deflate without the zlib header: same cap
            try:
                return _inflate(body, -zlib.MAX_WBITS)
            except zlib.error:
                pass
        raise AWSError("SerializationException", "Could not decode the request body", type_prefix=_CORAL) from None


class _Disconnected(Exception):
    """The client went away (or was cut off by the read timeout) before its body arrived."""


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
        self._request_id = _RequestIds()  # per app: its PRNG state is nobody else's
        self._callers: dict[tuple, Caller] = {}

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
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

    async def _http(self, scope, receive, send) -> None:
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1")
            if not name.islower():  # uvicorn already lower-cases; other servers may not
                name = name.lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        origin = headers.get("origin")
        method = scope["method"]
        if method == "OPTIONS":
            await self._preflight(send, headers)
            return
        if method in ("GET", "HEAD"):
            await self._get(scope, send, origin)
            return
        if method != "POST":
            await self._respond(send, 405, b"", "text/plain", None, origin)
            return

        target = headers.get("x-amz-target", "")
        route = self.routes.get(target)
        front = route.front if route else self.routes.front_for(target)
        content_type = headers.get("content-type", "").split(";")[0].strip()
        if content_type not in (JSON_10, JSON_11):
            content_type = front.content_type if front else JSON_10
        request_id = self._request_id(front)
        status = 200
        started = time.perf_counter() if self.access_log is not None else 0.0
        caller = params = None
        try:
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
                raise _too_large()
            if route is None:
                raise AWSError("UnknownOperationException", None, type_prefix=_CORAL)
            # Headers first: an unsigned request or an unknown key is answered before its body is read (the
            # connection layer then discards the rest of the body without keeping it).
            pending = self.verifier.authenticate(headers, route.front.signing_name)
            body = await self._read_body(receive)
            identity = self.verifier.check_body(
                pending,
                method,
                scope.get("raw_path", b"/").decode("latin-1") or "/",
                scope.get("query_string", b"").decode("latin-1"),
                headers,
                body,
            )
            body = _decompress(body, headers.get("content-encoding", ""))
            params = self._parse_json(body)
            if route.front.validate is not None:
                route.front.validate(route.operation, params)
            caller = self._caller(scope, identity, headers.get("user-agent", ""))
            cred = identity.credential
            if cred.access_key_id in self.trusted_service_keys and "x-dynavault-on-behalf-of" in headers:
                if pending.check and "x-dynavault-on-behalf-of" not in pending.signed:
                    # Whom the request acts for must be covered by the signature, or a captured request
                    # could be replayed for another caller.
                    raise AWSError("InvalidSignatureException", "'X-Dynavault-On-Behalf-Of' must be a "
                                   "'SignedHeader' in the AWS Authorization.", type_prefix=_CORAL)
                caller = self._on_behalf(caller, headers["x-dynavault-on-behalf-of"])
            result = route.handler(caller, params)
            payload = orjson.dumps(result) if result else b"{}"
        except _Disconnected:
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
        if self.durability is not None:
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
        if self.access_log is not None:
            self._log_access(scope, headers, route, front, request_id, caller, params, status, payload, started)
        await self._respond(send, status, payload, content_type, request_id, origin)

    def _log_access(self, scope, headers: dict[str, str], route: Route | None, front: ServiceFront | None,
                    request_id: str, caller: Caller | None, params: dict | None, status: int, payload: bytes,
                    started: float) -> None:
        length = headers.get("content-length", "")
        self.access_log.request(
            request_id=request_id, service=route.front.name if route else (front.name if front else "unknown"),
            operation=route.operation if route else "unknown", caller=caller, params=params, status=status,
            payload=payload, bytes_in=int(length) if length.isdigit() else 0, started=started,
            peer=(scope.get("client") or ("-", 0))[0], user_agent=headers.get("user-agent", ""))

    def _caller(self, scope, identity: Identity, user_agent: str) -> Caller:
        """The request's Caller. Immutable, so one is kept per (connection, identity, user agent) and shared
        by that connection's requests: a keep-alive client sends the same ones each time."""
        client = scope.get("client") or ("127.0.0.1", 0)
        cred = identity.credential
        connection_id = scope.get(SCOPE_KEY) or hash(client)
        key = (connection_id, client[0], cred.access_key_id, cred.account_id, cred.principal_arn, identity.region,
               user_agent)
        caller = self._callers.get(key)
        if caller is None:
            caller = Caller(
                account=cred.account_id,
                region=identity.region,
                principal_arn=cred.principal_arn,
                access_key=cred.access_key_id,
                connection_id=connection_id,
                source_ip=client[0],
                user_agent=user_agent,
            )
            if len(user_agent) <= _MAX_KEPT_AGENT:
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
                via_service=who.get("via") or None,
                is_service=bool(who.get("service")),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise AWSError("IncompleteSignatureException", "Malformed x-dynavault-on-behalf-of header",
                           type_prefix=_CORAL) from None

    @staticmethod
    async def _read_body(receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise AWSError("RequestEntityTooLarge", "Request Entity Too Large", 413, type_prefix=_CORAL)
                chunks.append(chunk)
            if not message.get("more_body", False):
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

    async def _get(self, scope, send, origin) -> None:
        path = scope.get("path", "/")
        if path == "/metrics" and self.metrics is not None:
            data, ctype = self.metrics()
            await self._respond(send, 200, data, ctype, None, origin)
            return
        if path in ("/", ""):
            body = f"healthy: dynamodb.{self.default_region}.amazonaws.com ".encode()
            await self._respond(send, 200, body, "text/plain", None, origin)
            return
        await self._respond(send, 404, b"", "text/plain", None, origin)

    def _allowed_origin(self, origin: str | None) -> bytes | None:
        """The Access-Control-Allow-Origin value for ``origin``, or None: only configured origins get one."""
        if origin is None or not self.cors:
            return None
        if origin in self.cors:
            return origin.encode("latin-1")
        if "*" in self.cors:
            return b"*"
        return None

    async def _preflight(self, send, headers: dict[str, str]) -> None:
        out = [(b"content-length", b"0")]
        allowed = self._allowed_origin(headers.get("origin"))
        if allowed is not None:
            out += [
                (b"access-control-allow-origin", allowed),
                (b"access-control-allow-methods", b"GET,POST,OPTIONS"),
                (b"access-control-allow-headers",
                 (headers.get("access-control-request-headers") or "*").encode("latin-1")),
                (b"access-control-max-age", b"172800"),
                (b"access-control-expose-headers", _CORS_EXPOSE),
                (b"vary", b"Origin"),
            ]
        await send({"type": "http.response.start", "status": 200, "headers": out})
        await send({"type": "http.response.body", "body": b""})

    async def _respond(self, send, status: int, payload: bytes, content_type: str, request_id: str | None,
                       origin: str | None) -> None:
        out = [
            (b"content-type", _CONTENT_TYPES.get(content_type) or content_type.encode()),
            (b"content-length", str(len(payload)).encode()),
            (b"x-amz-crc32", str(zlib.crc32(payload)).encode()),
        ]
        if request_id is not None:
            out.append((b"x-amzn-requestid", request_id.encode()))
        allowed = self._allowed_origin(origin)  # None unless CORS is configured for this origin
        if allowed is not None:
            out.append((b"access-control-allow-origin", allowed))
            out.append((b"access-control-expose-headers", _CORS_EXPOSE))
            out.append((b"vary", b"Origin"))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload})
