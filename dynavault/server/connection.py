"""Client TCP connection identity.

uvicorn's httptools protocol is subclassed so each request's ASGI scope carries the id of the
connection it arrived on, and listeners hear when a connection closes (the table-key cache is
per connection: DESIGN.md "Key cache").
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("dynavault.server")

SCOPE_KEY = "dynavault.connection"
_ids = itertools.count(1)
_close_listeners: list[Callable[[int], None]] = []


def on_connection_closed(listener: Callable[[int], None]) -> None:
    _close_listeners.append(listener)


def clear_listeners() -> None:
    _close_listeners.clear()


class TrackedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that tags every request with its connection id."""

    _dynavault_conn_id = 0

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._dynavault_conn_id = next(_ids)
        super().connection_made(transport)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[SCOPE_KEY] = self._dynavault_conn_id  # type: ignore[literal-required]

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        for listener in _close_listeners:
            try:
                listener(self._dynavault_conn_id)
            except Exception:  # a listener bug must not break the server
                log.exception("connection close listener failed")
