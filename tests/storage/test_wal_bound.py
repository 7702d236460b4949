"""The WAL stays bounded under a sustained write load from several processes sharing one store (the way
DYNAVAULT workers share it: one flock writer lock, group commit, a sync thread each, short read snapshots)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from dynavault.storage.kv.sqlite import SqliteKV

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WAL_PAGES = 64  # small, so a short run passes the checkpoint size many times over
FRAME = 4096 + 24  # a WAL frame: one page and its header
COMMITS = 500  # per worker; each rewrites a 10 KB row: ~4 frames, 6,000 frames in all (~6 x BOUND)
#: the checkpoint size plus what writers add while a slow reader (a loaded machine) holds a checkpoint back
BOUND = 16 * WAL_PAGES * FRAME

_WORKER = """
import os, sys, threading, time
from dynavault.storage.kv.sqlite import SqliteKV
from dynavault.storage.sealed import Sealed
path, lock, n, wal_pages, commits = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
kv = SqliteKV(path, group_commit=True, writer_lock=lock, wal_pages=wal_pages)
stop = False
def syncer():  # the server's fsync thread
    while not stop:
        kv.sync()
        time.sleep(0.001)
t = threading.Thread(target=syncer)
t.start()
for i in range(commits):
    with kv.transaction() as tx:  # a leaf-sized row rewritten, as a PutItem does
        tx.put(b"k%d-%d" % (n, i % 40), Sealed(os.urandom(10000)))
    with kv.snapshot() as r:  # a read between writes, as GetItem and Query do
        r.get(b"k%d-%d" % (n, (i * 7) % 40))
stop = True
t.join()
kv.close()
"""


def test_wal_stays_bounded_under_sustained_writes_from_several_workers(tmp_path) -> None:
    path = tmp_path / "kv.db"
    SqliteKV(path, wal_pages=WAL_PAGES).close()  # creates the file in WAL mode
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(path), str(tmp_path / "writer.lock"), str(n),
                               str(WAL_PAGES), str(COMMITS)], cwd=REPO_ROOT)
             for n in range(3)]
    wal = str(path) + "-wal"
    largest = 0
    while any(p.poll() is None for p in procs):
        try:
            largest = max(largest, os.path.getsize(wal))
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    assert all(p.returncode == 0 for p in procs)
    assert largest <= BOUND, largest
