"""Export and import descriptions kept in the store: plaintext metadata only (ARNs, bucket, prefix, status,
counts, times), one CatalogRecord per export or import, so every worker process serving the store answers
DescribeExport / ListImports the same, and an idempotent retry (ClientToken) is found whichever process
took the first request."""

from __future__ import annotations

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


def of_account(r: KVReader, prefix: bytes, account: str, region: str) -> list[dict]:
    start = _account_prefix(prefix, account, region)
    return [orjson.loads(raw) for _, raw in r.range(start, prefix_end(start))]


def every(r: KVReader, prefix: bytes) -> list[dict]:
    return [orjson.loads(raw) for _, raw in r.range(prefix, prefix_end(prefix))]
