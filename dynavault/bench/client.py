"""A keep-alive HTTP/1.1 client that speaks the DynamoDB JSON protocol over asyncio streams."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import orjson

from dynavault.bench.sigv4 import Signer

__all__ = ["Connection", "Endpoint", "Response", "BenchHTTPError"]


class BenchHTTPError(Exception):
    """The peer broke the HTTP exchange (closed early, malformed response)."""


class Endpoint:
    def __init__(self, url: str, *, access_key: str = "benchkey", secret_key: str = "benchsecret",
                 region: str = "us-east-1") -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http:// endpoints are supported, got {url!r}")
        self.url = url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.host_header = parts.netloc
        self.signer = Signer(access_key, secret_key, region, self.host_header)
        self.target_prefix = "DynamoDB_20120810."


class Response:
    __slots__ = ("status", "body", "close")

    def __init__(self, status: int, body: bytes, close: bool = False) -> None:
        self.status = status
        self.body = body
        self.close = close  # the server said "Connection: close" (moto does, on every response)

    def json(self) -> dict:
        return orjson.loads(self.body) if self.body else {}

    def error_type(self) -> str:
        """The short ``__type`` of an error response ("ValidationException"), or ``HTTP <status>``."""
        try:
            t = self.json().get("__type", "")
        except orjson.JSONDecodeError:
            t = ""
        return t.rsplit("#", 1)[-1] if t else f"HTTP {self.status}"


class Connection:
    """One keep-alive connection; ``fresh=True`` opens a new TCP connection for every request."""

    def __init__(self, endpoint: Endpoint, *, fresh: bool = False) -> None:
        self.ep = endpoint
        self.fresh = fresh
        self._r: asyncio.StreamReader | None = None
        self._w: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self._r, self._w = await asyncio.open_connection(self.ep.host, self.ep.port)

    async def close(self) -> None:
        w, self._r, self._w = self._w, None, None
        if w is not None:
            w.close()
            try:
                await w.wait_closed()
            except (OSError, ConnectionError):
                pass

    async def call(self, op: str, payload: dict | bytes) -> Response:
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        head = self.ep.signer.headers(self.ep.target_prefix + op, body)
        conn_hdr = b"Connection: close\r\n" if self.fresh else b""
        req = b"POST / HTTP/1.1\r\n" + head + conn_hdr + b"\r\n" + body
        if self._w is None:
            await self._open()
        try:
            return await self._exchange(req)
        except (BenchHTTPError, ConnectionError, asyncio.IncompleteReadError):
            # A keep-alive connection the server closed while idle: retry once on a new one.
            await self.close()
            await self._open()
            return await self._exchange(req)
        finally:
            if self.fresh:
                await self.close()

    async def get(self, path: str) -> Response:
        """A plain unsigned GET on its own connection (for /metrics)."""
        r, w = await asyncio.open_connection(self.ep.host, self.ep.port)
        try:
            w.write(f"GET {path} HTTP/1.1\r\nHost: {self.ep.host_header}\r\nConnection: close\r\n\r\n".encode())
            return await _read_response(r)
        finally:
            w.close()

    async def _exchange(self, req: bytes) -> Response:
        assert self._w is not None and self._r is not None
        self._w.write(req)
        resp = await _read_response(self._r)
        if resp.close:
            await self.close()
        return resp


async def _read_response(r: asyncio.StreamReader) -> Response:
    head = await r.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise BenchHTTPError(f"malformed status line {lines[0][:80]!r}") from None
    length = -1
    chunked = False
    close = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            close = True
    if chunked:
        parts = []
        while True:
            size = int((await r.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await r.readuntil(b"\r\n")
                break
            parts.append(await r.readexactly(size))
            await r.readexactly(2)
        return Response(status, b"".join(parts), close)
    if length < 0:
        return Response(status, await r.read(), True)
    return Response(status, await r.readexactly(length), close)
