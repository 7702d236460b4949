"""DynamoDB's item-collection size limit for tables with local secondary indexes.

An item collection is the base items sharing a partition key plus their LSI entries. Its size is
kept per partition token (sizes are metadata DynamoDB itself tracks; the token reveals no key) in
the write's own transaction, and a write that would take it past ``item_collection_max_bytes``
(10 GB, settable for tests) fails with ItemCollectionSizeLimitExceededException and changes nothing.
LSI entries are counted at the size of the items they index (an upper bound of their projections).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from dynavault.errors import AWSError
from dynavault.storage.sealed import CatalogRecord

from .keys import key_of_item
from .layout import COLLECTION_PREFIX
from .values import item_size

if TYPE_CHECKING:
    from dynavault.sse.crypto import TableCrypto

    from .catalog import TableMeta

_SIZE = struct.Struct(">q")
_GB = 1 << 30


def _indexed_copies(meta: TableMeta, item: dict | None) -> int:
    if item is None:
        return 0
    copies = 1
    for lsi in meta.local_indexes:
        sort_attrs = [k["AttributeName"] for k in lsi.get("KeySchema", []) if k["KeyType"] == "RANGE"]
        if all(a in item for a in sort_attrs):
            copies += 1
    return copies


def _row(meta: TableMeta, crypto: TableCrypto, hkey: bytes) -> bytes:
    return COLLECTION_PREFIX + meta.id_bytes + crypto.token(0, hkey).raw


def metrics(r, meta: TableMeta, crypto: TableCrypto, hkey: bytes, key: dict) -> dict | None:
    """ReturnItemCollectionMetrics SIZE for the collection of ``key`` (None for a table without LSIs);
    ``hkey`` is the partition key's storage encoding, ``key`` the item's key attributes.

    DynamoDB answers an estimate, a [lower, upper] range in GB: the whole GB the collection is in and the next
    one ([0.0, 1.0] for any collection under 1 GB). ``r`` is a reader or the write's own transaction."""
    if not meta.local_indexes:
        return None
    raw = r.get(_row(meta, crypto, hkey))
    size = _SIZE.unpack(raw)[0] if raw else 0
    low = float(size // _GB)
    return {"ItemCollectionKey": {meta.hash_key: key[meta.hash_key]}, "SizeEstimateRangeGB": [low, low + 1.0]}


def check_collection(tx, meta: TableMeta, crypto: TableCrypto, old: dict | None, new: dict | None,
                     limit: int) -> None:
    if not meta.local_indexes:
        return
    item = new if new is not None else old
    if item is None:
        return
    hkey, _, _ = key_of_item(meta, item)
    row = _row(meta, crypto, hkey)
    delta = (item_size(new) * _indexed_copies(meta, new) if new is not None else 0) - (
        item_size(old) * _indexed_copies(meta, old) if old is not None else 0)
    if not delta:
        return
    raw = tx.get(row)
    current = _SIZE.unpack(raw)[0] if raw else 0
    total = max(0, current + delta)
    if delta > 0 and total > limit:
        raise AWSError("ItemCollectionSizeLimitExceededException", "Collection size exceeded.")
    if total:
        tx.put(row, CatalogRecord(_SIZE.pack(total)))
    elif raw is not None:
        tx.delete(row)


def metrics_by_table(store, crypto_of: Callable[[TableMeta], TableCrypto], writes: Iterable) -> dict:
    """A multi-item write's ItemCollectionMetrics: per table with LSIs, one entry per collection it wrote
    (``writes`` are its actions: ``kind``, ``meta``, ``hkey``, ``key``), read once they are committed."""
    out: dict[str, list] = {}
    with store.read() as r:
        for a in writes:
            if a.kind == "ConditionCheck" or not a.meta.local_indexes:
                continue
            m = metrics(r, a.meta, crypto_of(a.meta), a.hkey, a.key)
            entries = out.setdefault(a.meta.name, [])
            if m not in entries:
                entries.append(m)
    return out
