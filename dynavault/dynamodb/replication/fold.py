"""Same-server replicas written in the origin's own transaction (the "fold").

A local change of a member is applied, in the change's own store transaction, to every other member served by
this server whose table is ACTIVE and whose keys this process holds fresh in its key cache (the entry the
replication job keeps: it runs in this same process): the replica's item, index entries, stream record,
statistics and last-writer clock, exactly as the replication job writes them (``apply_replicated``, cause
``replication``, last writer wins), and its ReplicationLatency observed once the transaction is durable. No
queue row is written for such a member: no second transaction, no queue read, no trim.

Only a server of one process folds (the runtime builds no ``Fold`` for workers). With several worker processes
every write transaction holds the store's cross-process write lock, and a worker waits for it with its event
loop stopped; a write that also writes its replica holds the lock about twice as long, and measured slower
(paired runs, two workers: 124-144 against 157-252 replicated puts/s) than the queue, whose rows the
replication job applies 256 to a transaction. In one process the fold measured faster (426-507 against 264-374).

The queue stays for what cannot be folded: members in other servers; members still CREATING (their backfill and
the queue keep a write made meanwhile in order); members whose table is not ACTIVE (key unusable, a key switch
in flight, archived) or whose keys this process does not hold fresh (it never calls KMS inside a write
transaction). A row names the members it was folded into (``"f"``), and the job only moves their checkpoint
past it: they stay consumers of the queue, so one that cannot be folded into for a while catches up from its
checkpoint as before. The order of the two paths does not matter: every apply is last writer wins on the
item's clock, so a queued row older than a folded write loses to it wherever it arrives.

A fold that fails (a damaged replica, a table deleted meanwhile) is undone alone (``ItemWriter.attempt``) and
that member gets its queue row: the origin's write never fails because of another region's replica.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dynavault.errors import AWSError

from ..item_store import ItemChange
from . import store
from .group import CAUSE, group_of

if TYPE_CHECKING:
    from dynavault.sse.crypto import TableCrypto
    from dynavault.sse.table_keys import TableKeyService

    from ..catalog import Catalog, TableMeta
    from ..item_store import ItemWriter

log = logging.getLogger("dynavault.replication")


def later(clock: tuple[float, str], than: tuple[float, str] | None) -> bool:
    """Last writer wins: by change time, ties broken by region name (the same verdict on every replica)."""
    return than is None or (clock[0], clock[1]) > (than[0], than[1])


def apply_replicated(w: ItemWriter, target: TableMeta, crypto: TableCrypto, new: dict | None, hkey: bytes,
                     skey: bytes, clock: tuple[float, str]) -> bool:
    """Apply another member's write of an item to ``target`` if it is later than what ``target`` holds of it;
    -> whether it was."""
    ckey = store.clock_key(crypto, target.id_bytes, hkey, skey)
    if not later(clock, store.read_clock(w.tx, crypto, ckey)):
        return False
    place = w.place(target, crypto, hkey, skey)
    if place.old != new:
        w.apply(ItemChange(target, place.old, new, CAUSE), crypto, hkey=hkey, skey=skey, place=place)
    store.write_clock(w.tx, crypto, ckey, clock[0], clock[1], deleted=new is None)
    return True


class Fold:
    """The same-server replicas of one process's writes (see the module's text)."""

    def __init__(self, catalog: Catalog, keys: TableKeyService, *, metrics=None,
                 clock: Callable[[], float] = time.time) -> None:
        self.catalog = catalog
        self.keys = keys
        self.metrics = metrics
        self.clock = clock
        #: (origin region, target region) -> the latency histogram's child (labels() is not free)
        self._hists: dict[tuple[str, str], object] = {}
        #: target table ids whose fold failed (logged once until one succeeds again)
        self._failing: set[str] = set()

    def __repr__(self) -> str:
        return "<replication Fold>"

    def _cached(self, meta: TableMeta) -> TableCrypto | None:
        if meta.status != "ACTIVE" or meta.sse_state.get("phase"):
            return None
        return self.keys.cached(self.keys.key_service(meta.account, meta.region, meta.sse), meta.key_ref())

    def apply(self, w: ItemWriter, change: ItemChange, hkey: bytes, skey: bytes, t: float) -> list[str]:
        """Fold ``change`` (a local write of clock ``t``) into every member it can be folded into; -> their
        regions (the others need its queue row)."""
        meta = change.table
        group = group_of(meta)
        folded: list[str] = []
        for region, entry in sorted(group["members"].items()):
            if region == meta.region or entry.get("remote") or entry.get("status") != "ACTIVE":
                continue
            target = self.catalog.get(meta.account, region, meta.name)
            if target is None:
                continue
            try:
                target = w.table(target)  # as this transaction sees it
                crypto = self._cached(target)
                if crypto is None:
                    continue
                with w.attempt():
                    apply_replicated(w, target, crypto, change.new, hkey, skey, (t, meta.region))
            except Exception as exc:
                gone = isinstance(exc, AWSError) and exc.code == "ResourceNotFoundException"
                if not gone and target.table_id not in self._failing:  # (gone: deleted, leaving the group)
                    self._failing.add(target.table_id)
                    log.warning("replica of %s in %s not written with its origin's write (queued instead): %s",
                                meta.name, region, exc.code if isinstance(exc, AWSError) else repr(exc))
                continue
            self._failing.discard(target.table_id)
            folded.append(region)
            if self.metrics is not None:
                w.after_commit(self._observer(meta.region, region, t))
        return folded

    def _observer(self, origin: str, target: str, t: float) -> Callable[[], None]:
        hist = self._hists.get((origin, target))
        if hist is None:
            hist = self._hists[(origin, target)] = self.metrics.replication_latency.labels(origin, target)
        return lambda: hist.observe(max(0.0, self.clock() - t))
