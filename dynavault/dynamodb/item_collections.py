"""DynamoDB's item-collection size limit for tables with local secondary indexes.

An item collection is the base items sharing a partition key plus their LSI entries. Its size is
kept per partition token (sizes are metadata DynamoDB itself tracks; the token reveals no key) in
the write's own transaction, and a write that would take it past ``item_collection_max_bytes``
(10 GB, settable for tests) fails with ItemCollectionSizeLimitExceededException and changes nothing.
LSI entries are counted at the size of the items they index (an upper bound of their projections).
"""

from __future__ import annotations

import struct
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


def _indexed_copies(meta: TableMeta, item: dict | None) -> int:
    if item is None:
        return 0
    copies = 1
    for lsi in meta.local_indexes:
        sort_attrs = [k["AttributeName"] for k in lsi.get("KeySchema", []) if k["KeyType"] == "RANGE"]
        if all(a in item for a in sort_attrs):
            copies += 1
    return copies


def check_collection(tx, meta: TableMeta, crypto: TableCrypto, old: dict | None, new: dict | None,
                     limit: int) -> None:
    if not meta.local_indexes:
        return
    item = new if new is not None else old
    if item is None:
        return
    hkey, _, _ = key_of_item(meta, item)
    row = COLLECTION_PREFIX + meta.id_bytes + crypto.token(0, hkey).raw
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
