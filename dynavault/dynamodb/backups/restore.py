"""RestoreTableFromBackup: a new table, CREATING until every item of the backup is in it, then ACTIVE.

Synchronous part (nothing is created unless all of it passes): the backup exists and is AVAILABLE, the
target name is free, the backup's table key decrypts for the caller (its KMS error otherwise, sse-spec.md
§1.6), the backup's rows match its sealed manifest (IntegrityError otherwise), and CreateTable's own
validation and key resolution accept the table the overrides describe. The table is written CREATING,
with the restore's progress in its catalog record; the worker thread then reads the backup's trees and
applies every item through the item-change path (cause "Restore": indexes, counters and subscribers as for
any write), a batch per store transaction that also records the progress. A crash resumes from the last
committed batch at the next start (the database unwraps the backup's key through a grant the restore made);
a restore that cannot go on removes its table. So a half-restored table is never ACTIVE.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import TYPE_CHECKING

import orjson

from dynavault.errors import AWSError
from dynavault.sse.key_port import KeyPortError
from dynavault.sse.table_keys import OWNED, encryption_context, service_principal

from ..catalog import TableMeta
from ..item_store import ItemChange
from ..keys import key_of_item
from ..sse_lifecycle import KEY_LOST_CODES
from ..tables import create_table
from . import records
from .jobs import BackupJobs, Stopped
from .snapshot import BackupReader, data_prefix, drop_data, verify

if TYPE_CHECKING:
    from dynavault.caller import Caller
    from dynavault.sse.crypto import TableCrypto

    from ..database import Database

log = logging.getLogger("dynavault.dynamodb.backups")

#: items per store transaction while filling a restored table (the write lock is held that long)
RESTORE_BATCH = 500


class TableGone(Exception):
    """The table being restored was deleted meanwhile."""


def restoring_from(db: Database, arn: str) -> bool:
    return any(m.status == "CREATING" and (m.extra.get("restore") or {}).get("BackupArn") == arn
               for m in db.catalog.all())


def _account(rec: dict) -> str:
    return rec.get("account") or rec["TableArn"].split(":")[4]


def source_meta(rec: dict) -> TableMeta:
    """The backup's source table as the tree code needs it (its id binds the backup's blobs)."""
    return TableMeta(table_id=rec["TableId"], name=rec["TableName"], account=_account(rec),
                     region=rec.get("region") or rec["TableArn"].split(":")[3], key_schema=rec["KeySchema"],
                     attribute_definitions=rec["AttributeDefinitions"])


def _sse_of(rec: dict) -> dict | None:
    """Without an override the restored table takes the backup's key setting."""
    sse = rec.get("sse") or {}
    mode = sse.get("mode", OWNED)
    if mode == OWNED:
        return None
    if mode == "AWS_MANAGED":
        return {"Enabled": True}
    return {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": sse["key_arn"]}


def _create_params(rec: dict, p: dict) -> dict:
    """CreateTable's request for the restored table: the source's schema with the overrides applied."""
    source_billing = rec.get("BillingMode") or "PROVISIONED"
    rcu, wcu = int(rec.get("ReadCapacityUnits") or 0), int(rec.get("WriteCapacityUnits") or 0)
    if source_billing == "PROVISIONED" and not (rcu and wcu):
        source_billing = "PAY_PER_REQUEST"  # an archival record of an older release keeps no throughput
    billing = p.get("BillingModeOverride") or source_billing
    params: dict = {"TableName": p["TargetTableName"], "KeySchema": rec["KeySchema"], "BillingMode": billing}
    if "ProvisionedThroughputOverride" in p:
        params["ProvisionedThroughput"] = p["ProvisionedThroughputOverride"]
    elif billing == "PROVISIONED" and source_billing == "PROVISIONED":
        params["ProvisionedThroughput"] = {"ReadCapacityUnits": rcu, "WriteCapacityUnits": wcu}
    # (PROVISIONED over an on-demand source without a throughput override: CreateTable's own error)
    if "LocalSecondaryIndexOverride" in p:
        lsis = p["LocalSecondaryIndexOverride"]
    else:
        lsis = rec.get("LocalSecondaryIndexes") or []
    if "GlobalSecondaryIndexOverride" in p:
        gsis = p["GlobalSecondaryIndexOverride"]
    else:
        gsis = []
        for g in rec.get("GlobalSecondaryIndexes") or []:
            g = {k: g[k] for k in ("IndexName", "KeySchema", "Projection")} | (
                {"ProvisionedThroughput": _index_throughput(g, params)} if billing == "PROVISIONED" else {})
            gsis.append(g)
    if lsis:
        params["LocalSecondaryIndexes"] = lsis
    if gsis:
        params["GlobalSecondaryIndexes"] = gsis
    used = {k["AttributeName"] for k in rec["KeySchema"]}
    for idx in list(lsis) + list(gsis):
        used.update(k.get("AttributeName") for k in idx.get("KeySchema") or [] if isinstance(k, dict))
    params["AttributeDefinitions"] = [d for d in rec["AttributeDefinitions"] if d["AttributeName"] in used]
    spec = p["SSESpecificationOverride"] if "SSESpecificationOverride" in p else _sse_of(rec)
    if spec is not None:
        params["SSESpecification"] = spec
    return params


def _index_throughput(g: dict, params: dict) -> dict:
    pt = g.get("ProvisionedThroughput") or {}
    if pt.get("ReadCapacityUnits") and pt.get("WriteCapacityUnits"):
        return {"ReadCapacityUnits": pt["ReadCapacityUnits"], "WriteCapacityUnits": pt["WriteCapacityUnits"]}
    return dict(params.get("ProvisionedThroughput") or {})


def _make_grant(db: Database, caller: Caller, rec: dict) -> dict | None:
    """A grant on the backup's key for the database itself, so a restore interrupted by a crash can unwrap
    the backup's key again at the next start (the source table, and its grant, may be gone)."""
    sse = rec.get("sse") or {}
    if sse.get("mode", OWNED) == OWNED:
        return None
    principal = service_principal(caller.region)
    grant = db.keys.call("CreateGrant", db.keys.kms.create_grant, caller.on_behalf(principal), sse["key_arn"],
                          grantee=principal, retiring=principal, operations=["Decrypt"],
                          context_subset=encryption_context(rec["TableName"], _account(rec)))
    return {"key_arn": sse["key_arn"], "grant_id": grant.grant_id}


def _retire_grant(db: Database, meta: TableMeta, grant: dict | None) -> None:
    if grant:
        db.keys.retire_grant(meta.account, meta.region, grant["key_arn"], grant["grant_id"], meta.name)


def restore_table_from_backup(db: Database, caller: Caller, p: dict) -> dict:
    arn = p["BackupArn"]
    target = p["TargetTableName"]
    rec = records.load(db.items.kv, caller, arn)
    if records.status(rec) != records.AVAILABLE:
        raise AWSError("BackupInUseException", f"Backup is being created: {arn}")
    if db.catalog.get(caller.account, caller.region, target) is not None:
        raise AWSError("TableAlreadyExistsException", f"Table already exists: {target}")
    jobs: BackupJobs | None = db.backup_jobs
    if jobs is None:
        raise AWSError("InternalServerError", "Internal server error", 500)
    params = _create_params(rec, p)
    # The key the backup was taken under must be usable now, by this caller: its KMS error, and no table.
    sse = rec["sse"]
    table_key = db.keys.decrypt_table_key(db.keys.key_user(caller, sse), rec["TableName"], _account(rec), sse)
    source = source_meta(rec)
    src_crypto = db.keys.build_crypto(table_key, source.id_bytes, sse["data_keys"])
    if rec.get("BackupId"):
        verify(db.items.kv, rec, src_crypto)  # a swapped or missing row: IntegrityError (500), no table
    grant = _make_grant(db, caller, rec)
    now = db.clock()
    extra = {"restore": {"BackupArn": arn, "done": 0, "total": int(rec.get("ItemCount", 0)), "grant": grant},
             "restore_summary": {"SourceBackupArn": arn, "SourceTableArn": rec["TableArn"], "RestoreDateTime": now}}
    try:
        answer = create_table(db, caller, params, status="CREATING", extra=extra)
    except BaseException:
        _retire_grant(db, source, grant)
        raise
    meta = db.catalog.get(caller.account, caller.region, target)
    assert meta is not None
    try:
        dst_crypto = db.crypto(caller, meta)
    except BaseException:
        _abandon(db, meta, "its new key could not be used")
        raise
    jobs.submit(lambda: fill(db, jobs, meta, rec, src_crypto, dst_crypto), uses=arn, fills=meta.table_id)
    log.info("restore of backup %s into table %s: started (%d items)", arn, target, extra["restore"]["total"])
    return answer


# -- the worker's part -----------------------------------------------------------------------------------------
def fill(db: Database, jobs: BackupJobs, meta: TableMeta, rec: dict, src_crypto: TableCrypto,
         dst_crypto: TableCrypto) -> None:
    """Apply the backup's items to the CREATING table from where it stands, then make it ACTIVE."""
    started = time.monotonic()
    state = dict(meta.extra["restore"])
    done, total = int(state["done"]), int(state["total"])
    reader = BackupReader(db.items.kv, data_prefix(rec["BackupId"])) if rec.get("BackupId") else db.items.kv
    items = (orjson.loads(raw) for _, _, raw in db.items.walk(reader, source_meta(rec), src_crypto))
    step = max(RESTORE_BATCH, total // 10)
    try:
        for batch in _batches(itertools.islice(items, done, None), RESTORE_BATCH):
            jobs.check()
            _apply(db, meta, dst_crypto, batch, state, done + len(batch))
            if (done + len(batch)) // step != done // step:
                log.info("restore of table %s: %d / %d items", meta.name, done + len(batch), total)
            done += len(batch)
    except (TableGone, Stopped):
        raise
    except Exception:
        log.exception("restore of table %s from %s failed; the table is removed", meta.name, rec["BackupArn"])
        _abandon(db, meta, "the restore failed")
        return
    with db.catalog.lock:
        if db.catalog.get(meta.account, meta.region, meta.name) is not meta:
            raise TableGone(meta.name)
        meta.extra = {k: v for k, v in meta.extra.items() if k != "restore"}
        meta.status = "ACTIVE"
        db.catalog.save(meta)
    _retire_grant(db, meta, state.get("grant"))
    log.info("restore of table %s from %s: ACTIVE, %d items in %.2f s", meta.name, rec["BackupArn"], done,
             time.monotonic() - started)


def _batches(items, n: int):
    while True:
        batch = list(itertools.islice(items, n))
        if not batch:
            return
        yield batch


def _apply(db: Database, meta: TableMeta, crypto: TableCrypto, batch: list[dict], state: dict,
           done: int) -> None:
    if db.catalog.get(meta.account, meta.region, meta.name) is not meta:
        raise TableGone(meta.name)
    with db.items.write() as w:
        for item in batch:
            hkey, skey, _ = key_of_item(meta, item)
            w.apply(ItemChange(meta, None, item, "Restore"), crypto, hkey=hkey, skey=skey)
        state["done"] = done
        meta.extra = {**meta.extra, "restore": dict(state)}  # progress commits with the items
        db.catalog.put(w.tx, meta)


def _abandon(db: Database, meta: TableMeta, why: str) -> None:
    """Remove a table whose restore cannot finish (its items, catalog entry, grants)."""
    with db.catalog.lock:
        if db.catalog.get(meta.account, meta.region, meta.name) is meta:
            with db.items.write() as w:
                w.drop(meta)
                db.catalog.remove(w.tx, meta)
            db.catalog.forget(meta)
    db.keys.retire(meta.key_ref())
    _retire_grant(db, meta, (meta.extra.get("restore") or {}).get("grant"))
    log.error("restore of table %s: %s; the half-restored table was removed", meta.name, why)


# -- at start, and after --------------------------------------------------------------------------------------
def recover(db: Database) -> None:
    """At start: remove backups that were still CREATING (their snapshot died with the process), then resume
    the restores that were under way."""
    for rec in records.every(db.items.kv):
        if records.status(rec) == records.CREATING:
            with db.catalog.transaction() as tx:
                records.remove(tx, rec)
                drop_data(tx, rec["BackupId"])
            log.warning("backup %s was being created when the server stopped: removed", rec["BackupArn"])
    resume_restores(db)


def resume_restores(db: Database) -> None:
    """Resume every restore no job of this process is running, unwrapping the keys as the database (through
    the restore's grant). A key that is gone for good ends the restore (its table is removed); KMS being
    unreachable or throttling leaves it CREATING for the next try (a periodic job)."""
    jobs = db.backup_jobs
    if jobs is None:
        return
    kv = db.items.kv
    for meta in db.catalog.all():
        state = meta.extra.get("restore")
        if meta.status != "CREATING" or not state or jobs.filling(meta.table_id):
            continue
        raw = kv.get(records.BACKUP_PREFIX + state["BackupArn"].encode())
        if raw is None:
            _abandon(db, meta, "its backup was deleted")
            continue
        rec = orjson.loads(raw)
        try:
            src_crypto = _database_crypto(db, source_meta(rec), rec["sse"])
            dst_crypto = _database_crypto(db, meta, meta.sse)
        except KeyPortError as err:
            if err.code in KEY_LOST_CODES:
                _abandon(db, meta, f"it cannot resume: its key is unusable ({err.code})")
            else:
                log.warning("restore of table %s: not resumed yet, KMS answered %s", meta.name, err.code)
            continue
        log.info("restore of table %s from %s: resuming at %s / %s items", meta.name, state["BackupArn"],
                 state["done"], state["total"])
        jobs.submit(lambda m=meta, r=rec, s=src_crypto, d=dst_crypto: fill(db, jobs, m, r, s, d),
                    uses=state["BackupArn"], fills=meta.table_id)


def _database_crypto(db: Database, meta: TableMeta, sse: dict) -> TableCrypto:
    key = db.keys.decrypt_table_key(db.keys.key_service(meta.account, meta.region, sse), meta.name, meta.account,
                                     sse, wrap=False)
    return db.keys.build_crypto(key, meta.id_bytes, sse["data_keys"])
