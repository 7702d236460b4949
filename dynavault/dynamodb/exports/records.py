"""Export and import descriptions kept in the store: plaintext metadata only (ARNs, bucket, prefix, status,
counts, times), one CatalogRecord per export or import, so every worker process serving the store answers
DescribeExport / ListImports the same, and an idempotent retry (ClientToken) is found whichever process
took the first request.

Being plaintext, a row can be altered on disk; every row read is checked for the shape the code relies on and
for naming its own key (a row moved under another key, e.g. another account's, would otherwise show there), and
one that fails is logged and treated as absent: never a 500, never a server that cannot start.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import orjson

from dynavault.errors import validation
from dynavault.storage.kv.base import prefix_end
from dynavault.storage.sealed import CatalogRecord

from ..layout import EXPORT_PREFIX, IMPORT_PREFIX

if TYPE_CHECKING:
    from dynavault.storage.kv.base import KVReader, KVStore

log = logging.getLogger("dynavault.dynamodb.exports")

#: per kind of row: (the member holding its own ARN, its status member and values, members that must be strings,
#: members that must be objects)
_SHAPES: dict[bytes, tuple[str, str, frozenset[str], tuple[str, ...], tuple[str, ...]]] = {
    EXPORT_PREFIX: ("ExportArn", "ExportStatus", frozenset({"IN_PROGRESS", "COMPLETED", "FAILED"}),
                    ("TableArn", "TableId", "S3Bucket", "ExportType", "ExportFormat", "S3SseAlgorithm"), ()),
    IMPORT_PREFIX: ("ImportArn", "ImportStatus",
                    frozenset({"IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLING", "CANCELLED"}),
                    ("TableArn", "TableId", "InputFormat"), ("S3BucketSource",)),
}


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _decode(prefix: bytes, key: bytes, raw: bytes) -> dict | None:
    """The row at ``key`` as the record it must be, or None (logged) when it is not one."""
    arn_member, status, statuses, strings, objects = _SHAPES[prefix]
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError:
        rec = None
    ok = (isinstance(rec, dict) and rec.get(arn_member) == key[len(prefix):].decode(errors="replace")
          and rec.get(status) in statuses and _number(rec.get("StartTime"))
          and all(isinstance(rec.get(m), str) for m in strings)
          and all(isinstance(rec.get(m), dict) for m in objects)
          and (rec.get("EndTime") is None or _number(rec["EndTime"]))
          and isinstance(rec.get("files", []), list) and all(isinstance(f, str) for f in rec.get("files", [])))
    if not ok:
        log.warning("a stored %s description is not one (altered on disk?): ignored (%d bytes)",
                    arn_member[:6].lower(), len(raw))
        return None
    return rec


def _decoded(prefix: bytes, rows) -> Iterator[dict]:
    for key, raw in rows:
        rec = _decode(prefix, key, raw)
        if rec is not None:
            yield rec


def _account_prefix(prefix: bytes, account: str, region: str) -> bytes:
    return prefix + f"arn:aws:dynamodb:{region}:{account}:table/".encode()


def load(r: KVReader, prefix: bytes, arn: str) -> dict | None:
    raw = r.get(prefix + arn.encode())
    return _decode(prefix, prefix + arn.encode(), raw) if raw is not None else None


def save(kv: KVStore, prefix: bytes, arn: str, rec: dict) -> None:
    with kv.transaction() as tx:
        tx.put(prefix + arn.encode(), CatalogRecord(orjson.dumps(rec)))


def save_new(kv: KVStore, prefix: bytes, arn: str, rec: dict, account: str, region: str,
             conflicts: Callable[[dict], bool]) -> dict | None:
    """Save a new job's row unless a row of the account and region ``conflicts`` with it, in one store
    transaction (two workers taking conflicting requests at once: one of them is refused); -> that row."""
    start = _account_prefix(prefix, account, region)
    with kv.transaction() as tx:
        for other in _decoded(prefix, tx.range(start, prefix_end(start))):
            if conflicts(other):
                return other
        tx.put(prefix + arn.encode(), CatalogRecord(orjson.dumps(rec)))
    return None


def advance(kv: KVStore, prefix: bytes, arn: str, rec: dict, status: str) -> bool:
    """Save a running job's progress or end, only while its stored row still says IN_PROGRESS: a row that a
    reset removed stays removed, one another worker failed (its holder looked dead) stays FAILED.
    ``status``: the row's status member. -> whether it was saved."""
    key = prefix + arn.encode()
    with kv.transaction() as tx:
        raw = tx.get(key)
        stored = _decode(prefix, key, raw) if raw is not None else None
        if stored is None or stored.get(status) != "IN_PROGRESS":
            return False
        tx.put(key, CatalogRecord(orjson.dumps(rec)))
    return True


def forget_account(kv: KVStore, prefixes: tuple[bytes, ...], account: str, region: str) -> int:
    """Delete every record of the account and region under ``prefixes`` (a reset); -> how many."""
    gone = 0
    with kv.transaction() as tx:
        for prefix in prefixes:
            start = _account_prefix(prefix, account, region)
            for key, _ in list(tx.range(start, prefix_end(start))):
                tx.delete(key)
                gone += 1
    return gone


def of_account(r: KVReader, prefix: bytes, account: str, region: str) -> list[dict]:
    start = _account_prefix(prefix, account, region)
    return list(_decoded(prefix, r.range(start, prefix_end(start))))


def named(r: KVReader, prefix: bytes, arn: object, account: str, region: str) -> dict | None:
    """The record of the ARN a request names, or None (also for an ARN of another account or region)."""
    if not isinstance(arn, str) or not arn.startswith(f"arn:aws:dynamodb:{region}:{account}:table/"):
        return None
    return load(r, prefix, arn)


def after(prefix: bytes, found: list[dict], last_arn: str | None) -> list[dict]:
    """The records listed after ``last_arn``, the last one of the previous page (what a NextToken carries)."""
    if not last_arn:
        return found
    field = _SHAPES[prefix][0]
    at = [i for i, r in enumerate(found) if r[field] == last_arn]
    if not at:
        raise validation("Invalid NextToken")
    return found[at[0] + 1:]


def every(r: KVReader, prefix: bytes) -> list[dict]:
    return list(_decoded(prefix, r.range(prefix, prefix_end(prefix))))
