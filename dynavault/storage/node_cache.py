"""Opened B+tree nodes kept per process, so a read that fetches a node it opened before skips the AEAD open and
the decode.

An entry is found by the node's row key and used only if the sealed blob just read from the store is byte for
byte the one it was opened from: the same authenticated ciphertext under the same AAD (which binds table,
index, partition and node id) opens to the same plaintext, so a hit is exactly what opening would give, and a
changed, moved or tampered blob never matches (it is opened, and fails, as without the cache). The store is
read on every request as before — nothing here can serve a node the store no longer holds, whichever process
changed it — and a caller must still hold the table's keys to reach the read at all (fail closed above
storage). What the cache keeps is plaintext in process memory, which SECURITY.md leaves out of scope (whoever
reads the server's memory reads everything); nothing of it reaches disk.

Bounded by bytes (sealed blob plus plaintext, counted twice for the decoded slices); the oldest entries go first.
Entries are shared by every reader, of every thread (the handler's and the backup, restore and backfill
threads'), so they are immutable: the nodes put here hold tuples (``trees._opened``), and a change in place
raises instead of altering what the next reader is handed. Writers always open and decode nodes of their own.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

V = TypeVar("V")

#: default bound, bytes of blob and opened node: ~1,000 leaves of 16 KiB
DEFAULT_BYTES = 48 * 1024 * 1024


class NodeCache(Generic[V]):
    """(row key, sealed blob) -> an opened node, bounded by ``max_bytes``."""

    __slots__ = ("max_bytes", "_entries", "_bytes", "_lock", "hits", "misses")

    def __init__(self, max_bytes: int = DEFAULT_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: dict[bytes, tuple[bytes, V, int]] = {}
        self._bytes = 0
        self._lock = threading.Lock()  # a backfill thread and the handler thread may read at once
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:  # never the contents
        return f"<NodeCache {len(self._entries)} nodes, {self._bytes} bytes>"

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, rk: bytes, blob: bytes) -> V | None:
        e = self._entries.get(rk)
        if e is not None and e[0] == blob:
            self.hits += 1
            return e[1]
        self.misses += 1
        return None

    def peek(self, rk: bytes) -> V | None:
        """The node last opened at ``rk``, unchecked: a hint about the tree's shape (how to read it), never an
        answer."""
        e = self._entries.get(rk)
        return e[1] if e is not None else None

    def put(self, rk: bytes, blob: bytes, node: V) -> None:
        cost = 3 * len(blob) + 200  # the blob, the plaintext and its slices, and the objects around them
        if cost > self.max_bytes:
            return
        with self._lock:
            entries = self._entries
            old = entries.pop(rk, None)
            if old is not None:
                self._bytes -= old[2]
            while entries and self._bytes + cost > self.max_bytes:
                oldest = next(iter(entries))
                self._bytes -= entries.pop(oldest)[2]
            entries[rk] = (blob, node, cost)
            self._bytes += cost

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
