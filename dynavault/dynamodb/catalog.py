"""The table catalog: table metadata that DynamoDB keeps outside item data (names, key schema,
indexes, status, wrapped keys, counts), persisted as CatalogRecords and mirrored in memory.

The mirror is per process; with several workers over one store, a change committed by one is announced on
the shared change counter (``storage.signal``) and every other reloads the mirror before its next lookup.
Item counts and sizes are not mirrored: every worker changes them, so they are read from the store.

Nothing here is user data: only what DESIGN.md invariant 1 allows in plaintext.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from dynavault.errors import AWSError, StartupError
from dynavault.sse.table_keys import TableKeyRef
from dynavault.storage.kv.base import KVStore, prefix_end
from dynavault.storage.sealed import CatalogRecord
from dynavault.storage.signal import CATALOG, ChangeSignal, Watch

from .layout import CATALOG_PREFIX, COLLECTION_PREFIX, FORMAT_KEY, STATS_PREFIX

_STATS = struct.Struct(">qq")
#: what this store's rows mean: written once into a new store; a store without it predates partition directories
STORE_FORMAT = b'{"partition_directories":1}'


@dataclass
class TableMeta:
    table_id: str
    name: str
    account: str
    region: str
    key_schema: list[dict]
    attribute_definitions: list[dict]
    created: float = field(default_factory=time.time)
    status: str = "ACTIVE"
    billing_mode: str = "PROVISIONED"
    read_capacity: int = 0
    write_capacity: int = 0
    last_pay_per_request: float | None = None
    deletion_protection: bool = False
    table_class: str | None = None
    tags: list[dict] = field(default_factory=list)
    sse: dict = field(default_factory=dict)
    #: SSE lifecycle (key-lifecycle issue): UPDATING phases, inaccessible time, archival
    sse_state: dict = field(default_factory=dict)
    local_indexes: list[dict] = field(default_factory=list)
    global_indexes: list[dict] = field(default_factory=list)
    stream: dict | None = None
    extra: dict = field(default_factory=dict)

    # derived, not persisted
    def __post_init__(self) -> None:
        #: the stored record this object was read from or last written as (None: never stored); a write
        #: compares it with the record in its own transaction (``Catalog.current``)
        self.record_raw: bytes | None = None
        self._derive()

    def _derive(self) -> None:
        self.hash_key = next(k["AttributeName"] for k in self.key_schema if k["KeyType"] == "HASH")
        ranges = [k["AttributeName"] for k in self.key_schema if k["KeyType"] == "RANGE"]
        self.range_key = ranges[0] if ranges else None
        types = {d["AttributeName"]: d["AttributeType"] for d in self.attribute_definitions}
        self.attribute_types = types
        self.hash_type = types[self.hash_key]
        self.range_type = types[self.range_key] if self.range_key else None
        self.key_names = {self.hash_key} | ({self.range_key} if self.range_key else set())
        self.id_bytes = uuid.UUID(self.table_id).bytes
        #: (signature of the index definitions, their parsed form): filled by indexes.index_defs
        self.parsed_indexes: tuple[bytes, list] | None = None

    @property
    def arn(self) -> str:
        return f"arn:aws:dynamodb:{self.region}:{self.account}:table/{self.name}"

    def key_ref(self) -> TableKeyRef:
        return TableKeyRef(self.id_bytes, self.name, self.account, self.region, self.sse)

    def to_record(self) -> CatalogRecord:
        doc = {k: v for k, v in asdict(self).items()}
        return CatalogRecord(orjson.dumps(doc))

    @classmethod
    def from_record(cls, raw: bytes) -> TableMeta:
        doc: dict[str, Any] = orjson.loads(raw)
        meta = cls(**doc)
        meta.record_raw = bytes(raw)
        return meta


def _load_record(key: bytes, raw: bytes, where: object) -> TableMeta:
    try:
        return TableMeta.from_record(raw)
    except Exception:  # any shape of damage: bad JSON, missing or mistyped fields
        name = key[len(CATALOG_PREFIX):].decode(errors="replace").replace("\x00", "/")
        raise StartupError(f"the catalog record of table {name!r} in {where} is damaged; restore the data dir "
                           "from a backup (`dynavault verify --data-dir DIR` shows what is wrong)") from None


def check_store_format(kv: KVStore, has_tables: bool, where: object) -> None:
    """Refuse a store written before partition directories existed; mark a new store as having them.

    Such a store has partitions no directory lists, and this version cannot tell whether one of them
    vanished; rather than build directories silently from whatever is in the store now (which would bless a
    partition deleted meanwhile), the server refuses to start (DESIGN.md invariant 4) and names the
    one-time, explicit ``dynavault upgrade``, which says what it cannot detect."""
    raw = kv.get(FORMAT_KEY)
    if raw == STORE_FORMAT:
        return
    if raw is not None:
        raise StartupError(f"the table store {where} has an unknown format record {raw[:40]!r}; it was written by "
                           "another dynavault version: start that version, or use a fresh --data-dir")
    if has_tables:
        raise StartupError(f"the table store {where} holds tables written before partition directories existed "
                           "(or its format record was removed); run `dynavault upgrade --data-dir DIR "
                           "--root-key-file F` once with the server stopped")
    with kv.transaction() as tx:
        tx.put(FORMAT_KEY, CatalogRecord(STORE_FORMAT))


def _catalog_key(account: str, region: str, name: str) -> bytes:
    return CATALOG_PREFIX + f"{account}\x00{region}\x00{name}".encode()


def _name_of(key: bytes) -> tuple[str, ...]:
    """(account, region, name) of a catalog row's key (a damaged key gives something no table has: the record
    itself is then refused by ``_load_record`` with its own message)."""
    return tuple(key[len(CATALOG_PREFIX):].decode(errors="replace").split("\x00", 2))


class CatalogLock:
    """The catalog's lock: re-entrant within a process and, when several processes serve the store
    (``path`` given), exclusive across them too (``flock``). Taking it reloads the mirror if another process
    changed the catalog, so a read-modify-write under it starts from what is committed."""

    def __init__(self, path: pathlib.Path | None, refresh: Callable[[], object]) -> None:
        self._rlock = threading.RLock()
        self._depth = 0
        self._refresh = refresh
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600) if path is not None else -1

    def __enter__(self) -> CatalogLock:
        self._rlock.acquire()
        self._depth += 1
        if self._depth == 1 and self._fd >= 0:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
                self._refresh()
            except BaseException:
                self._release()
                raise
        return self

    def __exit__(self, *exc) -> None:
        self._release()

    def _release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._rlock.release()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Catalog:
    """All tables of all accounts, loaded at start; every change is written through in a store txn."""

    def __init__(self, kv: KVStore, signal: ChangeSignal | None = None, *,
                 lock_path: pathlib.Path | None = None) -> None:
        self.kv = kv
        self._watch = Watch(signal or ChangeSignal(None), CATALOG)
        #: several processes serve the store: a change made from a mirror another process has since changed
        #: is refused (ResourceInUseException) instead of overwriting that process's change
        self.shared = lock_path is not None
        self._reload_lock = threading.RLock()
        self.lock = CatalogLock(lock_path, self._fresh)
        where = getattr(kv, "path", "the table store")
        #: the mirror, and the stored bytes each table's object was made from (a reload keeps unchanged ones)
        self._tables: dict[tuple[str, str, str], TableMeta] = {}
        self._raw: dict[tuple[str, str, str], bytes] = {}
        try:
            self._tables = self._load()
            for _key, raw in kv.range(STATS_PREFIX, prefix_end(STATS_PREFIX)):
                _STATS.unpack(raw)
            check_store_format(kv, bool(self._tables), where)
        except sqlite3.DatabaseError as exc:
            raise StartupError(f"the table store {where} is damaged ({exc}); restore the data dir from a backup "
                               "(`dynavault verify --data-dir DIR` shows what is wrong)") from None
        except (struct.error, UnicodeDecodeError):
            raise StartupError(f"the table store {where} has a damaged counter record; restore the data dir "
                               "from a backup (`dynavault verify --data-dir DIR` shows what is wrong)") from None

    def _load(self) -> dict[tuple[str, str, str], TableMeta]:
        """The catalog as stored. A table whose record is unchanged keeps its object: code that holds a
        table checks "still the same table?" by identity, and a reload caused by another table's change
        must not make every held table look replaced."""
        where = getattr(self.kv, "path", "the table store")
        tables = {}
        raws: dict[tuple[str, str, str], bytes] = {}
        for key, raw in self.kv.range(CATALOG_PREFIX, prefix_end(CATALOG_PREFIX)):
            raw = bytes(raw)
            name = _name_of(key)
            old = self._tables.get(name)
            meta = old if old is not None and self._raw.get(name) == raw else _load_record(key, raw, where)
            tables[(meta.account, meta.region, meta.name)] = meta
            raws[(meta.account, meta.region, meta.name)] = raw
        self._raw = raws
        return tables

    def _fresh(self) -> dict[tuple[str, str, str], TableMeta]:
        # Alone on the store, this process's mirror is the catalog: only other processes make it stale.
        # The reload takes only this process's lock, never the cross-process one: it is called inside store
        # write transactions (``put``), and a worker holding the store's write lock must not wait for the
        # catalog lock that another worker holds while it waits for the write lock.
        if self.shared and self._watch.stale():
            with self._reload_lock:
                if self._watch.stale():
                    self._watch.seen()
                    self._tables = self._load()
        return self._tables

    def get(self, account: str, region: str, name: str) -> TableMeta | None:
        return self._fresh().get((account, region, name))

    def list(self, account: str, region: str) -> list[TableMeta]:
        return sorted((t for (a, r, _), t in self._fresh().items() if a == account and r == region),
                      key=lambda t: t.name)

    def all(self) -> list[TableMeta]:
        return list(self._fresh().values())

    def put(self, tx, meta: TableMeta) -> None:
        """Write through inside the caller's transaction; memory follows once the txn commits (caller)."""
        if self.shared:
            current = self._fresh().get((meta.account, meta.region, meta.name))
            if current is not None and current is not meta:
                raise AWSError("ResourceInUseException", "Attempt to change a resource which is still in use: "
                               f"Table {meta.name} was changed by a concurrent request; retry")
        record = meta.to_record()
        tx.put(_catalog_key(meta.account, meta.region, meta.name), record)
        self._raw[(meta.account, meta.region, meta.name)] = record.raw
        meta.record_raw = record.raw

    def current(self, tx, meta: TableMeta) -> TableMeta | None:
        """The table as committed, read inside the caller's write transaction: ``meta`` itself when its record
        is unchanged (one point read), else the stored one (None: no table of that name now).

        A worker looks a table up before its write transaction starts, from a mirror that hears of other
        workers' changes only after they commit; a write applied with that definition could miss what another
        worker just enabled (a stream, PITR, a new index being backfilled). Inside the transaction the store's
        write lock orders it after every committed change, so this read is the definition to write with."""
        raw = tx.get(_catalog_key(meta.account, meta.region, meta.name))
        if raw is None:
            return None
        if raw == meta.record_raw:
            return meta
        raw = bytes(raw)
        mirror = self._tables.get((meta.account, meta.region, meta.name))
        if mirror is not None and mirror.record_raw == raw:
            return mirror
        return TableMeta.from_record(raw)

    def remember(self, meta: TableMeta) -> None:
        """After the transaction that wrote ``meta`` committed."""
        self._fresh()[(meta.account, meta.region, meta.name)] = meta
        self._watch.changed_here()

    def transaction(self):
        """A store transaction for catalog rows (and records kept beside them, like backup records)."""
        return self.kv.transaction()

    def save(self, meta: TableMeta) -> None:
        with self.kv.transaction() as tx:
            self.put(tx, meta)
        self.remember(meta)

    def remove(self, tx, meta: TableMeta) -> None:
        tx.delete(_catalog_key(meta.account, meta.region, meta.name))
        # the table's counters and its indexes' ("<table id>#<index id>")
        start = STATS_PREFIX + meta.table_id.encode()
        for key, _ in list(tx.range(start, prefix_end(start))):
            tx.delete(key)
        sizes = COLLECTION_PREFIX + meta.id_bytes
        for key, _ in list(tx.range(sizes, prefix_end(sizes))):
            tx.delete(key)

    def forget(self, meta: TableMeta) -> None:
        """After the transaction that removed ``meta`` committed."""
        self._fresh().pop((meta.account, meta.region, meta.name), None)
        self._watch.changed_here()

    # item count / size, updated in the same transaction as the write they describe
    def stats(self, table_id: str, r=None) -> tuple[int, int]:
        """As committed (or as ``r``, a transaction or snapshot, sees them)."""
        raw = (r or self.kv).get(STATS_PREFIX + table_id.encode())
        return _STATS.unpack(raw) if raw is not None else (0, 0)

    def add_stats(self, tx, table_id: str, d_count: int, d_bytes: int) -> None:
        count, size = self.stats(table_id, tx)
        new = (max(0, count + d_count), max(0, size + d_bytes))
        tx.put(STATS_PREFIX + table_id.encode(), CatalogRecord(_STATS.pack(*new)))
