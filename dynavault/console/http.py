"""The little HTTP the console needs on top of ASGI: a parsed request, a response, cookies, form bodies."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, urlencode

#: a console form is small: an item as DynamoDB JSON is at most 400 KB, its form encoding a few times that
MAX_FORM_BYTES = 2 * 1024 * 1024

SESSION_COOKIE = "dv_console"
#: before sign-in there is no session: the sign-in form's CSRF token is a double-submit cookie
LOGIN_COOKIE = "dv_console_login"

_SECURITY_HEADERS = [
    # Nothing but our own files: no inline script at all (the console has none), no framing.
    (b"content-security-policy",
     b"default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; "
     b"base-uri 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class BodyTooLarge(Exception):
    pass


@dataclass
class Request:
    method: str
    path: str  # below /console, e.g. "/tables/orders"
    query: dict[str, str]
    headers: dict[str, str]
    cookies: dict[str, str]
    client_ip: str
    connection_id: int
    form: dict[str, str] = field(default_factory=dict)

    def arg(self, name: str, default: str = "") -> str:
        return self.query.get(name, default)


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def set_cookie(self, name: str, value: str, max_age: int) -> None:
        # HttpOnly: no script reads it; SameSite=Strict: no other site's page sends it; Path: only the console.
        self.headers.append((b"set-cookie", f"{name}={value}; Path=/console; Max-Age={max_age}; HttpOnly; "
                                            "SameSite=Strict".encode()))

    def clear_cookie(self, name: str) -> None:
        self.set_cookie(name, "", 0)


def redirect(location: str, status: int = 303) -> Response:
    return Response(status, b"", "text/plain", [(b"location", location.encode())])


def url(path: str, **params: str | None) -> str:
    """A console URL: ``url("/tables/" + name, page="2")`` -> "/console/tables/<quoted name>?page=2"."""
    out = "/console" + quote(path, safe="/:")
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return out + ("?" + urlencode(kept) if kept else "")


def parse_cookies(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name not in out:
            out[name] = value
    return out


def parse_query(raw: bytes) -> dict[str, str]:
    text = raw.decode("latin-1")
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True, max_num_fields=200).items()}


async def read_form(receive, content_type: str) -> dict[str, str]:
    """An application/x-www-form-urlencoded body, capped at MAX_FORM_BYTES; any other body is empty."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return {}
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return {}
    try:
        text = b"".join(chunks).decode("utf-8")
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=200, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in fields.items()}


async def send_response(send, response: Response) -> None:
    headers = [
        (b"content-type", response.content_type.encode()),
        (b"content-length", str(len(response.body)).encode()),
        *_SECURITY_HEADERS,
        *response.headers,
    ]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
