"""Builds the running system from Settings: credentials, audit trail, KMS, tables; the route table."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dynavault.config import Settings
from dynavault.dynamodb.leases import Leases
from dynavault.errors import StartupError
from dynavault.storage.signal import FAULTS, KEYS, ChangeSignal, Watch

from .app import JSON_10, JSON_11, DynavaultApp, RouteTable, ServiceFront, cors_origins
from .connection import Connections
from .credentials import CredentialStore
from .metrics import Metrics, WorkerMetrics
from .sigv4 import SigV4Verifier

log = logging.getLogger("dynavault.server")

#: the shared change counters of the processes serving one data dir (storage/signal.py)
CHANGES_FILE = "changes"
#: the catalog's cross-process lock (with workers)
CATALOG_LOCK_FILE = "catalog.lock"
#: queues the workers' store write transactions (storage/kv/sqlite.py)
WRITER_LOCK_FILE = "writer.lock"
#: each worker's last published metrics (no user data: operation names and counts)
METRICS_DIR = "metrics"
#: --enforce-throughput's token buckets, shared by the workers (digests of table ids and numbers)
THROUGHPUT_FILE = "throughput"

DYNAMODB = ServiceFront("dynamodb", "DynamoDB_20120810", "dynamodb", "com.amazonaws.dynamodb.v20120810#", JSON_10)
STREAMS = ServiceFront("dynamodbstreams", "DynamoDBStreams_20120810", "dynamodb",
                       "com.amazonaws.dynamodb.v20120810#", JSON_10)
KMS = ServiceFront("kms", "TrentService", "kms", "", JSON_11)
#: the test-suite helpers (server/admin.py): signed as DynamoDB requests
ADMIN = ServiceFront("dynavaultadmin", "DynavaultAdmin", "dynamodb", "com.amazonaws.dynamodb.v20120810#", JSON_10)
#: the DAX control plane (dax/control.py); DAX's data plane has listeners of its own. Its faults are
#: ``elmo.admin#...`` on the wire (DAX's own model namespace; its two generic exceptions are Coral's)
DAX = ServiceFront("dax", "AmazonDAXV3", "dax", "elmo.admin#", JSON_11)
CLOUDTRAIL = ServiceFront("cloudtrail", "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101", "cloudtrail",
                          "com.amazonaws.cloudtrail.v20131101#", JSON_11)


#: what global-table members in other servers call (dynamodb/replication/remote.py), signed as DynamoDB
REPLICATION = ServiceFront("dynavaultreplication", "DynavaultReplication", "dynamodb",
                           "com.amazonaws.dynamodb.v20120810#", JSON_10)


def _served_regions(settings: Settings) -> frozenset[str]:
    return frozenset(r.strip() for r in settings.regions.split(",") if r.strip())


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
    #: "store": once per store (with workers, by the holder of the background lease); "process": in every one
    scope: str = "store"
    #: run in a thread (a job that waits on a remote KMS must not stall the event loop)
    thread: bool = False


#: the lease under which a worker runs the store-wide periodic jobs
BACKGROUND = "background"


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
    #: with several workers: who runs the store-wide jobs (None: this process serves the store alone)
    leases: Leases | None = None
    #: other listeners of this process (the DAX data plane): ``await start() -> (host, port)``, ``await stop()``
    listeners: list = field(default_factory=list)
    _tasks: list[asyncio.Task] = field(default_factory=list)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for listener in self.listeners:
            host, port = await listener.start()
            scheme = "daxs" if getattr(listener, "ssl_context", None) is not None else "dax"
            print(f"dynavault DAX listening on {scheme}://{host}:{port}", flush=True)
        if self.leases is not None:
            self._renew_lease()
            self._tasks.append(loop.create_task(self._loop(
                Periodic("background-lease", max(0.05, self.leases.ttl / 5), self._renew_lease, "process"))))
        for job in self.periodic:
            self._tasks.append(loop.create_task(self._loop(job)))

    def _renew_lease(self) -> None:
        if self.leases.renew(BACKGROUND):
            return
        log.debug("background jobs run in another worker")

    def runs_store_jobs(self) -> bool:
        return self.leases is None or self.leases.held(BACKGROUND)

    async def _loop(self, job: Periodic) -> None:
        while True:
            await asyncio.sleep(job.interval)
            if job.scope == "store" and not self.runs_store_jobs():
                continue
            try:
                if job.thread:
                    await asyncio.to_thread(job.run)
                else:
                    job.run()
            except Exception:
                log.exception("background job %s failed", job.name)

    async def stop(self) -> None:
        for listener in self.listeners:
            try:
                await listener.stop()
            except Exception:
                log.exception("stopping a listener failed")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if self.leases is not None:
            try:
                self.leases.release()
            except Exception:
                log.exception("releasing the background lease failed")
        self.close()

    def close(self) -> None:
        """Close every component, last built first (what ``stop`` ends with; in-process users call it)."""
        for close in reversed(self.closers):
            try:
                close()
            except Exception:
                log.exception("close failed")


#: DynamoDB operations that ask for a table key before they change anything: with a remote KMS they start on
#: the event loop and move to a thread only on a key-cache miss (app.DynavaultApp._run_off_loop)
DEFERRABLE = frozenset({
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem", "BatchWriteItem",
    "TransactGetItems", "TransactWriteItems", "ExecuteStatement", "ExecuteTransaction",
})


def _offload(service: str, operation: str) -> str:
    """Where a handler runs when the key service is remote: every other DynamoDB operation (table and backup
    management, which call KMS between changes) always in a thread; Streams reads are deferrable."""
    if service == "dynamodbstreams":
        return "defer"
    if service in (ADMIN.name, REPLICATION.name, DAX.name):
        return "thread"  # a reset deletes tables and keys: KMS calls between changes; an encrypted cluster's key
    if service != "dynamodb":
        return "loop"
    return "defer" if operation in DEFERRABLE else "thread"


def _offload_peer_calls(service: str, operation: str) -> str:
    """With --replica-peer (and an in-process KMS): UpdateTable may wait on another server (a replica there
    created, updated, deleted, re-keyed), so it runs in a thread; everything else stays on the loop."""
    return "thread" if service == "dynamodb" and operation == "UpdateTable" else "loop"


def _credentials(settings: Settings, owned_account: str) -> CredentialStore:
    store = CredentialStore(
        None if settings.in_memory else settings.data_path("credentials.json"),
        allow_any=settings.allow_any_credentials,
        default_account=settings.default_account,
        reserved_accounts=frozenset({owned_account}),
    )
    if store.is_empty() and not settings.allow_any_credentials:
        cred = store.create()
        # Shown once, like a root password; it stays in the credentials file (mode 0600).
        where = "kept in memory only" if store.path is None else f"saved in {store.path}"
        print(
            f"dynavault: created a root credential (shown once; {where}):\n  aws_access_key_id = {cred.access_key_id}\n"
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
                         writer_lock=data / WRITER_LOCK_FILE if worker else None)
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
                                           replicator, served=_served_regions(settings))
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


def _audited(trail, name: str, handler: Callable, read_only: bool) -> Callable:
    """A DAX control-plane handler whose every call (failed ones too) is an AwsApiCall event in the caller's
    trail, as the key service's calls are."""
    from dynavault.audit import events
    from dynavault.errors import AWSError

    def record(caller, params: dict, response: dict | None, err: AWSError | None) -> None:
        arns = {c["ClusterArn"] for c in [(response or {}).get("Cluster") or {}] if c.get("ClusterArn")}
        if not arns and isinstance(params.get("ClusterName"), str):
            arns.add(f"arn:aws:dax:{caller.region}:{caller.account}:cache/{params['ClusterName'].lower()}")
        if isinstance(params.get("ResourceName"), str):
            arns.add(params["ResourceName"])
        event = events.api_call(
            source="dax.amazonaws.com", name=name, caller=caller, now=time.time(),
            request=events.request_parameters(params, ()),
            response=None if read_only or response is None else events.camel(response), read_only=read_only,
            resources=[events.resource(caller.account, "AWS::DAX::Cluster", a) for a in sorted(arns)], error=err)
        try:
            for ev in events.fan_out(event, [caller.account]):
                trail.record(ev)
        except Exception:
            log.exception("audit record failed")
            if err is None:
                raise

    def call(caller, params: dict) -> dict:
        try:
            response = handler(caller, params)
        except AWSError as err:
            record(caller, params, None, err)
            raise
        except Exception:
            record(caller, params, None, AWSError("InternalFailure", "An internal error occurred.", 500))
            raise
        record(caller, params, response, None)
        return response

    call.__name__ = name
    return call


def _dax(settings: Settings, store, signal: ChangeSignal, trail, components: dict[str, object],
         closers: list[Callable[[], None]], announce: bool, keys) -> dict:
    """The DAX control plane's operations (audited), and what the data plane needs from it: the cluster
    records (``components["dax_clusters"]``: ``ttls_for(port, account, region)``) and, with a TLS port, the
    server's CA and node certificate (``components["dax_ssl_context"]``)."""
    from dynavault.dax.cluster_keys import ClusterKeys
    from dynavault.dax.clusters import ClusterRecords, advertised_host
    from dynavault.dax.control import READ_ONLY, ControlPlane

    # encrypted clusters' keys under alias/aws/dax, through the database's key port (audited as DynamoDB's)
    cluster_keys = ClusterKeys(
        lambda who, key, ctx: keys.call("GenerateDataKey", keys.kms.generate_data_key, who, key, ctx),
        lambda who, blob, ctx: keys.call("Decrypt", keys.kms.decrypt, who, blob, ctx))
    records = ClusterRecords(store, dax_port=settings.dax_port or None, dax_tls_port=settings.dax_tls_port or None,
                             signal=signal, keys=cluster_keys)
    components["dax_clusters"] = records
    if settings.dax_tls_port:
        components["dax_ssl_context"] = _dax_tls(settings, advertised_host(settings.host), closers,
                                                   announce)
    plane = ControlPlane(records, settings, keys=cluster_keys)
    return {name: _audited(trail, name, handler, name in READ_ONLY) for name, handler in plane.operations().items()}


def _dax_tls(settings: Settings, host: str, closers: list[Callable[[], None]], announce: bool):
    """The daxs:// listener's SSL context, its certificates made or renewed in the data dir (in a temporary
    directory with --in-memory), their private keys sealed by the root of trust when this server has one;
    the CA's path printed with how to trust it."""
    import shutil
    import tempfile

    from dynavault.dax import certs
    from dynavault.kms.root import MemoryRoot, open_root

    if settings.in_memory:
        # ssl loads certificates from files only: a temporary directory, removed at close, its keys sealed by
        # a key that lives in this process alone (nothing usable is left on disk)
        where = tempfile.mkdtemp(prefix="dynavault-dax-tls-")
        closers.append(lambda: shutil.rmtree(where, ignore_errors=True))
        root = MemoryRoot()
    else:
        where = str(settings.data_path())
        # the same root that seals the KMS key material; a remote KMS leaves none here (keys then 0600,
        # SECURITY.md)
        root = None if settings.kms_endpoint else open_root(settings)
    try:
        hosts = [settings.host, host]
        files = certs.ensure_certificates(where, hosts, sealer=root)
        context = certs.server_ssl_context(where, hosts, sealer=root)
    finally:
        if root is not None:
            root.close()
    if announce:  # with workers: once, by the first
        print(certs.trust_hint(files), flush=True)
    return context


def _transfers(settings: Settings, db, first: bool, periodic: list[Periodic]) -> dict:
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


def _faults(settings: Settings, metrics: Metrics):
    """This process's fault registry, counting what it injects in /metrics; ``--faults FILE`` loaded."""
def _faults(metrics: Metrics):
    """The fault registry, counting what this process injects in /metrics (its store comes with the database)."""
    from .faults import FaultRegistry

    return FaultRegistry(on_inject=lambda op, error: metrics.faults_injected.labels(op, error).inc())


def _attach_faults(settings: Settings, faults, db, store, signal: ChangeSignal, first: bool) -> None:
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


def _console(settings: Settings, routes: RouteTable, credentials: CredentialStore, durability, store,
             periodic: list[Periodic], first: bool):
    """The web console, calling the operations this route table serves (shape validation, then the handler)
    as the signed-in principal; its sessions are rows of the store (any worker serves a browser's next page)."""
    from dynavault.console.app import ConsoleApp
    from dynavault.console.sessions import SessionStore
    from dynavault.errors import AWSError

    from .connection import SCOPE_KEY
    from .session_rows import StoreSessionRows

    rows = StoreSessionRows(store)
    if first:
        rows.clear()
    sessions = SessionStore(idle_seconds=settings.console_session_seconds, rows=rows)
    periodic.append(Periodic("console-sessions", 60.0, sessions.prune))

    prefixes = {f.name: f.target_prefix for f in (DYNAMODB, KMS, CLOUDTRAIL)}

    def invoke(service: str, operation: str, caller, params: dict) -> dict:
        route = routes.get(f"{prefixes[service]}.{operation}")
        if route is None:
            raise AWSError("UnknownOperationException", f"{service} {operation} is not served here")
        if route.front.validate is not None:
            params = route.front.validate(operation, params)  # members sent as null dropped, as for the API
        return route.handler(caller, params)

    enabled = not settings.allow_any_credentials or settings.console_allow_any
    return ConsoleApp(
        invoke, credentials, sessions, enabled=enabled,
        disabled_reason="This server accepts any credentials (--allow-any-credentials), so anyone could sign in "
                        "as any account. Start it with --console-allow-any as well to use the console anyway.",
        connection_key=SCOPE_KEY, settle=durability.settle if durability is not None else None)


def _dax_listeners(settings: Settings, routes: RouteTable, credentials: CredentialStore, connections: Connections,
                   durability, metrics: Metrics, worker: bool, db, store, ssl_context, clusters=None) -> list:
    """The DAX data-plane listeners (dax:// on --dax-port, daxs:// on --dax-tls-port), running DynamoDB's own
    operation callables (shape validation, then the handler) as the DAX connection's signed-in principal.
    ``clusters``: the control plane's records (a cluster's parameter group sets its listener's cache TTLs)."""
    import math

    from dynavault.dax.cache import DaxCache
    from dynavault.dax.listener import DaxListener
    from dynavault.dax.operations import Engine
    from dynavault.dax.protocol import verify_authorization
    from dynavault.dax.registry import AttributeLists
    from dynavault.dax.registry_store import StoreBackend
    from dynavault.errors import AWSError
    from dynavault.storage.sealed import CatalogRecord, Sealed

    keys = db.keys

    def registry_context(account: str) -> dict[str, str]:
        return {"aws:dax:subscriberId": account, "aws:dax:purpose": "attribute-lists"}

    def generate_key(scope: str) -> tuple[bytes, bytes]:
        # DAX encrypts with service keys only: the AWS owned key, as for a table of SSE type OWNED
        account, region = scope.split("/", 1)
        generator = keys.service_caller(keys.owned_account, region)
        plaintext, blob = keys.call("GenerateDataKey", keys.kms.generate_data_key, generator,
                                    keys.owned_key_arn(region), registry_context(account))
        return plaintext, blob

    def decrypt_key(scope: str, blob: bytes) -> bytes:
        account, region = scope.split("/", 1)
        return keys.call("Decrypt", keys.kms.decrypt, keys.service_caller(keys.owned_account, region), blob,
                         registry_context(account))

    def table_keys(caller, name: str):
        meta = db.data_table(caller, name)
        return meta.id_bytes, db.crypto(caller, meta)

    def cluster_ttls(port: int, account: str, region: str) -> tuple[float, float] | None:
        # a cluster of this account and region served on the listener sets its TTLs; DAX's record TTL 0 is
        # "infinite" (entries leave by write-through or eviction), a query TTL 0 caches no query
        ttls = clusters.cluster_ttls(port, account, region) if clusters is not None else None
        if ttls is None:
            return None
        return (ttls.record_millis / 1000 if ttls.record_millis else math.inf), ttls.query_millis / 1000

    cache = DaxCache(table_keys, record_ttl=settings.dax_record_ttl_seconds,
                     query_ttl=settings.dax_query_ttl_seconds, ttls=cluster_ttls)
    backend = StoreBackend(store, sealed=Sealed, record=CatalogRecord, generate_key=generate_key,
                           decrypt_key=decrypt_key, refresh_seconds=settings.key_refresh_seconds)

    def invoke(operation: str, caller, params: dict) -> dict:
        route = routes.get(f"{DYNAMODB.target_prefix}.{operation}")
        if route is None:
            raise AWSError("UnknownOperationException", f"{operation} is not served here")
        params = route.front.validate(operation, params)
        return route.handler(caller, params)

    def authorize(access_key, signature, string_to_sign, token):
        auth = verify_authorization(credentials.lookup, credentials.allow_any, access_key, signature,
                                    string_to_sign, token)
        if settings.shared_db:  # one account and region for every caller, as the HTTP API's SharedDbVerifier
            from dataclasses import replace

            from .local_dev import SHARED_REGION

            auth = replace(auth, account=settings.default_account, region=SHARED_REGION,
                           principal_arn=auth.principal_arn.replace(f"::{auth.account}:",
                                                                    f"::{settings.default_account}:", 1))
        return auth

    engine = Engine(invoke, AttributeLists(backend, settings.dax_attribute_lists_max), cache)
    if clusters is not None:
        clusters.start_serving()
    ports = [(port, context) for port, context in ((settings.dax_port, None), (settings.dax_tls_port, ssl_context))
             if port]
    return [DaxListener(engine, authorize, host=settings.host, port=port, ssl_context=context,
                        new_connection_id=connections.new_id, connection_closed=connections.closed,
                        settle=durability.settle if durability is not None else None,
                        pending=durability.pending if durability is not None else None,
                        threaded=bool(settings.kms_endpoint), observe=metrics.observe_request, reuse_port=worker)
            for port, context in ports]


def build_runtime(settings: Settings, *, kms_only: bool = False, worker: bool = False,
                  first: bool = True, index: int = 0) -> Runtime:
    """Wire every component. ``kms_only`` serves just the key service and its audit trail; ``worker``: this
    process is one of several serving the data dir (server/workers.py); ``first``: the first of them to
    start (the one that does the once-per-store work of a start); ``index``: which worker."""
    from dynavault.audit.trail import AuditTrail
    from dynavault.kms.service import AWS_OWNED_ACCOUNT, KeyService

    from .access_log import FORMATS, AccessLog
    from .local_dev import SharedDbVerifier, is_new_data_dir, run_init

    if settings.shared_db and not settings.allow_any_credentials:
        raise StartupError("--shared-db needs --allow-any-credentials: one account for every access key only "
                           "makes sense when any key is accepted (add --allow-any-credentials, or drop --shared-db)")
    if settings.log_format not in FORMATS:
        raise StartupError(f"--log-format must be one of {', '.join(FORMATS)}, not {settings.log_format!r}")
    seed = bool(settings.init) and (settings.in_memory or is_new_data_dir(settings.data_path()))
    if not settings.in_memory:
        _owner_only_data_dir(settings)
    credentials = _credentials(settings, AWS_OWNED_ACCOUNT)
    if settings.shared_db:
        verifier: SigV4Verifier = SharedDbVerifier(credentials, max_skew_seconds=settings.max_clock_skew_seconds,
                                                   account=settings.default_account)
    else:
        verifier = SigV4Verifier(credentials, max_skew_seconds=settings.max_clock_skew_seconds)
    verifier.regions = _served_regions(settings)
    metrics = Metrics()
    connections = Connections()
    routes = RouteTable()
    closers: list[Callable[[], None]] = []
    periodic: list[Periodic] = []
    components: dict[str, object] = {"owned_account": AWS_OWNED_ACCOUNT}
    # What this process caches of the store (catalog, key ring) is reloaded when another process changed it
    signal = ChangeSignal(settings.data_path(CHANGES_FILE) if worker else None)
    closers.append(signal.close)

    retention = settings.audit_retention_days * 86400.0
    if not retention > 0:
        raise StartupError(f"audit_retention_days must be more than 0, not {settings.audit_retention_days}: "
                           "set --audit-retention-days (default 90)")
    if settings.in_memory:
        from dynavault.audit.memory import MemoryAuditTrail

        trail: AuditTrail = MemoryAuditTrail(retention_seconds=retention)
    else:
        trail = AuditTrail(settings.data_path("audit"), settings.audit_rotate_bytes, retention_seconds=retention,
                           on_write_failure=metrics.audit_write_failures.inc)
    closers.append(getattr(trail, "close", lambda: None))
    periodic.append(Periodic("audit-retention", _retention_interval(retention), trail.sweep))
    components["trail"] = trail
    routes.mount(_with_validator(CLOUDTRAIL), trail.operations())

    if kms_only or not settings.kms_endpoint:
        kms = KeyService(settings, trail, watch=Watch(signal, KEYS))
        closers.append(kms.close)
        components["kms"] = kms
        routes.mount(_with_validator(KMS), kms.operations())
        periodic.append(Periodic("kms-key-deletion", settings.key_deletion_check_seconds, kms.sweep))

    store = None
    faults = None
    if not kms_only:
        faults = _faults(metrics)
        components["faults"] = faults
        db, store = _dynamodb(settings, components["kms"] if "kms" in components else None, AWS_OWNED_ACCOUNT,
                               metrics, connections, closers, periodic, signal, worker, first, faults)
        _attach_faults(settings, faults, db, store, signal, first)
        components["dynamodb"] = db
        from dynavault.dynamodb.operations import operations, stream_operations

        from .admin import Admin

        dynamodb_front = _with_validator(DYNAMODB)
        routes.mount(dynamodb_front, operations(db))
        if settings.bucket_dir:
            routes.mount(dynamodb_front, _transfers(settings, db, first, periodic))
        routes.mount(_with_validator(STREAMS), stream_operations(db))
        routes.mount(_with_validator(DAX), _dax(settings, store, signal, trail, components, closers, first,
                                                db.keys))
        routes.mount(REPLICATION, db.replication.remote.operations())
        routes.mount(ADMIN, Admin(routes, db=db, kms=components.get("kms"), faults=faults,
                                  shared_db=settings.shared_db, dax=components.get("dax_clusters")).operations())

    durability = None
    if store is not None and store.group_commit:
        from .durability import GroupCommit

        durability = GroupCommit(store)
        metrics.store_commits.set_function(lambda: store.commit_seq)
        metrics.store_durable_commits.set_function(lambda: durability.durable_seq)
        metrics.store_syncs.set_function(lambda: durability.syncs)
        closers.insert(0, durability.close)  # closers run in reverse: the fsync thread stops last
    access_log = None
    if settings.access_log:
        try:
            access_log = AccessLog(settings.access_log, settings.log_format)
        except OSError as exc:
            raise StartupError(f"--access-log {settings.access_log}: cannot be opened ({exc.strerror or exc})") from None
        closers.insert(0, access_log.close)
    if seed:
        accounts = [c.account_id for c in credentials.all()]
        account = settings.default_account if settings.allow_any_credentials or not accounts else accounts[0]
        run_init(settings.init, routes, account=account)
        if store is not None:
            store.sync()
    render_metrics = metrics.render
    if worker:
        shared = WorkerMetrics(metrics, settings.data_path(METRICS_DIR), index, clear=first)
        periodic.append(Periodic("metrics-publish", 1.0, shared.publish, "process"))
        render_metrics = shared.render
    runtime_ref: list[Runtime] = []
    app = DynavaultApp(
        routes,
        verifier,
        metrics=render_metrics,
        on_startup=lambda: runtime_ref[0].start(),
        on_shutdown=lambda: runtime_ref[0].stop(),
        observe=metrics.observe_request,
        trusted_service_keys=frozenset(k.strip() for k in settings.trusted_service_keys.split(",") if k.strip()),
        durability=durability,
        cors=cors_origins(settings.cors_origin),
        offload=None if kms_only else _offload if settings.kms_endpoint else
        _offload_peer_calls if settings.replica_peer else None,
        access_log=access_log,
    )
    if not kms_only:
        app.console = _console(settings, routes, credentials, durability, store, periodic, first)
        app.faults = faults
    leases = components["dynamodb"].leases if "dynamodb" in components else None
    runtime = Runtime(settings, credentials, app, connections, closers, periodic, components, leases)
    if (settings.dax_port or settings.dax_tls_port) and not kms_only:
        runtime.listeners.extend(_dax_listeners(settings, routes, credentials, connections, durability, metrics,
                                                worker, components["dynamodb"], store,
                                                components.get("dax_ssl_context"), components.get("dax_clusters")))
    runtime_ref.append(runtime)
    return runtime
