#!/usr/bin/env python
"""CPU per request of the HTTP layer alone: the server's protocol class fed a signed-looking GetItem's bytes by
a transport that only counts writes, answering from a trivial app (no SigV4, no handler, no socket).

    python benchmarks/http_layer.py [--requests 20000] [--asgi]

``--asgi`` gives the app only its ASGI entry (as uvicorn's own protocol needs, and as the web console is
served). Run it from another checkout (``cd OTHER && python /path/to/http_layer.py``) to compare protocols:
the figure is the thread's CPU per request, least of five rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))

import uvloop  # noqa: E402
from uvicorn.config import Config  # noqa: E402
from uvicorn.server import ServerState  # noqa: E402

from dynavault.server.connection import Connections, protocol_class  # noqa: E402

REQUEST = (
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/x-amz-json-1.0\r\n"
    b"X-Amz-Date: 20261203T080000Z\r\nX-Amz-Target: DynamoDB_20120810.GetItem\r\n"
    b"Authorization: AWS4-HMAC-SHA256 Credential=AKID/20261203/us-east-1/dynamodb/aws4_request, "
    b"SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + b"a" * 64
    + b"\r\nContent-Length: 80\r\n\r\n" + b"x" * 80
)


class CountingTransport:
    def __init__(self) -> None:
        self.writes = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes += 1

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


class AsgiApp:
    async def __call__(self, scope, receive, send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})


class App(AsgiApp):
    async def handle(self, req) -> None:  # the entry our protocol calls (DynavaultApp.handle)
        await req.chunk()
        await req.respond(200, [(b"content-length", b"2")], b"{}")


async def run(requests: int, asgi: bool) -> float:
    config = Config(AsgiApp() if asgi else App(), lifespan="off", proxy_headers=False, log_level="warning")
    config.load()
    cls = protocol_class(Connections(), request_timeout=60, max_connections=0)
    protocol = cls(config=config, server_state=ServerState(), app_state={})
    transport = CountingTransport()
    protocol.connection_made(transport)
    best = float("inf")
    for _ in range(5):
        start = time.thread_time()
        for _ in range(requests):
            expected = transport.writes + 1
            protocol.data_received(REQUEST)
            while transport.writes < expected:
                await asyncio.sleep(0)
        best = min(best, (time.thread_time() - start) / requests)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--asgi", action="store_true")
    args = ap.parse_args()
    uvloop.install()
    print(f"{asyncio.run(run(args.requests, args.asgi)):.2f} µs CPU per request")


if __name__ == "__main__":
    main()
