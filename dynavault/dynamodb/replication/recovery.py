"""At start: what a replica Create left half done when its server stopped.

A Create makes the replica's table (CREATING, ``extra["replica_source"]``) and then, in a second transaction,
writes the group record that makes it a member; both under the catalog lock (``operations._create`` here,
``remote.op_create`` for a Create asked by another server). A table in that state without a group record is
what a Create that died between the two left: it was never answered as done (the server asking for it undoes
its side), nothing was copied into it (the backfill follows the group record), and nothing would ever finish
it — it would stay CREATING, and refuse a new Create of that replica, for good. It is removed.

A Create whose group record was written resumes by itself: the replication job backfills every CREATING member.
A Create of a member in another server writes the group record first, then asks that server: one that stopped
in between left a member CREATING here that its server never heard of; ``remote.py`` undoes it once that server
says so.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import store
from .group import group_of

if TYPE_CHECKING:
    from ..catalog import TableMeta
    from ..database import Database

log = logging.getLogger("dynavault.replication")


def _orphan(meta: TableMeta | None) -> bool:
    return meta is not None and meta.status == "CREATING" and "replica_source" in meta.extra and \
        group_of(meta) is None


def recover(db: Database) -> None:
    """Remove every replica table whose Create stopped before it joined its group; have every member this
    server was creating in another server confirmed by that server (``RemoteReplicas.unconfirm_creates``)."""
    remote = db.replication.remote if db.replication is not None else None
    if remote is not None:
        remote.unconfirm_creates()
    for meta in db.catalog.all():
        if not _orphan(meta):
            continue
        with db.catalog.lock:  # a Create holds it across both of its transactions: none is under way now
            current = db.catalog.get(meta.account, meta.region, meta.name)
            if current is not meta or not _orphan(current):
                continue
            with db.items.write() as w:
                store.drop_table(w.tx, meta.id_bytes)
                w.drop(meta)
                if db.streams is not None:
                    db.streams.drop_table(w.tx, meta.id_bytes)
                db.catalog.remove(w.tx, meta)
            db.catalog.forget(meta)
        db.keys.retire(meta.key_ref())
        log.warning("replica of %s in %s was being created from %s when the server stopped: removed (create it "
                    "again)", meta.name, meta.region, meta.extra.get("replica_source"))
