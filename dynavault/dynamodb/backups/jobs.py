"""The backup worker: one thread, owned by the runtime, that copies backups and fills restored tables.

Why a thread: a copy or a restore of a large table takes seconds; on the server's event loop it would stop
every other request for that long. The worker commits in small store transactions, so requests interleave
with it and wait at most one batch. On shutdown it stops between batches; what it left half-done is
finished or removed at the next start (``restore.recover``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger("dynavault.dynamodb.backups")


class Stopped(Exception):
    """The server is stopping: the job leaves its work for the next start."""


class BackupJobs:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dynavault-backup")
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        #: backup ARNs a job is reading now (a copy being made, a restore reading it)
        self._busy: dict[str, int] = {}
        #: ids of the tables a job of this process is filling
        self._filling: set[str] = set()

    def __repr__(self) -> str:
        return f"<BackupJobs {sum(self._busy.values())} job(s)>"

    def submit(self, fn: Callable[[], None], *, uses: str, fills: str | None = None) -> Future:
        with self._lock:
            self._busy[uses] = self._busy.get(uses, 0) + 1
            if fills is not None:
                self._filling.add(fills)

        def run() -> None:
            try:
                fn()
            except Stopped:
                log.info("backup job on %s stopped with the server; it resumes or is removed at the next start",
                         uses)
            except Exception:
                log.exception("backup job on %s failed", uses)
            finally:
                with self._lock:
                    self._filling.discard(fills)
                    left = self._busy.get(uses, 1) - 1
                    if left:
                        self._busy[uses] = left
                    else:
                        self._busy.pop(uses, None)

        return self._pool.submit(run)

    def filling(self, table_id: str) -> bool:
        with self._lock:
            return table_id in self._filling

    def busy(self, arn: str) -> bool:
        with self._lock:
            return arn in self._busy

    def check(self) -> None:
        """Called between batches: raise Stopped once the server is stopping."""
        if self._stopping.is_set():
            raise Stopped()

    def close(self) -> None:
        self._stopping.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
