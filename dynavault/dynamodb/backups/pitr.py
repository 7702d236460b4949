"""Point-in-time recovery: UpdateContinuousBackups, DescribeContinuousBackups, RestoreTableToPointInTime, the
SYSTEM backup DeleteTable leaves, and the sweep that keeps the history within the recovery period.

What a table with PITR on keeps (its catalog entry's ``extra["pitr"]``: plaintext metadata only):
- **base snapshots**: copies of the table's sealed rows at one instant, made exactly like an on-demand
  backup's (``snapshot.copy_rows`` from a pinned snapshot, on the backup worker), each with the history
  position it folds in (the last row at that instant) and a digest of its rows;
- **the history** (``history.py``): every change after the first base, sealed under the table's keys.
A restore to time T takes the newest base made at or before T and replays the history after that base's
position up to T; the result goes through ``restore.start_restore``, as a backup's restore does.

Pruning rebases instead of compacting: once the newest base is a recovery period old, a new base is copied
from the live table, and once a base is itself older than the period, the bases before it and the history
it folds in are dropped. So at most two bases (a third while one copies) and two periods of history are
kept. Compacting (replaying old history into the base) would keep one base and one period, but it needs the
table's key in a background job and rewrites trees; a rebase copies sealed rows and needs no key at all,
so the sweep goes on while a key is disabled, and a base is never rewritten in place.

With several worker processes a base is copied by one worker (the one that enabled PITR, or the one running
the sweep) under a lease (``pitr-base:<base id>``) renewed every batch; every change of a table's PITR state
is announced to the other workers' catalogs. A copy whose worker died cannot go on (its pinned instant died
with it): the worker running the store-wide jobs drops it and takes a new base from the live table
(``resume_abandoned``), as a start does (``recover``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from dynavault.errors import AWSError, validation
from dynavault.timestamps import epoch_seconds

from ..tables import table_name
from . import history, records
from .history import enabled
from .jobs import BackupJobs, Stopped
from .restore import check_target_free, reading, restoring_from, start_restore
from .snapshot import Digest, batch_writer, copy_rows, drop_data

if TYPE_CHECKING:
    from dynavault.caller import Caller
    from dynavault.storage.kv.base import KVTransaction
    from dynavault.storage.kv.sqlite import PinnedSnapshot

    from ..catalog import TableMeta
    from ..database import Database

log = logging.getLogger("dynavault.dynamodb.backups")

DEFAULT_DAYS = 35
#: DynamoDB keeps the SYSTEM backup of a deleted PITR table this many days
SYSTEM_BACKUP_DAYS = 35
_UNAVAILABLE = "Backups are being enabled for the table: {}. Please retry later"


def _day(db: Database) -> float:
    return float(getattr(db.settings, "pitr_day_seconds", 86400.0))


def window(db: Database, st: dict, now: float) -> tuple[float, float]:
    """(earliest, latest) restorable time: from the oldest complete base, at most a recovery period back,
    to now (the history is written with each change, so DynamoDB's ~5 minute lag has no reason here)."""
    oks = [b["t"] for b in st["bases"] if b.get("ok")]
    earliest = max(oks[0] if oks else st["since"], now - st["days"] * _day(db))
    return earliest, max(now, earliest)


def _describe(db: Database, meta: TableMeta) -> dict:
    st = enabled(meta)
    if st is None:
        pitr: dict = {"PointInTimeRecoveryStatus": "DISABLED"}
    else:
        earliest, latest = window(db, st, db.clock())
        pitr = {"PointInTimeRecoveryStatus": "ENABLED", "RecoveryPeriodInDays": st["days"],
                "EarliestRestorableDateTime": earliest, "LatestRestorableDateTime": latest}
    return {"ContinuousBackupsDescription": {"ContinuousBackupsStatus": "ENABLED",
                                             "PointInTimeRecoveryDescription": pitr}}


def _table(db: Database, caller: Caller, name: str) -> TableMeta:
    meta = db.catalog.get(caller.account, caller.region, name)
    if meta is None:
        raise AWSError("TableNotFoundException", f"Table not found: {name}")
    return meta


def describe_continuous_backups(db: Database, caller: Caller, p: dict) -> dict:
    return _describe(db, _table(db, caller, p["TableName"]))


def update_continuous_backups(db: Database, caller: Caller, p: dict) -> dict:
    name = p["TableName"]
    meta = _table(db, caller, name)
    if meta.status == "CREATING":  # a table being restored: DynamoDB's "not yet" for a new table's backups
        raise AWSError("ContinuousBackupsUnavailableException", _UNAVAILABLE.format(name))
    spec = p["PointInTimeRecoverySpecification"]
    on = bool(spec["PointInTimeRecoveryEnabled"])
    given = spec.get("RecoveryPeriodInDays")
    days = DEFAULT_DAYS if given is None else int(given)
    if not 1 <= days <= DEFAULT_DAYS:  # the shape check refuses these first; this keeps the service safe too
        bound = "less than or equal to 35" if days > DEFAULT_DAYS else "greater than or equal to 1"
        raise validation(f"1 validation error detected: Value '{days}' at 'pointInTimeRecoverySpecification."
                         f"recoveryPeriodInDays' failed to satisfy constraint: Member must have value {bound}")
    jobs = db.backup_jobs
    if jobs is None:
        raise AWSError("InternalServerError", "Internal server error", 500)
    with db.catalog.lock:
        st = enabled(meta)
        if on and st is not None:
            if st["days"] != days:
                meta.extra = {**meta.extra, "pitr": {**st, "days": days}}
                db.catalog.save(meta)
        elif on:
            _enable(db, jobs, meta, days)
        elif st is not None:
            _disable(db, meta, st)
    return _describe(db, meta)


def _enable(db: Database, jobs: BackupJobs, meta: TableMeta, days: int) -> None:
    now = db.clock()
    _take_base(db, jobs, meta, now, lambda base: {"on": True, "days": days, "since": now, "bases": [base]})
    log.info("point-in-time recovery enabled on table %s (%d days)", meta.name, days)


def _take_base(db: Database, jobs: BackupJobs, meta: TableMeta, now: float,
               state: Callable[[dict], dict]) -> None:
    """Pin the store, record the new base (not yet complete) in the table's PITR ``state(base)``, and copy it
    on the worker. Handlers and the sweep run one at a time on the event loop and no worker writes an ACTIVE
    table: nothing commits on this table between the pin and the catalog entry (which, on enabling, turns
    the history on), so the base and the history meet exactly."""
    snap, base = _pin_base(db, meta, now)
    try:
        if db.leases is not None:  # held from before the base is listed: no worker takes it for a dead copy
            db.leases.renew(_lease(base))
        meta.extra = {**meta.extra, "pitr": state(base)}
        db.catalog.save(meta)
    except BaseException:
        snap.close()
        raise
    # named apart from the base's id: ``reading`` (a restore reads it) must not count the copy itself
    jobs.submit(lambda: _copy_base(db, jobs, snap, meta, base), uses="pitr-base:" + base["id"])


def _lease(base: dict) -> str:
    return f"pitr-base:{base['id']}"


def _pin_base(db: Database, meta: TableMeta, now: float) -> tuple[PinnedSnapshot, dict]:
    snap = db.items.kv.pinned_snapshot()
    pos = history.last_position(snap, meta.id_bytes)
    t = max(now, history.position_time(pos)) if pos is not None else now
    return snap, {"id": uuid.uuid4().hex, "t": t, "pos": pos.hex() if pos is not None else None, "ok": False}


def _disable(db: Database, meta: TableMeta, st: dict) -> None:
    if any(reading(db, b["id"]) for b in st["bases"]):
        raise AWSError("ContinuousBackupsUnavailableException",
                       f"A restore is reading the continuous backups of table: {meta.name}. Please retry later")
    with db.catalog.transaction() as tx:
        for b in st["bases"]:
            drop_data(tx, b["id"])  # one still being copied is dropped again by its job when it ends
        history.drop_all(tx, meta.id_bytes)
        meta.extra = {k: v for k, v in meta.extra.items() if k != "pitr"}
        db.catalog.put(tx, meta)
    db.catalog.remember(meta)
    log.info("point-in-time recovery disabled on table %s: its history and base snapshots are deleted", meta.name)


def _copy_base(db: Database, jobs: BackupJobs, snap: PinnedSnapshot, meta: TableMeta, base: dict) -> None:
    try:
        _copy(db, jobs, snap, meta, base)
    finally:
        if db.leases is not None:
            db.leases.release_one(_lease(base))


def _copy(db: Database, jobs: BackupJobs, snap: PinnedSnapshot, meta: TableMeta, base: dict) -> None:
    started = time.monotonic()
    kv = db.items.kv

    def check() -> None:
        jobs.check()
        if db.leases is not None:
            db.leases.renew(_lease(base))

    write = batch_writer(kv, check)

    digest: Digest | None = None
    try:
        with snap:
            digest = copy_rows(snap, meta.id_bytes, base["id"], write)
    except Stopped:
        raise  # the next start copies a new base (``recover``)
    except Exception:
        log.exception("point-in-time base snapshot of table %s failed; the next sweep takes another", meta.name)
    with db.catalog.lock:
        live = db.catalog.get(meta.account, meta.region, meta.name)
        # another worker's change may have reloaded the table (a new object): the same table is enough
        meta = live if live is not None and live.table_id == meta.table_id else meta
        st = enabled(meta) if live is meta else None
        listed = st is not None and any(b["id"] == base["id"] for b in st["bases"])
        with db.catalog.transaction() as tx:
            if digest is None or not listed:  # failed, or the table or its PITR went meanwhile
                drop_data(tx, base["id"])
                if listed and st is not None:
                    meta.extra = {**meta.extra, "pitr": {**st, "bases": [b for b in st["bases"]
                                                                          if b["id"] != base["id"]]}}
                    db.catalog.put(tx, meta)
                return
            done = {**base, "ok": True, "rows": digest.rows, "bytes": digest.bytes, "sha256": digest.hexdigest()}
            meta.extra = {**meta.extra, "pitr": {**st, "bases": [done if b["id"] == base["id"] else b
                                                                  for b in st["bases"]]}}
            db.catalog.put(tx, meta)
        db.catalog.remember(meta)  # every worker can restore from the new base now
    log.info("point-in-time base snapshot of table %s: ready in %.2f s (%d rows, %d bytes)", meta.name,
             time.monotonic() - started, digest.rows, digest.bytes)


# -- RestoreTableToPointInTime ---------------------------------------------------------------------------------
def restore_table_to_point_in_time(db: Database, caller: Caller, p: dict) -> dict:
    by_name, by_arn = p.get("SourceTableName"), p.get("SourceTableArn")
    if (by_name is None) == (by_arn is None):
        raise validation("Invalid Request: Exactly one of SourceTableName or SourceTableArn must be specified")
    name = by_name if by_name is not None else table_name(caller, by_arn, "RestoreTableToPointInTime")
    meta = db.catalog.get(caller.account, caller.region, name)
    if meta is None:
        raise AWSError("SourceTableNotFoundException", f"Source table not found: {name}")
    st = enabled(meta)
    if st is None:
        raise AWSError("PointInTimeRecoveryUnavailableException",
                       f"Point in time recovery is not enabled for table '{name}'")
    latest, when = bool(p.get("UseLatestRestorableTime")), p.get("RestoreDateTime")
    if latest and when is not None:
        raise validation("Invalid Request: Only one of RestoreDateTime or UseLatestRestorableTime can be specified")
    if not latest and when is None:
        raise validation("Invalid Request: Either RestoreDateTime or UseLatestRestorableTime must be specified")
    now = db.clock()
    earliest, last = window(db, st, now)
    at = last if latest else epoch_seconds(when)
    if at is None:  # the shape check lets only the two forms through
        raise validation(f"Invalid RestoreDateTime: {when}")
    if not earliest <= at <= last:
        raise AWSError("InvalidRestoreTimeException", "RestoreDateTime must be between "
                       "EarliestRestorableDateTime and LatestRestorableDateTime")
    check_target_free(db, caller, p)
    bases = [b for b in st["bases"] if b.get("ok") and b["t"] <= at]
    if not bases:  # the first base snapshot is still being copied
        raise AWSError("PointInTimeRecoveryUnavailableException",
                       f"Point in time recovery is being enabled for table '{name}'. Please retry later")
    count, size = db.catalog.stats(meta.table_id)
    rec = _point_record(meta, bases[-1], count, size, until=at)
    return start_restore(db, caller, p, rec, {"SourceTableArn": meta.arn, "RestoreDateTime": at}, {"source": rec})


def _point_record(meta: TableMeta, base: dict, count: int, size: int, until: float | None) -> dict:
    """A point in time described as a backup record: the base's rows, the history after it up to ``until``
    (None: all of it), under the table's keys of now (the data keys of every epoch, wrapped by the current
    table key: a key switch re-wraps them, so bases taken before it still open)."""
    return {**records.source_record(meta, count, size), "BackupId": base["id"],
            "digest": {"rows": base["rows"], "sha256": base["sha256"]},
            "pitr": {"after": base["pos"], "until": until}}


# -- DeleteTable ------------------------------------------------------------------------------------------------
def keep_system_backup(db: Database, tx: KVTransaction, meta: TableMeta) -> None:
    """In DeleteTable's transaction: a table with PITR on leaves a SYSTEM backup of its last state.

    It costs no copy: the record takes over the newest complete base and the history after it (its rows stay
    where they are, under the table's id; DeleteBackup or the 35-day expiry drops them). Only when no base is
    complete yet (PITR enabled moments ago) are the table's rows copied here, in the same transaction."""
    st = enabled(meta)
    if st is None:
        return
    now = db.clock()
    count, size = db.catalog.stats(meta.table_id)
    bases = [b for b in st["bases"] if b.get("ok")]
    if bases:
        rec = _point_record(meta, bases[-1], count, size, until=None)
        rec["bases"] = [b["id"] for b in bases]
    else:
        backup_id = uuid.uuid4().hex

        def write(rows: list) -> None:
            for key, value in rows:
                tx.put(key, value)

        digest = copy_rows(tx, meta.id_bytes, backup_id, write)
        history.drop_all(tx, meta.id_bytes)
        rec = {**records.source_record(meta, count, size), "BackupId": backup_id,
               "digest": {"rows": digest.rows, "sha256": digest.hexdigest()}}
    rec.update({"BackupArn": records.new_arn(meta, now), "BackupName": f"{meta.name}$DeletedTableBackup",
                "BackupType": "SYSTEM", "BackupStatus": records.AVAILABLE, "BackupCreationDateTime": now,
                "BackupSizeBytes": size})
    records.save(tx, rec)
    log.info("table %s had point-in-time recovery on: SYSTEM backup %s kept", meta.name, rec["BackupArn"])


# -- the sweep and the start -----------------------------------------------------------------------------------
def sweep(db: Database) -> None:
    """Drop what the recovery periods no longer need, start the rebases that are due, expire SYSTEM backups."""
    jobs = db.backup_jobs
    if jobs is None:
        return
    now = db.clock()
    for meta in db.catalog.all():
        st = enabled(meta)
        if st is None or meta.status == "CREATING":
            continue
        with db.catalog.lock:
            _prune(db, meta, st, now - st["days"] * _day(db))
            st = enabled(meta)
            if st is None or not _rebase_due(db, st, now):
                continue
            _take_base(db, jobs, meta, now, lambda base, st=st: {**st, "bases": [*st["bases"], base]})
            log.info("point-in-time recovery of table %s: taking a new base snapshot", meta.name)
    _expire_system_backups(db, now)


def _rebase_due(db: Database, st: dict, now: float) -> bool:
    """A new base is due once the newest complete one is a recovery period old (or none is left)."""
    if not st["bases"]:
        return True
    newest = st["bases"][-1]
    return bool(newest.get("ok")) and newest["t"] <= now - st["days"] * _day(db)


def _prune(db: Database, meta: TableMeta, st: dict, horizon: float) -> None:
    """Once a complete base is older than the horizon, nothing before it can be asked for: drop the bases
    before it and the history it folds in."""
    covering = [b for b in st["bases"] if b.get("ok") and b["t"] <= horizon]
    if not covering:
        return
    keep = covering[-1]
    old = [b for b in st["bases"] if b["t"] < keep["t"]]
    if not old or any(reading(db, b["id"]) for b in old):
        return
    with db.catalog.transaction() as tx:
        for b in old:
            drop_data(tx, b["id"])
        dropped = history.drop_before(tx, meta.id_bytes, bytes.fromhex(keep["pos"])) if keep["pos"] else 0
        meta.extra = {**meta.extra, "pitr": {**st, "bases": [b for b in st["bases"] if b not in old]}}
        db.catalog.put(tx, meta)
    db.catalog.remember(meta)
    log.info("point-in-time recovery of table %s: %d base snapshot(s) and %d history rows past the recovery "
             "period dropped", meta.name, len(old), dropped)


def _expire_system_backups(db: Database, now: float) -> None:
    horizon = now - SYSTEM_BACKUP_DAYS * _day(db)
    for rec in records.every(db.items.kv):
        if rec.get("BackupType") != "SYSTEM" or rec["BackupCreationDateTime"] > horizon:
            continue
        if restoring_from(db, rec["BackupArn"]) or any(reading(db, b) for b in rec.get("bases") or [rec.get("BackupId")]):
            continue
        with db.catalog.transaction() as tx:
            records.remove(tx, rec)
            drop_backup_data(tx, rec)
        log.info("SYSTEM backup %s expired after %d days: deleted", rec["BackupArn"], SYSTEM_BACKUP_DAYS)


def drop_backup_data(tx: KVTransaction, rec: dict) -> None:
    """Every row a backup record owns: its copied rows, and for a SYSTEM backup of a PITR table its other
    bases and the table's history."""
    for backup_id in {rec.get("BackupId"), *(rec.get("bases") or ())} - {None}:
        drop_data(tx, backup_id)
    if rec.get("pitr"):
        history.drop_all(tx, uuid.UUID(rec["TableId"]).bytes)


def recover(db: Database) -> None:
    """At start: a base whose copy died with the process is dropped; the sweep then takes a new one (so the
    earliest restorable time of a table whose first base died moves to that new base)."""
    for meta in db.catalog.all():
        if _drop_dead_bases(db, meta, lambda b: True):
            log.warning("point-in-time recovery of table %s: a base snapshot was being copied when the server "
                        "stopped; it is taken again", meta.name)
    sweep(db)


def resume_abandoned(db: Database) -> None:
    """With several workers (a store-wide periodic job): a base whose copying worker died — its lease expired
    — is dropped and a new one taken from the live table, here and now."""
    if db.leases is None or db.backup_jobs is None:
        return
    now = db.clock()
    for meta in db.catalog.all():
        if meta.status == "CREATING" or not _drop_dead_bases(db, meta, lambda b: not db.leases.taken(_lease(b))):
            continue
        log.warning("point-in-time recovery of table %s: the worker copying a base snapshot died; it is taken "
                    "again", meta.name)
        with db.catalog.lock:
            st = enabled(meta)
            if st is not None and db.catalog.get(meta.account, meta.region, meta.name) is meta and \
                    all(b.get("ok") for b in st["bases"]):
                _take_base(db, db.backup_jobs, meta, now, lambda base, st=st: {**st, "bases": [*st["bases"], base]})


def _drop_dead_bases(db: Database, meta: TableMeta, dead: Callable[[dict], bool]) -> bool:
    """Drop the incomplete bases ``dead`` names (their copy ended with its process); -> whether any went."""
    st = enabled(meta)
    if st is None or all(b.get("ok") or not dead(b) for b in st["bases"]):
        return False
    with db.catalog.lock:
        live = db.catalog.get(meta.account, meta.region, meta.name)
        st = enabled(live) if live is meta else None
        gone = [b for b in st["bases"] if not b.get("ok") and dead(b)] if st is not None else []
        if not gone:
            return False
        with db.catalog.transaction() as tx:
            for b in gone:
                drop_data(tx, b["id"])
            kept = [b for b in st["bases"] if b not in gone]
            meta.extra = {**meta.extra, "pitr": {**st, "bases": kept, "since": kept[0]["t"] if kept else db.clock()}}
            db.catalog.put(tx, meta)
        db.catalog.remember(meta)
    return True


HANDLERS = {
    "UpdateContinuousBackups": update_continuous_backups,
    "DescribeContinuousBackups": describe_continuous_backups,
    "RestoreTableToPointInTime": restore_table_to_point_in_time,
}
