"""The table store's key space: every row starts with exactly one of these prefixes.

One registry, so a new kind of row (stream records, backups, history) takes a prefix here and cannot
collide with another: ``PREFIXES`` must stay prefix-free (checked at import and by a test). The trees'
own rows (``T``) and partition directories (``D``) are named by the storage layer, which knows nothing
of DynamoDB; everything DynamoDB keeps beside them starts with two zero bytes and a name.
"""

from __future__ import annotations

from dynavault.storage.directory import DIR_PREFIX
from dynavault.storage.nodes import ROW_PREFIX

#: table definitions (plaintext metadata, as DynamoDB's control plane shows it)
CATALOG_PREFIX = b"\x00\x00catalog\x00"
#: item count and size per table and per index
STATS_PREFIX = b"\x00\x00stats\x00"
#: item-collection sizes per partition token of tables with LSIs
COLLECTION_PREFIX = b"\x00\x00collection\x00"
#: what this store's rows mean (written once into a new store)
FORMAT_KEY = b"\x00\x00format\x00"
#: backup records (the wrapped keys a backup is under, and its summary)
BACKUP_PREFIX = b"\x00\x00backup\x00"
#: DynamoDB Streams: stream and shard descriptors (plaintext metadata) and sealed stream records
STREAM_PREFIX = b"\x00\x00stream\x00"
#: backup data: copies of the source table's sealed rows, under the backup's id
BACKUP_DATA_PREFIX = b"\x00\x00backupdata\x00"
#: point-in-time recovery: each item change of a table with PITR on, sealed, in (time, counter) order
PITR_PREFIX = b"\x00\x00pitr\x00"
#: exports to and imports from local buckets: their descriptions (plaintext metadata: ARNs, bucket, counts)
EXPORT_PREFIX = b"\x00\x00export\x00"
IMPORT_PREFIX = b"\x00\x00import\x00"

#: global tables: each table's replication queue (sealed changes, in commit order), the per-item last-writer clocks
#: (sealed, under an HMAC of the key) and each replica's plaintext checkpoint in another region's queue
REPLICATION_PREFIX = b"\x00\x00replication\x00"

#: which process runs the store-wide background jobs (server/leases.py): holder and expiry, no user data
LEASE_PREFIX = b"\x00\x00lease\x00"
#: the DAX data plane's attribute-list registry (dax/registry_store.py): attribute names sealed per account
DAX_ATTRIBUTE_LISTS_PREFIX = b"\x00\x00daxattrs\x00"
#: TransactWriteItems ClientRequestTokens: a digest of the request, for the 10 minutes DynamoDB keeps them
TOKEN_PREFIX = b"\x00\x00idempotency\x00"
#: DAX control plane: clusters, parameter and subnet groups, events (plaintext metadata, dax/clusters.py)
DAX_CONTROL_PREFIX = b"\x00\x00daxcontrol\x00"
#: items held by in-flight transactions, for every worker to see: an HMAC of the key, a claimant and an expiry
CLAIM_PREFIX = b"\x00\x00claim\x00"
#: the last description of a table deleted moments ago, while it shows DELETING (plaintext table metadata)
DELETING_PREFIX = b"\x00\x00deleting\x00"
#: injected faults (server/faults.py): operation, table and error names and numbers, no user data
FAULT_PREFIX = b"\x00\x00fault\x00"
#: web console sessions (server/session_rows.py), sealed under a key derived from the browser's cookie
SESSION_PREFIX = b"\x00\x00session\x00"

PREFIXES: dict[str, bytes] = {
    "tree nodes": ROW_PREFIX,
    "partition directories": DIR_PREFIX,
    "catalog": CATALOG_PREFIX,
    "statistics": STATS_PREFIX,
    "item collections": COLLECTION_PREFIX,
    "store format": FORMAT_KEY,
    "backups": BACKUP_PREFIX,
    "streams": STREAM_PREFIX,
    "backup data": BACKUP_DATA_PREFIX,
    "leases": LEASE_PREFIX,
    "idempotency tokens": TOKEN_PREFIX,
    "transaction claims": CLAIM_PREFIX,
    "tables showing DELETING": DELETING_PREFIX,
    "injected faults": FAULT_PREFIX,
    "console sessions": SESSION_PREFIX,
    "point-in-time history": PITR_PREFIX,
    "dax control plane": DAX_CONTROL_PREFIX,
    "exports": EXPORT_PREFIX,
    "imports": IMPORT_PREFIX,
    "DAX attribute lists": DAX_ATTRIBUTE_LISTS_PREFIX,
    "replication": REPLICATION_PREFIX,
}


def overlapping(prefixes: dict[str, bytes]) -> list[tuple[str, str]]:
    """Pairs of names whose prefixes overlap (one is a prefix of the other)."""
    items = sorted(prefixes.items())
    return [(a, b) for i, (a, pa) in enumerate(items) for b, pb in items[i + 1:]
            if pa.startswith(pb) or pb.startswith(pa)]


if overlapping(PREFIXES):  # a build that breaks the key space must not start
    raise RuntimeError(f"overlapping key prefixes: {overlapping(PREFIXES)}")
