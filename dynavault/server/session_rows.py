"""The console's sessions as rows of the table store (console/sessions.py seals them; this only keeps them),
so a browser's next request may reach any worker. The console never touches the store itself."""

from __future__ import annotations

from dynavault.dynamodb.layout import SESSION_PREFIX
from dynavault.storage.kv.base import KVStore, prefix_end
from dynavault.storage.sealed import Sealed

#: the shortest row the console writes (its 16-byte header, a 12-byte nonce, a 16-byte tag): a shorter one was
#: altered on disk and is no session, so it is never handed out (the console reads each row's header)
MIN_ROW = 16 + 12 + 16


class StoreSessionRows:
    def __init__(self, kv: KVStore) -> None:
        self.kv = kv

    def __repr__(self) -> str:
        return "StoreSessionRows()"

    def get(self, key: bytes) -> bytes | None:
        return self.kv.get(SESSION_PREFIX + key)

    def put(self, key: bytes, value: bytes) -> None:
        with self.kv.transaction() as tx:
            tx.put(SESSION_PREFIX + key, Sealed(value))  # sealed by the console under the cookie's key

    def delete(self, key: bytes) -> None:
        with self.kv.transaction() as tx:
            tx.delete(SESSION_PREFIX + key)

    def scan(self) -> list[tuple[bytes, bytes]]:
        n = len(SESSION_PREFIX)
        return [(k[n:], v) for k, v in self.kv.range(SESSION_PREFIX, prefix_end(SESSION_PREFIX))
                if len(v) >= MIN_ROW]

    def clear(self) -> None:
        """Sign everyone out (the first process of a start: sessions last one server run)."""
        with self.kv.transaction() as tx:
            for k, _ in list(tx.range(SESSION_PREFIX, prefix_end(SESSION_PREFIX))):
                tx.delete(k)
