"""One HTTP request as the app handles it, whichever layer carried it from the socket.

The server's own HTTP/1.1 protocol (http_protocol.py) hands the app a Request directly: headers already a
dict of str, the body read from the parser's buffer, the response written in one socket send. Any ASGI server
(and the in-process benchmarks) reach the app through AsgiRequest, which reads ``receive`` and writes ``send``.
"""

from __future__ import annotations

from typing import Any

#: the id of the client connection a request arrived on, in an ASGI scope
SCOPE_KEY = "dynavault.connection"


class Disconnected(Exception):
    """The client went away (or was cut off by the read timeout) before its body arrived."""


class Request:
    """What the app reads of a request, and how it answers. ``headers``: names lower-case, the values of a
    repeated header joined with commas (RFC 9110 §5.3)."""

    __slots__ = ("method", "path", "raw_path", "query", "headers", "client", "server", "connection_id")

    def __init__(self, method: str, path: str, raw_path: str, query: str, headers: dict[str, str],
                 client: tuple[str, int] | None, server: tuple[str, int | None] | None, connection_id: int) -> None:
        self.method = method
        self.path = path
        self.raw_path = raw_path
        self.query = query
        self.headers = headers
        self.client = client
        self.server = server
        self.connection_id = connection_id

    async def chunk(self) -> tuple[bytes, bool]:
        """The next part of the body that arrived, and whether more follows. Raises Disconnected."""
        raise NotImplementedError

    async def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Send the whole response (``headers`` without the date and connection headers the layer adds)."""
        raise NotImplementedError

    async def respond_lines(self, status: int, lines: bytes, body: bytes) -> None:
        """The same, the headers given as the response head's lines (``b"name: value\\r\\n"`` each)."""
        pairs = [line.split(b": ", 1) for line in lines.split(b"\r\n") if line]
        await self.respond(status, [(name, value) for name, value in pairs], body)

    def asgi(self) -> tuple[dict, Any, Any]:
        """(scope, receive, send) for an ASGI handler (the web console) serving this request."""
        raise NotImplementedError


def asgi_scope(req: Request) -> dict:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": req.method, "path": req.path, "raw_path": req.raw_path.encode("latin-1"),
            "query_string": req.query.encode("latin-1"), "root_path": "", "scheme": "http",
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in req.headers.items()],
            "client": req.client, "server": req.server, SCOPE_KEY: req.connection_id}


def headers_of(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1")
        if not name.islower():  # uvicorn already lower-cases; other servers may not
            name = name.lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


class AsgiRequest(Request):
    """A request from an ASGI server."""

    __slots__ = ("scope", "receive", "send")

    def __init__(self, scope: dict, receive, send) -> None:
        super().__init__(scope["method"], scope.get("path", "/"), scope.get("raw_path", b"/").decode("latin-1"),
                         scope.get("query_string", b"").decode("latin-1"), headers_of(scope["headers"]),
                         scope.get("client"), scope.get("server"), scope.get(SCOPE_KEY) or 0)
        self.scope = scope
        self.receive = receive
        self.send = send

    async def chunk(self) -> tuple[bytes, bool]:
        message = await self.receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        return message.get("body", b""), message.get("more_body", False)

    async def respond(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    def asgi(self) -> tuple[dict, Any, Any]:
        return self.scope, self.receive, self.send
