"""``dynavault upgrade``: give a data dir written before partition directories existed its directories.

Offline (server stopped) and one-time. For each table in the catalog: unwrap its keys as the server does
(``offline.OfflineStore``), list the partition tokens actually present in the store for the base table and
each index, build and seal each (table, index)'s partition directory, all in one store transaction per
table; then write the store's format record last, so a run that stops half-way is simply run again.

The directories record the store as found: a partition deleted from the store before the upgrade cannot be
detected afterwards (nothing authenticated listed it). A token that has rows but no root node is listed all
the same, so the damage stays visible (an integrity error, and a problem in ``dynavault verify``).
Exit status: 0 upgraded or already upgraded, 2 could not run (``StartupError``).
"""

from __future__ import annotations

from collections.abc import Callable

from dynavault.config import Settings
from dynavault.dynamodb.catalog import STORE_FORMAT, TableMeta
from dynavault.dynamodb.layout import FORMAT_KEY
from dynavault.dynamodb.tables import index_trees
from dynavault.errors import AWSError, IntegrityError, StartupError
from dynavault.offline import OfflineStore
from dynavault.sse.key_port import KeyPortError
from dynavault.storage.kv.base import KVReader, KVTransaction, distinct_segments
from dynavault.storage.sealed import TOKEN_SIZE, CatalogRecord, PartitionToken
from dynavault.storage.trees import row_prefix

CLOSING = ("partitions deleted from the store BEFORE this upgrade cannot be detected: the directories list the "
           "partitions as the store held them now")


def _stored_tokens(r: KVReader, table_id: bytes, index_id: int) -> list[bytes]:
    """Distinct partition tokens with at least one row under (table, index), in order."""
    out: list[bytes] = []
    for raw in distinct_segments(r, row_prefix(table_id, index_id), TOKEN_SIZE):
        if len(raw) != TOKEN_SIZE:
            raise StartupError(f"the table store holds a row key of the wrong length under table id "
                               f"{table_id.hex()}; `dynavault verify --data-dir DIR` shows what is wrong")
        out.append(raw)
    return out


def _upgrade_table(store: OfflineStore, key: bytes, meta: TableMeta) -> str:
    where = f"table {meta.name!r} (account {meta.account}, region {meta.region})"
    try:
        crypto = store.crypto(meta)
    except (AWSError, KeyPortError) as err:
        raise StartupError(f"{where}: its table key cannot be opened ({err.code}: {err.message}); make its KMS key "
                           "usable (enable it, cancel its deletion, reach its KMS) and run the upgrade again") from None
    except (IntegrityError, KeyError, ValueError, TypeError):
        raise StartupError(f"{where}: its wrapped data keys do not open; `dynavault verify --data-dir DIR` shows "
                           "what is wrong") from None
    codec, trees, tid = crypto.codec, store.trees, meta.id_bytes
    parts: list[str] = []
    with store.kv.transaction() as tx:
        for index_id, label in index_trees(meta):
            stored = _stored_tokens(tx, tid, index_id)
            if trees.directory.exists(tx, tid, index_id):
                # left by an earlier run that stopped before the format record: keep it if it still matches
                try:
                    listed, _ = trees.check_directory(tx, codec, tid, index_id)
                except IntegrityError as exc:
                    raise StartupError(f"{where} {label}: its partition directory is damaged ({exc}); "
                                       "`dynavault verify --data-dir DIR` shows what is wrong") from None
                if listed != stored:
                    raise StartupError(f"{where} {label}: its partition directory and the store's partitions "
                                       "differ; `dynavault verify --data-dir DIR` shows what is wrong")
                parts.append(f"{label} {len(stored)} (kept)")
                continue
            trees.create_directory(tx, codec, tid, index_id)
            for raw in stored:
                trees.directory.add(tx, codec, row_prefix(tid, index_id, PartitionToken(raw)))
            parts.append(f"{label} {len(stored)}")
        _count_seals(tx, key, meta, codec.take_seals(), codec.epoch)
    return f"table {meta.account} {meta.region} {meta.name}: partition directories written: {', '.join(parts)}"


def _count_seals(tx: KVTransaction, key: bytes, meta: TableMeta, seals: int, epoch: int) -> None:
    """Add the directory seals to the table's node-key seal count (nonce budget, dynamodb/epochs.py)."""
    if not seals:
        return
    counts = meta.sse["data_keys"].setdefault("node_seals", {})
    counts[str(epoch)] = counts.get(str(epoch), 0) + seals
    tx.put(key, meta.to_record())


def run(settings: Settings, out: Callable[[str], None]) -> None:
    """Upgrade the data dir, saying one line per table as it is done (so a failure shows how far it got)."""
    store = OfflineStore(settings, readonly=False)
    try:
        fmt = store.kv.get(FORMAT_KEY)
        if fmt == STORE_FORMAT:
            out(f"dynavault upgrade: {store.data} is already upgraded (it has partition directories); nothing to do")
            return
        if fmt is not None:
            raise StartupError(f"the table store in {store.data} has an unknown format record {fmt[:40]!r}; it "
                               "was written by another dynavault version, which this one cannot upgrade")
        out(f"dynavault upgrade: {store.data}")
        tables = []
        for key, raw in store.catalog():
            try:
                tables.append((key, TableMeta.from_record(raw)))
            except Exception:  # any shape of damage: nothing is written
                raise StartupError(f"a catalog record in {store.data} is damaged; `dynavault verify --data-dir "
                                   "DIR` shows what is wrong") from None
        for key, meta in sorted(tables, key=lambda t: (t[1].account, t[1].region, t[1].name)):
            out(_upgrade_table(store, key, meta))
        # last: a store with a format record is one the server trusts to have every directory
        with store.kv.transaction() as tx:
            tx.put(FORMAT_KEY, CatalogRecord(STORE_FORMAT))
        out(f"upgraded {len(tables)} table{'' if len(tables) == 1 else 's'}; {CLOSING}")
    finally:
        store.close()


def main(settings: Settings) -> int:
    run(settings, lambda line: print(line, flush=True))
    return 0
