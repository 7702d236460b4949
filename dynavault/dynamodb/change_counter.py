"""A change subscriber that counts committed item changes by cause and event (``/metrics``).

The simplest subscriber of the item-change path, and the observable proof that every write operation
goes through it: a change that bypassed ``ItemWriter.apply`` would not be counted.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .item_store import ItemChange


class ChangeCounter:
    def __init__(self, counter) -> None:
        """``counter``: a labelled counter (``cause``, ``event``) whose ``labels(...)`` gives a cell with ``inc(n)``
        that one thread may bump without a lock (``ThreadCellCounter``): changes commit on the event loop and on
        background jobs' threads, so each thread keeps cells of its own."""
        self._counter = counter
        self._children: dict[tuple[str, str, int], object] = {}

    def in_transaction(self, tx, change: ItemChange, crypto) -> None:
        pass

    def committed(self, changes: Sequence[ItemChange]) -> None:
        if len(changes) == 1:  # most writes: no Counter to build
            c = changes[0]
            counts = {(c.cause, c.event): 1}
        else:
            counts = Counter((c.cause, c.event) for c in changes)
        me = threading.get_ident()
        for (cause, event), n in counts.items():
            child = self._children.get((cause, event, me))
            if child is None:
                child = self._children[(cause, event, me)] = self._counter.labels(cause, event)
            child.inc(n)  # type: ignore[attr-defined]
