#!/usr/bin/env python
"""Microseconds per single-row committed transaction of the SQLite store: FULL, NORMAL, and group commit with one
``sync()`` per commit and one per 8 commits (8 concurrent writers sharing an fsync); the figures quoted in
``dynavault/storage/kv/sqlite.py``'s module doc.

    python benchmarks/sqlite_commits.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dynavault.storage.kv.sqlite import SqliteKV  # noqa: E402
from dynavault.storage.sealed import Sealed  # noqa: E402


def _measure(directory: str, n: int = 200) -> dict[str, float]:
    """Microseconds per single-row committed transaction: FULL, NORMAL, and group commit with one
    ``sync()`` per commit and one per 8 commits (8 concurrent writers sharing an fsync)."""
    out = {}
    for mode, group, per_sync in (("FULL", False, 0), ("NORMAL", False, 0), ("group/1", True, 1),
                                  ("group/8", True, 8)):
        path = os.path.join(directory, f"bench-{mode.replace('/', '-')}.db")
        kv = SqliteKV(path, synchronous="NORMAL" if mode == "NORMAL" else "FULL", group_commit=group)
        t0 = time.perf_counter()
        for i in range(n):
            with kv.transaction() as tx:
                tx.put(i.to_bytes(4, "big"), Sealed(os.urandom(200)))
            if per_sync and (i + 1) % per_sync == 0:
                kv.sync()
        out[mode] = (time.perf_counter() - t0) / n * 1e6
        kv.close()
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(dir=".") as d:
        for mode, us in _measure(d).items():
            print(f"{mode}: {us:.0f} µs per committed one-row transaction")
