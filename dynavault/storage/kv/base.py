"""The key-value interface under the encrypted B+tree.

Small on purpose (get, ordered range, read snapshot, transaction with put/delete) so any transactional ordered store
can sit underneath: SQLite by default, a PostgreSQL-compatible or distributed store later. Keys are raw
bytes compared bytewise (memcmp); values are bytes on the way out, and on the way in only
:class:`~dynavault.storage.sealed.Sealed` or :class:`~dynavault.storage.sealed.CatalogRecord` —
:func:`check_value` enforces that for every backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

from dynavault.storage.sealed import CatalogRecord, Sealed

__all__ = ["KVReader", "KVTransaction", "KVStore", "check_value", "distinct_segments", "prefix_end"]


def check_value(value: object) -> bytes:
    """Return the bytes to persist for ``value``; TypeError unless it is Sealed or a CatalogRecord.

    This is the structural guarantee of invariant 1 at the storage boundary: raw ``bytes`` (which
    could be plaintext) are refused, whatever they contain."""
    if type(value) is Sealed or type(value) is CatalogRecord:
        return value.raw
    raise TypeError(
        f"the key-value store accepts only Sealed or CatalogRecord values, not {type(value).__name__}"
    )


def check_key(key: object) -> bytes:
    if type(key) is bytes:
        return key
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"keys are bytes, not {type(key).__name__}")


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no upper bound)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return None
    p[-1] += 1
    return bytes(p)


def delete_prefix(tx: KVTransaction, prefix: bytes) -> None:
    """Delete every row under ``prefix``, in batches that keep any backend's iterator out of the way."""
    end = prefix_end(prefix)
    while True:
        keys = [k for k, _ in tx.range(prefix, end, limit=512)]
        if not keys:
            return
        for k in keys:
            tx.delete(k)


def distinct_segments(r: KVReader, prefix: bytes, width: int) -> Iterator[bytes]:
    """Each distinct ``width``-byte segment that follows ``prefix`` in some row key, in order: one seek per
    segment however many rows share it (a segment shorter than ``width`` — a damaged key — is yielded as is)."""
    end = prefix_end(prefix)
    lo: bytes | None = prefix
    n = len(prefix)
    while lo is not None:
        row = next(iter(r.range(lo, end, limit=1)), None)
        if row is None:
            return
        segment = row[0][n:n + width]
        yield segment
        lo = prefix_end(prefix + segment)


@runtime_checkable
class KVReader(Protocol):
    """What reads need; both a store and a transaction provide it."""

    def get(self, key: bytes) -> bytes | None: ...

    def get_pair(self, a: bytes, b: bytes) -> tuple[bytes | None, bytes | None]:
        """The values at two keys as of one moment (one read, even outside a snapshot)."""
        ...

    def range(
        self, lo: bytes, hi: bytes | None, *, reverse: bool = False, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Pairs with ``lo <= k < hi`` (``hi=None``: no upper bound), ascending or descending."""
        ...


@runtime_checkable
class KVTransaction(KVReader, Protocol):
    """Reads see the transaction's own writes. Commit happens when the ``with`` block exits cleanly."""

    def put(self, key: bytes, value: Sealed | CatalogRecord) -> None: ...

    def delete(self, key: bytes) -> None: ...


@runtime_checkable
class KVStore(KVReader, Protocol):
    def transaction(self) -> AbstractContextManager[KVTransaction]:
        """Commit on clean exit (durable when the ``with`` returns), roll back on exception."""
        ...

    def snapshot(self) -> AbstractContextManager[KVReader]:
        """A read-only view of one consistent committed state for the whole ``with`` block.

        It takes no write lock: writers (other threads, other processes on the same store) are neither
        blocked by it nor block it, and once it has read, it does not see what they commit afterwards. Opened inside a
        transaction on the same thread, it is that transaction (and sees its writes). Whatever it reads was
        committed, but under group commit not necessarily durable yet: the caller owes the same wait for
        durability (``commit_seq`` / ``sync``) as after a write before it answers."""
        ...

    def close(self) -> None: ...
