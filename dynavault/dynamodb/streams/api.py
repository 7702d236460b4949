"""The DynamoDB Streams API: ListStreams, DescribeStream, GetShardIterator, GetRecords.

Shard iterators are opaque: the stream ARN, a version, and a blob sealed with the table's cursor key
(``TableCrypto.seal_cursor``, bound to the ARN) holding (stream, shard, position, issue time). A forged,
altered or foreign iterator does not open (ValidationException), one older than 15 minutes is expired.
Reading records needs the table's key, so GetShardIterator and GetRecords fail like every data-plane call
while the key is unusable; ListStreams and DescribeStream show metadata only and keep working.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from typing import TYPE_CHECKING

import orjson

from dynavault.caller import Caller
from dynavault.errors import AWSError, validation

from ..sse_spec import refuse_if_inaccessible
from .control import stream_status
from .store import StreamInfo, check_run, parse_sequence_number, record_aad, sequence_number
from .writer import record_size

if TYPE_CHECKING:
    from dynavault.sse.crypto import TableCrypto

    from ..catalog import TableMeta
    from ..database import Database
    from .store import ShardInfo

_ARN_RE = re.compile(r"arn:aws:dynamodb:([a-z0-9-]{1,64}):([0-9]{12}):table/([a-zA-Z0-9_.-]{3,255})/stream/"
                     r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3})")
_ITERATOR = struct.Struct(">IIQQ")  # stream no, shard no, next sequence to read, issued (ms)
_ITERATOR_VERSION = "1"
MAX_RECORDS = 1000
MAX_BYTES = 1024 * 1024
SERVICE_IDENTITY = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}


def _not_found(arn: object) -> AWSError:
    return AWSError("ResourceNotFoundException", f"Requested resource not found: Stream: {arn} not found")


def _limit(p: dict, most: int, default: int) -> int:
    limit = p.get("Limit", default)
    if limit > most:
        raise validation(f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: "
                         f"Member must have value less than or equal to {most}")
    return limit


def _stream(db: Database, caller: Caller, arn: object) -> tuple[TableMeta, StreamInfo]:
    """The table and stream an ARN names, in the caller's account and region (else: not found)."""
    m = _ARN_RE.fullmatch(arn) if isinstance(arn, str) else None
    if m is None or m[1] != caller.region or m[2] != caller.account:
        raise _not_found(arn)
    meta = db.catalog.get(caller.account, caller.region, m[3])
    info = db.streams.stream_by_label(db.streams.kv, meta.id_bytes, m[4]) if meta is not None else None
    if meta is None or info is None or info.arn != arn:
        raise _not_found(arn)
    return meta, info


def _crypto(db: Database, caller: Caller, meta: TableMeta) -> TableCrypto:
    refuse_if_inaccessible(meta)
    return db.crypto(caller, meta)


# -- ListStreams / DescribeStream ---------------------------------------------------------------------------
def list_streams(db: Database, caller: Caller, p: dict) -> dict:
    limit = _limit(p, 100, 100)
    name = p.get("TableName")
    if name is not None:
        meta = db.catalog.get(caller.account, caller.region, name)
        if meta is None:
            raise AWSError("ResourceNotFoundException", f"Requested resource not found: Table: {name} not found")
        tables = [meta]
    else:
        tables = db.catalog.list(caller.account, caller.region)
    found = sorted((info.arn, info) for meta in tables for info in db.streams.streams(db.streams.kv, meta.id_bytes))
    start = p.get("ExclusiveStartStreamArn")
    if start is not None:
        found = [f for f in found if f[0] > start]
    out: dict = {"Streams": [{"StreamArn": info.arn, "TableName": info.table, "StreamLabel": info.label}
                             for _, info in found[:limit]]}
    if len(found) > limit:
        out["LastEvaluatedStreamArn"] = found[limit - 1][0]
    return out


def _shard_shape(shard: ShardInfo) -> dict:
    rng = {"StartingSequenceNumber": sequence_number(shard.start)}
    if shard.end is not None:
        rng["EndingSequenceNumber"] = sequence_number(shard.end)
    out: dict = {"ShardId": shard.id, "SequenceNumberRange": rng}
    if shard.parent:
        out["ParentShardId"] = shard.parent
    return out


def describe_stream(db: Database, caller: Caller, p: dict) -> dict:
    limit = _limit(p, 100, 100)
    meta, info = _stream(db, caller, p.get("StreamArn"))
    shards = db.streams.shards(db.streams.kv, meta.id_bytes, info.no)
    shard_filter = p.get("ShardFilter") or {}
    if shard_filter.get("Type") == "CHILD_SHARDS":
        shards = [s for s in shards if s.parent == shard_filter.get("ShardId")]
    start = p.get("ExclusiveStartShardId")
    if start is not None:
        shards = [s for s in shards if s.id > start]  # shard ids sort in creation order (control.new_shard_id)
    desc: dict = {
        "StreamArn": info.arn, "StreamLabel": info.label,
        "StreamStatus": stream_status(info, db.stream_limits, db.clock()),
        "StreamViewType": info.view, "CreationRequestDateTime": info.created, "TableName": info.table,
        "KeySchema": info.key_schema, "Shards": [_shard_shape(s) for s in shards[:limit]],
    }
    if len(shards) > limit:
        desc["LastEvaluatedShardId"] = shards[limit - 1].id
    return {"StreamDescription": desc}


# -- iterators ----------------------------------------------------------------------------------------------
def _iterator(crypto: TableCrypto, info: StreamInfo, shard: ShardInfo, pos: int, now: float) -> str:
    blob = crypto.seal_cursor(info.arn.encode(), _ITERATOR.pack(info.no, shard.no, pos, int(now * 1000)))
    return f"{info.arn}|{_ITERATOR_VERSION}|{base64.b64encode(blob).decode()}"


def _invalid_iterator() -> AWSError:
    return validation("Invalid ShardIterator")


def get_shard_iterator(db: Database, caller: Caller, p: dict) -> dict:
    meta, info = _stream(db, caller, p.get("StreamArn"))
    store, tid = db.streams, meta.id_bytes
    shard = next((s for s in store.shards(store.kv, tid, info.no) if s.id == p.get("ShardId")), None)
    if shard is None:
        raise AWSError("ResourceNotFoundException", "Requested resource not found: Shard does not exist")
    crypto = _crypto(db, caller, meta)
    kind, text = p.get("ShardIteratorType"), p.get("SequenceNumber")
    last = store.last_seq(store.kv, tid, shard)
    top = shard.end if shard.end is not None else last  # the newest record the shard holds
    if kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
        if text is None:
            raise validation(f"Invalid Request: SequenceNumber must be specified for ShardIteratorType {kind}")
        n = parse_sequence_number(text)
        if n is None or n < shard.start or top is None or n > top:
            raise validation(f"Invalid SequenceNumber for ShardIteratorType {kind}: {text}")
        pos = n if kind == "AT_SEQUENCE_NUMBER" else n + 1
    elif kind == "TRIM_HORIZON":
        pos = shard.start
    else:  # LATEST (the shape check admits only the four types)
        pos = shard.start if top is None else top + 1
    return {"ShardIterator": _iterator(crypto, info, shard, pos, db.clock())}


# -- GetRecords ---------------------------------------------------------------------------------------------
def _record(body: dict, info: StreamInfo, seq: int, region: str) -> dict:
    d: dict = {"ApproximateCreationDateTime": int(body["t"]), "Keys": body["k"]}
    if "n" in body:
        d["NewImage"] = body["n"]
    if "o" in body:
        d["OldImage"] = body["o"]
    d["SequenceNumber"] = sequence_number(seq)
    d["SizeBytes"] = record_size(body)
    d["StreamViewType"] = info.view
    rec = {"eventID": body["id"], "eventName": body["e"], "eventVersion": "1.1", "eventSource": "aws:dynamodb",
           "awsRegion": region, "dynamodb": d}
    if body.get("db"):
        rec["userIdentity"] = dict(SERVICE_IDENTITY)
    return rec


def get_records(db: Database, caller: Caller, p: dict) -> dict:
    text = p.get("ShardIterator")
    arn, sep, rest = text.partition("|") if isinstance(text, str) else ("", "", "")
    version, _, blob = rest.partition("|")
    if not sep or version != _ITERATOR_VERSION:
        raise _invalid_iterator()
    meta, info = _stream(db, caller, arn)
    crypto = _crypto(db, caller, meta)
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid_iterator() from None
    plain = crypto.open_cursor(arn.encode(), raw)
    if plain is None or len(plain) != _ITERATOR.size:
        raise _invalid_iterator()
    stream_no, shard_no, pos, issued_ms = _ITERATOR.unpack(plain)
    now = db.clock()
    if stream_no != info.no:
        raise _invalid_iterator()
    if now * 1000 - issued_ms > db.stream_limits.iterator_seconds * 1000:
        raise AWSError("ExpiredIteratorException", "The provided iterator exceeds the maximum age allowed.")
    limit = _limit(p, MAX_RECORDS, MAX_RECORDS)
    store, tid = db.streams, meta.id_bytes
    records: list[dict] = []
    with db.items.read() as r:
        shard = store.shard(r, tid, stream_no, shard_no)
        if shard is None:  # trimmed past retention, with all its records
            raise AWSError("TrimmedDataAccessException", "The data you are trying to access has been trimmed.")
        expected, size, full = pos, 0, False
        for seq, sealed in store.records(r, tid, shard, pos, limit):
            check_run(expected, seq)
            body = orjson.loads(crypto.stream.open(record_aad(tid, info.label, shard.id, seq), sealed))
            if records and size + record_size(body) > MAX_BYTES:
                full = True
                break
            records.append(_record(body, info, seq, meta.region))
            size += record_size(body)
            expected = seq + 1
        if shard.end is not None and not full and len(records) < limit and expected <= shard.end:
            check_run(expected, -1)  # a closed shard's tail is gone from the store
    out: dict = {"Records": records}
    if shard.end is None or expected <= shard.end:
        out["NextShardIterator"] = _iterator(crypto, info, shard, expected, now)
    return out


HANDLERS = {
    "ListStreams": list_streams,
    "DescribeStream": describe_stream,
    "GetShardIterator": get_shard_iterator,
    "GetRecords": get_records,
}
