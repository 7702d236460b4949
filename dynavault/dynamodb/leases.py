"""Leases in the table store: which process runs a store-wide job (sweeps, TTL, archival, shard roll-over)
or one long job (an index backfill), when several processes serve the store.

With ``--workers N`` every worker has the same periodic jobs; only the holder of a job's lease runs it. A
lease is a row (holder, expiry) written in a store transaction, so two workers never both believe they hold
it; the holder renews it well before it expires, and when the holder dies (kill -9 included) the row
expires and the next worker to try takes it over. Rows hold a process label and a time — no user data.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable

import orjson

from dynavault.storage.kv.base import KVStore, prefix_end
from dynavault.storage.sealed import CatalogRecord

from .layout import LEASE_PREFIX


class Leases:
    def __init__(self, kv: KVStore, *, ttl: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        self.kv = kv
        self.ttl = ttl
        self.clock = clock
        # unique per process lifetime: a restarted worker with a reused pid is a different holder
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._until: dict[str, float] = {}  # lease -> when this process's hold ends (its own clock)

    def __repr__(self) -> str:
        return f"Leases({self.holder})"

    def held(self, name: str) -> bool:
        """Whether this process holds ``name`` now (no store access: what the last ``renew`` won)."""
        return self._until.get(name, 0.0) > self.clock()

    def renew(self, name: str) -> bool:
        """Take or extend ``name`` if it is free, expired or already ours; -> whether this process holds it."""
        key = LEASE_PREFIX + name.encode()
        now = self.clock()
        with self.kv.transaction() as tx:
            raw = tx.get(key)
            if raw is not None:
                row = orjson.loads(raw)
                if row["holder"] != self.holder and row["expires"] > now:
                    self._until.pop(name, None)
                    return False
            tx.put(key, CatalogRecord(orjson.dumps({"holder": self.holder, "expires": now + self.ttl})))
        # A margin under the stored expiry: this process stops acting before another may take over.
        self._until[name] = now + self.ttl * 0.6
        return True

    def taken(self, name: str) -> bool:
        """Whether any process (this one included) holds ``name`` now, as the store says."""
        raw = self.kv.get(LEASE_PREFIX + name.encode())
        return raw is not None and orjson.loads(raw)["expires"] > self.clock()

    def release_one(self, name: str) -> None:
        """Give up ``name`` if this process holds it (a long job that ended)."""
        key = LEASE_PREFIX + name.encode()
        with self.kv.transaction() as tx:
            raw = tx.get(key)
            if raw is not None and orjson.loads(raw)["holder"] == self.holder:
                tx.delete(key)
        self._until.pop(name, None)

    def release(self) -> None:
        """Give up every lease this process holds (at a clean stop: the next holder need not wait)."""
        if not self._until:
            return
        with self.kv.transaction() as tx:
            for name in self._until:
                key = LEASE_PREFIX + name.encode()
                raw = tx.get(key)
                if raw is not None and orjson.loads(raw)["holder"] == self.holder:
                    tx.delete(key)
        self._until.clear()

    @staticmethod
    def clear(kv: KVStore) -> None:
        """Forget every lease: only when no other process serves this store (a start before the workers)."""
        with kv.transaction() as tx:
            for key, _ in list(tx.range(LEASE_PREFIX, prefix_end(LEASE_PREFIX))):
                tx.delete(key)
