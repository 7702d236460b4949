"""Builds the running system from Settings: credentials, audit trail, KMS, tables; the route table."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from dynavault.config import Settings
from dynavault.errors import StartupError

from .app import JSON_10, JSON_11, DynavaultApp, RouteTable, ServiceFront, cors_origins
from .connection import Connections
from .credentials import CredentialStore
from .metrics import Metrics
from .sigv4 import SigV4Verifier

log = logging.getLogger("dynavault.server")

DYNAMODB = ServiceFront("dynamodb", "DynamoDB_20120810", "dynamodb", "com.amazonaws.dynamodb.v20120810#", JSON_10)
STREAMS = ServiceFront("dynamodbstreams", "DynamoDBStreams_20120810", "dynamodb",
                       "com.amazonaws.dynamodb.v20120810#", JSON_10)
KMS = ServiceFront("kms", "TrentService", "kms", "", JSON_11)
CLOUDTRAIL = ServiceFront("cloudtrail", "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101", "cloudtrail",
                          "com.amazonaws.cloudtrail.v20131101#", JSON_11)


def _with_validator(front: ServiceFront) -> ServiceFront:
    from .shapes import ShapeValidator

    validator = ShapeValidator(front.name)
    return ServiceFront(front.name, front.target_prefix, front.signing_name, front.error_prefix,
                        front.content_type, validator.validate)


@dataclass
class Periodic:
    name: str
    interval: float
    run: Callable[[], None]


@dataclass
class Runtime:
    settings: Settings
    credentials: CredentialStore
    app: DynavaultApp
    #: connection ids and close listeners, handed to the HTTP protocol class (connection.protocol_class)
    connections: Connections = field(default_factory=Connections)
    closers: list[Callable[[], None]] = field(default_factory=list)
    periodic: list[Periodic] = field(default_factory=list)
    components: dict[str, object] = field(default_factory=dict)
    _tasks: list[asyncio.Task] = field(default_factory=list)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for job in self.periodic:
            self._tasks.append(loop.create_task(self._loop(job)))

    async def _loop(self, job: Periodic) -> None:
        while True:
            await asyncio.sleep(job.interval)
            try:
                job.run()
            except Exception:
                log.exception("background job %s failed", job.name)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self.close()

    def close(self) -> None:
        """Close every component, last built first (what ``stop`` ends with; in-process users call it)."""
        for close in reversed(self.closers):
            try:
                close()
            except Exception:
                log.exception("close failed")


def _credentials(settings: Settings, owned_account: str) -> CredentialStore:
    store = CredentialStore(
        settings.data_path("credentials.json"),
        allow_any=settings.allow_any_credentials,
        default_account=settings.default_account,
        reserved_accounts=frozenset({owned_account}),
    )
    if store.is_empty() and not settings.allow_any_credentials:
        cred = store.create()
        # Shown once, like a root password; it stays in the credentials file (mode 0600).
        print(
            "dynavault: created a root credential (shown once; saved in "
            f"{store.path}):\n  aws_access_key_id = {cred.access_key_id}\n"
            f"  aws_secret_access_key = {cred.secret_access_key}\n  account = {cred.account_id}",
            flush=True,
        )
    return store


def _owner_only_data_dir(settings: Settings) -> None:
    """The data dir and everything in it are the server user's alone: 0700 directories, 0600 files.

    A umask covers every file made from now on (store, SQLite's -wal/-shm, audit segments, rotations);
    what an older version left looser is tightened once, with one log line."""
    os.umask(0o077)
    root = settings.data_path()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    tightened = 0
    for directory, dirnames, filenames in os.walk(root):
        for name in [directory, *(os.path.join(directory, n) for n in dirnames + filenames)]:
            try:
                info = os.lstat(name)
            except OSError:
                continue
            if stat.S_ISLNK(info.st_mode) or not info.st_mode & 0o077:
                continue  # a symlink's own mode means nothing; chmod would change its target
            os.chmod(name, stat.S_IMODE(info.st_mode) & 0o700)
            tightened += 1
    if tightened:
        log.warning("data dir %s: removed group/other permissions from %d files and directories", root, tightened)


def _retention_interval(retention_seconds: float) -> float:
    # Often enough that a segment outlives the retention by at most ~4 %, never busier than once a second.
    return min(3600.0, max(1.0, retention_seconds / 24))


def _dynamodb(settings: Settings, kms, owned_account: str, metrics: Metrics, connections: Connections,
              closers: list[Callable[[], None]], periodic: list[Periodic]):
    """The database: its store, catalog, item store (with the change subscribers), table keys, key
    lifecycle and the context its operations get; -> (context, store)."""
    from dynavault.dynamodb import epochs, indexes
    from dynavault.dynamodb.backups import pitr, restore
    from dynavault.dynamodb.backups.history import HistoryWriter
    from dynavault.dynamodb.backups.jobs import BackupJobs
    from dynavault.dynamodb.catalog import Catalog
    from dynavault.dynamodb.change_counter import ChangeCounter
    from dynavault.dynamodb.database import Database
    from dynavault.dynamodb.item_store import ItemStore
    from dynavault.dynamodb.sse_lifecycle import SSELifecycle
    from dynavault.dynamodb.streams.control import StreamJobs, StreamLimits
    from dynavault.dynamodb.streams.store import StreamStore
    from dynavault.dynamodb.streams.writer import StreamWriter
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
    data = settings.data_path()
    data.mkdir(parents=True, exist_ok=True)
    store = SqliteKV(data / "tables.db", group_commit=settings.commit_mode == "group")
    catalog = Catalog(store)
    streams = StreamStore(store)
    stream_limits = StreamLimits.from_settings(settings)
    items = ItemStore(store, catalog, collection_limit=settings.item_collection_max_bytes,
                      subscribers=[ChangeCounter(metrics.item_changes), StreamWriter(streams, stream_limits),
                                   history_writer := HistoryWriter()])
    keys = TableKeyService(port, owned_key_arn=owned_key_arn, owned_account=owned_account,
                           refresh_seconds=settings.key_refresh_seconds, shared_cache=settings.shared_key_cache,
                           metrics=metrics)
    metrics.key_cache_entries.set_function(keys.cached_entries)
    lifecycle = SSELifecycle(catalog, keys, settings, metrics=metrics)
    backup_jobs = BackupJobs()
    db = Database(settings, catalog, items, keys, TransactionState(), lifecycle, metrics=metrics,
                          streams=streams, stream_limits=stream_limits, backup_jobs=backup_jobs)
    connections.on_closed(keys.drop_connection)
    history_writer.clock = db.clock  # history positions and restore times on one clock
    db.drop_hooks.append(lambda tx, meta: pitr.keep_system_backup(db, tx, meta))

    def account_seals() -> None:
        epochs.account_node_seals(catalog, keys, settings.node_epoch_max_seals)

    def close() -> None:
        backup_jobs.close()  # stops between batches; what is left is finished or removed at the next start
        account_seals()
        store.close()

    closers.append(close)
    periodic.append(Periodic("node-epochs", settings.epoch_check_seconds, account_seals))
    periodic.append(Periodic("key-cache-prune", max(1.0, min(60.0, settings.key_refresh_seconds)), keys.prune))
    periodic.extend(Periodic(n, i, f) for n, i, f in lifecycle.jobs())
    stream_jobs = StreamJobs(streams, catalog, stream_limits)
    periodic.append(Periodic("stream-shards", stream_jobs.interval(), stream_jobs.run))
    # Time to Live: one sweeper per store; its pass runs in short slices on the event loop, stopped before the
    # store closes
    sweeper = TTLSweeper(db)
    periodic.append(Periodic("ttl-sweep", max(0.1, settings.ttl_sweep_seconds), sweeper.tick))
    closers.append(sweeper.stop)
    periodic.append(Periodic("restore-resume", 10.0, lambda: restore.resume_restores(db)))
    indexes.resume_jobs(db)
    restore.recover(db)
    # PITR: bases whose copy died are taken again, history past the recovery period is dropped
    pitr.recover(db)
    periodic.append(Periodic("pitr-sweep", max(0.1, min(3600.0, settings.pitr_day_seconds / 24)),
                             lambda: pitr.sweep(db)))
    return db, store


def build_runtime(settings: Settings, *, kms_only: bool = False) -> Runtime:
    """Wire every component. ``kms_only`` serves just the key service and its audit trail."""
    from dynavault.audit.trail import AuditTrail
    from dynavault.kms.service import AWS_OWNED_ACCOUNT, KeyService

    _owner_only_data_dir(settings)
    credentials = _credentials(settings, AWS_OWNED_ACCOUNT)
    verifier = SigV4Verifier(credentials, max_skew_seconds=settings.max_clock_skew_seconds)
    metrics = Metrics()
    connections = Connections()
    routes = RouteTable()
    closers: list[Callable[[], None]] = []
    periodic: list[Periodic] = []
    components: dict[str, object] = {"owned_account": AWS_OWNED_ACCOUNT}

    retention = settings.audit_retention_days * 86400.0
    if not retention > 0:
        raise StartupError(f"audit_retention_days must be more than 0, not {settings.audit_retention_days}: "
                           "set --audit-retention-days (default 90)")
    trail = AuditTrail(settings.data_path("audit"), settings.audit_rotate_bytes, retention_seconds=retention,
                       on_write_failure=metrics.audit_write_failures.inc)
    closers.append(getattr(trail, "close", lambda: None))
    periodic.append(Periodic("audit-retention", _retention_interval(retention), trail.sweep))
    components["trail"] = trail
    routes.mount(_with_validator(CLOUDTRAIL), trail.operations())

    if kms_only or not settings.kms_endpoint:
        kms = KeyService(settings, trail)
        closers.append(kms.close)
        components["kms"] = kms
        routes.mount(_with_validator(KMS), kms.operations())
        periodic.append(Periodic("kms-key-deletion", settings.key_deletion_check_seconds, kms.sweep))

    store = None
    if not kms_only:
        db, store = _dynamodb(settings, components["kms"] if "kms" in components else None, AWS_OWNED_ACCOUNT,
                               metrics, connections, closers, periodic)
        components["dynamodb"] = db
        from dynavault.dynamodb.operations import operations, stream_operations

        routes.mount(_with_validator(DYNAMODB), operations(db))
        routes.mount(_with_validator(STREAMS), stream_operations(db))

    durability = None
    if store is not None and store.group_commit:
        from .durability import GroupCommit

        durability = GroupCommit(store)
        metrics.store_commits.set_function(lambda: store.commit_seq)
        metrics.store_durable_commits.set_function(lambda: durability.durable_seq)
        metrics.store_syncs.set_function(lambda: durability.syncs)
        closers.insert(0, durability.close)  # closers run in reverse: the fsync thread stops last
    runtime_ref: list[Runtime] = []
    app = DynavaultApp(
        routes,
        verifier,
        metrics=metrics.render,
        on_startup=lambda: runtime_ref[0].start(),
        on_shutdown=lambda: runtime_ref[0].stop(),
        observe=metrics.observe_request,
        trusted_service_keys=frozenset(k.strip() for k in settings.trusted_service_keys.split(",") if k.strip()),
        durability=durability,
        cors=cors_origins(settings.cors_origin),
    )
    runtime = Runtime(settings, credentials, app, connections, closers, periodic, components)
    runtime_ref.append(runtime)
    return runtime
