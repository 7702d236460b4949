"""The row count the at-rest tests rely on (``tests.canary.rows_under``) counts every row under a prefix, whatever
byte follows it: the point-in-time test counts three tables' history rows under one prefix, and a table id is
random, so about one run in 85 had a table whose id starts with 0xff."""

from __future__ import annotations

import sqlite3
import uuid

from dynavault.storage.kv.base import prefix_end
from tests.canary import rows_under

HISTORY = b"\x00\x00pitr\x00"


def _store(tmp_path, keys: list[bytes]):
    store = tmp_path / "tables.db"
    con = sqlite3.connect(store)
    with con:
        con.execute("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
        con.executemany("INSERT INTO kv VALUES (?, ?)", [(k, b"") for k in keys])
    con.close()
    return store


def test_rows_whose_next_byte_is_0xff_are_counted(tmp_path) -> None:
    # a table id as one of the failing runs had it
    tables = [uuid.UUID(t).bytes for t in ("573c51b7-9837-45d5-9637-e62a350ce569",
                                           "73ec969a-08a4-4a2e-be92-6d3807eeb7ca",
                                           "ff748c3a-f784-46d9-a23a-c5855ebbdbaf")]
    history = [HISTORY + t + i.to_bytes(12, "big") for t in tables for i in range(11)]
    edges = [HISTORY, HISTORY + b"\xff", HISTORY + b"\xff" * 40]
    outside = [HISTORY[:-1], prefix_end(HISTORY), prefix_end(HISTORY) + b"\x00", b"\x00\x00stats\x00x"]
    store = _store(tmp_path, history + edges + outside)
    assert rows_under(store, HISTORY) == 3 * 11 + len(edges)
    assert rows_under(store, HISTORY + tables[2]) == 11


def test_a_prefix_of_0xff_bytes_has_no_upper_bound(tmp_path) -> None:
    store = _store(tmp_path, [b"\xfe", b"\xff", b"\xff\x00", b"\xff\xff\xff"])
    assert rows_under(store, b"\xff") == 3
    assert rows_under(store, b"\xff\xff") == 1
