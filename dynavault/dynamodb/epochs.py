"""Node-key epochs: count AES-GCM seals per table and roll to a new node key well before 2^32.

Nonces are random 96-bit values, so one key must not seal more than about 2^32 blobs. The seal
count kept in each table's catalog record is brought up to date by a periodic job (and at
shutdown); when the current epoch reaches ``node_epoch_max_seals`` (default 2^30, leaving a wide
margin for counts lost in a crash), a new node key is generated, wrapped by the table key and
stored in the same catalog write. Old epochs stay readable: blobs name their epoch.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dynavault.sse.table_keys import TableKeyService

    from .catalog import Catalog

log = logging.getLogger("dynavault.dynamodb")


def account_node_seals(catalog: Catalog, keys: TableKeyService, limit: int) -> None:
    """Add each table's new seals to its count; roll to a new node key at ``limit``."""
    for meta in catalog.all():
        # Under the catalog lock: a key switch replaces meta.sse, and a new epoch key must be wrapped
        # by the table key the catalog holds at that moment.
        with catalog.lock:
            meta = catalog.get(meta.account, meta.region, meta.name)  # as committed (another worker may save)
            if meta is None:
                continue
            data_keys = meta.sse.get("data_keys")
            if not data_keys:
                continue
            crypto = keys.live_crypto(meta.sse["table_key_blob"])
            if crypto is None:
                continue
            delta = crypto.codec.take_seals()
            if not delta:
                continue
            epoch = str(crypto.codec.epoch)
            counts = data_keys.setdefault("node_seals", {})
            counts[epoch] = counts.get(epoch, 0) + delta
            if counts[epoch] >= limit:
                new_epoch, wrapped = crypto.new_node_epoch()
                data_keys["node"][str(new_epoch)] = wrapped
                data_keys["node_epoch"] = new_epoch
                counts[str(new_epoch)] = 0
                log.info("table %s: node key epoch %s retired after %s seals; sealing under epoch %s",
                         meta.name, epoch, counts[epoch], new_epoch)
            catalog.save(meta)
