"""A change subscriber that counts committed item changes by cause and event (``/metrics``).

The simplest subscriber of the item-change path, and the observable proof that every write operation
goes through it: a change that bypassed ``ItemWriter.apply`` would not be counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .item_store import ItemChange


class ChangeCounter:
    def __init__(self, counter) -> None:
        """``counter``: a labelled counter (``cause``, ``event``) with ``labels(...).inc(n)``."""
        self._counter = counter
        self._children: dict[tuple[str, str], object] = {}

    def in_transaction(self, tx, change: ItemChange, crypto) -> None:
        pass

    def committed(self, changes: Sequence[ItemChange]) -> None:
        if len(changes) == 1:  # most writes: no Counter to build
            c = changes[0]
            counts = {(c.cause, c.event): 1}
        else:
            counts = Counter((c.cause, c.event) for c in changes)
        for key, n in counts.items():
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self._counter.labels(*key)
            child.inc(n)  # type: ignore[attr-defined]
