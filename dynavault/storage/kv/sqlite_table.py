"""The SQL side of ``SqliteKV``'s one table: creating it (or moving an older store's table over), reading a
key range a page at a time, and reading two keys in one statement. Why the table is a rowid table: ``sqlite.py``'s module doc, "Table"."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator

__all__ = ["PAGE_ROWS", "ensure_table", "pair", "paged_range"]

#: rows per page of a range
PAGE_ROWS = 128

_KV_TABLE = "CREATE TABLE {} (k BLOB NOT NULL UNIQUE, v BLOB NOT NULL)"


def ensure_table(c: sqlite3.Connection) -> None:
    """Create the ``kv`` table, or move a store written before 2026-12-03 from its WITHOUT ROWID table into one
    (``sqlite.py``'s module doc, "Table"). One transaction: a crash midway leaves the old table as it was."""

    def old() -> bool | None:  # None: no table yet
        row = c.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'kv'").fetchone()
        return None if row is None else "WITHOUT ROWID" in row[0].upper()

    if old() is False:
        return
    c.execute("BEGIN IMMEDIATE")  # another process opening the store at the same time waits, then finds it done
    try:
        state = old()
        if state is None:
            c.execute(_KV_TABLE.format("kv"))
        elif state:
            c.execute(_KV_TABLE.format("kv_rowid"))
            c.execute("INSERT INTO kv_rowid (k, v) SELECT k, v FROM kv ORDER BY k")
            c.execute("DROP TABLE kv")
            c.execute("ALTER TABLE kv_rowid RENAME TO kv")
        c.execute("COMMIT")
    except BaseException:
        if c.in_transaction:
            c.execute("ROLLBACK")
        raise


def paged_range(
    fetch: Callable[[str, tuple], list], lo: bytes, hi: bytes | None, reverse: bool, limit: int | None
) -> Iterator[tuple[bytes, bytes]]:
    """Rows of ``lo <= k < hi`` fetched a page at a time through ``fetch(sql, args)``."""
    left = limit
    first = True
    while left is None or left > 0:
        n = PAGE_ROWS if left is None else min(left, PAGE_ROWS)
        # After the first page the bound that moves becomes exclusive (k > last / k < last).
        if not reverse:
            lo_op = ">=" if first else ">"
            if hi is None:
                sql, args = f"SELECT k, v FROM kv WHERE k {lo_op} ? ORDER BY k LIMIT ?", (lo, n)
            else:
                sql = f"SELECT k, v FROM kv WHERE k {lo_op} ? AND k < ? ORDER BY k LIMIT ?"
                args = (lo, hi, n)
        else:
            if hi is None:
                sql = "SELECT k, v FROM kv WHERE k >= ? ORDER BY k DESC LIMIT ?"
                args = (lo, n)
            else:
                sql = "SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k DESC LIMIT ?"
                args = (lo, hi, n)
        rows = fetch(sql, args)
        yield from rows
        if len(rows) < n:
            return
        if left is not None:
            left -= len(rows)
        if reverse:
            hi = rows[-1][0]  # k < hi is already exclusive
        else:
            lo = rows[-1][0]
            first = False


def pair(fetch: Callable[[str, tuple], list], a: bytes, b: bytes) -> tuple[bytes | None, bytes | None]:
    """The values at ``a`` and ``b`` (None where absent), read by ``fetch(sql, args)`` in one statement: both
    from one moment without a read transaction around them."""
    # Two index searches: ``k IN (?, ?)`` builds and sorts an ephemeral table first (measured: twice the
    # instructions inside SQLite of this form).
    got = dict(fetch("SELECT k, v FROM kv WHERE k = ? UNION ALL SELECT k, v FROM kv WHERE k = ?", (a, b)))
    return got.get(a), got.get(b)
