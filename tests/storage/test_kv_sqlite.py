"""KV interface and the SQLite backend: structural value check, transactions, durability, ranges."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dynavault.storage.kv.base import KVStore, KVTransaction, prefix_end
from dynavault.storage.kv.sqlite import SqliteKV
from dynavault.storage.sealed import CatalogRecord, PartitionToken, Sealed

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def kv(tmp_path):
    store = SqliteKV(tmp_path / "kv.db")
    yield store
    store.close()


def test_protocols(kv) -> None:
    assert isinstance(kv, KVStore)
    with kv.transaction() as tx:
        assert isinstance(tx, KVTransaction)


@pytest.mark.parametrize(
    "value",
    [b"plaintext", bytearray(b"x"), memoryview(b"x"), "text", 5, None, PartitionToken(b"\x01" * 32)],
    ids=["bytes", "bytearray", "memoryview", "str", "int", "None", "PartitionToken"],
)
def test_put_refuses_anything_but_sealed_or_catalog(kv, value) -> None:
    with kv.transaction() as tx:
        with pytest.raises(TypeError):
            tx.put(b"k", value)
    assert kv.get(b"k") is None


def test_put_refuses_subclass_smuggling(kv) -> None:
    # Only the exact boundary types count; a bytes subclass named like one is still plain bytes.
    class Sneaky(bytes):
        raw = b"x"

    with kv.transaction() as tx, pytest.raises(TypeError):
        tx.put(b"k", Sneaky(b"secret"))


def test_sealed_and_catalog_values_round_trip(kv) -> None:
    with kv.transaction() as tx:
        tx.put(b"a", Sealed(b"\x00sealed"))
        tx.put(b"b", CatalogRecord(b'{"TableName":"t"}'))
        assert tx.get(b"a") == b"\x00sealed"  # a transaction sees its own writes
    assert kv.get(b"a") == b"\x00sealed"
    assert kv.get(b"b") == b'{"TableName":"t"}'
    with kv.transaction() as tx:
        tx.put(b"a", Sealed(b"v2"))
        tx.delete(b"b")
        tx.delete(b"missing")
    assert kv.get(b"a") == b"v2"
    assert kv.get(b"b") is None


def test_reprs_hide_bytes() -> None:
    secret = b"canary-4242-secret"
    for obj in (Sealed(secret), CatalogRecord(secret)):
        assert "canary" not in repr(obj) and secret.hex() not in repr(obj)
        assert str(len(secret)) in repr(obj)
    with pytest.raises(AttributeError):
        Sealed(b"x").raw = b"y"
    with pytest.raises(ValueError):
        PartitionToken(b"short")


def test_token_order_and_hash() -> None:
    a, b = PartitionToken(b"\x01" * 32), PartitionToken(b"\x02" * 32)
    assert a < b and b > a and a <= PartitionToken(b"\x01" * 32)
    assert sorted([b, a]) == [a, b]
    assert len({a, PartitionToken(b"\x01" * 32), b}) == 2


def test_rollback_on_exception(kv) -> None:
    with kv.transaction() as tx:
        tx.put(b"keep", Sealed(b"1"))
    with pytest.raises(RuntimeError, match="boom"), kv.transaction() as tx:
        tx.put(b"keep", Sealed(b"2"))
        tx.put(b"new", Sealed(b"3"))
        tx.delete(b"keep")
        tx.put(b"keep", Sealed(b"4"))
        raise RuntimeError("boom")
    assert kv.get(b"keep") == b"1"
    assert kv.get(b"new") is None
    # the store is usable afterwards
    with kv.transaction() as tx:
        tx.put(b"new", Sealed(b"5"))
    assert kv.get(b"new") == b"5"


def test_finished_transaction_handle_is_dead(kv) -> None:
    with kv.transaction() as tx:
        pass
    with pytest.raises(RuntimeError):
        tx.put(b"k", Sealed(b"v"))


def test_nested_transaction_is_a_savepoint(kv) -> None:
    with kv.transaction() as outer:
        outer.put(b"a", Sealed(b"1"))
        with pytest.raises(KeyError), kv.transaction() as inner:
            inner.put(b"b", Sealed(b"2"))
            raise KeyError("inner fails")
        with kv.transaction() as inner:
            inner.put(b"c", Sealed(b"3"))
    assert kv.get(b"a") == b"1"
    assert kv.get(b"b") is None
    assert kv.get(b"c") == b"3"
    with pytest.raises(ValueError), kv.transaction() as outer:
        with kv.transaction() as inner:
            inner.put(b"d", Sealed(b"4"))
        raise ValueError("outer fails")
    assert kv.get(b"d") is None


def test_durable_across_reopen(tmp_path) -> None:
    path = tmp_path / "d.db"
    kv = SqliteKV(path)
    with kv.transaction() as tx:
        for i in range(300):
            tx.put(i.to_bytes(2, "big"), Sealed(bytes([i % 256]) * 10))
    with pytest.raises(ZeroDivisionError), kv.transaction() as tx:
        tx.put(b"uncommitted", Sealed(b"x"))
        1 / 0  # noqa: B018
    kv.close()
    kv = SqliteKV(path)
    assert kv.get((299).to_bytes(2, "big")) == bytes([299 % 256]) * 10
    assert len(list(kv.range(b"", None))) == 300
    assert kv.get(b"uncommitted") is None
    kv.close()
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_commit_survives_process_death(tmp_path) -> None:
    """A commit that returned is on disk even if the process dies without closing anything."""
    path = tmp_path / "crash.db"
    code = (
        "import os, sys\n"
        "from dynavault.storage.kv.sqlite import SqliteKV\n"
        "from dynavault.storage.sealed import Sealed\n"
        f"kv = SqliteKV({str(path)!r})\n"
        "with kv.transaction() as tx:\n"
        "    tx.put(b'committed', Sealed(b'yes'))\n"
        "with kv.transaction() as tx:\n"  # dies with this one still open
        "    tx.put(b'open', Sealed(b'\\x00'))\n"
        "    os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
    kv = SqliteKV(path)
    assert kv.get(b"committed") == b"yes"
    assert kv.get(b"open") is None
    kv.close()


def test_range_bounds_order_limit_and_paging(kv) -> None:
    keys = sorted({bytes([a, b]) for a in (1, 2, 3) for b in range(0, 256, 3)})
    with kv.transaction() as tx:
        for k in keys:
            tx.put(k, Sealed(k[::-1]))
    got = list(kv.range(b"\x02", b"\x03"))
    want = [k for k in keys if b"\x02" <= k < b"\x03"]
    assert [k for k, _ in got] == want and len(want) == 86
    assert all(v == k[::-1] for k, v in got)
    assert [k for k, _ in kv.range(b"\x02", b"\x03", reverse=True)] == want[::-1]
    assert [k for k, _ in kv.range(b"", None)] == keys  # > one page of 128
    assert [k for k, _ in kv.range(b"", None, reverse=True)] == keys[::-1]
    assert [k for k, _ in kv.range(b"\x01\x03", None, limit=5)] == keys[1:6]
    assert [k for k, _ in kv.range(b"", None, reverse=True, limit=130)] == keys[::-1][:130]
    assert list(kv.range(b"\x02", b"\x02")) == []
    with kv.transaction() as tx:
        assert [k for k, _ in tx.range(b"\x03", None)] == [k for k in keys if k >= b"\x03"]


def test_range_iterator_tolerates_writes(kv) -> None:
    with kv.transaction() as tx:
        for i in range(400):
            tx.put(i.to_bytes(2, "big"), Sealed(b"v"))
        seen = 0
        for k, _ in tx.range(b"", None):
            tx.delete(k)
            seen += 1
    assert seen == 400
    assert list(kv.range(b"", None)) == []


def test_prefix_end() -> None:
    assert prefix_end(b"ab") == b"ac"
    assert prefix_end(b"a\xff\xff") == b"b"
    assert prefix_end(b"\xff") is None
    assert prefix_end(b"") is None


def test_threads_serialize_on_the_store(kv) -> None:
    """The lock makes whole transactions atomic with respect to other threads (no lost updates)."""
    import threading

    with kv.transaction() as tx:
        tx.put(b"counter", Sealed((0).to_bytes(4, "big")))

    def bump(n: int) -> None:
        for _ in range(n):
            with kv.transaction() as tx:
                v = int.from_bytes(tx.get(b"counter"), "big")
                tx.put(b"counter", Sealed((v + 1).to_bytes(4, "big")))

    threads = [threading.Thread(target=bump, args=(25,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert int.from_bytes(kv.get(b"counter"), "big") == 100


def test_two_stores_on_one_file_see_each_others_commits(tmp_path) -> None:
    a, b = SqliteKV(tmp_path / "shared.db"), SqliteKV(tmp_path / "shared.db")
    with a.transaction() as tx:
        tx.put(b"k", CatalogRecord(b"from-a"))
    assert b.get(b"k") == b"from-a"
    a.close()
    b.close()


def _pair(r) -> tuple[bytes | None, bytes | None, list[bytes]]:
    return r.get(b"a"), r.get(b"b"), [v for _, v in r.range(b"a", b"c")]


def test_snapshot_and_writer_on_other_threads_do_not_block_each_other(kv) -> None:
    """A read snapshot takes no write lock: a writer on another thread commits while it is open (and it
    keeps seeing the state it began with), and a snapshot opens and reads while another thread holds an
    uncommitted write transaction (seeing only committed data)."""
    import threading

    with kv.transaction() as tx:  # invariant kept by every writer: a == b
        tx.put(b"a", CatalogRecord(b"1"))
        tx.put(b"b", CatalogRecord(b"1"))

    def write(v: bytes, hold: threading.Event | None = None, holding: threading.Event | None = None) -> None:
        with kv.transaction() as tx:
            tx.put(b"a", CatalogRecord(v))
            if holding is not None:
                holding.set()
                hold.wait(10)
            tx.put(b"b", CatalogRecord(v))

    with kv.snapshot() as snap:
        assert snap.get(b"a") == b"1"
        writer = threading.Thread(target=write, args=(b"2",), daemon=True)
        writer.start()
        writer.join(5)
        assert not writer.is_alive(), "a write transaction waited for a read snapshot"
        assert kv.get(b"a") == b"2"  # committed ...
        assert _pair(snap) == (b"1", b"1", [b"1", b"1"])  # ... but not in the snapshot's state
    with kv.snapshot() as snap:
        assert _pair(snap) == (b"2", b"2", [b"2", b"2"])

    hold, holding = threading.Event(), threading.Event()
    writer = threading.Thread(target=write, args=(b"3", hold, holding), daemon=True)
    writer.start()
    assert holding.wait(5)
    seen: list = []

    def read() -> None:
        with kv.snapshot() as snap:
            seen.append(_pair(snap))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    alive = reader.is_alive()
    hold.set()
    writer.join(5)
    assert not alive, "a read snapshot waited for a write transaction"
    assert seen == [(b"2", b"2", [b"2", b"2"])]  # not the half-written a=3
    with kv.snapshot() as snap:
        assert _pair(snap) == (b"3", b"3", [b"3", b"3"])


def test_snapshot_takes_no_write_lock_across_stores(tmp_path) -> None:
    """Two stores on one file stand for two processes: the write lock (BEGIN IMMEDIATE) is free while a
    snapshot is open, and a snapshot opens while the other store holds the write lock."""
    # b fails fast (0.2 s busy timeout) instead of waiting 10 s if a's snapshot held the write lock
    a, b = SqliteKV(tmp_path / "shared.db"), SqliteKV(tmp_path / "shared.db", timeout=0.2)
    try:
        with a.transaction() as tx:
            tx.put(b"a", CatalogRecord(b"1"))
            tx.put(b"b", CatalogRecord(b"1"))
        with a.snapshot() as snap:
            assert snap.get(b"a") == b"1"
            with b.transaction() as tx:
                tx.put(b"a", CatalogRecord(b"2"))
                tx.put(b"b", CatalogRecord(b"2"))
            assert _pair(snap) == (b"1", b"1", [b"1", b"1"])
        with b.transaction() as tx:
            tx.put(b"a", CatalogRecord(b"3"))
            with a.snapshot() as snap:
                assert _pair(snap) == (b"2", b"2", [b"2", b"2"])
    finally:
        a.close()
        b.close()


def test_snapshot_inside_a_transaction_sees_its_writes_and_dies_on_exit(kv) -> None:
    with kv.transaction() as tx:
        tx.put(b"a", CatalogRecord(b"mine"))
        with kv.snapshot() as r:
            assert r.get(b"a") == b"mine"
    with kv.snapshot() as snap:
        with kv.snapshot() as inner:  # nested snapshots share the outer one
            assert inner.get(b"a") == b"mine"
        assert snap.get(b"a") == b"mine"
    with pytest.raises(RuntimeError):
        snap.get(b"a")
    with pytest.raises(RuntimeError):
        list(snap.range(b"", None))


def test_snapshot_on_memory_store() -> None:
    kv = SqliteKV(":memory:")
    with kv.transaction() as tx:
        tx.put(b"a", CatalogRecord(b"x"))
    with kv.snapshot() as snap:
        assert snap.get(b"a") == b"x" and [k for k, _ in snap.range(b"", None)] == [b"a"]
    with kv.transaction() as tx:  # the shared connection's read transaction is over
        tx.put(b"a", CatalogRecord(b"y"))
    assert kv.get(b"a") == b"y"
    kv.close()


def test_one_thread_reads_and_writes_on_one_warm_connection(kv) -> None:
    """Snapshots, plain reads and write transactions from one thread (the server's handlers) share one
    connection: SQLite drops a connection's page cache whenever another connection has committed since its
    last read, so a separate reader would re-read every page after each write. Another thread gets a
    connection of its own only while the first one is in use."""
    import threading

    for i in range(20):
        with kv.transaction() as tx:
            tx.put(b"k%d" % i, CatalogRecord(b"v"))
        with kv.snapshot() as snap:
            assert snap.get(b"k%d" % i) == b"v"
        assert kv.get(b"k%d" % i) == b"v"
    assert kv.connections == 1
    seen: list = []
    with kv.snapshot() as snap:
        snap.get(b"k0")
        reader = threading.Thread(target=lambda: seen.append(kv.get(b"k1")), daemon=True)
        reader.start()
        reader.join(5)
    assert seen == [b"v"] and kv.connections == 2


def test_store_with_the_old_without_rowid_table_is_moved_over_at_open(tmp_path) -> None:
    """A store written before the rowid table (``kv ... WITHOUT ROWID``) opens with every row intact, in one
    rowid table; opening it again changes nothing."""
    import sqlite3

    path = tmp_path / "old.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
    rows = {b"k%03d" % i: os.urandom(50 + 97 * i) for i in range(120)}  # up to ~11 KB: rows on overflow pages
    con.executemany("INSERT INTO kv VALUES (?, ?)", rows.items())
    con.close()
    for _ in range(2):
        kv = SqliteKV(path)
        assert [(k, bytes(v)) for k, v in kv.range(b"k", b"l")] == sorted(rows.items())
        assert kv.get(b"k077") == rows[b"k077"]
        with kv.transaction() as tx:
            tx.put(b"k077", Sealed(b"new"))
            tx.delete(b"k001")
        assert kv.get(b"k077") == b"new" and kv.get(b"k001") is None
        rows[b"k077"] = b"new"
        rows.pop(b"k001", None)
        kv.close()
        con = sqlite3.connect(path)
        (sql,) = con.execute("SELECT sql FROM sqlite_master WHERE type = 'table'").fetchall()
        con.close()
        assert "WITHOUT ROWID" not in sql[0].upper() and "UNIQUE" in sql[0].upper()


def test_mmap_false_reads_without_a_memory_map(tmp_path) -> None:
    """A store several processes write (``--workers``) is read with pread: SQLite would unmap and map the
    file again after each of the other processes' commits."""
    mapped = SqliteKV(tmp_path / "a.db")
    plain = SqliteKV(tmp_path / "b.db", mmap=False)
    try:
        for kv, want in ((mapped, True), (plain, False)):
            with kv.transaction() as tx:
                tx.put(b"\x01k", CatalogRecord(b"{}"))
            with kv.snapshot() as snap:
                assert snap.get(b"\x01k") is not None
                assert (snap._conn.execute("PRAGMA mmap_size").fetchone()[0] > 0) is want
    finally:
        mapped.close()
        plain.close()
