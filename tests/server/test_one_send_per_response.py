"""A POST's response leaves in one socket send (head and body together), other responses as before.

The server's own HTTP protocol class is driven with the bytes a client sends, and its transport records
what would go to the socket: how many sends, and the bytes."""

from __future__ import annotations

import asyncio

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from dynavault.server.connection import Connections, protocol_class


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol) -> None:
        pass


async def _app(scope, receive, send) -> None:
    body = b""
    if scope["method"] == "POST":
        message = await receive()
        body = message.get("body", b"")
    payload = b'{"echo":' + str(len(body)).encode() + b"}"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/x-amz-json-1.0"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def _run(raw: bytes, settle: int = 20) -> RecordingTransport:
    async def go() -> RecordingTransport:
        config = Config(_app, http="httptools", lifespan="off", access_log=False, log_level="warning",
                        server_header=False, date_header=False, proxy_headers=False)
        config.load()
        protocol = protocol_class(Connections(), request_timeout=60, max_connections=0)(
            config=config, server_state=ServerState(), app_state={})
        transport = RecordingTransport()
        protocol.connection_made(transport)
        protocol.data_received(raw)
        for _ in range(settle):
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        return transport

    return asyncio.run(go())


def _post(body: bytes = b"{}") -> bytes:
    return (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


def test_post_response_is_one_send():
    t = _run(_post(b'{"a":1}'))
    assert len(t.writes) == 1, t.writes
    head, _, body = t.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 10" in head
    assert body == b'{"echo":7}'


def test_pipelined_posts_each_one_send_in_order():
    t = _run(_post(b"{}") + _post(b'{"bb":22}'), settle=60)
    assert len(t.writes) == 2, t.writes
    assert t.writes[0].endswith(b'{"echo":2}') and t.writes[1].endswith(b'{"echo":9}')


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_other_methods_unchanged(method):
    t = _run(method.encode() + b" / HTTP/1.1\r\nHost: x\r\n\r\n")
    sent = b"".join(t.writes)
    assert sent.startswith(b"HTTP/1.1 200 OK\r\n")
    head, _, body = sent.partition(b"\r\n\r\n")
    assert body == (b'{"echo":0}' if method == "GET" else b"")
