"""Builds the running system from Settings: credentials, audit trail, KMS, tables; the route table.

All wiring lives in this package: the database's in ``database``, DAX's in ``dax``; this module puts them
together (``build_runtime``) and runs the periodic jobs (``Runtime``)."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from dynavault.config import Settings
from dynavault.dynamodb.leases import Leases
from dynavault.errors import StartupError
from dynavault.storage.signal import KEYS, ChangeSignal, Watch

from ..app import DynavaultApp, RouteTable, ServiceFront, cors_origins
from ..connection import Connections
from ..credentials import CredentialStore
from ..metrics import Metrics, WorkerMetrics
from ..sigv4 import SigV4Verifier
from .common import (
    ADMIN,
    BACKGROUND,
    CHANGES_FILE,
    CLOUDTRAIL,
    DAX,
    DYNAMODB,
    KMS,
    METRICS_DIR,
    REPLICATION,
    STREAMS,
    Periodic,
    served_regions,
)
from .database import attach_faults, build_database, build_transfers, fault_registry
from .dax import dax_control_plane, dax_listeners

log = logging.getLogger("dynavault.server")


def _with_validator(front: ServiceFront, *, on_first_use: bool = False) -> ServiceFront:
    """``on_first_use``: compile the service's model on its first request rather than at start (a few ms each;
    most servers never see a Streams, CloudTrail or DAX control-plane call, and tests start hundreds)."""
    from ..shapes import ShapeValidator

    if not on_first_use:
        validate = ShapeValidator(front.name).validate
    else:
        compiled: list[ShapeValidator] = []  # two first requests at once may both compile: the same result

        def validate(operation: str, body: dict) -> dict:
            if not compiled:
                compiled.append(ShapeValidator(front.name))
            return compiled[0].validate(operation, body)

    return ServiceFront(front.name, front.target_prefix, front.signing_name, front.error_prefix,
                        front.content_type, validate)


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


def _console(settings: Settings, routes: RouteTable, credentials: CredentialStore, durability, store,
             periodic: list[Periodic], first: bool):
    """The web console, calling the operations this route table serves (shape validation, then the handler)
    as the signed-in principal; its sessions are rows of the store (any worker serves a browser's next page)."""
    from dynavault.console.app import ConsoleApp
    from dynavault.console.sessions import SessionStore
    from dynavault.errors import AWSError

    from ..connection import SCOPE_KEY
    from ..session_rows import StoreSessionRows

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


def build_runtime(settings: Settings, *, kms_only: bool = False, worker: bool = False,
                  first: bool = True, index: int = 0) -> Runtime:
    """Wire every component. ``kms_only`` serves just the key service and its audit trail; ``worker``: this
    process is one of several serving the data dir (server/workers.py); ``first``: the first of them to
    start (the one that does the once-per-store work of a start); ``index``: which worker."""
    from dynavault.audit.trail import AuditTrail
    from dynavault.kms.service import AWS_OWNED_ACCOUNT, KeyService

    from ..access_log import FORMATS, AccessLog
    from ..local_dev import SharedDbVerifier, is_new_data_dir, run_init

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
    verifier.regions = served_regions(settings)
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
    routes.mount(_with_validator(CLOUDTRAIL, on_first_use=True), trail.operations())

    if kms_only or not settings.kms_endpoint:
        kms = KeyService(settings, trail, watch=Watch(signal, KEYS))
        closers.append(kms.close)
        components["kms"] = kms
        routes.mount(_with_validator(KMS, on_first_use=True), kms.operations())
        periodic.append(Periodic("kms-key-deletion", settings.key_deletion_check_seconds, kms.sweep))

    store = None
    faults = None
    if not kms_only:
        faults = fault_registry(metrics)
        components["faults"] = faults
        db, store = build_database(settings, components["kms"] if "kms" in components else None, AWS_OWNED_ACCOUNT,
                               metrics, connections, closers, periodic, signal, worker, first, faults)
        attach_faults(settings, faults, db, store, signal, first)
        components["dynamodb"] = db
        from dynavault.dynamodb.operations import operations, stream_operations

        from ..admin import Admin

        dynamodb_front = _with_validator(DYNAMODB)
        routes.mount(dynamodb_front, operations(db))
        if settings.bucket_dir:
            routes.mount(dynamodb_front, build_transfers(settings, db, first, periodic))
        routes.mount(_with_validator(STREAMS, on_first_use=True), stream_operations(db))
        dax_control = dax_control_plane(settings, store, signal, trail, components, closers, first, db.keys)
        routes.mount(_with_validator(DAX, on_first_use=True), dax_control)
        routes.mount(REPLICATION, db.replication.remote.operations())
        routes.mount(ADMIN, Admin(routes, db=db, kms=components.get("kms"), faults=faults,
                                  shared_db=settings.shared_db, dax=components.get("dax_clusters")).operations())

    durability = None
    if store is not None and store.group_commit:
        from ..durability import GroupCommit

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
        runtime.listeners.extend(dax_listeners(settings, routes, credentials, connections, durability, metrics,
                                                worker, components["dynamodb"], store,
                                                components.get("dax_ssl_context"), components.get("dax_clusters")))
    runtime_ref.append(runtime)
    return runtime
