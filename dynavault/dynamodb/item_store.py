"""The item store: the one place where item data is read from and written to the encrypted trees.

Every item change — PutItem, UpdateItem, DeleteItem, batches, transactions, PartiQL writes, and later
TTL deletes, restores and replicated writes — is an ``ItemChange`` (table, old item, new item, cause)
applied by ``ItemWriter.apply`` inside one store transaction: it writes the base item, every LSI and
GSI entry, the item-collection size and the table and index statistics, then hands the change to the
subscribers the runtime registered when it built the store (streams, point-in-time history,
replication). A change and all of its consequences commit together or not at all. No other module
writes item data; ``tests/dynamodb/test_item_store_room.py`` checks that.

Stored values (base items and index entries) carry a versioned envelope (``envelope.py``), so metadata
(TTL bookkeeping, replication clocks) can join an item later without a format break.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Protocol

import orjson

from dynavault.errors import AWSError
from dynavault.storage.node_cache import NodeCache
from dynavault.storage.trees import EncryptedTrees

from . import item_collections
from .envelope import item_json, open_item, seal_item
from .index_model import change_entries, entry_for, entry_write_units, index_defs, stats_id
from .values import item_size

if TYPE_CHECKING:
    from dynavault.sse.crypto import TableCrypto
    from dynavault.storage.kv.base import KVReader, KVStore, KVTransaction
    from dynavault.storage.sealed import NodeCodec, PartitionToken
    from dynavault.storage.trees import Slot

    from .catalog import Catalog, TableMeta
    from .index_model import IndexDef

BASE = 0  # index id of the base table's trees
#: leaf size of item and index trees. A write opens, re-seals and rewrites its whole leaf: against 16 KiB, 8 KiB
#: leaves cost PutItem ~15 % and GetItem ~8 % fewer instructions and a 20-item Query ~10 % more (1 KB items;
#: benchmarks/RESULTS.md, 2026-12-03 h-put); 4-6 KiB saved no more on PutItem and cost Query 17-40 %.
ITEM_LEAF_BYTES = 8192


class ItemChange:
    """One item's change, as subscribers see it. ``cause`` names what made it: the operation
    ("PutItem", "TransactWriteItems", "ExecuteStatement", ...) or a system cause ("TTL", "Restore").
    Never changed once made (a plain slotted class: one is made per item written, and a frozen dataclass's
    ``__init__`` costs a guarded setattr per field)."""

    __slots__ = ("table", "old", "new", "cause")

    def __init__(self, table: TableMeta, old: dict | None, new: dict | None, cause: str) -> None:
        self.table = table
        self.old = old
        self.new = new
        self.cause = cause

    def __repr__(self) -> str:  # no item values: they are user data
        return f"<ItemChange {self.event} {self.table.name!r} by {self.cause}>"

    @property
    def event(self) -> str:
        """DynamoDB Streams' eventName: INSERT, MODIFY or REMOVE."""
        if self.old is None:
            return "INSERT"
        return "REMOVE" if self.new is None else "MODIFY"

    @property
    def keys(self) -> dict:
        item = self.new if self.new is not None else self.old
        return {k: item[k] for k in self.table.key_names} if item is not None else {}


class ChangeSubscriber(Protocol):
    """Registered at build time; ``in_transaction`` writes its own records in the change's transaction
    (raising rolls the whole write back), ``committed`` runs once the transaction is durable. A subscriber may
    also have ``blind_delete(writer, change, crypto, hkey, skey)``: called for a delete of an item that is not
    there (no change, so no ``in_transaction``). One that has ``in_writer(writer, change, crypto)`` is called
    with that instead of ``in_transaction``: it is given the ``ItemWriter``, so it can apply further changes in
    the same transaction (replication's same-server replicas)."""

    def in_transaction(self, tx: KVTransaction, change: ItemChange, crypto: TableCrypto) -> None: ...

    def committed(self, changes: Sequence[ItemChange]) -> None: ...


class Place:
    """An item's place in the base table, found with one descent; ``old`` is the item there now."""

    __slots__ = ("slot", "old", "_old_size")

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.old = open_item(slot.value) if slot.value is not None else None
        self._old_size = -1

    @property
    def old_size(self) -> int:
        """``item_size(old)`` (0 for no item), counted once for the write units, statistics and response."""
        if self._old_size < 0:
            self._old_size = item_size(self.old) if self.old is not None else 0
        return self._old_size


class ItemStore:
    def __init__(self, kv: KVStore, catalog: Catalog, *, collection_limit: int,
                 subscribers: Sequence[ChangeSubscriber] = ()) -> None:
        self.kv = kv
        # the reads reuse the nodes they opened while their sealed blobs stay unchanged (storage/node_cache.py)
        self.trees = EncryptedTrees(kv, node_cache=NodeCache(), max_leaf_bytes=ITEM_LEAF_BYTES)
        self.catalog = catalog
        self.collection_limit = collection_limit
        self.subscribers = tuple(subscribers)
        #: (hook, whether it takes the writer rather than the transaction), looked up once, not at every change
        self._hooks = tuple((sub.in_writer, True) if hasattr(sub, "in_writer") else (sub.in_transaction, False)
                            for sub in self.subscribers)

    def __repr__(self) -> str:
        return f"<ItemStore {len(self.subscribers)} subscriber(s)>"

    # -- reads ----------------------------------------------------------------------------------------
    def read(self) -> AbstractContextManager[KVReader]:
        """A consistent view for a multi-step read (a page, a transaction's reads): a read transaction, so
        readers never take the write lock. (The store's snapshot itself: no generator around it.)"""
        return self.kv.snapshot()

    def get_json(self, meta: TableMeta, crypto: TableCrypto, hkey: bytes, skey: bytes,
                 r: KVReader | None = None) -> bytes | None:
        """An item's canonical JSON (what GetItem answers as is), or None."""
        token = crypto.token(BASE, hkey)
        if r is None:
            # A partition of one leaf answers in one read; otherwise the descent is several reads (root, inner
            # nodes, leaf, and the directory when the root is absent): one snapshot, or a commit landing between
            # two of them (another worker's, a backfill thread's) shows a half-made partition as an integrity
            # error.
            done, raw = self.trees.get_in_one_read(self.kv, crypto.codec, meta.id_bytes, BASE, token, skey)
            if not done:
                with self.kv.snapshot() as snap:
                    raw = self.trees.get(snap, crypto.codec, meta.id_bytes, BASE, token, skey)
        else:
            raw = self.trees.get(r, crypto.codec, meta.id_bytes, BASE, token, skey)
        return item_json(raw) if raw is not None else None

    def get(self, meta: TableMeta, crypto: TableCrypto, hkey: bytes, skey: bytes,
            r: KVReader | None = None) -> dict | None:
        found = self.get_json(meta, crypto, hkey, skey, r)
        return orjson.loads(found) if found is not None else None

    def entries(self, r: KVReader, meta: TableMeta, crypto: TableCrypto, index_id: int, token: PartitionToken, *,
                lo: bytes | None = None, lo_inclusive: bool = True, hi: bytes | None = None,
                hi_inclusive: bool = True, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """(tree key, item JSON) of one partition of the table (index 0) or an index, in key order."""
        for key, raw in self.trees.range(r, crypto.codec, meta.id_bytes, index_id, token, lo=lo,
                                         lo_inclusive=lo_inclusive, hi=hi, hi_inclusive=hi_inclusive,
                                         reverse=reverse):
            yield key, item_json(raw)

    def stored_entries(self, r: KVReader, meta: TableMeta, crypto: TableCrypto, index_id: int,
                       token: PartitionToken, *, lo: bytes | None = None, lo_inclusive: bool = True,
                       hi: bytes | None = None, hi_inclusive: bool = True,
                       reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """``entries`` with each value as stored (``envelope.item_json`` of it is the item's JSON): a page walk
        takes the item JSON itself, one generator fewer per item."""
        return self.trees.range(r, crypto.codec, meta.id_bytes, index_id, token, lo=lo, lo_inclusive=lo_inclusive,
                                hi=hi, hi_inclusive=hi_inclusive, reverse=reverse)

    def partitions(self, r: KVReader, meta: TableMeta, crypto: TableCrypto, index_id: int, *,
                   after: PartitionToken | None = None, token_lo: bytes = b"",
                   token_hi: bytes | None = None) -> Iterator[PartitionToken]:
        """Non-empty partitions of the table or an index in token order (see ``EncryptedTrees.tokens``)."""
        return self.trees.tokens(r, crypto.codec, meta.id_bytes, index_id, after=after, token_lo=token_lo,
                                 token_hi=token_hi)

    def walk(self, r: KVReader, meta: TableMeta, crypto: TableCrypto,
             after: tuple[PartitionToken, bytes] | None = None) -> Iterator[tuple[PartitionToken, bytes, bytes]]:
        """Base items as (partition token, sort key, item JSON) in (token, sort key) order, strictly
        after ``after``."""
        first = None
        if after is not None:
            first, key = after
            yield from ((first, k, v) for k, v in self.entries(r, meta, crypto, BASE, first, lo=key,
                                                                lo_inclusive=False))
        for token in self.partitions(r, meta, crypto, BASE, after=first):
            yield from ((token, k, v) for k, v in self.entries(r, meta, crypto, BASE, token))

    # -- writes ---------------------------------------------------------------------------------------
    def write(self) -> AbstractContextManager[ItemWriter]:
        """One store transaction for item changes, statistics included; subscribers' ``committed`` follows
        the commit. An exception inside rolls everything back."""
        return _WriteBlock(self)


class _WriteBlock:
    """What ``with store.write() as w`` enters (a class, not a generator: one per write request)."""

    __slots__ = ("_store", "_block", "_w")

    def __init__(self, store: ItemStore) -> None:
        self._store = store
        self._block = store.kv.transaction()
        self._w: ItemWriter | None = None

    def __enter__(self) -> ItemWriter:
        self._w = ItemWriter(self._store, self._block.__enter__())
        return self._w

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        block, w = self._block, self._w
        if exc_type is not None:
            block.__exit__(exc_type, exc, tb)  # rolls back; the caller's exception goes on
            return
        try:
            w.flush_stats()
        except BaseException as err:
            block.__exit__(type(err), err, err.__traceback__)
            raise
        block.__exit__(None, None, None)  # the commit
        if w.changes:
            for sub in self._store.subscribers:
                sub.committed(w.changes)
        for fn in w.after or ():
            fn()


class ItemWriter:
    """The writes of one store transaction (see ``ItemStore.write``)."""

    __slots__ = ("store", "tx", "changes", "after", "_stats", "_tables")

    def __init__(self, store: ItemStore, tx: KVTransaction) -> None:
        self.store = store
        self.tx = tx
        self.changes: list[ItemChange] = []
        #: what runs once the transaction is durable (``after_commit``); None until something is added
        self.after: list[Callable[[], None]] | None = None
        self._stats: dict[str, list[int]] = {}
        #: table id -> the definition this transaction writes with (checked against the store once)
        self._tables: dict[str, TableMeta] = {}

    def __repr__(self) -> str:
        return f"<ItemWriter {len(self.changes)} change(s)>"

    def get(self, meta: TableMeta, crypto: TableCrypto, hkey: bytes, skey: bytes) -> dict | None:
        return self.store.get(meta, crypto, hkey, skey, self.tx)

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the transaction is durable (never, if it rolls back)."""
        if self.after is None:
            self.after = []
        self.after.append(fn)

    @contextmanager
    def attempt(self) -> Iterator[None]:
        """A part of the transaction that may fail alone: on an exception, its store writes are undone (a nested
        transaction: a savepoint of the store's) and so are its changes and statistics here; the exception
        propagates, and the rest of the transaction goes on as if the part had not been tried."""
        n_changes, n_after = len(self.changes), len(self.after or ())
        stats = {sid: list(s) for sid, s in self._stats.items()}
        tables = dict(self._tables)
        try:
            with self.store.kv.transaction():
                yield
        except BaseException:
            del self.changes[n_changes:]
            if self.after is not None:
                del self.after[n_after:]
            self._stats, self._tables = stats, tables
            raise

    def place(self, meta: TableMeta, crypto: TableCrypto, hkey: bytes, skey: bytes) -> Place:
        return Place(self.store.trees.slot(self.tx, crypto.codec, meta.id_bytes, BASE,
                                           crypto.token(BASE, hkey), skey))

    def apply(self, change: ItemChange, crypto: TableCrypto, *, hkey: bytes, skey: bytes,
              place: Place | None = None, new_size: int | None = None,
              old_size: int | None = None) -> dict[str, float]:
        """Make ``change`` durable with everything that follows from it; -> write units per index.

        ``place`` (from ``place()``) saves a second descent for a read-check-write; ``new_size`` and
        ``old_size`` are ``item_size`` of the new and old item when the caller has them. Raises DynamoDB's
        errors (an index key of the wrong type, an item collection over its limit), rolling back."""
        meta = self._tables.get(change.table.table_id)
        if meta is None:
            meta = self._current(change.table)
        if meta is not change.table:
            change = ItemChange(meta, change.old, change.new, change.cause)
        old, new = change.old, change.new
        store, tx = self.store, self.tx
        if old is None and new is None:
            # a delete of an absent item changes nothing; a subscriber that orders writes across replicas
            # (the last-writer clocks of global tables) still takes it as a write
            for sub in store.subscribers:
                blind = getattr(sub, "blind_delete", None)
                if blind is not None:
                    blind(self, change, crypto, hkey, skey)
            return {}
        if meta.local_indexes:
            item_collections.check_collection(tx, meta, crypto, old, new, store.collection_limit)
        if place is None:
            place = self.place(meta, crypto, hkey, skey)
        if new is not None:
            place.slot.put(seal_item(orjson.dumps(new)))
        else:
            place.slot.delete()
        if new is None:
            new_size = 0
        elif new_size is None:
            new_size = item_size(new)
        if old is None:
            old_size = 0
        elif old_size is None:
            old_size = place.old_size if place.old is old else item_size(old)
        self._add(meta.table_id, (new is not None) - (old is not None), new_size - old_size)
        units = (self._index(meta, crypto, old, new, hkey + skey) if meta.local_indexes or meta.global_indexes
                 else {})
        self.changes.append(change)
        for hook, with_writer in store._hooks:
            hook(self if with_writer else tx, change, crypto)
        return units

    def table(self, meta: TableMeta) -> TableMeta:
        """The table's definition this transaction writes with (see ``_current``)."""
        return self._tables.get(meta.table_id) or self._current(meta)

    def _current(self, meta: TableMeta) -> TableMeta:
        """The table's definition as this transaction sees it committed (``Catalog.current``): the one the
        caller looked up, unless another worker changed the table since; a write to a table deleted or replaced
        meanwhile is refused as DynamoDB refuses one to a missing table."""
        cur = self.store.catalog.current(self.tx, meta)
        if cur is None or cur.table_id != meta.table_id:
            raise AWSError("ResourceNotFoundException", "Requested resource not found")
        self._tables[meta.table_id] = cur
        return cur

    def _index(self, meta: TableMeta, crypto: TableCrypto, old: dict | None, new: dict | None,
               base: bytes) -> dict:
        """Bring every index in line with one base item change (``base``: its primary key tuple)."""
        trees, tx, tid = self.store.trees, self.tx, meta.id_bytes
        units: dict[str, float] = {}
        live = [idx for idx in index_defs(meta) if idx.status != "DELETING"]
        # Every entry first (this validates the new item's index keys): the write fails as a whole.
        pairs = [change_entries(idx, meta, crypto, old, new, base) for idx in live]
        for idx, (o, n) in zip(live, pairs, strict=True):
            if o is None and n is None:
                continue
            d_count = d_bytes = 0
            u = 0.0
            same_place = o is not None and n is not None and o[0] == n[0] and o[1] == n[1]
            if same_place and o[2] == n[2]:
                continue  # nothing the index holds changed: no index write
            o_size = item_size(o[2]) if o is not None else 0
            if o is not None and not same_place:
                trees.delete(tx, crypto.codec, tid, idx.index_id, o[0], o[1])
                d_count -= 1
                d_bytes -= o_size
                u += entry_write_units(o_size)
            if n is not None:
                n_size = item_size(n[2])
                trees.put(tx, crypto.codec, tid, idx.index_id, n[0], n[1], seal_item(orjson.dumps(n[2])))
                if same_place:
                    d_bytes += n_size - o_size
                else:
                    d_count += 1
                    d_bytes += n_size
                u += entry_write_units(n_size)
            self._add(stats_id(meta, idx.index_id), d_count, d_bytes)
            units[idx.label] = u
        return units

    def backfill_entry(self, meta: TableMeta, crypto: TableCrypto, idx: IndexDef, item: dict) -> None:
        """Write an existing item's entry into an index being built (no item change: no subscribers)."""
        e = entry_for(idx, meta, crypto, item)
        if e is None:
            return
        prev = self.store.trees.put(self.tx, crypto.codec, meta.id_bytes, idx.index_id, e[0], e[1],
                                    seal_item(orjson.dumps(e[2])))
        if prev is None:
            self._add(stats_id(meta, idx.index_id), 1, item_size(e[2]))

    def create_partitions(self, meta: TableMeta, codec: NodeCodec, index_id: int) -> None:
        """The empty partition directory of a new table (index 0) or index."""
        self.store.trees.create_directory(self.tx, codec, meta.id_bytes, index_id)

    def drop(self, meta: TableMeta, index_id: int | None = None) -> None:
        """Delete every item of a table (or every entry of one index)."""
        self.store.trees.drop(self.tx, meta.id_bytes, index_id)

    def _add(self, sid: str, d_count: int, d_bytes: int) -> None:
        if d_count or d_bytes:
            s = self._stats.get(sid)
            if s is None:
                self._stats[sid] = [d_count, d_bytes]
            else:
                s[0] += d_count
                s[1] += d_bytes

    def flush_stats(self) -> None:
        """Add the transaction's counts to the statistics rows (before commit: they commit with it)."""
        for sid, (dc, db) in self._stats.items():
            self.store.catalog.add_stats(self.tx, sid, dc, db)
