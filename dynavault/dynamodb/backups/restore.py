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

With several worker processes the filling worker holds a lease (``restore:<table id>``) renewed every batch;
if it dies, the lease expires and the worker running the store-wide jobs resumes the restore from its last
committed batch (``resume_abandoned``), as at a start.

RestoreTableToPointInTime (``pitr.py``) comes through ``start_restore`` too, with a record that names a base
snapshot and the stretch of history to replay over it (``source_items``); so does a SYSTEM backup.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
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
from . import history, records
from .jobs import BackupJobs, Stopped
from .snapshot import BackupReader, data_prefix, drop_data, verify

if TYPE_CHECKING:
    from dynavault.caller import Caller
    from dynavault.sse.crypto import TableCrypto
    from dynavault.storage.kv.base import KVReader

    from ..database import Database

log = logging.getLogger("dynavault.dynamodb.backups")

#: items per store transaction while filling a restored table (the write lock is held that long)
RESTORE_BATCH = 500


class TableGone(Exception):
    """The table being restored was deleted meanwhile."""


def restoring_from(db: Database, arn: str) -> bool:
    return any(m.status == "CREATING" and (m.extra.get("restore") or {}).get("BackupArn") == arn
               for m in db.catalog.all())


def reading(db: Database, backup_id: str) -> bool:
    """Whether a restore in progress (or a job) reads the rows kept under ``backup_id``."""
    if db.backup_jobs is not None and db.backup_jobs.busy(backup_id):
        return True
    return any(m.status == "CREATING" and ((m.extra.get("restore") or {}).get("source") or {}).get("BackupId")
               == backup_id for m in db.catalog.all())


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
    rec = records.load(db.items.kv, caller, arn)
    if records.status(rec) != records.AVAILABLE:
        raise AWSError("BackupInUseException", f"Backup is being created: {arn}")
    return start_restore(db, caller, p, rec, {"SourceBackupArn": arn, "SourceTableArn": rec["TableArn"]},
                         {"BackupArn": arn})


def check_target_free(db: Database, caller: Caller, p: dict) -> str:
    """The target table's name, refused if a table has it (checked before the source's readiness)."""
    target = p["TargetTableName"]
    if db.catalog.get(caller.account, caller.region, target) is not None:
        raise AWSError("TableAlreadyExistsException", f"Table already exists: {target}")
    return target


def start_restore(db: Database, caller: Caller, p: dict, rec: dict, summary: dict, state: dict) -> dict:
    """Create the CREATING table ``p`` names from ``rec`` (a backup record, or a point in time described as
    one: a base snapshot and the history after it, see ``pitr.py``) and hand its filling to the worker.
    ``state`` says where the items come from when a restart resumes it (a backup ARN, or ``rec`` itself)."""
    target = check_target_free(db, caller, p)
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
    # Every history row the restore replays is opened now: a damaged one refuses the restore, no table.
    overlay = _history(db.items.kv, rec, src_crypto) if rec.get("pitr") else None
    grant = _make_grant(db, caller, rec)
    now = db.clock()
    arn = state.get("BackupArn") or rec["BackupId"]
    extra = {"restore": {**state, "done": 0, "total": int(rec.get("ItemCount", 0)), "grant": grant},
             "restore_summary": {**summary, "RestoreDateTime": summary.get("RestoreDateTime", now)}}
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
    if db.leases is not None:  # held from now: no other worker takes the restore for an abandoned one
        db.leases.renew(_lease(meta))
    jobs.submit(lambda: fill(db, jobs, meta, rec, src_crypto, dst_crypto, overlay), uses=arn, fills=meta.table_id)
    log.info("restore of %s into table %s: started (%d items)", _label(rec), target, extra["restore"]["total"])
    return answer


def _history(kv: KVReader, rec: dict, crypto: TableCrypto) -> dict:
    pitr = rec["pitr"]
    after = bytes.fromhex(pitr["after"]) if pitr.get("after") else None
    return history.changes(kv, source_meta(rec), crypto, after, pitr.get("until"))


def source_items(db: Database, rec: dict, crypto: TableCrypto, overlay: dict | None = None) -> Iterator[dict]:
    """The items a restore writes, in an order that does not change between runs (a resume skips the ones
    already done): the backup's items; for a point in time, each replaced by its last change in the history
    window (or left out where deleted), then the items the window added, in key order."""
    kv = db.items.kv
    source = source_meta(rec)
    reader = BackupReader(kv, data_prefix(rec["BackupId"])) if rec.get("BackupId") else kv
    base = (orjson.loads(raw) for _, _, raw in db.items.walk(reader, source, crypto))
    if not rec.get("pitr"):
        yield from base
        return
    if overlay is None:
        overlay = _history(kv, rec, crypto)
    seen = set()
    for item in base:
        hkey, skey, _ = key_of_item(source, item)
        if (hkey, skey) in overlay:
            seen.add((hkey, skey))
            item = overlay[(hkey, skey)]
        if item is not None:
            yield item
    for k in sorted(set(overlay) - seen):
        if overlay[k] is not None:
            yield overlay[k]


# -- the worker's part -----------------------------------------------------------------------------------------
def _lease(meta: TableMeta) -> str:
    return f"restore:{meta.table_id}"


def fill(db: Database, jobs: BackupJobs, meta: TableMeta, rec: dict, src_crypto: TableCrypto,
         dst_crypto: TableCrypto, overlay: dict | None = None) -> None:
    """Apply the backup's items to the CREATING table from where it stands, then make it ACTIVE."""
    if db.leases is None:
        _fill(db, jobs, meta, rec, src_crypto, dst_crypto, overlay)
        return
    if not db.leases.renew(_lease(meta)):
        log.info("restore of table %s: another worker is filling it", meta.name)
        return
    try:
        # The progress as committed (by this worker, or by the one that died): a reload shows it.
        live = db.catalog.get(meta.account, meta.region, meta.name)
        if live is None or live.table_id != meta.table_id or live.status != "CREATING":
            return
        _fill(db, jobs, live, rec, src_crypto, dst_crypto, overlay)
    finally:
        db.leases.release_one(_lease(meta))


def _fill(db: Database, jobs: BackupJobs, meta: TableMeta, rec: dict, src_crypto: TableCrypto,
          dst_crypto: TableCrypto, overlay: dict | None) -> None:
    started = time.monotonic()
    state = dict(meta.extra["restore"])
    done, total = int(state["done"]), int(state["total"])
    items = source_items(db, rec, src_crypto, overlay)
    step = max(RESTORE_BATCH, total // 10)
    try:
        for batch in _batches(itertools.islice(items, done, None), RESTORE_BATCH):
            jobs.check()
            if db.leases is not None and not db.leases.renew(_lease(meta)):
                log.warning("restore of table %s: taken over by another worker", meta.name)
                return
            _apply(db, meta, dst_crypto, batch, state, done + len(batch))
            if (done + len(batch)) // step != done // step:
                log.info("restore of table %s: %d / %d items", meta.name, done + len(batch), total)
            done += len(batch)
    except (TableGone, Stopped):
        raise
    except Exception:
        log.exception("restore of table %s from %s failed; the table is removed", meta.name, _label(rec))
        _abandon(db, meta, "the restore failed")
        return
    with db.catalog.lock:
        if db.catalog.get(meta.account, meta.region, meta.name) is not meta:
            raise TableGone(meta.name)
        meta.extra = {k: v for k, v in meta.extra.items() if k != "restore"}
        meta.status = "ACTIVE"
        db.catalog.save(meta)
    _retire_grant(db, meta, state.get("grant"))
    log.info("restore of table %s from %s: ACTIVE, %d items in %.2f s", meta.name, _label(rec), done,
             time.monotonic() - started)


def _label(rec: dict) -> str:
    """What the log names as a restore's source (a point in time has no backup ARN)."""
    return rec.get("BackupArn") or f"{rec['TableArn']} at {rec['pitr'].get('until')}"


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
    db.catalog.remember(meta)  # other workers see the progress (one of them may have to resume from it)


def _abandon(db: Database, meta: TableMeta, why: str) -> None:
    """Remove a table whose restore cannot finish (its items, catalog entry, grants)."""
    db.discard_table(meta)
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


def resume_abandoned(db: Database) -> None:
    """With several workers (a store-wide periodic job): resume the restores whose worker died — their lease
    expired; one whose lease is held (here or elsewhere) is being filled."""
    if db.leases is not None:
        resume_restores(db, only_abandoned=True)


def resume_restores(db: Database, *, only_abandoned: bool = False) -> None:
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
        if only_abandoned and db.leases is not None and db.leases.taken(_lease(meta)):
            continue
        rec = state.get("source")  # a point in time: what it reads is described in the restore itself
        if rec is None:
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
        log.info("restore of table %s from %s: resuming at %s / %s items", meta.name, _label(rec),
                 state["done"], state["total"])
        jobs.submit(lambda m=meta, r=rec, s=src_crypto, d=dst_crypto: fill(db, jobs, m, r, s, d),
                    uses=state.get("BackupArn") or rec["BackupId"], fills=meta.table_id)


def _database_crypto(db: Database, meta: TableMeta, sse: dict) -> TableCrypto:
    key = db.keys.decrypt_table_key(db.keys.key_service(meta.account, meta.region, sse), meta.name, meta.account,
                                     sse, wrap=False)
    return db.keys.build_crypto(key, meta.id_bytes, sse["data_keys"])
