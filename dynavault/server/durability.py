"""Group commit: no response leaves before everything it could have observed is on disk.

The store commits without fsync (``SqliteKV(group_commit=True)``) and counts its commits. Before a response
is sent, the app waits until a ``sync()`` that began after the store's current commit count has finished.
While one fsync runs in a worker thread, the event loop keeps serving and committing; every request that
finished meanwhile waits for the next fsync, which covers them all. So N concurrent writers pay one fsync,
and a response (a write's acknowledgement, or a read or a failed condition that saw a fresh write) is never
sent for data that a power cut could still take back.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol


class SyncableStore(Protocol):
    commit_seq: int

    def sync(self) -> int: ...


class GroupCommit:
    def __init__(self, store: SyncableStore) -> None:
        self.store = store
        self.durable_seq = store.commit_seq
        self._flush: asyncio.Future | None = None
        # one thread: fsyncs never overlap, and the next one starts only after the last returned
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dynavault-fsync")
        self.syncs = 0  # fsyncs done (for tests and /metrics-style introspection)

    def pending(self) -> bool:
        """Whether a commit made so far is not yet durable (settle() would wait)."""
        return self.durable_seq < self.store.commit_seq

    async def settle(self) -> None:
        """Return once every commit made so far is durable (at once if none is pending)."""
        seq = self.store.commit_seq
        while self.durable_seq < seq:
            if self._flush is None:
                self._flush = asyncio.ensure_future(self._sync())
            await asyncio.shield(self._flush)

    async def _sync(self) -> None:
        try:
            done = await asyncio.get_running_loop().run_in_executor(self._executor, self.store.sync)
            self.syncs += 1
            self.durable_seq = max(self.durable_seq, done)
        finally:
            self._flush = None

    def close(self) -> None:
        self._executor.shutdown(wait=True)
