"""SqliteKV.snapshot: a reader pinned at one instant on its own connection, while writers go on."""

from __future__ import annotations

import threading

import pytest

from dynavault.storage.kv.sqlite import SqliteKV
from dynavault.storage.sealed import Sealed


def test_a_snapshot_keeps_its_instant_and_does_not_block_writers(tmp_path):
    kv = SqliteKV(tmp_path / "t.db")
    with kv.transaction() as tx:
        for i in range(300):
            tx.put(b"k%03d" % i, Sealed(b"old"))
    snap = kv.pinned_snapshot()
    # a writer commits while the snapshot is open (from another thread, as the backup worker's peers do)
    done = threading.Event()

    def write() -> None:
        with kv.transaction() as tx:
            for i in range(300):
                tx.put(b"k%03d" % i, Sealed(b"new"))
            tx.put(b"zzz", Sealed(b"late"))
        done.set()

    t = threading.Thread(target=write)
    t.start()
    t.join(10)
    assert done.is_set()
    assert kv.get(b"k000") == b"new" and kv.get(b"zzz") == b"late"
    # the snapshot still reads the instant it was taken: every page of a paged range, and point reads
    rows = list(snap.range(b"k", None))
    assert len(rows) == 300 and {v for _, v in rows} == {b"old"}
    assert snap.get(b"zzz") is None and snap.get(b"k299") == b"old"
    assert [k for k, _ in snap.range(b"k100", b"k103")] == [b"k100", b"k101", b"k102"]
    snap.close()
    with pytest.raises(RuntimeError):
        snap.get(b"k000")
    snap.close()  # idempotent
    with kv.pinned_snapshot() as again:
        assert again.get(b"zzz") == b"late"
    kv.close()


def test_an_in_memory_store_has_no_snapshot():
    kv = SqliteKV(":memory:")
    with pytest.raises(RuntimeError):
        kv.pinned_snapshot()
    kv.close()
