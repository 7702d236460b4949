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
description, held here until the window ends, so DescribeTable and ListTables still show it and CreateTable,
UpdateTable and DeleteTable on its name are refused as DynamoDB refuses them. That memory is per process and
per server run: another worker, or the same one after a restart, already answers as if the window were over.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .catalog import TableMeta
    from .database import Database

STATE_UNTIL = "state_until"
#: how often the runtime's tick looks for states that are due
TICK_SECONDS = 0.25


@dataclass
class Deleting:
    """What remains visible of a deleted table while it shows DELETING."""

    description: dict
    until: float


class TableStates:
    """The timed states of one store's tables; owned by the runtime (one per Database)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deleting: dict[tuple[str, str, str], Deleting] = {}

    def __repr__(self) -> str:
        return f"<TableStates {len(self._deleting)} deleting>"

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
    def deleted(self, db: Database, meta: TableMeta, description: dict) -> None:
        """Keep showing a table DeleteTable just removed, for ``delete_table_seconds``."""
        seconds = db.settings.delete_table_seconds
        if seconds > 0:
            with self._lock:
                self._deleting[(meta.account, meta.region, meta.name)] = Deleting(description, db.clock() + seconds)

    def deleting(self, db: Database, account: str, region: str, name: str) -> Deleting | None:
        """The deleted table of that name still showing DELETING, if any."""
        with self._lock:
            entry = self._deleting.get((account, region, name))
            if entry is not None and db.clock() >= entry.until:
                del self._deleting[(account, region, name)]
                return None
            return entry

    def deleting_names(self, db: Database, account: str, region: str) -> list[str]:
        now = db.clock()
        with self._lock:
            return [n for (a, r, n), e in self._deleting.items() if a == account and r == region and now < e.until]

    def forget_deleting(self, account: str, region: str, name: str) -> None:
        with self._lock:
            self._deleting.pop((account, region, name), None)

    # -- the runtime's tick ---------------------------------------------------------------------------
    def tick(self, db: Database) -> None:
        now = db.clock()
        for meta in db.catalog.all():
            if STATE_UNTIL in meta.extra:
                self.settle(db, meta)
        with self._lock:
            for key in [k for k, e in self._deleting.items() if now >= e.until]:
                del self._deleting[key]
