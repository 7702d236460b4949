"""Change counters shared by every process serving one data dir: a cheap way to see that another process
changed something this one caches (the table catalog, the key ring).

The counters are 64-bit slots in a small mapped file (no data, only numbers). A writer bumps a slot after
its store transaction committed; a reader compares the slot with the value it last loaded at and reloads
from the store when they differ. Reading is one memory load — no system call on the request path.

Why after the commit: a reader that sees the new value then reloads what is already committed. A process
that dies between its commit and its bump would leave the others stale, so the supervisor bumps every slot
when a worker dies (``bump_all``). Bumps take an exclusive ``flock`` so two processes never lose one.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import pathlib
import struct
import threading

#: the slots; a new cached thing gets a new slot at the end (the file grows, older slots keep their place)
CATALOG = 0
KEYS = 1
#: the DAX control plane's records (dax/clusters.py: the TTLs a listener's cache uses)
DAX_CONTROL = 2
#: injected faults (server/faults.py)
FAULTS = 3
SLOTS = 8

_SLOT = struct.Struct("<Q")


class ChangeSignal:
    """Shared change counters; ``path=None`` keeps them in this process only (one process, or no files)."""

    def __init__(self, path: pathlib.Path | None) -> None:
        self.path = path
        size = SLOTS * _SLOT.size
        if path is None:
            self._fd = -1
            self._map = mmap.mmap(-1, size)
            return
        self._fd, self._map = open_mapped(path, size)

    def __repr__(self) -> str:
        return f"ChangeSignal({self.path})"

    def value(self, slot: int) -> int:
        return _SLOT.unpack_from(self._map, slot * _SLOT.size)[0]

    def bump(self, slot: int) -> int:
        """Count one committed change in ``slot``; -> the new value."""
        return self._bump((slot,))[0]

    def bump_all(self) -> None:
        """After a process died: whatever it committed last may not have been counted."""
        self._bump(range(SLOTS))

    def _bump(self, slots) -> list[int]:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            out = []
            for slot in slots:
                v = (self.value(slot) + 1) & 0xFFFFFFFFFFFFFFFF
                _SLOT.pack_into(self._map, slot * _SLOT.size, v)
                out.append(v)
            return out
        finally:
            if self._fd >= 0:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        try:
            self._map.close()
        except (BufferError, ValueError):
            pass
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Watch:
    """One cache's view of one slot: ``stale()`` is true once per change made since ``seen()``."""

    __slots__ = ("_signal", "_slot", "_seen", "_lock")

    def __init__(self, signal: ChangeSignal, slot: int) -> None:
        self._signal, self._slot = signal, slot
        self._seen = signal.value(slot)
        self._lock = threading.Lock()  # two threads of one process counting their changes at once

    def stale(self) -> bool:
        return self._signal.value(self._slot) != self._seen

    def seen(self) -> None:
        """Call before reloading: a change that lands during the reload is seen next time."""
        self._seen = self._signal.value(self._slot)

    def changed_here(self) -> None:
        """This process committed a change its memory already holds: count it, and keep others' visible."""
        with self._lock:
            before = self._seen
            after = self._signal.bump(self._slot)
            if after == before + 1:
                self._seen = after


def open_mapped(path: str | os.PathLike, size: int, *, clear: bool = False) -> tuple[int, mmap.mmap]:
    """A file of ``size`` bytes every process serving the data dir maps (grown, or with ``clear`` emptied
    first, under the file's lock so two processes starting together agree) -> (its descriptor, the map)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if clear or os.fstat(fd).st_size < size:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if clear:
                    os.ftruncate(fd, 0)
                if os.fstat(fd).st_size < size:
                    os.ftruncate(fd, size)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        return fd, mmap.mmap(fd, size)
    except BaseException:
        os.close(fd)
        raise
