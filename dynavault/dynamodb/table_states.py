"""Table states that last a while, as in DynamoDB: CREATING after CreateTable, UPDATING after UpdateTable and
DELETING after DeleteTable, each for the configured number of seconds (settings ``create_table_seconds``,
``update_table_seconds``, ``delete_table_seconds``; 0, the default, makes the change instant). SDK waiters and
the ResourceInUseException answers for tables in those states can then be tested.

CREATING and UPDATING live in the table's catalog record (its status, and when the state ends in
``extra["state_until"]``), so they survive a restart. They end when the runtime's periodic tick finds them due,
or sooner, when DescribeTable looks at the table after its time (a waiter polling DescribeTable sees ACTIVE as
soon as the window is over). Times come from the context's clock.

A DELETING table is already gone from the catalog and the store when DeleteTable answers: its data, stream
records and keys go at once, and no data operation, tag or backup call can reach it. What is left is its last
description, written in DeleteTable's own store transaction as a row of its own (plaintext table metadata, as
the catalog's) and kept until the window ends, so DescribeTable and ListTables still show it and CreateTable,
UpdateTable and DeleteTable on its name are refused as DynamoDB refuses them — by every worker serving the
store, and after a restart. Being plaintext, such a row can be altered on disk: one that is not a description
of the table its key names (in that account and region) is logged and ignored, then dropped by the tick.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from dynavault.storage.kv.base import KVStore, KVTransaction, prefix_end
from dynavault.storage.sealed import CatalogRecord

from .layout import DELETING_PREFIX

if TYPE_CHECKING:
    from .catalog import TableMeta
    from .database import Database

log = logging.getLogger("dynavault.dynamodb.table_states")

STATE_UNTIL = "state_until"
#: how often the runtime's tick looks for states that are due
TICK_SECONDS = 0.25


@dataclass
class Deleting:
    """What remains visible of a deleted table while it shows DELETING."""

    description: dict
    until: float


def _scope(account: str, region: str) -> bytes:
    return DELETING_PREFIX + account.encode() + b"\x00" + region.encode() + b"\x00"


def _row(key: bytes, raw: bytes) -> Deleting | None:
    """The row at ``key`` as what it must be: the description of the table its key names, shown until a time;
    None (logged) for a row altered on disk or moved under another key (another account's would show there)."""
    try:
        account, region, name = key[len(DELETING_PREFIX):].decode().split("\x00", 2)
        row = orjson.loads(raw)
        ok = (isinstance(row, dict) and isinstance(row.get("d"), dict)
              and row["d"].get("TableArn") == f"arn:aws:dynamodb:{region}:{account}:table/{name}"
              and isinstance(row.get("until"), (int, float)) and not isinstance(row["until"], bool)
              and math.isfinite(row["until"]))
    except (UnicodeDecodeError, ValueError):  # orjson.JSONDecodeError is a ValueError
        ok = False
    if not ok:
        log.warning("a stored DELETING description is not one (altered on disk?): ignored (%d bytes)", len(raw))
        return None
    return Deleting(row["d"], row["until"])


class TableStates:
    """The timed states of one store's tables; owned by the runtime (one per Database)."""

    def __init__(self, kv: KVStore) -> None:
        self.kv = kv

    def __repr__(self) -> str:
        return "<TableStates>"

    # -- CREATING / UPDATING ---------------------------------------------------------------------------
    @staticmethod
    def begin(db: Database, meta: TableMeta, status: str, seconds: float) -> bool:
        """Put ``meta`` in ``status`` for ``seconds`` (the caller writes the record); False when 0 (instant)."""
        if seconds <= 0:
            return False
        meta.status = status
        meta.extra[STATE_UNTIL] = db.clock() + seconds
        return True

    @staticmethod
    def settle(db: Database, meta: TableMeta) -> None:
        """End the table's timed state if its time has come (written through)."""
        until = meta.extra.get(STATE_UNTIL)
        if until is None or db.clock() < until:
            return
        with db.catalog.lock:
            live = db.catalog.get(meta.account, meta.region, meta.name)
            if live is None or live.table_id != meta.table_id or STATE_UNTIL not in live.extra:
                return
            live.extra.pop(STATE_UNTIL)
            if live.status in ("CREATING", "UPDATING"):
                live.status = "ACTIVE"
            db.catalog.save(live)

    # -- DELETING -------------------------------------------------------------------------------------
    def deleted(self, db: Database, meta: TableMeta, description: dict, tx: KVTransaction) -> None:
        """Keep showing a table DeleteTable is removing in ``tx``, for ``delete_table_seconds``."""
        seconds = db.settings.delete_table_seconds
        if seconds > 0:
            tx.put(_scope(meta.account, meta.region) + meta.name.encode(),
                   CatalogRecord(orjson.dumps({"d": description, "until": db.clock() + seconds})))

    def deleting(self, db: Database, account: str, region: str, name: str) -> Deleting | None:
        """The deleted table of that name still showing DELETING, if any."""
        key = _scope(account, region) + name.encode()
        raw = self.kv.get(key)
        row = _row(key, raw) if raw is not None else None
        return row if row is not None and db.clock() < row.until else None

    def deleting_names(self, db: Database, account: str, region: str) -> list[str]:
        now, scope = db.clock(), _scope(account, region)
        return [k[len(scope):].decode() for k, raw in self.kv.range(scope, prefix_end(scope))
                if (row := _row(k, raw)) is not None and now < row.until]

    # -- the runtime's tick ---------------------------------------------------------------------------
    def tick(self, db: Database) -> None:
        for meta in db.catalog.all():
            if STATE_UNTIL in meta.extra:
                self.settle(db, meta)
        now = db.clock()
        due = [k for k, raw in self.kv.range(DELETING_PREFIX, prefix_end(DELETING_PREFIX))
               if (row := _row(k, raw)) is None or now >= row.until]
        if due:
            with self.kv.transaction() as tx:
                for k in due:
                    tx.delete(k)
