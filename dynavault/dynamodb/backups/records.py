"""Backup records: what the catalog keeps about a backup, and DynamoDB's shapes built from them.

A record is plaintext metadata only (names, key schema, sizes, counts, the wrapped keys the backup is
under): a CatalogRecord under ``BACKUP_PREFIX + BackupArn``, so an account's backups in a region are one
key range. Its data rows live apart (``layout.BACKUP_DATA_PREFIX``, see ``snapshot.py``).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import orjson

from dynavault.errors import AWSError
from dynavault.storage.kv.base import prefix_end
from dynavault.storage.sealed import CatalogRecord

from ..layout import BACKUP_PREFIX
from ..sse_spec import sse_description

if TYPE_CHECKING:
    from dynavault.caller import Caller
    from dynavault.storage.kv.base import KVReader, KVTransaction

    from ..catalog import TableMeta

CREATING = "CREATING"
AVAILABLE = "AVAILABLE"
DELETED = "DELETED"
#: what a record keeps of the source table's key record: enough to unwrap its keys, no grant
SSE_FIELDS = ("mode", "key_arn", "table_key_blob", "data_keys")


def backup_not_found(arn: str) -> AWSError:
    return AWSError("BackupNotFoundException", f"Backup not found: {arn}")


def new_arn(meta: TableMeta, now: float) -> str:
    """DynamoDB's form: <table ARN>/backup/<14-digit epoch millis>-<8 hex>."""
    return f"{meta.arn}/backup/{int(now * 1000):014d}-{uuid.uuid4().hex[:8]}"


def _account_prefix(account: str, region: str) -> bytes:
    return BACKUP_PREFIX + f"arn:aws:dynamodb:{region}:{account}:table/".encode()


def load(r: KVReader, caller: Caller, arn: object) -> dict:
    """The caller's backup ``arn`` (another account's or region's ARN is as absent as a made-up one)."""
    if not isinstance(arn, str) or not arn.startswith(f"arn:aws:dynamodb:{caller.region}:{caller.account}:table/"):
        raise backup_not_found(str(arn))
    raw = r.get(BACKUP_PREFIX + arn.encode())
    if raw is None:
        raise backup_not_found(arn)
    return orjson.loads(raw)


def save(tx: KVTransaction, rec: dict) -> None:
    tx.put(BACKUP_PREFIX + rec["BackupArn"].encode(), CatalogRecord(orjson.dumps(rec)))


def remove(tx: KVTransaction, rec: dict) -> None:
    tx.delete(BACKUP_PREFIX + rec["BackupArn"].encode())


def of_account(r: KVReader, account: str, region: str) -> list[dict]:
    start = _account_prefix(account, region)
    return [orjson.loads(raw) for _, raw in r.range(start, prefix_end(start))]


def every(r: KVReader) -> list[dict]:
    return [orjson.loads(raw) for _, raw in r.range(BACKUP_PREFIX, prefix_end(BACKUP_PREFIX))]


def status(rec: dict) -> str:
    return rec.get("BackupStatus", AVAILABLE)  # the archival records of older releases have none


def source_record(meta: TableMeta, count: int, size: int) -> dict:
    """What a backup remembers of its source table (DescribeBackup's SourceTableDetails and
    SourceTableFeatureDetails, and what a restore recreates)."""
    return {
        "TableId": meta.table_id, "TableName": meta.name, "TableArn": meta.arn, "account": meta.account,
        "region": meta.region, "KeySchema": meta.key_schema, "AttributeDefinitions": meta.attribute_definitions,
        "TableCreationDateTime": meta.created, "BillingMode": meta.billing_mode,
        "ReadCapacityUnits": meta.read_capacity, "WriteCapacityUnits": meta.write_capacity,
        "ItemCount": count, "TableSizeBytes": size,
        "LocalSecondaryIndexes": [{k: d[k] for k in ("IndexName", "KeySchema", "Projection")}
                                  for d in meta.local_indexes],
        "GlobalSecondaryIndexes": [{k: d[k] for k in ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")
                                    if k in d} for d in meta.global_indexes if d.get("IndexStatus") != "DELETING"],
        "Stream": (meta.stream or {}).get("spec"),
        "sse": {k: meta.sse[k] for k in SSE_FIELDS if k in meta.sse},
    }


# -- DynamoDB's shapes ----------------------------------------------------------------------------------------
def details(rec: dict, shown_status: str | None = None) -> dict:
    shown = shown_status or status(rec)
    # DynamoDB answers CreateBackup with size 0; the size is known once the backup is AVAILABLE
    size = 0 if shown == CREATING else int(rec.get("BackupSizeBytes", 0))
    return {"BackupArn": rec["BackupArn"], "BackupName": rec["BackupName"],
            "BackupSizeBytes": size, "BackupStatus": shown,
            "BackupType": rec.get("BackupType", "USER"), "BackupCreationDateTime": rec["BackupCreationDateTime"]}


def summary(rec: dict) -> dict:
    out = {"TableName": rec["TableName"], "TableId": rec["TableId"], "TableArn": rec["TableArn"]}
    out.update(details(rec))
    return out


def _throughput(rcu: int, wcu: int) -> dict:
    return {"ReadCapacityUnits": rcu, "WriteCapacityUnits": wcu}


def description(rec: dict, shown_status: str | None = None) -> dict:
    """BackupDescription: the backup, its source table, and the source's features at backup time."""
    source = {"TableName": rec["TableName"], "TableId": rec["TableId"], "TableArn": rec["TableArn"],
              "TableSizeBytes": int(rec.get("TableSizeBytes", 0)), "KeySchema": rec["KeySchema"],
              "ProvisionedThroughput": _throughput(int(rec.get("ReadCapacityUnits", 0)),
                                                   int(rec.get("WriteCapacityUnits", 0))),
              "ItemCount": int(rec.get("ItemCount", 0)), "BillingMode": rec.get("BillingMode", "PROVISIONED")}
    if "TableCreationDateTime" in rec:
        source["TableCreationDateTime"] = rec["TableCreationDateTime"]
    features: dict = {}
    if rec.get("LocalSecondaryIndexes"):
        features["LocalSecondaryIndexes"] = rec["LocalSecondaryIndexes"]
    if rec.get("GlobalSecondaryIndexes"):
        features["GlobalSecondaryIndexes"] = [
            {**{k: g[k] for k in ("IndexName", "KeySchema", "Projection")},
             "ProvisionedThroughput": _throughput(int((g.get("ProvisionedThroughput") or {}).get("ReadCapacityUnits", 0)),
                                                  int((g.get("ProvisionedThroughput") or {}).get("WriteCapacityUnits", 0)))}
            for g in rec["GlobalSecondaryIndexes"]]
    stream = rec.get("Stream")
    if stream and stream.get("StreamEnabled"):
        features["StreamDescription"] = stream
    # the key in force when the backup was taken, whatever the table uses now (sse-spec.md §1.6)
    sse = sse_description(rec.get("sse") or {}, {})
    if sse is not None:
        features["SSEDescription"] = sse
    out: dict = {"BackupDetails": details(rec, shown_status), "SourceTableDetails": source}
    if features:
        out["SourceTableFeatureDetails"] = features
    return out
