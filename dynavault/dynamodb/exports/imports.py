"""ImportTable, DescribeImport, ListImports: a new table filled from objects in a local bucket.

The table is created (CREATING) when the request is taken, with CreateTable's own validation and key
resolution, and filled on the backup worker thread from every object under ``S3KeyPrefix``, through the
item-change path (indexes, counts and subscribers as for any write), ``BATCH`` items per store transaction.
Then it is ACTIVE and the import COMPLETED; an import that cannot go on (no such bucket, an object that fails
its integrity check, a key refused) is FAILED and its table removed, as DynamoDB removes it.

Objects an export of this server wrote are envelopes (``sealing.py``): they are opened through the key
service (the importing principal's KMS key, or the server's key for AES256) and must sit where they were
sealed; a changed byte refuses the import. Other objects are read as the user's plain files. Each line that
is not an item for the table (bad syntax, a wrong key, too large) is skipped and counted in ErrorCount; AWS
writes each to CloudWatch Logs (``/aws-dynamodb/imports``): here each goes to the server log as object key,
line number and reason, never the line itself (logs hold no user data). The manifest and checksum files of an
export folder (``manifest-*.json``, ``*.checksum``, ``_started``) are not data and are skipped, so a prefix
naming a whole export folder imports its items.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import orjson

from dynavault.errors import AWSError, IntegrityError, validation
from dynavault.sse.key_port import KeyPortError

from ..item_store import ItemChange
from ..keys import key_of_item
from ..layout import IMPORT_PREFIX
from ..tables import create_table
from ..values import canonical_item, validate_item
from . import formats, records
from .buckets import BucketError, check_prefix
from .sealing import check_place, is_sealed, open_sealed
from .service import Transfers, kms_failure

if TYPE_CHECKING:
    from dynavault.caller import Caller
    from dynavault.sse.crypto import TableCrypto

    from ..catalog import TableMeta

log = logging.getLogger("dynavault.dynamodb.imports")

BATCH = 500
TOKEN_SECONDS = 8 * 3600
_NOT_DATA = ("manifest-summary.json", "manifest-files.json", "_started")
_COMPARED = ("S3BucketSource", "InputFormat", "InputFormatOptions", "InputCompressionType",
             "TableCreationParameters")
_SHOWN = ("ImportArn", "ImportStatus", "TableArn", "TableId", "ClientToken", "S3BucketSource", "ErrorCount",
          "CloudWatchLogGroupArn", "InputFormat", "InputFormatOptions", "InputCompressionType",
          "TableCreationParameters", "StartTime", "EndTime", "ProcessedSizeBytes", "ProcessedItemCount",
          "ImportedItemCount", "FailureCode", "FailureMessage")


class ImportFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _not_found(arn: str) -> AWSError:
    return AWSError("ImportNotFoundException", f"Import not found: {arn}")


def describe(rec: dict) -> dict:
    return {k: rec[k] for k in _SHOWN if rec.get(k) is not None}


def _request(p: dict) -> dict:
    """The parameters a reused ClientToken must repeat, as the store row keeps them (JSON's types)."""
    return orjson.loads(orjson.dumps({k: p[k] for k in _COMPARED if p.get(k) is not None}, default=str))


# -- ImportTable -----------------------------------------------------------------------------------------------
def import_table(t: Transfers, caller: Caller, p: dict) -> dict:
    db = t.db
    source = p["S3BucketSource"]
    fmt = p["InputFormat"]
    params = dict(p["TableCreationParameters"])
    name = params["TableName"]
    try:
        check_prefix(source.get("S3KeyPrefix"))
    except BucketError:
        raise validation(f"Invalid S3KeyPrefix: {source.get('S3KeyPrefix')}") from None
    options = p.get("InputFormatOptions") or {}
    if options and fmt != "CSV":
        raise validation("InputFormatOptions is only valid with InputFormat CSV")
    delimiter = ((options.get("Csv") or {}).get("Delimiter")) or ","
    if fmt == "CSV" and delimiter not in (",", "\t", ":", ";", "|", " "):
        raise validation(f"Invalid CSV delimiter: {delimiter!r}")
    token = p.get("ClientToken")
    now = db.clock()
    if token:
        for old in records.of_account(db.items.kv, IMPORT_PREFIX, caller.account, caller.region):
            if old.get("ClientToken") == token and old["StartTime"] > now - TOKEN_SECONDS:
                if old.get("request") != _request(p):
                    raise AWSError("ImportConflictException", "There was a conflict when importing from the "
                                   "specified S3 source: ClientToken was used with different parameters")
                return {"ImportTableDescription": describe(old)}
    if db.catalog.get(caller.account, caller.region, name) is not None:
        raise AWSError("ResourceInUseException", f"Table already exists: {name}")
    jobs = db.backup_jobs
    if jobs is None:
        raise AWSError("InternalServerError", "Internal server error", 500)
    table_arn = f"arn:aws:dynamodb:{caller.region}:{caller.account}:table/{name}"
    arn = f"{table_arn}/import/{int(now * 1000):014d}-{secrets.token_hex(4)}"
    create_table(db, caller, params, status="CREATING", extra={"import": {"ImportArn": arn}})
    meta = db.catalog.get(caller.account, caller.region, name)
    assert meta is not None
    rec = {"ImportArn": arn, "ImportStatus": "IN_PROGRESS", "TableArn": meta.arn, "TableId": meta.table_id,
           "ClientToken": token, "S3BucketSource": source, "ErrorCount": 0,
           "CloudWatchLogGroupArn": f"arn:aws:logs:{caller.region}:{caller.account}:log-group:/aws-dynamodb/imports:*",
           "InputFormat": fmt, "InputFormatOptions": options or None,
           "InputCompressionType": p.get("InputCompressionType") or "NONE",
           "TableCreationParameters": p["TableCreationParameters"], "StartTime": now, "ProcessedSizeBytes": 0,
           "ProcessedItemCount": 0, "ImportedItemCount": 0, "request": _request(p)}
    try:
        crypto = db.crypto(caller, meta)
    except BaseException:
        t.db.discard_table(meta)
        raise
    t.hold(_lease(arn))  # before the row: no worker takes the new import for an abandoned one
    records.save(db.items.kv, IMPORT_PREFIX, arn, rec)
    answer = {"ImportTableDescription": describe(rec)}  # before the job, which updates ``rec`` as it goes
    jobs.submit(lambda: _run(t, caller, meta, crypto, rec), uses=arn, fills=meta.table_id)
    log.info("import %s into table %s: started (%s, %s)", arn, name, fmt, rec["InputCompressionType"])
    return answer


# -- the worker's part -----------------------------------------------------------------------------------------
def _lease(import_arn: str) -> str:
    return f"import:{import_arn}"


def _run(t: Transfers, caller: Caller, meta: TableMeta, crypto: TableCrypto, rec: dict) -> None:
    try:
        _import(t, caller, meta, crypto, rec)
    finally:
        t.let_go(_lease(rec["ImportArn"]))


def _import(t: Transfers, caller: Caller, meta: TableMeta, crypto: TableCrypto, rec: dict) -> None:
    db = t.db
    started = time.monotonic()
    try:
        _fill(t, caller, meta, crypto, rec)
    except ImportFailed as err:
        _fail(t, meta, rec, err.code, err.message)
        return
    except (KeyPortError, AWSError) as err:
        _fail(t, meta, rec, *kms_failure(err))
        return
    except IntegrityError as err:
        log.error("import %s: %s", rec["ImportArn"], err)
        _fail(t, meta, rec, "InvalidEncryptedObject", f"An exported object failed its integrity check: {err}")
        return
    with db.catalog.lock:
        if db.catalog.get(meta.account, meta.region, meta.name) is not meta:
            _fail(t, None, rec, "TableDeleted", "The table was deleted during the import")
            return
        meta.extra = {k: v for k, v in meta.extra.items() if k != "import"}
        meta.status = "ACTIVE"
        db.catalog.save(meta)
    rec.update(ImportStatus="COMPLETED", EndTime=db.clock())
    records.advance(db.items.kv, IMPORT_PREFIX, rec["ImportArn"], rec, "ImportStatus")
    log.info("import %s: COMPLETED, %d items imported, %d errors, in %.2f s", rec["ImportArn"],
             rec["ImportedItemCount"], rec["ErrorCount"], time.monotonic() - started)


def _fail(t: Transfers, meta: TableMeta | None, rec: dict, code: str, message: str) -> None:
    if meta is not None:
        t.db.discard_table(meta)
    rec.update(ImportStatus="FAILED", FailureCode=code, FailureMessage=message, EndTime=t.db.clock())
    records.advance(t.db.items.kv, IMPORT_PREFIX, rec["ImportArn"], rec, "ImportStatus")
    log.warning("import %s: FAILED (%s); its table was removed", rec["ImportArn"], code)


def _objects(t: Transfers, rec: dict) -> Iterator[str]:
    source = rec["S3BucketSource"]
    try:
        keys = list(t.buckets.list(source["S3Bucket"], source.get("S3KeyPrefix") or ""))
    except BucketError:
        raise ImportFailed("S3NoSuchBucket", "The specified bucket does not exist") from None
    for key in keys:
        leaf = key.rsplit("/", 1)[-1]
        if leaf in _NOT_DATA or leaf.endswith(".checksum"):
            continue
        yield key


def _fill(t: Transfers, caller: Caller, meta: TableMeta, crypto: TableCrypto, rec: dict) -> None:
    keys = None
    bucket = rec["S3BucketSource"]["S3Bucket"]
    key_types = {d["AttributeName"]: d["AttributeType"] for d in meta.attribute_definitions}
    csv_opts = (rec.get("InputFormatOptions") or {}).get("Csv") or {}
    found = False
    batch: list[dict] = []
    for key in _objects(t, rec):
        found = True
        try:
            data = t.buckets.get(bucket, key, limit=formats.MAX_OBJECT_BYTES)
        except BucketError as err:
            _bad(rec, key, 0, str(err))
            continue
        rec["ProcessedSizeBytes"] += len(data)
        if is_sealed(data):
            if keys is None:
                keys = t.object_keys(caller)
            check_place(data, bucket, key)
            data = open_sealed(keys, data)
        try:
            text = formats.decompress(data, rec["InputCompressionType"])
        except formats.LineError as err:
            _bad(rec, key, 0, str(err))
            continue
        for n, entry in enumerate(_entries(text, rec["InputFormat"], csv_opts, key_types), 1):
            rec["ProcessedItemCount"] += 1
            if isinstance(entry, formats.LineError):
                _bad(rec, key, n, str(entry))
                continue
            try:
                item = _item(meta, entry, rec["InputFormat"])
            except (AWSError, formats.LineError) as err:
                _bad(rec, key, n, getattr(err, "message", None) or str(err))
                continue
            batch.append({"item": item, "key": key, "line": n})
            if len(batch) >= BATCH:
                _apply(t, meta, crypto, rec, batch)
    if not found:
        raise ImportFailed("S3NoSuchKey", "No objects were found under the given S3KeyPrefix")
    if batch:
        _apply(t, meta, crypto, rec, batch)


def _entries(data: bytes, fmt: str, csv_opts: dict, key_types: dict) -> Iterator[dict | formats.LineError]:
    if fmt == "ION":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            yield formats.LineError("not UTF-8 text")
            return
        yield from formats.ion_documents(text)
    elif fmt == "CSV":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            yield formats.LineError("not UTF-8 text")
            return
        for row in formats.csv_rows(text, csv_opts.get("Delimiter") or ",", csv_opts.get("HeaderList")):
            yield row if isinstance(row, formats.LineError) else {"Item": formats.csv_item(row, key_types)}
    else:
        for line in data.splitlines():
            if not line.strip():
                continue
            try:
                yield formats.parse_json_line(line)
            except formats.LineError as err:
                yield err


def _item(meta: TableMeta, entry: dict, fmt: str) -> dict:
    item = entry.get("Item")
    if not isinstance(item, dict) or set(entry) != {"Item"}:
        raise formats.LineError('not an {"Item": {...}} line')
    validate_item(item)
    key_of_item(meta, item)
    return canonical_item(item)


def _bad(rec: dict, key: str, line: int, reason: str) -> None:
    rec["ErrorCount"] += 1
    # the object and line, never the line's content (logs hold no user data)
    log.warning("import %s: object %s line %d skipped: %s", rec["ImportArn"], key, line, reason[:200])


def _apply(t: Transfers, meta: TableMeta, crypto: TableCrypto, rec: dict, batch: list[dict]) -> None:
    """Write a batch in one store transaction; an item the item-change path refuses (an index key of the wrong
    type, say) rolls it back, and the batch is written again one item at a time to skip just that one."""
    db = t.db
    if db.backup_jobs is not None:
        db.backup_jobs.check()
    if db.catalog.get(meta.account, meta.region, meta.name) is not meta:
        raise ImportFailed("TableDeleted", "The table was deleted during the import")
    try:
        _write(db, meta, crypto, [b["item"] for b in batch])
        rec["ImportedItemCount"] += len(batch)
    except AWSError:
        for b in batch:
            try:
                _write(db, meta, crypto, [b["item"]])
                rec["ImportedItemCount"] += 1
            except AWSError as err:
                _bad(rec, b["key"], b["line"], err.message)
    batch.clear()
    if not records.advance(db.items.kv, IMPORT_PREFIX, rec["ImportArn"], rec, "ImportStatus"):
        raise ImportFailed("UNKNOWN", "The import's description was removed or failed meanwhile")


def _write(db, meta: TableMeta, crypto: TableCrypto, items: list[dict]) -> None:
    with db.items.write() as w:
        for item in items:
            hkey, skey, _ = key_of_item(meta, item)
            place = w.place(meta, crypto, hkey, skey)
            w.apply(ItemChange(meta, place.old, item, "Import"), crypto, hkey=hkey, skey=skey, place=place)


# -- DescribeImport, ListImports -------------------------------------------------------------------------------
def describe_import(t: Transfers, caller: Caller, p: dict) -> dict:
    rec = records.named(t.db.items.kv, IMPORT_PREFIX, p["ImportArn"], caller.account, caller.region)
    if rec is None:
        raise _not_found(str(p["ImportArn"]))
    return {"ImportTableDescription": describe(rec)}


def list_imports(t: Transfers, caller: Caller, p: dict) -> dict:
    found = records.of_account(t.db.items.kv, IMPORT_PREFIX, caller.account, caller.region)
    if p.get("TableArn"):
        found = [r for r in found if r["TableArn"] == p["TableArn"]]
    found.sort(key=lambda r: (r["StartTime"], r["ImportArn"]))
    found = records.after(IMPORT_PREFIX, found, _untoken(p.get("NextToken")))
    limit = int(p.get("PageSize") or 25)
    page = found[:limit]
    out: dict = {"ImportSummaryList": [
        {k: r[k] for k in ("ImportArn", "ImportStatus", "TableArn", "S3BucketSource", "CloudWatchLogGroupArn",
                           "InputFormat", "StartTime", "EndTime") if r.get(k) is not None} for r in page]}
    if len(found) > limit:
        out["NextToken"] = _token(page[-1]["ImportArn"])
    return out


def _token(arn: str) -> str:
    """ListImports' NextToken: hex, in 16-digit groups, at least 112 digits (its shape's pattern); here the last
    ARN shown, zero-padded."""
    raw = arn.encode()
    raw += b"\x00" * (max(56, -(-len(raw) // 8) * 8) - len(raw))
    return raw.hex()


def _untoken(token: object) -> str | None:
    if not token:
        return None
    try:
        return bytes.fromhex(str(token)).rstrip(b"\x00").decode()
    except (ValueError, UnicodeDecodeError):
        raise validation("Invalid NextToken") from None


def recover(t: Transfers) -> None:
    """At start: an import still IN_PROGRESS died with its process: FAILED, its half-filled table removed."""
    _fail_dead(t, lambda rec: True, "The import was interrupted by a server restart; request it again")


def fail_abandoned(t: Transfers) -> None:
    """With several workers (a store-wide periodic job): an import whose process died — its lease expired — is
    FAILED now and its half-filled table removed (request it again)."""
    if t.db.leases is not None:
        _fail_dead(t, lambda rec: t.abandoned(_lease(rec["ImportArn"])),
                   "The import was interrupted: the server process running it stopped; request it again")


def _fail_dead(t: Transfers, dead, message: str) -> None:
    db = t.db
    for rec in records.every(db.items.kv, IMPORT_PREFIX):
        if rec["ImportStatus"] != "IN_PROGRESS" or not dead(rec):
            continue
        meta = next((m for m in db.catalog.all() if m.table_id == rec["TableId"] and m.status == "CREATING"), None)
        _fail(t, meta, rec, "UNKNOWN", message)


def handlers(t: Transfers) -> dict:
    return {
        "ImportTable": lambda caller, p: import_table(t, caller, p),
        "DescribeImport": lambda caller, p: describe_import(t, caller, p),
        "ListImports": lambda caller, p: list_imports(t, caller, p),
    }
