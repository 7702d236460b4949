"""Key lifecycle of a table (sse-spec.md §1.2-§1.5): switching its KMS key, losing it, getting it back.

Switching (UpdateTable SSESpecification): validated and prepared synchronously (new grant, new table
key, the data keys re-wrapped in memory), then shown as UPDATING for ``sse_update_seconds``; the
switch commits in ONE catalog write that replaces the table's key record, so a crash leaves the table
under exactly one key (the catalog's ``sse``) with the pending switch still recorded and resumed.

Losing access: a sweep every ``key_check_seconds`` decrypts each table key as the database itself
(through the table's grant); a key that is disabled, pending deletion, deleted, denied or whose grant is
revoked flags the table INACCESSIBLE_ENCRYPTION_CREDENTIALS; when the key works again it returns to
ACTIVE. After ``archive_after_seconds`` it is archived (ARCHIVING -> ARCHIVED, backup record kept).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dynavault.caller import Caller
from dynavault.errors import AWSError, validation
from dynavault.sse import rewrap
from dynavault.sse.key_port import KeyPortError
from dynavault.sse.table_keys import OWNED, TableKeyRef

from .backups import records as backups
from .backups.snapshot import copy_rows
from .catalog import TableMeta
from .describe import table_description
from .sse_spec import (
    ARCHIVED,
    ARCHIVING,
    INACCESSIBLE,
    NO_DATA_STATES,
    inaccessible_error,
    parse_sse_specification,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from dynavault.config import Settings
    from dynavault.sse.table_keys import TableKeyService

    from .catalog import Catalog

log = logging.getLogger("dynavault.dynamodb.sse")

_INVALID = "One or more parameter values were invalid: "
#: KMS answers that mean "this key is not usable for this table" (an outage or throttling is not)
KEY_LOST_CODES = frozenset({"DisabledException", "KMSInvalidStateException", "NotFoundException",
                            "AccessDeniedException", "InvalidCiphertextException", "IncorrectKeyException",
                            "KeyUnavailableException", "InvalidArnException"})
QUOTA_FREE_CHANGES = 4
QUOTA_WINDOW = 86400.0
QUOTA_SPACING = 21600.0
#: part of the UPDATING window that still shows the old key ARN (DynamoDB: ~8 of ~22 s)
OLD_ARN_SHARE = 0.4


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _enc(sse: dict) -> dict:
    return {"Status": "UPDATING", "SSEType": "KMS", "KMSMasterKeyArn": sse["key_arn"]}


class SSELifecycle:
    """Owned by the runtime: its switches in flight and its sweep lock outlive any request."""

    def __init__(self, catalog: Catalog, keys: TableKeyService, settings: Settings, *, metrics=None,
                 clock: Callable[[], float] = time.time) -> None:
        self.catalog = catalog
        self.keys = keys
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        # plaintext table keys of switches started in this process (none survives a restart)
        self._switch_keys: dict[str, rewrap.SwitchKeys] = {}
        self._sweep_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<SSELifecycle {len(self._switch_keys)} switch(es) in flight>"

    def jobs(self) -> list[tuple[str, float, object]]:
        step = max(0.2, min(1.0, self.settings.sse_update_seconds / 5))
        return [("sse-switch", step, self.advance_switches),
                ("sse-key-check", max(0.2, self.settings.key_check_seconds), self.sweep)]

    # -- UpdateTable SSESpecification -------------------------------------------------------------
    def update_sse(self, caller: Caller, meta: TableMeta, spec: dict | None) -> dict:
        with self.catalog.lock:
            if meta.status in (ARCHIVING, ARCHIVED):
                raise inaccessible_error(meta)
            if meta.sse_state.get("pending") or meta.sse_state.get("phase"):
                raise AWSError("ResourceInUseException", "Attempt to change a resource which is still in use: "
                               f"Server-Side Encryption is still being updated for table: {meta.name}")
            mode, key_id = parse_sse_specification(spec)
            current = meta.sse
            current_mode = current.get("mode", OWNED)
            if mode == OWNED and current_mode == OWNED:
                raise validation(_INVALID + "Table is already encrypted by default")
            if key_id is not None and key_id == current.get("key_arn") and current_mode != OWNED:
                raise validation(_INVALID + "Table is already encrypted with given KMSMasterKeyId. Use "
                                 "KMSMasterKeyId parameter if you want to change Master Key")
            now = self.clock()
            self._check_quota(meta, now)
            # everything below is synchronous: a bad target key fails here and changes nothing
            key_arn, mode = self.keys.resolve(caller, mode, key_id)
            old_key = self.keys.decrypt_table_key(self.keys.key_user(caller, current), meta.name, meta.account,
                                                  current)
            record, new_key = self.keys.new_table_key(caller, meta.name, mode, key_arn)
            try:
                rewrap.rewrap_data_keys(old_key, new_key, meta.id_bytes, current["data_keys"])
            except Exception:
                self._retire_grant(meta, record, keep=current)
                raise
            changes = [t for t in meta.sse_state.get("changes", []) if t > now - QUOTA_WINDOW]
            meta.sse_state = {**meta.sse_state, "changes": changes + [now], "started": now,
                              "pending": record, "phase": _enc(current) if current_mode != OWNED
                              else {"Status": "UPDATING"}}
            self.catalog.save(meta)
            self._switch_keys[meta.table_id] = rewrap.SwitchKeys(old_key, new_key)
        log.info("table %s: SSE switch started: %s -> %s (%s -> %s)", meta.name,
                 current.get("key_arn") if current_mode != OWNED else "AWS owned",
                 key_arn if mode != OWNED else "AWS owned", current_mode, mode)
        return {"TableDescription": table_description(self.catalog, meta)}

    def _check_quota(self, meta: TableMeta, now: float) -> None:
        changes = sorted(t for t in meta.sse_state.get("changes", []) if t > now - QUOTA_WINDOW)
        if len(changes) < QUOTA_FREE_CHANGES or now - changes[-1] >= QUOTA_SPACING:
            return
        raise AWSError(
            "LimitExceededException",
            f"Subscriber limit exceeded: Encryption mode changes are limited in the 24h window ending at {_iso(now)}. "
            f"After the first {QUOTA_FREE_CHANGES} change, each subsequent change in the same window can be performed "
            f"at most once every {int(QUOTA_SPACING)} seconds. Number of updates today: {len(changes)}. "
            f"Last change at {_iso(changes[-1])}",
        )

    def _retire_grant(self, meta: TableMeta, record: dict, keep: dict | None = None) -> None:
        grant_id = record.get("grant_id")
        if not grant_id or (keep is not None and keep.get("grant_id") == grant_id
                            and keep.get("key_arn") == record.get("key_arn")):
            return  # CreateGrant is idempotent: a re-encryption under the same key reuses the grant
        self.keys.retire_grant(meta.account, meta.region, record["key_arn"], grant_id, meta.name)

    # -- the UPDATING phases and the commit ----------------------------------------------------------
    def advance_switches(self) -> None:
        now = self.clock()
        for meta in self.catalog.all():
            pending = meta.sse_state.get("pending")
            if not pending:
                continue
            try:
                self._advance(meta, pending, now)
            except AWSError as err:
                log.warning("table %s: SSE switch to %s not committed yet: %s", meta.name, pending["key_arn"],
                            err.code)

    def _advance(self, meta: TableMeta, pending: dict, now: float) -> None:
        elapsed = now - float(meta.sse_state.get("started", now))
        window = self.settings.sse_update_seconds
        if elapsed < window:
            if elapsed >= window * OLD_ARN_SHARE:
                shown = _enc(pending) if pending["mode"] != OWNED else {"Status": "UPDATING"}
                if meta.sse_state.get("phase") != shown:
                    with self.catalog.lock:
                        meta.sse_state = {**meta.sse_state, "phase": shown}
                        self.catalog.save(meta)
            return
        self._commit(meta, pending)

    def _commit(self, meta: TableMeta, pending: dict) -> None:
        keys = self._switch_keys.pop(meta.table_id, None)
        old = meta.sse
        if keys is None:  # resumed after a restart: the database unwraps both keys itself
            old_key = self.keys.decrypt_table_key(self.keys.key_service(meta.account, meta.region, old),
                                                  meta.name, meta.account, old)
            new_key = self.keys.decrypt_table_key(self.keys.key_service(meta.account, meta.region, pending),
                                                  meta.name, meta.account, pending)
            keys = rewrap.SwitchKeys(old_key, new_key)
        with self.catalog.lock:
            # re-wrapped from the data keys as they are now (a node epoch may have been added meanwhile)
            record = {**pending, "data_keys": rewrap.rewrap_data_keys(keys.old, keys.new, meta.id_bytes,
                                                                     meta.sse["data_keys"])}
            state = {k: v for k, v in meta.sse_state.items() if k not in ("pending", "phase", "started")}
            if meta.status == INACCESSIBLE:  # a switch away from a lost key heals the table
                state.pop("inaccessible_since", None)
                state.pop("error", None)
                meta.status = "ACTIVE"
            meta.sse = record
            meta.sse_state = state
            self.catalog.save(meta)  # the one write that moves the table to the new key
        self._retire_grant(meta, old, keep=record)
        self.keys.forget_table(meta.id_bytes)
        log.info("table %s: SSE switch committed: key %s -> %s, SSE UPDATING -> ENABLED", meta.name,
                 old.get("key_arn"), record["key_arn"])

    # -- the inaccessible-key sweep, recovery, archival ------------------------------------------------
    def sweep(self) -> None:
        with self._sweep_lock:
            for meta in self.catalog.all():
                try:
                    self._check(meta)
                except Exception:
                    log.exception("table %s: key check failed", meta.name)
            self.update_metrics()

    def _check(self, meta: TableMeta) -> None:
        if (meta.sse.get("mode", OWNED) == OWNED or meta.sse_state.get("pending") or meta.status == ARCHIVED
                or meta.status == "CREATING"):  # a table being restored is judged once it is ACTIVE
            return
        if meta.status == ARCHIVING:
            self._archive(meta)
            return
        who = self.keys.key_service(meta.account, meta.region, meta.sse)
        try:
            self.keys.decrypt_table_key(who, meta.name, meta.account, meta.sse, wrap=False)
        except KeyPortError as err:
            if err.code not in KEY_LOST_CODES:
                return  # KMS unreachable or throttled: not a verdict on the key
            self._lost(meta, err)
            return
        if meta.status == INACCESSIBLE:
            self._transition(meta, "ACTIVE", drop=("inaccessible_since", "error"))

    def _lost(self, meta: TableMeta, err: KeyPortError) -> None:
        now = self.clock()
        if meta.status != INACCESSIBLE:
            self.keys.forget_table(meta.id_bytes)  # no cached key outlives the verdict
            self._transition(meta, INACCESSIBLE, add={"inaccessible_since": now,
                                                      "error": {"code": err.code, "message": err.message}})
            return
        since = float(meta.sse_state.get("inaccessible_since", now))
        if now - since >= self.settings.archive_after_seconds:
            self._transition(meta, ARCHIVING)

    def _transition(self, meta: TableMeta, status: str, add: dict | None = None, drop: tuple = ()) -> None:
        with self.catalog.lock:
            old = meta.status
            meta.status = status
            state = {k: v for k, v in meta.sse_state.items() if k not in drop}
            state.update(add or {})
            meta.sse_state = state
            self.catalog.save(meta)
        log.info("table %s: key %s: %s -> %s", meta.name, meta.sse.get("key_arn"), old, status)

    def _archive(self, meta: TableMeta) -> None:
        """ARCHIVING -> ARCHIVED: a SYSTEM backup (the table's sealed rows and the wrapped keys they are under,
        copied without any key: the key is what is missing) and the ArchivalSummary, in one transaction."""
        now = self.clock()
        count, size = self.catalog.stats(meta.table_id)
        started = time.monotonic()
        log.info("table %s: archiving started (%d items, %d bytes)", meta.name, count, size)
        backup_id = uuid.uuid4().hex
        backup_arn = backups.new_arn(meta, now)
        record = {"BackupArn": backup_arn, "BackupName": f"{meta.name}-archival", "BackupType": "SYSTEM",
                  "BackupStatus": backups.AVAILABLE, "BackupCreationDateTime": now, "BackupSizeBytes": size,
                  "BackupId": backup_id, **backups.source_record(meta, count, size)}
        with self.catalog.lock:
            with self.catalog.transaction() as tx:
                digest = copy_rows(tx, meta.id_bytes, backup_id, lambda rows: [tx.put(k, v) for k, v in rows])
                record["digest"] = {"rows": digest.rows, "sha256": digest.hexdigest()}
                backups.save(tx, record)
                old = meta.status
                meta.status = ARCHIVED
                meta.sse_state = {**meta.sse_state, "archival": {
                    "ArchivalDateTime": now, "ArchivalReason": INACCESSIBLE, "ArchivalBackupArn": backup_arn}}
                self.catalog.put(tx, meta)
            self.catalog.remember(meta)
        log.info("table %s: key %s: %s -> %s (backup %s): archived %d rows in %.2f s", meta.name,
                 meta.sse.get("key_arn"), old, ARCHIVED, backup_arn, digest.rows, time.monotonic() - started)

    # -- metrics -------------------------------------------------------------------------------------------
    def update_metrics(self) -> None:
        metrics = self.metrics
        if metrics is None:
            return
        counts = dict.fromkeys(("OWNED", "ENABLED", "UPDATING", INACCESSIBLE, ARCHIVING, ARCHIVED), 0)
        for meta in self.catalog.all():
            counts[self.sse_status(meta)] = counts.get(self.sse_status(meta), 0) + 1
        for label, n in counts.items():
            metrics.tables_by_sse.labels(label).set(n)

    @staticmethod
    def sse_status(meta: TableMeta) -> str:
        if meta.status in NO_DATA_STATES:
            return meta.status
        if meta.sse_state.get("pending"):
            return "UPDATING"
        return "OWNED" if meta.sse.get("mode", OWNED) == OWNED else "ENABLED"


__all__ = ["SSELifecycle", "TableKeyRef"]
