"""On-demand backups: CreateBackup, DescribeBackup, ListBackups, DeleteBackup (RestoreTableFromBackup is
in ``restore.py``, point-in-time recovery in ``pitr.py``).

CreateBackup pins a snapshot of the store (``SqliteKV.pinned_snapshot``: one committed instant) and
writes the backup record as CREATING with the table's wrapped keys of that moment; the worker thread then
copies the table's sealed rows from the snapshot in small batches and seals the manifest, and one last
transaction makes the record AVAILABLE. A crash before that leaves a CREATING record, which the next start
removes with its rows: a backup is AVAILABLE and complete, or absent.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING

from dynavault.errors import AWSError

from ..sse_spec import refuse_if_inaccessible
from . import pitr, records
from .jobs import BackupJobs, Stopped
from .pitr import drop_backup_data
from .restore import reading, restore_table_from_backup, restoring_from
from .snapshot import batch_writer, copy_rows, drop_data, seal_manifest

if TYPE_CHECKING:
    from dynavault.caller import Caller
    from dynavault.sse.crypto import TableCrypto
    from dynavault.storage.kv.sqlite import PinnedSnapshot

    from ..catalog import TableMeta
    from ..database import Database

log = logging.getLogger("dynavault.dynamodb.backups")

BACKUP_TYPES = {"USER": ("USER",), "SYSTEM": ("SYSTEM",), "AWS_BACKUP": ("AWS_BACKUP",),
                "ALL": ("USER", "SYSTEM", "AWS_BACKUP")}


def _jobs(db: Database) -> BackupJobs:
    if db.backup_jobs is None:
        raise AWSError("InternalServerError", "Internal server error", 500)
    return db.backup_jobs


def create_backup(db: Database, caller: Caller, p: dict) -> dict:
    name = p["TableName"]
    meta = db.catalog.get(caller.account, caller.region, name)
    if meta is None:
        raise AWSError("TableNotFoundException", f"Table not found: {name}")
    if meta.status == "CREATING":
        raise AWSError("TableInUseException", f"Table is being created: {name}")
    refuse_if_inaccessible(meta)  # sse-spec.md §1.5: CreateBackup fails with the KMS error naming the key
    if any(r["TableId"] == meta.table_id and records.status(r) == records.CREATING
           for r in records.of_account(db.items.kv, caller.account, caller.region)):
        raise AWSError("BackupInUseException", "There is another ongoing conflicting backup control plane "
                       f"operation on the table: {name}")
    jobs = _jobs(db)
    # The key must be usable now (fail closed, as a data operation would); its stream key seals the manifest.
    crypto = db.crypto(caller, meta)
    now = db.clock()
    count, size = db.catalog.stats(meta.table_id)
    rec = {"BackupArn": records.new_arn(meta, now), "BackupName": p["BackupName"], "BackupType": "USER",
           "BackupStatus": records.CREATING, "BackupCreationDateTime": now, "BackupSizeBytes": size,
           "BackupId": uuid.uuid4().hex, **records.source_record(meta, count, size)}
    # Handlers run one at a time on the event loop: the table's rows, counters and keys cannot move between
    # reading them above and pinning the snapshot here.
    snap = db.items.kv.pinned_snapshot()
    try:
        with db.catalog.transaction() as tx:
            records.save(tx, rec)
    except BaseException:
        snap.close()
        raise
    jobs.submit(lambda: _copy(db, jobs, snap, rec, crypto, meta), uses=rec["BackupArn"])
    log.info("backup %s of table %s: started (%d items, %d bytes)", rec["BackupArn"], name, count, size)
    return {"BackupDetails": records.details(rec)}


def _copy(db: Database, jobs: BackupJobs, snap: PinnedSnapshot, rec: dict, crypto: TableCrypto,
          meta: TableMeta) -> None:
    started = time.monotonic()
    kv = db.items.kv

    write = batch_writer(kv, jobs.check)

    try:
        with snap:
            digest = copy_rows(snap, meta.id_bytes, rec["BackupId"], write)
        done = {**rec, "BackupStatus": records.AVAILABLE, "manifest": seal_manifest(crypto, rec["BackupId"], digest),
                "rows": digest.rows}
        with db.catalog.transaction() as tx:
            if tx.get(records.BACKUP_PREFIX + rec["BackupArn"].encode()) is None:
                drop_data(tx, rec["BackupId"])  # deleted meanwhile (never while CREATING; a restart's cleanup)
                return
            records.save(tx, done)
    except Exception as exc:
        if not isinstance(exc, Stopped):
            with db.catalog.transaction() as tx:
                records.remove(tx, rec)
                drop_data(tx, rec["BackupId"])
        raise
    log.info("backup %s of table %s: AVAILABLE in %.2f s (%d rows, %d bytes copied)", rec["BackupArn"],
             rec["TableName"], time.monotonic() - started, digest.rows, digest.bytes)


def describe_backup(db: Database, caller: Caller, p: dict) -> dict:
    rec = records.load(db.items.kv, caller, p["BackupArn"])
    return {"BackupDescription": records.description(rec)}


def list_backups(db: Database, caller: Caller, p: dict) -> dict:
    types = BACKUP_TYPES[p.get("BackupType") or "USER"]
    name = p.get("TableName")
    lo, hi = p.get("TimeRangeLowerBound"), p.get("TimeRangeUpperBound")
    found = [r for r in records.of_account(db.items.kv, caller.account, caller.region)
             if r.get("BackupType", "USER") in types and (name is None or r["TableName"] == name)
             and (lo is None or r["BackupCreationDateTime"] >= float(lo))
             and (hi is None or r["BackupCreationDateTime"] < float(hi))]
    found.sort(key=lambda r: (r["BackupCreationDateTime"], r["BackupArn"]))
    start = p.get("ExclusiveStartBackupArn")
    if start is not None:
        at = next((i for i, r in enumerate(found) if r["BackupArn"] == start), None)
        if at is None:
            raise AWSError("ValidationException", f"Invalid ExclusiveStartBackupArn: {start}")
        found = found[at + 1:]
    limit = int(p.get("Limit") or 100)
    out: dict = {"BackupSummaries": [records.summary(r) for r in found[:limit]]}
    if len(found) > limit:
        out["LastEvaluatedBackupArn"] = found[limit - 1]["BackupArn"]
    return out


def delete_backup(db: Database, caller: Caller, p: dict) -> dict:
    arn = p["BackupArn"]
    rec = records.load(db.items.kv, caller, arn)
    if records.status(rec) == records.CREATING:
        raise AWSError("BackupInUseException", f"Backup is being created: {arn}")
    if restoring_from(db, arn) or (db.backup_jobs is not None and db.backup_jobs.busy(arn)):
        raise AWSError("BackupInUseException", f"Backup is being restored: {arn}")
    if any(reading(db, b) for b in rec.get("bases") or ()):
        raise AWSError("BackupInUseException", f"Backup is being restored: {arn}")
    with db.catalog.transaction() as tx:
        records.remove(tx, rec)
        drop_backup_data(tx, rec)
    log.info("backup %s deleted", arn)
    return {"BackupDescription": records.description(rec, records.DELETED)}


HANDLERS = {
    "CreateBackup": create_backup,
    "DescribeBackup": describe_backup,
    "ListBackups": list_backups,
    "DeleteBackup": delete_backup,
    "RestoreTableFromBackup": restore_table_from_backup,
    **pitr.HANDLERS,
}
