"""Export and import descriptions kept in the store: plaintext metadata only (ARNs, bucket, prefix, status,
counts, times), one CatalogRecord per export or import, so every worker process serving the store answers
DescribeExport / ListImports the same, and an idempotent retry (ClientToken) is found whichever process
took the first request."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from dynavault.storage.kv.base import prefix_end
from dynavault.storage.sealed import CatalogRecord

if TYPE_CHECKING:
    from dynavault.storage.kv.base import KVReader, KVStore


def _account_prefix(prefix: bytes, account: str, region: str) -> bytes:
    return prefix + f"arn:aws:dynamodb:{region}:{account}:table/".encode()


def load(r: KVReader, prefix: bytes, arn: str) -> dict | None:
    raw = r.get(prefix + arn.encode())
    return orjson.loads(raw) if raw is not None else None


def save(kv: KVStore, prefix: bytes, arn: str, rec: dict) -> None:
    with kv.transaction() as tx:
        tx.put(prefix + arn.encode(), CatalogRecord(orjson.dumps(rec)))


def save_new(kv: KVStore, prefix: bytes, arn: str, rec: dict, account: str, region: str,
             conflicts: Callable[[dict], bool]) -> dict | None:
    """Save a new job's row unless a row of the account and region ``conflicts`` with it, in one store
    transaction (two workers taking conflicting requests at once: one of them is refused); -> that row."""
    start = _account_prefix(prefix, account, region)
    with kv.transaction() as tx:
        for _, raw in tx.range(start, prefix_end(start)):
            other = orjson.loads(raw)
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
        if raw is None or orjson.loads(raw).get(status) != "IN_PROGRESS":
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
    return [orjson.loads(raw) for _, raw in r.range(start, prefix_end(start))]


def every(r: KVReader, prefix: bytes) -> list[dict]:
    return [orjson.loads(raw) for _, raw in r.range(prefix, prefix_end(prefix))]
