"""What every DynamoDB operation is given: a narrow context over the catalog, the item store, the table
keys, the runtime-owned state of multi-item requests and of key switches, the settings and the clock.

Operations are plain functions ``handler(db, caller, params) -> dict`` listed in each operation module's
``HANDLERS`` table (``operations.py`` collects them); the runtime (``server/runtime/``) builds the parts
and this context, and nothing here builds anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dynavault.caller import Caller
from dynavault.config import Settings
from dynavault.errors import AWSError
from dynavault.sse.crypto import TableCrypto
from dynavault.sse.table_keys import TableKeyService

from .catalog import Catalog, TableMeta
from .expressions import DEFAULT_CACHE_BYTES, ExpressionCache
from .item_store import ItemStore
from .sse_spec import refuse_if_inaccessible
from .table_states import TableStates
from .throughput import Throughput

if TYPE_CHECKING:
    from dynavault.storage.kv.base import KVTransaction

    from .backups.jobs import BackupJobs
    from .leases import Leases
    from .replication.applier import Replicator
    from .replication.operations import GlobalTables
    from .sse_lifecycle import SSELifecycle
    from .streams.control import StreamLimits
    from .streams.store import StreamStore
    from .transactions import TransactionState


@dataclass(eq=False, repr=False)
class Database:
    settings: Settings
    catalog: Catalog
    items: ItemStore
    keys: TableKeyService
    #: claims and idempotency tokens of multi-item requests (per store, never a module global)
    transaction_state: TransactionState
    #: key switches in flight and the inaccessible-key sweep
    sse: SSELifecycle
    #: parsed expressions by text, bounded by memory (one per server, like its other caches)
    expression_cache: ExpressionCache = field(default_factory=lambda: ExpressionCache(DEFAULT_CACHE_BYTES))
    metrics: object | None = None
    #: the thread that copies backups and fills restored tables (runtime-owned)
    backup_jobs: BackupJobs | None = None
    clock: Callable[[], float] = field(default=time.time)
    #: DynamoDB Streams: the stream rows and the stream settings (built by the runtime)
    streams: StreamStore | None = None
    stream_limits: StreamLimits | None = None
    #: tables showing CREATING / UPDATING / DELETING for a while (in the store; the runtime builds and ticks it)
    table_states: TableStates = field(default=None)  # type: ignore[assignment]
    #: called in DeleteTable's store transaction before the table's rows go (PITR keeps its SYSTEM backup)
    #: provisioned-throughput token buckets (per process; off unless enforce_throughput)
    throughput: Throughput = field(default_factory=lambda: Throughput(False))
    drop_hooks: list[Callable[[KVTransaction, TableMeta], None]] = field(default_factory=list)
    #: with several worker processes: who runs which long job (None: this process serves the store alone)
    leases: Leases | None = None
    #: global tables: ReplicaUpdates and DeleteTable of a member (replication/operations.py; runtime-built)
    replication: GlobalTables | None = None
    #: the replication job (replication/applier.py), runtime-owned
    replicator: Replicator | None = None

    def __repr__(self) -> str:
        return f"<DynamoDB context {len(self.catalog.all())} table(s)>"

    def data_table(self, caller: Caller, name: str) -> TableMeta:
        """The table a data operation reads or writes; refused while its key is unusable."""
        meta = self.catalog.get(caller.account, caller.region, name)
        if meta is None:
            raise AWSError("ResourceNotFoundException", "Requested resource not found")
        if meta.status == "CREATING":  # a table being restored takes no data operation until ACTIVE
            raise AWSError("ResourceNotFoundException", "Requested resource not found")
        refuse_if_inaccessible(meta)
        return meta

    def crypto(self, caller: Caller, meta: TableMeta) -> TableCrypto:
        return self.keys.crypto_for(caller, meta.key_ref())

    def discard_table(self, meta: TableMeta) -> None:
        """Remove a table a restore or import could not finish: its items, its catalog entry (only if the
        catalog still holds this very definition) and its table key. No hooks: it was never a whole table."""
        with self.catalog.lock:
            if self.catalog.get(meta.account, meta.region, meta.name) is meta:
                with self.items.write() as w:
                    w.drop(meta)
                    self.catalog.remove(w.tx, meta)
                self.catalog.forget(meta)
        self.keys.retire(meta.key_ref())
