"""The replication job: backfill of new replicas, then every member's queue applied to every other member.

It runs in one process per store (the holder of the background lease), as a periodic job in short slices
on the server's event loop, like every handler: a commit from another thread between two reads of a
handler that reads without a snapshot (a GetItem looking for a partition root, then at the directory) would
look like a vanished partition. Per ordered pair of members (origin,
target) it reads the origin's queue after the target's checkpoint, opens the rows with the origin's keys and
applies them to the target through the one item-change path (cause ``replication``, so the target's stream
shows them), last writer wins: a row is applied only when its clock (time, region) is later than the target's
clock of that item; the checkpoint moves in the same store transaction, so a row is applied exactly once.
A member whose keys cannot be had (its key disabled, say) is skipped as origin and as target: replication
to and from it pauses and catches up from the checkpoints once the key is back. One that stays
INACCESSIBLE_ENCRYPTION_CREDENTIALS for ``replica_inaccessible_seconds`` leaves the group (its table stays).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from dynavault.errors import AWSError, IntegrityError

from ..keys import key_of_item
from . import store
from .fold import apply_replicated
from .group import INACCESSIBLE, group_of, members, with_member, write_group

if TYPE_CHECKING:
    from dynavault.sse.crypto import TableCrypto

    from ..catalog import TableMeta
    from ..database import Database

log = logging.getLogger("dynavault.replication")
BATCH = 256
MIN_BACKOFF = 1.0
MAX_BACKOFF = 60.0


class Replicator:
    #: seconds between two slices (the replication latency of an idle server is about this)
    INTERVAL = 0.02
    #: seconds of work a slice does at most before it gives the event loop back
    SLICE = 0.05
    #: seconds between two trims of a member's queue (rows every consumer applied)
    TRIM_EVERY = 0.5
    #: seconds between two tombstone-pruning passes of a member
    PRUNE_EVERY = 1.0
    #: seconds a tombstone is kept past what the other members confirmed: the rounding of queue positions,
    #: and transactions of stores that do not serialise writers the way SQLite's write lock does
    PRUNE_MARGIN = 1.0

    def __init__(self, db: Database, *, metrics=None, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.metrics = metrics
        self.clock = clock
        self._closed = False
        self._until = 0.0
        #: table id -> (monotonic time before which it is not tried again, the delay that got it there): a
        #: member whose keys failed, a group whose pass failed; doubling up to MAX_BACKOFF, so an unusable key
        #: costs a KMS call (and an audit event) now and then, not at every slice
        self._backoff: dict[str, tuple[float, float]] = {}
        #: (origin table id, target region) whose queue failed to open: logged once, never read again
        self._damaged: set[tuple[str, str]] = set()
        #: (target table id) -> the source walk position of a backfill under way in this process
        self._backfill: dict[str, tuple | None] = {}
        #: table id -> monotonic time of its queue's last trim
        self._trimmed: dict[str, float] = {}
        #: table id -> monotonic time of its last tombstone-pruning pass
        self._pruned: dict[str, float] = {}

    def __repr__(self) -> str:
        return "<Replicator>"

    def close(self) -> None:
        self._closed = True

    def _spent(self) -> bool:
        return self._closed or time.monotonic() >= self._until

    # -- one slice ------------------------------------------------------------------------------------
    def run_once(self, budget: float | None = None) -> None:
        """One slice: every global table's backfills and queues, until ``budget`` seconds are spent (what is
        left is taken up by the next slice)."""
        self._until = time.monotonic() + (self.SLICE if budget is None else budget)
        seen: set[tuple[str, str]] = set()
        for meta in self.db.catalog.all():
            if group_of(meta) is None or (meta.account, meta.name) in seen:
                continue
            seen.add((meta.account, meta.name))
            if self._waiting(meta.table_id):
                continue
            try:
                self._group(meta)
            except Exception:
                if self._fail(meta.table_id) == MIN_BACKOFF:  # logged when it starts failing, not every retry
                    log.exception("replication of %s failed; retried with back-off", meta.name)
            else:
                self._backoff.pop(meta.table_id, None)
            if self._spent():
                return

    def _group(self, meta: TableMeta) -> None:
        group = group_of(meta)
        metas = members(self.db.catalog, meta)
        by_region = {m.region: m for m in metas}
        now = self.clock()
        for m in metas:
            since = m.sse_state.get("inaccessible_since")
            if m.status == INACCESSIBLE and since is not None and \
                    now - float(since) >= self.db.settings.replica_inaccessible_seconds:
                self.leave(m)
                return
        cryptos: dict[str, TableCrypto | None] = {m.region: self._crypto(m) for m in metas}
        for region, entry in sorted(group["members"].items()):
            target = by_region.get(region)
            if target is None or entry.get("status") != "CREATING":
                continue
            if group["members"].get(entry.get("source", ""), {}).get("remote"):
                continue  # filled from another server, by its puller (remote.py)
            source = by_region.get(entry.get("source", ""))
            if source is None:  # its source left the group meanwhile: any other ACTIVE member will do
                source = next((m for r, m in sorted(by_region.items()) if r != region
                               and group["members"].get(r, {}).get("status") == "ACTIVE"), None)
            if source is None:
                self._activate(target)  # nothing left to copy from
            elif cryptos.get(region) and cryptos.get(source.region):
                if self._fill(source, target, cryptos[source.region], cryptos[region]):
                    self._activate(target)
        for origin in metas:
            for target in metas:
                if origin is target or cryptos.get(origin.region) is None or cryptos.get(target.region) is None:
                    continue
                while self._apply(origin, target, cryptos[origin.region], cryptos[target.region]) and \
                        not self._spent():
                    pass
            # members in other servers count too: their checkpoint here is what their last pull acknowledged;
            # a trim is a write transaction of its own, so it runs now and then, not at every slice
            if time.monotonic() - self._trimmed.get(origin.table_id, 0.0) >= self.TRIM_EVERY:
                self._trimmed[origin.table_id] = time.monotonic()
                self._trim(origin, [r for r in group["members"] if r != origin.region])
        for m in metas:
            if cryptos.get(m.region) is not None and not self._spent():
                self._prune(m, group, by_region, cryptos[m.region])

    def _waiting(self, table_id: str) -> bool:
        entry = self._backoff.get(table_id)
        return entry is not None and time.monotonic() < entry[0]

    def _fail(self, table_id: str) -> float:
        previous = self._backoff.get(table_id)
        delay = MIN_BACKOFF if previous is None else min(MAX_BACKOFF, previous[1] * 2)
        self._backoff[table_id] = (time.monotonic() + delay, delay)
        return delay

    def _crypto(self, meta: TableMeta) -> TableCrypto | None:
        if meta.status in (INACCESSIBLE, "ARCHIVING", "ARCHIVED") or self._waiting(meta.table_id):
            return None
        try:
            crypto = self.db.crypto(self.db.keys.key_service(meta.account, meta.region, meta.sse), meta)
        except AWSError as err:
            if self._fail(meta.table_id) == MIN_BACKOFF:
                log.warning("replication to and from %s in %s paused: %s", meta.name, meta.region, err.code)
            return None
        self._backoff.pop(meta.table_id, None)
        return crypto

    # -- applying -------------------------------------------------------------------------------------
    def _apply_one(self, w, target: TableMeta, crypto: TableCrypto, new: dict | None, hkey: bytes, skey: bytes,
                   clock: tuple[float, str]) -> bool:
        return apply_replicated(w, target, crypto, new, hkey, skey, clock)

    def _apply(self, origin: TableMeta, target: TableMeta, o_crypto: TableCrypto, t_crypto: TableCrypto) -> bool:
        """Apply one batch of ``origin``'s queue to ``target``; -> whether there may be more."""
        db = self.db
        if (origin.table_id, target.region) in self._damaged:
            return False
        with db.items.read() as r:
            exists, after = store.checkpoint(r, origin.id_bytes, target.region)
            if not exists:
                return False  # a pair made when the target joined; none yet: nothing of origin is for it
            try:
                rows = list(store.read_queue(r, origin.id_bytes, o_crypto, after, BATCH))
            except IntegrityError:
                self._damaged.add((origin.table_id, target.region))
                log.error("replication queue of %s in %s is damaged after position %s: replication to %s stopped",
                          origin.name, origin.region, (after or b"").hex(), target.region)
                return False
        if not rows:
            return False
        now = self.clock()
        latencies = []
        with db.items.write() as w:
            for _pos, body in rows:
                if target.region in body.get("f", ()):
                    continue  # written with its origin's write (fold.py): only the checkpoint moves past it
                self._apply_one(w, target, t_crypto, body.get("n"), bytes.fromhex(body["h"]),
                                bytes.fromhex(body["s"]), (float(body["t"]), body["r"]))
                latencies.append(max(0.0, now - float(body["t"])))
            store.set_checkpoint(w.tx, origin.id_bytes, target.region, rows[-1][0])
        if self.metrics is not None:
            hist = self.metrics.replication_latency.labels(origin.region, target.region)
            for s in latencies:
                hist.observe(s)
        return len(rows) == BATCH

    def _trim(self, origin: TableMeta, consumers: list[str]) -> None:
        kv = self.db.items.kv
        points = [store.checkpoint(kv, origin.id_bytes, r) for r in consumers]
        if not points or any(not exists or pos is None for exists, pos in points):
            return
        upto = min(pos for _, pos in points)
        with kv.transaction() as tx:
            store.trim(tx, origin.id_bytes, upto)

    # -- tombstones -----------------------------------------------------------------------------------
    def _prune(self, member: TableMeta, group: dict, by_region: dict[str, TableMeta], crypto: TableCrypto) -> None:
        """Drop ``member``'s tombstones that no row still to come from another member can be older than.

        A tombstone only matters against a replicated write with an earlier clock. A row's clock is at least
        the wall-clock time of its queue position, so once every other member's next row still to be applied
        here is later than a tombstone (or there is none and a new local write there would be later), that
        tombstone decides nothing any more. Checked inside a write transaction: the store takes its write lock
        at the start, so no write that could still queue an earlier row is in flight."""
        now = time.monotonic()
        if now - self._pruned.get(member.table_id, 0.0) < self.PRUNE_EVERY:
            return
        self._pruned[member.table_id] = now
        kv = self.db.items.kv
        oldest = store.oldest_tombstone(kv, member.id_bytes)
        if oldest is None or oldest >= self.clock() - 2 * self.PRUNE_MARGIN:
            return
        with kv.transaction() as tx:
            bound = self.clock()
            for region, entry in sorted(group["members"].items()):
                if region != member.region:
                    bound = min(bound, self._confirmed(tx, member, region, entry, by_region.get(region)))
                if bound - self.PRUNE_MARGIN <= oldest:
                    return
            dropped = store.prune_tombstones(tx, crypto, member.id_bytes, bound - self.PRUNE_MARGIN)
        if dropped:
            log.debug("dropped %d tombstones of %s in %s", dropped, member.name, member.region)

    def _confirmed(self, tx, member: TableMeta, region: str, entry: dict, other: TableMeta | None) -> float:
        """A time no row of ``region``'s member still to be applied to ``member`` can be earlier than (0: none
        known)."""
        if other is not None:  # in this store: its queue after member's checkpoint
            exists, after = store.checkpoint(tx, other.id_bytes, member.region)
            if not exists:
                return 0.0
            pending = store.next_position(tx, other.id_bytes, after)
            return self.clock() if pending is None else store.position_time(pending)
        if entry.get("remote"):
            # how far this server has pulled the peer's queue (remote.PULL_PREFIX): the rows after it are
            # later; a peer that writes nothing leaves it where it is, and the tombstones wait
            exists, after = store.checkpoint(tx, member.id_bytes, "@" + region)
            return store.position_time(after) if exists and after else 0.0
        return 0.0

    # -- backfill -------------------------------------------------------------------------------------
    def _fill(self, source: TableMeta, target: TableMeta, s_crypto: TableCrypto, t_crypto: TableCrypto) -> bool:
        """Copy a batch of ``source``'s items (with their clocks; an item never written while replicated
        counts as written at time 0 in the source's region) into the CREATING ``target``; -> whether done."""
        db = self.db
        after = self._backfill.get(target.table_id)
        while not self._spent():
            batch = []
            with db.items.read() as r:
                for token, key, raw in db.items.walk(r, source, s_crypto, after):
                    item = orjson.loads(raw)
                    hkey, skey, _ = key_of_item(source, item)
                    clock = store.read_clock(r, s_crypto, store.clock_key(s_crypto, source.id_bytes, hkey, skey))
                    batch.append((item, hkey, skey, clock or (0.0, source.region)))
                    after = (token, key)
                    if len(batch) >= BATCH:
                        break
            if batch:
                with db.items.write() as w:
                    for item, hkey, skey, clock in batch:
                        self._apply_one(w, target, t_crypto, item, hkey, skey, clock)
                self._backfill[target.table_id] = after
            if len(batch) < BATCH:
                self._backfill.pop(target.table_id, None)
                return True
        return False

    def _activate(self, target: TableMeta) -> None:
        db = self.db
        with db.catalog.lock:
            current = db.catalog.get(target.account, target.region, target.name)
            group = group_of(current) if current is not None else None
            if group is None or target.region not in group["members"]:
                return
            entry = {**group["members"][target.region], "status": "ACTIVE", "since": self.clock()}
            group = with_member(group, target.region, entry)
            metas = members(db.catalog, current)
            current.status = "ACTIVE"
            with db.catalog.transaction() as tx:
                write_group(db.catalog, tx, metas, group)
            for m in metas:
                db.catalog.remember(m)
        log.info("replica of %s in %s is ACTIVE", target.name, target.region)

    def leave(self, member: TableMeta) -> None:
        """``member`` leaves its group (its table stays, as a regional table); the others keep replicating."""
        db = self.db
        with db.catalog.lock:
            group = group_of(member)
            if group is None:
                return
            rest = [m for m in members(db.catalog, member) if m is not member]
            group = with_member(group, member.region, None)
            with db.catalog.transaction() as tx:
                write_group(db.catalog, tx, rest, group)
                write_group(db.catalog, tx, [member], None)
                for m in rest:
                    store.drop_checkpoint(tx, m.id_bytes, member.region)
                # everything replication kept for the member goes: its checkpoints (in the queues of members
                # here and of members in other servers), its queue (no consumer left) and its clocks (a regional
                # table orders nothing); were it made global again, its writes start new clocks
                store.drop_table(tx, member.id_bytes)
            for m in [*rest, member]:
                db.catalog.remember(m)
        log.warning("replica of %s in %s left its replication group (key unusable since %s)", member.name,
                    member.region, member.sse_state.get("inaccessible_since"))
