"""The database's wiring: its store, catalog, item store and change subscribers, table keys, key lifecycle,
background jobs; exports and imports; the fault registry."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from dynavault.config import Settings
from dynavault.dynamodb.leases import Leases
from dynavault.errors import StartupError
from dynavault.storage.signal import FAULTS, ChangeSignal, Watch

from ..connection import Connections
from ..metrics import Metrics
from .common import CATALOG_LOCK_FILE, THROUGHPUT_FILE, WRITER_LOCK_FILE, Periodic, served_regions

log = logging.getLogger("dynavault.server")


def build_database(settings: Settings, kms, owned_account: str, metrics: Metrics, connections: Connections,
              closers: list[Callable[[], None]], periodic: list[Periodic], signal: ChangeSignal, worker: bool,
              first: bool, faults=None):
    """The database: its store, catalog, item store (with the change subscribers), table keys, key
    lifecycle and the context its operations get; -> (context, store)."""
    from dynavault.dynamodb import epochs, indexes, tables
    from dynavault.dynamodb.backups import pitr, restore
    from dynavault.dynamodb.backups.history import HistoryWriter
    from dynavault.dynamodb.backups.jobs import BackupJobs
    from dynavault.dynamodb.catalog import Catalog
    from dynavault.dynamodb.change_counter import ChangeCounter
    from dynavault.dynamodb.claims import StoreClaims
    from dynavault.dynamodb.database import Database
    from dynavault.dynamodb.item_store import ItemStore
    from dynavault.dynamodb.replication import recovery as replication_recovery
    from dynavault.dynamodb.replication import store as replication_store
    from dynavault.dynamodb.replication.applier import Replicator
    from dynavault.dynamodb.replication.fold import Fold
    from dynavault.dynamodb.replication.operations import GlobalTables
    from dynavault.dynamodb.replication.peers import parse_peers
    from dynavault.dynamodb.replication.remote import PULL_INTERVAL, RemoteReplicas
    from dynavault.dynamodb.replication.subscriber import ReplicationWriter
    from dynavault.dynamodb.sse_lifecycle import SSELifecycle
    from dynavault.dynamodb.streams.control import StreamJobs, StreamLimits
    from dynavault.dynamodb.streams.store import StreamStore
    from dynavault.dynamodb.streams.writer import StreamWriter
    from dynavault.dynamodb.table_states import TICK_SECONDS as TABLE_STATES_TICK
    from dynavault.dynamodb.table_states import TableStates
    from dynavault.dynamodb.throughput import SharedBuckets, Throughput
    from dynavault.dynamodb.transactions import TransactionState
    from dynavault.dynamodb.ttl import TTLSweeper
    from dynavault.sse.kms_client import InProcessKms, RemoteKms
    from dynavault.sse.table_keys import TableKeyService, service_caller
    from dynavault.storage.kv.sqlite import SqliteKV

    if settings.commit_mode not in ("group", "each"):
        raise ValueError(f"commit_mode must be 'group' or 'each', not {settings.commit_mode!r}")
    if settings.kms_endpoint:
        remote = RemoteKms(settings.kms_endpoint, settings.kms_access_key_id, settings.kms_secret_access_key)
        port = remote

        def owned_key_arn(region: str) -> str:
            return remote.owned_key_arn(service_caller(owned_account, region))
    else:
        port = InProcessKms(kms)
        owned_key_arn = kms.owned_key_arn
    if settings.in_memory:
        # one connection, no WAL, no fsync: the same store code over a database that never touches a file
        store = SqliteKV(":memory:", memory_snapshots=True)
    else:
        data = settings.data_path()
        data.mkdir(parents=True, exist_ok=True)
        store = SqliteKV(data / "tables.db", group_commit=settings.commit_mode == "group",
                         writer_lock=data / WRITER_LOCK_FILE if worker else None, mmap=not worker)
    catalog = Catalog(store, signal, lock_path=settings.data_path(CATALOG_LOCK_FILE) if worker else None)
    closers.append(catalog.lock.close)
    streams = StreamStore(store)
    stream_limits = StreamLimits.from_settings(settings)
    items = ItemStore(store, catalog, collection_limit=settings.item_collection_max_bytes,
                      subscribers=[ChangeCounter(metrics.item_changes),
                                   StreamWriter(streams, stream_limits, exclusive=not worker),
                                   history_writer := HistoryWriter(),
                                   replication_writer := ReplicationWriter()])
    keys = TableKeyService(port, owned_key_arn=owned_key_arn, owned_account=owned_account,
                           refresh_seconds=settings.key_refresh_seconds, shared_cache=settings.shared_key_cache,
                           metrics=metrics, outage=faults.kms_unavailable if faults is not None else None)
    metrics.key_cache_entries.set_function(keys.cached_entries)
    lifecycle = SSELifecycle(catalog, keys, settings, metrics=metrics)
    backup_jobs = BackupJobs()
    leases = Leases(store) if worker else None
    # with workers, --enforce-throughput's buckets are slots of a mapped file all of them change
    buckets = SharedBuckets(settings.data_path(THROUGHPUT_FILE), clear=first) \
        if worker and settings.enforce_throughput else None
    if buckets is not None:
        closers.append(buckets.close)
    # with workers, transaction claims live in the store too, so a conflict across workers is refused
    claims = StoreClaims(store, leases.holder) if leases is not None else None
    db = Database(settings, catalog, items, keys, TransactionState(store, shared=claims), lifecycle,
                  metrics=metrics, streams=streams, stream_limits=stream_limits, backup_jobs=backup_jobs,
                  leases=leases, table_states=TableStates(store),
                  throughput=Throughput(settings.enforce_throughput, settings.throughput_burst_seconds,
                                        metrics=metrics, shared=buckets))
    connections.on_closed(keys.drop_connection)
    history_writer.clock = db.clock  # history positions and restore times on one clock
    db.drop_hooks.append(lambda tx, meta: pitr.keep_system_backup(db, tx, meta))
    # global tables: ReplicaUpdates, and the replication job in slices (by the holder of the background lease)
    replicator = Replicator(db, metrics=metrics)
    # same-server replicas written in their origin's transaction, by a server of one process only (replication/
    # fold.py: with workers, the longer write transactions under the cross-process write lock measured slower)
    replication_writer.fold = None if worker else Fold(catalog, keys, metrics=metrics)
    db.replication = GlobalTables(db, create_table=tables.create_table, delete_table=tables.delete_table)
    db.drop_hooks.append(lambda tx, meta: replication_store.drop_table(tx, meta.id_bytes))
    db.replicator = replicator
    # members in other servers (--replica-peer): the internal operations they call, and the puller, in a thread
    # (it waits on the network)
    db.replication.remote = RemoteReplicas(db, parse_peers(settings.replica_peer, settings.replica_peer_credentials),
                                           replicator, served=served_regions(settings))
    if db.replication.remote.peers.peers:
        periodic.append(Periodic("replication-peers", PULL_INTERVAL, db.replication.remote.run_once,
                                 thread=True))

    def account_seals() -> None:
        epochs.account_node_seals(catalog, keys, settings.node_epoch_max_seals)

    def close() -> None:
        replicator.close()
        backup_jobs.close()  # stops between batches; what is left is finished or removed at the next start
        account_seals()
        store.close()

    closers.append(close)
    # each process counts the seals its own codecs made
    periodic.append(Periodic("node-epochs", settings.epoch_check_seconds, account_seals, "process"))
    periodic.append(Periodic("key-cache-prune", max(1.0, min(60.0, settings.key_refresh_seconds)), keys.prune,
                             "process"))
    # the key-state sweeps call KMS: with a remote one, in a thread
    kms_is_remote = bool(settings.kms_endpoint)
    periodic.extend(Periodic(n, i, f, thread=kms_is_remote) for n, i, f in lifecycle.jobs())
    periodic.append(Periodic("idempotency-tokens", 60.0, db.transaction_state.tokens.prune))
    if claims is not None:
        periodic.append(Periodic("transaction-claims", 60.0, claims.prune))
    periodic.append(Periodic("replication", Replicator.INTERVAL, replicator.run_once, thread=kms_is_remote))
    stream_jobs = StreamJobs(streams, catalog, stream_limits)
    periodic.append(Periodic("stream-shards", stream_jobs.interval(), stream_jobs.run))
    # Time to Live: one sweeper per store; its pass runs in short slices on the event loop, stopped before the
    # store closes
    sweeper = TTLSweeper(db)
    periodic.append(Periodic("ttl-sweep", max(0.1, settings.ttl_sweep_seconds), sweeper.tick))
    closers.append(sweeper.stop)
    if worker:  # a backfill, index delete or restore whose worker died is started again by the lease holder
        periodic.append(Periodic("index-jobs", 2.0, lambda: indexes.resume_abandoned(db)))
        periodic.append(Periodic("restore-resume", 2.0, lambda: restore.resume_abandoned(db), thread=kms_is_remote))
        periodic.append(Periodic("pitr-base-resume", 2.0, lambda: pitr.resume_abandoned(db)))
    else:
        periodic.append(Periodic("restore-resume", 10.0, lambda: restore.resume_restores(db), thread=kms_is_remote))
    # tables showing CREATING / UPDATING for a configured time become ACTIVE on this tick (or when described)
    periodic.append(Periodic("table-states", TABLE_STATES_TICK, lambda: db.table_states.tick(db)))
    # PITR: history past the recovery period is dropped, bases are taken again when they age out
    periodic.append(Periodic("pitr-sweep", max(0.1, min(3600.0, settings.pitr_day_seconds / 24)),
                             lambda: pitr.sweep(db)))
    if first:
        # Work a stopped server left half done is resumed by the one process that starts first (with workers:
        # worker 0, before the others start).
        Leases.clear(store)
        indexes.resume_jobs(db)
        restore.recover(db)
        pitr.recover(db)  # bases whose copy died are taken again
        replication_recovery.recover(db)  # replica Creates that stopped before joining their group
    return db, store


def build_transfers(settings: Settings, db, first: bool, periodic: list[Periodic]) -> dict:
    """Exports to and imports from ``--bucket-dir`` (they replace the refusals served without it)."""
    from dynavault.dynamodb.exports import exports, imports
    from dynavault.dynamodb.exports.buckets import BucketStore
    from dynavault.dynamodb.exports.service import Transfers

    root = settings.bucket_dir
    if not os.path.isdir(os.path.expanduser(root)):
        raise StartupError(f"--bucket-dir {root}: not a directory (each of its subdirectories is a bucket)")
    transfers = Transfers(db, BucketStore(root))
    if first:  # an export or import whose process stopped is failed (and its half-made table removed)
        exports.recover(transfers)
        imports.recover(transfers)
    if db.leases is not None:  # with workers: a job whose worker died is failed by another, promptly
        periodic.append(Periodic("transfer-leases", max(0.05, db.leases.ttl / 5), transfers.renew_held, "process"))
        periodic.append(Periodic("transfer-abandoned", 2.0,
                                 lambda: (exports.fail_abandoned(transfers), imports.fail_abandoned(transfers))))
    return {**exports.handlers(transfers), **imports.handlers(transfers)}


def fault_registry(metrics: Metrics):
    """The fault registry, counting what this process injects in /metrics (its store comes with the database)."""
    from ..faults import FaultRegistry

    return FaultRegistry(on_inject=lambda op, error: metrics.faults_injected.labels(op, error).inc())


def attach_faults(settings: Settings, faults, db, store, signal: ChangeSignal, first: bool) -> None:
    """Faults live in the store, seen by every worker; the first process of a start loads ``--faults FILE``."""
    def forget_keys(fault) -> None:
        # cached table keys would hide an outage another worker put until their refresh
        metas = db.catalog.all() if fault.scope is None else db.catalog.list(*fault.scope)
        for meta in metas:
            if fault.table in ("*", meta.name):
                db.keys.forget_table(meta.id_bytes)

    faults.on_kms_fault = forget_keys
    faults.attach(store, Watch(signal, FAULTS), first=first)
    if settings.faults and first:
        log.warning("--faults %s: %d fault(s) injected from the start", settings.faults,
                    faults.load_file(settings.faults))
