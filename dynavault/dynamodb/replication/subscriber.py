"""The replication subscriber: one more subscriber of ``ItemChange``, inside the change's store transaction.

A local change of a member of a global table gets a last-writer clock, is applied to the other members
served here that it can be folded into (``fold.py``) and gets a row in the member's replication queue for every
other member (in another server, being created, its key unusable...); all of it commits with the change or not
at all. The clock of a local write is later than both the wall clock and the clock of whatever the item held
before (so a write made after seeing a replicated value also wins everywhere else). Replicated writes (cause ``replication``) carry their clock from their origin and are
written by the applier: they are never queued again, so a write never travels back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..keys import key_of_item
from . import store
from .group import CAUSE, group_of

if TYPE_CHECKING:
    from dynavault.sse.crypto import TableCrypto

    from ..item_store import ItemChange, ItemWriter
    from .fold import Fold

#: one microsecond: the smallest step a clock takes past the one it follows
TICK = 1e-6


class ReplicationWriter:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        #: the same-server replicas (set by the runtime once the key service exists; None: every member queued)
        self.fold: Fold | None = None

    def __repr__(self) -> str:
        return "<ReplicationWriter>"

    def in_writer(self, w: ItemWriter, change: ItemChange, crypto: TableCrypto) -> None:
        # the table's group first: every write of a table that is no global table passes here
        group = group_of(change.table)
        # a replicated write (the fold's or the job's) carries its origin's clock: the applier wrote it
        if group is None or change.cause == CAUSE or len(group["members"]) < 2 or change.old == change.new:
            return
        item = change.new if change.new is not None else change.old
        hkey, skey, _ = key_of_item(change.table, item)
        self._write(w, change, crypto, hkey, skey)

    def blind_delete(self, w: ItemWriter, change: ItemChange, crypto: TableCrypto, hkey: bytes, skey: bytes) -> None:
        """A delete of an item this replica does not hold (yet): still a write, later than what another region
        may be sending, so it wins there (and here) by last writer wins."""
        self._write(w, change, crypto, hkey, skey)

    def _write(self, w: ItemWriter, change: ItemChange, crypto: TableCrypto, hkey: bytes, skey: bytes) -> None:
        meta = change.table
        group = group_of(meta)
        if group is None or change.cause == CAUSE or len(group["members"]) < 2:
            return
        tx = w.tx
        tid = meta.id_bytes
        ckey = store.clock_key(crypto, tid, hkey, skey)
        prev = store.read_clock(tx, crypto, ckey)
        now = self.clock()
        t = max(now, prev[0] + TICK) if prev is not None else now
        store.write_clock(tx, crypto, ckey, t, meta.region, deleted=change.new is None)
        folded = self.fold.apply(w, change, hkey, skey, t) if self.fold is not None else []
        if len(folded) == len(group["members"]) - 1:
            return  # every other member has it already: no queue row
        # the key as its canonical bytes: the same in every member (same key schema), sealed with the row
        body = {"h": hkey.hex(), "s": skey.hex(), "n": change.new, "t": t, "r": meta.region}
        if folded:
            body["f"] = folded
        store.append(tx, crypto, tid, body, now)

    def committed(self, changes: Sequence[ItemChange]) -> None:
        pass  # the replication job polls the queues (applier.Replicator.INTERVAL)
