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
Inner nodes (``put(..., shape=True)``) have a bound of their own, so the leaves a large table streams through
never push out the few small nodes that say how each partition is shaped (whose hint lets a read take one
statement). A non-root leaf a point read opens is kept only on its second miss within the last
``ghost_entries`` misses (``admit``): a table much larger than the cache (10^6 items: ~1.5 GB of leaves) would
otherwise decode and keep every leaf it reads once, pushing out the ones read again; a leaf not kept is
searched in its plaintext instead (``nodes.leaf_lookup``, the wanted item only).
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
#: default bound of the inner nodes: ~60,000 small roots (a 10^6-item bench table has 50,000)
DEFAULT_SHAPE_BYTES = 24 * 1024 * 1024
#: empty partitions remembered (row keys only), so a GetItem of one does not try the one-statement read first
_EMPTY_ENTRIES = 4096


class NodeCache(Generic[V]):
    """(row key, sealed blob) -> an opened node, bounded by ``max_bytes`` (leaves) and ``shape_bytes`` (inner
    nodes)."""

    __slots__ = ("max_bytes", "shape_bytes", "_entries", "_shape", "_bytes", "_shape_used", "_ghosts",
                 "_ghost_max", "_empty", "_lock", "hits", "misses")

    def __init__(self, max_bytes: int = DEFAULT_BYTES, shape_bytes: int = DEFAULT_SHAPE_BYTES,
                 ghost_entries: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.shape_bytes = shape_bytes
        self._entries: dict[bytes, tuple[bytes, V, int]] = {}
        self._shape: dict[bytes, tuple[bytes, V, int]] = {}
        self._bytes = 0
        self._shape_used = 0
        #: row keys of leaves missed once and not kept, oldest first (about twice the leaves the cache holds)
        self._ghosts: dict[bytes, None] = {}
        self._ghost_max = ghost_entries  # None: max_bytes // 8192, whatever max_bytes is set to later
        #: root row keys last found absent (a GetItem of a key whose partition is empty): how to read them
        self._empty: dict[bytes, None] = {}
        self._lock = threading.Lock()  # a backfill thread and the handler thread may read at once
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:  # never the contents
        return f"<NodeCache {len(self._entries)} + {len(self._shape)} nodes, {self._bytes + self._shape_used} bytes>"

    def __len__(self) -> int:
        return len(self._entries) + len(self._shape)

    def get(self, rk: bytes, blob: bytes) -> V | None:
        e = self._shape.get(rk) or self._entries.get(rk)
        if e is not None and e[0] == blob:
            self.hits += 1
            return e[1]
        self.misses += 1
        return None

    def peek(self, rk: bytes) -> V | None:
        """The node last opened at ``rk``, unchecked: a hint about the tree's shape (how to read it), never an
        answer."""
        e = self._shape.get(rk) or self._entries.get(rk)
        return e[1] if e is not None else None

    def seen_empty(self, rk: bytes) -> bool:
        """Whether the root at ``rk`` was absent when last looked for (a hint, like ``peek``)."""
        return rk in self._empty

    def note_empty(self, rk: bytes) -> None:
        with self._lock:
            empty = self._empty
            if len(empty) >= _EMPTY_ENTRIES:
                del empty[next(iter(empty))]
            empty[rk] = None

    def admit(self, rk: bytes) -> bool:
        """Whether a leaf just missed at ``rk`` is worth keeping: it was missed before, not long ago. (A hint
        about what to keep; what is served is checked against the store's blob in ``get`` either way.)"""
        with self._lock:
            ghosts = self._ghosts
            if rk in ghosts:
                del ghosts[rk]
                return True
            if len(ghosts) >= (self.max_bytes // 8192 if self._ghost_max is None else self._ghost_max):
                if not ghosts:
                    return True  # no ghosts kept (ghost_entries=0): keep every leaf
                del ghosts[next(iter(ghosts))]
            ghosts[rk] = None
            return False

    def put(self, rk: bytes, blob: bytes, node: V, shape: bool = False) -> None:
        """Keep ``node``, opened from ``blob`` at ``rk``; ``shape``: an inner node (kept under its own bound)."""
        cost = 3 * len(blob) + 200  # the blob, the plaintext and its slices, and the objects around them
        bound = self.shape_bytes if shape else self.max_bytes
        if cost > bound:
            return
        with self._lock:
            self._empty.pop(rk, None)
            entries, other = (self._shape, self._entries) if shape else (self._entries, self._shape)
            for where in (entries, other):  # a node's kind can change (a root leaf grown into an inner node)
                old = where.pop(rk, None)
                if old is not None:
                    if where is self._shape:
                        self._shape_used -= old[2]
                    else:
                        self._bytes -= old[2]
            used = self._shape_used if shape else self._bytes
            while entries and used + cost > bound:
                oldest = next(iter(entries))
                used -= entries.pop(oldest)[2]
            entries[rk] = (blob, node, cost)
            used += cost
            if shape:
                self._shape_used = used
            else:
                self._bytes = used

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._shape.clear()
            self._ghosts.clear()
            self._empty.clear()
            self._bytes = self._shape_used = 0
