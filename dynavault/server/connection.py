"""Client TCP connections: identity, and the protocol class that serves them.

Each request carries the id of the connection it arrived on, and listeners hear when a connection closes (the
table-key cache is per connection: DESIGN.md "Key cache"). The HTTP protocol itself, and the limits that hold
before a request reaches the app, are in http_protocol.py.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

from .exchange import SCOPE_KEY
from .http_protocol import MAX_HEAD_BYTES, HttpProtocol

log = logging.getLogger("dynavault.server")

__all__ = ["SCOPE_KEY", "MAX_HEAD_BYTES", "Connections", "protocol_class"]


class Connections:
    """Connection ids and who hears of a closed connection: one per runtime (built by build_runtime and
    handed to the protocol class), so two servers in one process never share ids or listeners."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._close_listeners: list[Callable[[int], None]] = []

    def new_id(self) -> int:
        return next(self._ids)

    def on_closed(self, listener: Callable[[int], None]) -> None:
        """``listener(connection id)`` runs when a client connection closes (registered while wiring)."""
        self._close_listeners.append(listener)

    def closed(self, connection_id: int) -> None:
        for listener in self._close_listeners:
            try:
                listener(connection_id)
            except Exception:  # a listener bug must not break the server
                log.exception("connection close listener failed")


def protocol_class(connections: Connections, *, request_timeout: float,
                   max_connections: int) -> type[HttpProtocol]:
    """The protocol class uvicorn instantiates per connection, carrying the runtime's connection registry
    and the configured limits."""
    return type("DynavaultHttpProtocol", (HttpProtocol,),
                {"registry": connections, "request_timeout": float(request_timeout),
                 "max_connections": int(max_connections)})
