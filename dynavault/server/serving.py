"""Serve a built Runtime over HTTP (uvicorn runs the server, our protocol the connections: http_protocol.py): one
process, or one worker of several."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable

from dynavault.config import Settings

from .connection import protocol_class
from .runtime import Runtime


def serve(runtime: Runtime, settings: Settings, *, label: str = "dynavault", note: str = "",
          sock: socket.socket | None = None, on_ready: Callable[[str, int], None] | None = None) -> int:
    """Run until stopped (SIGINT/SIGTERM: a graceful stop, exit 0). ``sock``: an already bound socket (a
    worker's); ``on_ready(host, port)`` replaces the ready line (the supervisor prints it once for all)."""
    import uvicorn

    # The group-commit fsync thread needs the GIL back when its fsync returns; a busy event loop could hold
    # it for the default 5 ms switch interval. (Measured: no throughput difference either way on 2 cores.)
    sys.setswitchinterval(0.0002)

    class ReadyServer(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)
            if self.should_exit or not self.servers:
                return
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            if on_ready is not None:
                on_ready(host, port)
            else:
                print(f"{label} listening on http://{host}:{port}{note}", flush=True)

        async def shutdown(self, sockets=None) -> None:
            await super().shutdown(sockets)
            # uvicorn re-raises SIGTERM after a graceful shutdown; the contract is a clean exit 0.
            captured = getattr(self, "_captured_signals", None)
            if captured is not None:
                captured.clear()

    config = uvicorn.Config(
        runtime.app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # Our HTTP/1.1 protocol (no ASGI per request): connection ids, a 64 KiB cap on request line + headers,
        # the request read timeout and the connection cap (uvicorn's limit_concurrency answers 503 in plain text).
        http=protocol_class(runtime.connections, request_timeout=settings.request_timeout_seconds,
                            max_connections=settings.max_connections),
        lifespan="on",
        # our protocol class serves no WebSocket upgrade: "auto" would only import a websockets implementation
        # (~15 ms of every start)
        ws="none",
        access_log=False,
        log_level="warning",
        server_header=False,
        # The audit trail records the peer address; a forwarded-for header from any local client must not
        # rewrite it (and the middleware costs ~1 % of GetItem CPU).
        proxy_headers=False,
        timeout_keep_alive=120,
        timeout_graceful_shutdown=30,
    )
    ReadyServer(config).run(sockets=[sock] if sock is not None else None)
    return 0
