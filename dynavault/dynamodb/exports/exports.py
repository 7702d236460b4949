"""ExportTableToPointInTime, DescribeExport, ListExports: a table at a point in time (or its changes over a
period) written to a local bucket in AWS's export layout.

What an export reads is the PITR history (``backups/pitr.py``): a full export at time T is the newest base
snapshot at or before T with the history after it replayed up to T (``restore.source_items``, as a
point-in-time restore reads it); an incremental export replays the history rows of its period and writes each
changed item once, with its image before the period (OldImage) and after it (NewImage). The table's key is
unwrapped for the caller when the request is taken (a key error is the request's error), then the files are
written on the backup worker thread, so the request answers IN_PROGRESS at once and DescribeExport shows
COMPLETED (or FAILED with a FailureCode) later. The export marks its base snapshot busy, so PITR pruning
keeps it until the export is done.

Layout (AWS's documented export output), under ``<bucket>/<S3Prefix>/AWSDynamoDB/<export id>/``:
``_started``, ``manifest-summary.json`` (+ ``.checksum``), ``manifest-files.json`` (+ ``.checksum``), and the
data files ``data/<random>.json.gz`` (``.ion.gz`` for ION): one ``{"Item": ...}`` line per item. Incremental
exports keep their data files in the prefix's shared ``AWSDynamoDB/data/`` folder, as AWS does.

With several worker processes, the export runs on the worker thread of the process that took the request;
its description lives in the store, so any process answers DescribeExport. An export whose process died is
marked FAILED, and its partial data files removed, by another worker once the dead one's lease expires
(``fail_abandoned``), or at the next start (``recover``).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import orjson

from dynavault.errors import AWSError, IntegrityError, validation
from dynavault.sse.key_port import KeyPortError

from ..backups import history
from ..backups import records as backup_records
from ..backups.history import enabled
from ..backups.pitr import window
from ..backups.restore import source_items
from ..keys import key_of_item
from ..layout import EXPORT_PREFIX
from ..tables import table_name
from ..values import item_size
from . import formats, records
from .buckets import BucketError, check_prefix
from .sealing import AES256, KMS, seal
from .service import Transfers, iso, kms_failure, md5_b64, md5_hex, timestamp

if TYPE_CHECKING:
    from dynavault.caller import Caller
    from dynavault.sse.crypto import TableCrypto

    from ..catalog import TableMeta

log = logging.getLogger("dynavault.dynamodb.exports")

#: items per data file (AWS writes one or more files per partition; a file per this many items here)
ITEMS_PER_FILE = 10_000
#: how long a ClientToken is remembered (DynamoDB: 8 hours)
TOKEN_SECONDS = 8 * 3600
#: the period of an incremental export, in days of the PITR clock (DynamoDB: 15 minutes to 24 hours)
MIN_PERIOD_DAYS = 15 / (24 * 60)
MAX_PERIOD_DAYS = 1.0
#: a data file's name in its export's data folder (see ``_random_name``)
_DATA_NAME = re.compile(r"[a-z2-7]{26}\.(json|ion)\.gz")
_COMPARED = ("TableArn", "ExportTime", "S3Bucket", "S3BucketOwner", "S3Prefix", "S3SseAlgorithm",
             "S3SseKmsKeyId", "ExportFormat", "ExportType", "IncrementalExportSpecification")


def _day(t: Transfers) -> float:
    return float(t.db.settings.pitr_day_seconds)


def _not_found(arn: str) -> AWSError:
    return AWSError("ExportNotFoundException", f"Export not found: {arn}")


def describe(rec: dict) -> dict:
    out = {k: rec[k] for k in ("ExportArn", "ExportStatus", "StartTime", "TableArn", "TableId", "ClientToken",
                               "S3Bucket", "S3Prefix", "S3SseAlgorithm", "ExportFormat", "ExportType",
                               "S3BucketOwner", "S3SseKmsKeyId", "EndTime", "ExportManifest", "FailureCode",
                               "FailureMessage", "ItemCount", "BilledSizeBytes", "ExportTime",
                               "IncrementalExportSpecification") if rec.get(k) is not None}
    return out


# -- ExportTableToPointInTime ----------------------------------------------------------------------------------
def export_table_to_point_in_time(t: Transfers, caller: Caller, p: dict) -> dict:
    db = t.db
    arn = p["TableArn"]
    name = table_name(caller, arn, "ExportTableToPointInTime")
    export_type = p.get("ExportType") or "FULL_EXPORT"
    fmt = p.get("ExportFormat") or "DYNAMODB_JSON"
    sse_alg = p.get("S3SseAlgorithm") or AES256
    if sse_alg == KMS and not p.get("S3SseKmsKeyId"):
        raise validation("S3SseKmsKeyId is required when S3SseAlgorithm is KMS (this server has no aws/s3 key)")
    try:
        prefix = check_prefix(p.get("S3Prefix"))
    except BucketError:
        raise validation(f"Invalid S3Prefix: {p.get('S3Prefix')}") from None
    token = p.get("ClientToken")
    now = db.clock()
    if token:
        for old in records.of_account(db.items.kv, EXPORT_PREFIX, caller.account, caller.region):
            if old.get("ClientToken") == token and old["StartTime"] > now - TOKEN_SECONDS:
                if old.get("request") != _request(p):
                    raise AWSError("ExportConflictException", "There was a conflict when writing to the specified "
                                   "S3 bucket: ClientToken was used with different parameters")
                return {"ExportDescription": describe(old)}
    meta = db.catalog.get(caller.account, caller.region, name)
    if meta is None or meta.status == "CREATING":
        raise AWSError("TableNotFoundException", f"Table not found: {name}")
    st = enabled(meta)
    if st is None:
        raise AWSError("PointInTimeRecoveryUnavailableException",
                       f"Point in time recovery is not enabled for table '{name}'")
    earliest, latest = window(db, st, now)
    spec = None
    if export_type == "INCREMENTAL_EXPORT":
        if p.get("ExportTime") is not None:
            raise validation("ExportTime cannot be specified for an incremental export; use "
                             "IncrementalExportSpecification")
        inc = p.get("IncrementalExportSpecification") or {}
        if inc.get("ExportFromTime") is None:
            raise validation("IncrementalExportSpecification.ExportFromTime is required for an incremental export")
        start = timestamp(inc["ExportFromTime"], "ExportFromTime")
        end = timestamp(inc["ExportToTime"], "ExportToTime") if inc.get("ExportToTime") is not None else latest
        if not earliest <= start < end <= latest:
            raise AWSError("InvalidExportTimeException", "ExportFromTime and ExportToTime must lie between the "
                           "table's EarliestRestorableDateTime and LatestRestorableDateTime, ExportFromTime first")
        span = (end - start) / _day(t)
        if span < MIN_PERIOD_DAYS - 1e-9 or span > MAX_PERIOD_DAYS + 1e-9:
            raise validation("The incremental export period must be at least 15 minutes and at most 24 hours")
        spec = {"ExportFromTime": start, "ExportToTime": end,
                "ExportViewType": inc.get("ExportViewType") or "NEW_AND_OLD_IMAGES"}
        at = start
    else:
        at = timestamp(p["ExportTime"], "ExportTime") if p.get("ExportTime") is not None else latest
        if not earliest <= at <= latest:
            raise AWSError("InvalidExportTimeException", "ExportTime must be between the table's "
                           "EarliestRestorableDateTime and LatestRestorableDateTime")
    bases = [b for b in st["bases"] if b.get("ok") and b["t"] <= at]
    if not bases:
        raise AWSError("PointInTimeRecoveryUnavailableException",
                       f"Point in time recovery is being enabled for table '{name}'. Please retry later")
    jobs = db.backup_jobs
    if jobs is None:
        raise AWSError("InternalServerError", "Internal server error", 500)
    crypto = db.crypto(caller, meta)  # the caller's key error, if any, before anything is written
    export_arn = f"{meta.arn}/export/{int(now * 1000):014d}-{secrets.token_hex(4)}"
    rec = {"ExportArn": export_arn, "ExportStatus": "IN_PROGRESS", "StartTime": now, "TableArn": meta.arn,
           "TableId": meta.table_id, "ClientToken": token, "S3Bucket": p["S3Bucket"],
           "S3BucketOwner": p.get("S3BucketOwner"), "S3Prefix": prefix or None, "S3SseAlgorithm": sse_alg,
           "S3SseKmsKeyId": p.get("S3SseKmsKeyId"), "ExportFormat": fmt, "ExportType": export_type,
           "IncrementalExportSpecification": spec, "ExportTime": None if spec else at,
           "request": _request(p), "BilledSizeBytes": 0, "ItemCount": 0}
    count, size = db.catalog.stats(meta.table_id)
    base = bases[-1]
    source = {**backup_records.source_record(meta, count, size), "BackupId": base["id"],
              "pitr": {"after": base["pos"], "until": at}}
    t.hold(_lease(export_arn))  # before the row: no worker takes the new export for an abandoned one
    busy = records.save_new(db.items.kv, EXPORT_PREFIX, export_arn, rec, caller.account, caller.region,
                            lambda other: _same_place(other, rec))
    if busy is not None:
        t.let_go(_lease(export_arn))
        raise AWSError("ExportConflictException", "There was a conflict when writing to the specified S3 bucket: "
                       f"export {busy['ExportArn']} of this table to the same S3 bucket and prefix is in progress")
    answer = {"ExportDescription": describe(rec)}  # before the job, which updates ``rec`` as it goes
    jobs.submit(lambda: _run(t, caller, meta, rec, source, crypto), uses=base["id"])
    log.info("export %s of table %s: started (%s, %s)", export_arn, name, export_type, fmt)
    return answer


def _same_place(other: dict, rec: dict) -> bool:
    """Another export of the same table to the same bucket and prefix still running: the two would write into
    one AWSDynamoDB/ folder at once (DynamoDB refuses the second with ExportConflictException)."""
    return other["ExportStatus"] == "IN_PROGRESS" and other["TableArn"] == rec["TableArn"] and \
        other["S3Bucket"] == rec["S3Bucket"] and (other.get("S3Prefix") or "") == (rec.get("S3Prefix") or "")


def _request(p: dict) -> dict:
    """The parameters a reused ClientToken must repeat, as the store row keeps them (JSON's types)."""
    return orjson.loads(orjson.dumps({k: p[k] for k in _COMPARED if p.get(k) is not None}, default=str))


# -- the worker's part -----------------------------------------------------------------------------------------
def _lease(export_arn: str) -> str:
    return f"export:{export_arn}"


def _run(t: Transfers, caller: Caller, meta: TableMeta, rec: dict, source: dict, crypto: TableCrypto) -> None:
    try:
        _export(t, caller, meta, rec, source, crypto)
    finally:
        t.let_go(_lease(rec["ExportArn"]))


def _export(t: Transfers, caller: Caller, meta: TableMeta, rec: dict, source: dict, crypto: TableCrypto) -> None:
    started = time.monotonic()
    db = t.db
    try:
        t.buckets.bucket_path(rec["S3Bucket"])
    except BucketError:
        _fail(t, rec, "S3NoSuchBucket", "The specified bucket does not exist")
        return
    try:
        if rec["ExportType"] == "INCREMENTAL_EXPORT":
            lines = _incremental_lines(db, meta, source, crypto, rec["IncrementalExportSpecification"])
        else:
            lines = ({"Item": item} for item in source_items(db, source, crypto))
        _write(t, caller, rec, lines)
    except (KeyPortError, AWSError) as err:
        _fail(t, rec, *kms_failure(err))
        return
    except IntegrityError as err:
        log.error("export %s: the table's history or base failed its integrity check: %s", rec["ExportArn"], err)
        _fail(t, rec, "UNKNOWN", "Internal error")
        return
    except BucketError as err:
        _fail(t, rec, "S3AccessDenied", str(err))
        return
    except _Dropped:
        log.warning("export %s: stopped, its description was removed or failed meanwhile", rec["ExportArn"])
        return
    log.info("export %s: COMPLETED, %d items in %.2f s", rec["ExportArn"], rec["ItemCount"],
             time.monotonic() - started)


class _Dropped(Exception):
    """The export's row is no longer IN_PROGRESS (a reset removed it, another worker failed it): stop."""


def _paths(rec: dict) -> tuple[str, str, str]:
    """(the prefix's AWSDynamoDB folder, the export's folder, where its data files go)."""
    prefix = (rec.get("S3Prefix") or "").rstrip("/")
    root = f"{prefix}/AWSDynamoDB" if prefix else "AWSDynamoDB"
    base = f"{root}/{rec['ExportArn'].rsplit('/', 1)[1]}"
    return root, base, (f"{root}/data" if rec["ExportType"] == "INCREMENTAL_EXPORT" else f"{base}/data")


def _fail(t: Transfers, rec: dict, code: str, message: str) -> None:
    rec.update(ExportStatus="FAILED", FailureCode=code, FailureMessage=message, EndTime=t.db.clock())
    if records.advance(t.db.items.kv, EXPORT_PREFIX, rec["ExportArn"], rec, "ExportStatus"):
        log.warning("export %s: FAILED (%s)", rec["ExportArn"], code)
        _remove_partial(t, rec)


def _remove_partial(t: Transfers, rec: dict) -> None:
    """A failed export leaves no data files and no file manifest (nothing a reader could take for an export's
    items); ``_started``, the first object every export writes, stays, as an object S3 already holds.

    This differs from AWS on purpose: AWS documents that "DynamoDB never deletes any of the objects it creates in
    your S3 bucket during an export" (developer guide, S3DataExport_Requesting), so a failed AWS export leaves
    ``_started`` and whatever data files it had written, without a ``manifest-summary.json``. Here the bucket is
    a local directory a test suite reuses, and a half-written data file only costs space and confuses a reader
    globbing ``data/``; in both, only a ``manifest-summary.json`` marks a complete export."""
    _, base, data_dir = _paths(rec)
    # only names this export could have written: a description altered on disk must not delete other objects
    files = [f for f in rec.get("files", ()) if _DATA_NAME.fullmatch(f.removeprefix(data_dir + "/"))]
    for key in [*files, f"{base}/manifest-files.json", f"{base}/manifest-files.checksum"]:
        try:
            t.buckets.delete(rec["S3Bucket"], key)
        except (BucketError, OSError) as err:
            log.warning("export %s: a partial file was not removed: %s", rec["ExportArn"], err)


def _incremental_lines(db, meta: TableMeta, source: dict, crypto: TableCrypto, spec: dict) -> Iterator[dict]:
    """Each item changed in [from, to): its keys, image after the period and (NEW_AND_OLD_IMAGES) before it,
    and the time of its last write in the period."""
    start, end = spec["ExportFromTime"], spec["ExportToTime"]
    pitr = source["pitr"]
    after = bytes.fromhex(pitr["after"]) if pitr.get("after") else None
    start_us = history.micros(start)
    changed: dict[tuple[bytes, bytes], tuple[dict | None, int]] = {}
    # ExportToTime is exclusive: the history up to one microsecond before it
    for pos, body in history.replay(db.items.kv, meta.id_bytes, crypto, after, end - 1e-6):
        t_us = int.from_bytes(pos[:8], "big")  # a position starts with its microseconds
        if t_us < start_us:
            continue
        new = body.get("n")
        hkey, skey, key = key_of_item(meta, new if new is not None else body["k"])
        changed[(hkey, skey)] = (new, t_us, key)
    if not changed:
        return
    old: dict = {}
    if spec["ExportViewType"] == "NEW_AND_OLD_IMAGES":
        before = {**source, "pitr": {**pitr, "until": start - 1e-6}}
        for item in source_items(db, before, crypto):
            hkey, skey, _ = key_of_item(meta, item)
            if (hkey, skey) in changed:
                old[(hkey, skey)] = item
    for k in sorted(changed):
        new, t_us, key = changed[k]
        line: dict = {"Metadata": {"WriteTimestampMicros": {"N": str(t_us)}}, "Keys": key}
        if new is not None:
            line["NewImage"] = new
        if k in old:
            line["OldImage"] = old[k]
        yield line


def _write(t: Transfers, caller: Caller, rec: dict, lines: Iterator[dict]) -> None:
    db = t.db
    bucket = rec["S3Bucket"]
    _, base, data_dir = _paths(rec)
    incremental = rec["ExportType"] == "INCREMENTAL_EXPORT"
    ion = rec["ExportFormat"] == "ION"
    keys = t.object_keys(caller) if rec["S3SseAlgorithm"] in (AES256, KMS) else None
    t.buckets.put(bucket, f"{base}/_started", b"")

    def put_data(key: str, plain: bytes) -> None:
        stored = seal(keys, rec["S3SseAlgorithm"], rec.get("S3SseKmsKeyId"), bucket, key, plain) if keys else plain
        t.buckets.put(bucket, key, stored)

    files: list[dict] = []
    total = billed = 0
    chunk: list[bytes] = []

    def flush() -> None:
        body = (formats.ION_VERSION if ion else b"") + b"".join(chunk)
        gz = formats.compress_gzip(body)
        name = f"{data_dir}/{_random_name()}.{'ion' if ion else 'json'}.gz"
        # named in the row before it is written: whoever fails the export removes every file it wrote
        rec["files"] = [*rec.get("files", ()), name]
        if not records.advance(db.items.kv, EXPORT_PREFIX, rec["ExportArn"], rec, "ExportStatus"):
            raise _Dropped()
        put_data(name, gz)
        files.append({"itemCount": len(chunk), "md5Checksum": md5_b64(gz), "etag": md5_hex(gz),
                      "dataFileS3Key": name})
        chunk.clear()

    check = db.backup_jobs.check if db.backup_jobs is not None else (lambda: None)
    for line in lines:
        chunk.append(formats.ion_line(line) if ion else formats.json_line(line))
        total += 1
        billed += item_size(line.get("Item") or line.get("NewImage") or line.get("Keys") or {})
        if len(chunk) >= ITEMS_PER_FILE:
            check()
            flush()
    if chunk or not files:
        flush()  # an empty table still gets one (empty) data file, as AWS writes for an empty partition
    files_body = b"".join(formats.json_line(f) for f in files)
    t.buckets.put(bucket, f"{base}/manifest-files.json", files_body)
    t.buckets.put(bucket, f"{base}/manifest-files.checksum", md5_hex(files_body).encode())
    end = db.clock()
    summary = {"version": "2023-08-01" if incremental else "2020-06-30", "exportArn": rec["ExportArn"],
               "startTime": iso(rec["StartTime"]), "endTime": iso(end), "tableArn": rec["TableArn"],
               "tableId": rec["TableId"]}
    if incremental:
        spec = rec["IncrementalExportSpecification"]
        summary.update(exportFromTime=iso(spec["ExportFromTime"]), exportToTime=iso(spec["ExportToTime"]))
    else:
        summary["exportTime"] = iso(rec["ExportTime"])
    summary.update(s3Bucket=bucket, s3Prefix=rec.get("S3Prefix"), s3SseAlgorithm=rec["S3SseAlgorithm"],
                   s3SseKmsKeyId=rec.get("S3SseKmsKeyId"), manifestFilesS3Key=f"{base}/manifest-files.json",
                   billedSizeBytes=billed, itemCount=total, outputFormat=rec["ExportFormat"])
    if incremental:
        summary.update(outputView=rec["IncrementalExportSpecification"]["ExportViewType"],
                       exportType="INCREMENTAL_EXPORT")
    summary_body = formats.json_line(summary)
    t.buckets.put(bucket, f"{base}/manifest-summary.json", summary_body)
    t.buckets.put(bucket, f"{base}/manifest-summary.checksum", md5_hex(summary_body).encode())
    rec.update(ExportStatus="COMPLETED", EndTime=end, ItemCount=total, BilledSizeBytes=billed,
               ExportManifest=f"{base}/manifest-summary.json")
    records.advance(db.items.kv, EXPORT_PREFIX, rec["ExportArn"], rec, "ExportStatus")


def _random_name() -> str:
    # AWS's data file names are 26 lowercase base32 characters
    return "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(26))


# -- DescribeExport, ListExports -------------------------------------------------------------------------------
def describe_export(t: Transfers, caller: Caller, p: dict) -> dict:
    rec = records.named(t.db.items.kv, EXPORT_PREFIX, p["ExportArn"], caller.account, caller.region)
    if rec is None:
        raise _not_found(str(p["ExportArn"]))
    return {"ExportDescription": describe(rec)}


def list_exports(t: Transfers, caller: Caller, p: dict) -> dict:
    found = records.of_account(t.db.items.kv, EXPORT_PREFIX, caller.account, caller.region)
    table_arn = p.get("TableArn")
    if table_arn:
        found = [r for r in found if r["TableArn"] == table_arn]
    found.sort(key=lambda r: (r["StartTime"], r["ExportArn"]))
    limit = int(p.get("MaxResults") or 25)
    found = records.after(EXPORT_PREFIX, found, p.get("NextToken"))
    page = found[:limit]
    out: dict = {"ExportSummaries": [{"ExportArn": r["ExportArn"], "ExportStatus": r["ExportStatus"],
                                      "ExportType": r.get("ExportType", "FULL_EXPORT")} for r in page]}
    if len(found) > limit:
        out["NextToken"] = page[-1]["ExportArn"]  # the last ARN shown: where the next page starts
    return out


def recover(t: Transfers) -> None:
    """At start: an export still IN_PROGRESS died with its process; it is FAILED (run it again)."""
    for rec in records.every(t.db.items.kv, EXPORT_PREFIX):
        if rec["ExportStatus"] == "IN_PROGRESS":
            _fail(t, rec, "UNKNOWN", "The export was interrupted by a server restart; request it again")


def fail_abandoned(t: Transfers) -> None:
    """With several workers (a store-wide periodic job): an export whose process died — its lease expired — is
    FAILED now and its partial data files removed (request it again)."""
    if t.db.leases is None:
        return
    for rec in records.every(t.db.items.kv, EXPORT_PREFIX):
        if rec["ExportStatus"] == "IN_PROGRESS" and t.abandoned(_lease(rec["ExportArn"])):
            _fail(t, rec, "UNKNOWN", "The export was interrupted: the server process running it stopped; "
                                     "request it again")


def handlers(t: Transfers) -> dict:
    return {
        "ExportTableToPointInTime": lambda caller, p: export_table_to_point_in_time(t, caller, p),
        "DescribeExport": lambda caller, p: describe_export(t, caller, p),
        "ListExports": lambda caller, p: list_exports(t, caller, p),
    }

