"""The audit trail of an ``--in-memory`` server: the same events and the same LookupEvents, nothing on disk.

Events are kept per (account, region), as the file trail keeps them, in a bounded buffer: past
``max_events`` the oldest are dropped (and counted), so a long test run cannot grow the process without
bound. Retention works as on disk, by age: the file trail deletes segments by their last write, this one
drops events by the time they were recorded.
"""

from __future__ import annotations

import collections
import logging
import pathlib
import threading
import time
from collections.abc import Callable

import orjson

from .trail import AuditTrail

log = logging.getLogger("dynavault.audit")

#: events kept per (account, region)
DEFAULT_MAX_EVENTS = 100_000


class MemoryAuditTrail(AuditTrail):
    def __init__(self, *, max_events: int = DEFAULT_MAX_EVENTS, retention_seconds: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        # AuditTrail.__init__ would create its directory; set what its readers use instead.
        self.root = pathlib.Path("<memory>")
        self.rotate_bytes = 0
        self.retention_seconds = retention_seconds
        self._on_write_failure = None
        self._clock = clock
        self._lock = threading.Lock()
        self._logs = {}
        self.write_failures = 0
        self.max_events = max(1, int(max_events))
        self.dropped = 0
        #: (account, region) -> (recorded at, event line), oldest first
        self._events: dict[tuple[str, str], collections.deque[tuple[float, bytes]]] = {}

    def __repr__(self) -> str:
        return f"MemoryAuditTrail(max_events={self.max_events})"

    def record(self, event: dict) -> None:
        line = orjson.dumps(event)
        key = (str(event.get("recipientAccountId")), str(event.get("awsRegion")))
        with self._lock:
            buffer = self._events.get(key)
            if buffer is None:
                buffer = self._events[key] = collections.deque(maxlen=self.max_events)
            if len(buffer) == self.max_events:
                self.dropped += 1
                if self.dropped == 1:
                    log.warning("in-memory audit trail: more than %d events for account %s region %s; the "
                                "oldest are dropped", self.max_events, *key)
            buffer.append((self._clock(), line))

    def _lines(self, account: str, region: str) -> list[bytes]:
        with self._lock:
            return [line for _, line in self._events.get((account, region), ())]

    def sweep(self) -> int:
        if self.retention_seconds is None:
            return 0
        cutoff = self._clock() - self.retention_seconds
        deleted = 0
        with self._lock:
            for buffer in self._events.values():
                while buffer and buffer[0][0] < cutoff:
                    buffer.popleft()
                    deleted += 1
        return deleted

    def close(self) -> None:
        with self._lock:
            self._events.clear()
