"""DAX's item cache and query cache, with DAX's semantics.

- Eventually consistent GetItem answers come from the item cache; Query and Scan answers from the query cache.
  Strongly consistent reads pass through and leave the caches alone. Entries live ``record_ttl`` /
  ``query_ttl`` seconds (DAX's record-ttl-millis / query-ttl-millis, 5 minutes by default), or the TTLs of the
  cluster that serves the request's listener for its account and region (``ttls``). An entry keeps the time
  it was stored and each read compares it with the reader's TTL, so a parameter group's change applies at
  once to what is cached already.
- Writes made through DAX write through the item cache (a put stores the item, a delete stores "absent"; other
  writes drop the key's entry). The query cache is not touched by writes, as in DAX: a query answer may be as
  old as its TTL. Writes made over the HTTP API are not seen until entries expire, as with DAX.
- Every entry is sealed in memory (AES-256-GCM; table id, scope and entry key as associated data) under a cache
  key of its table, random per process, kept only wrapped by the table's stream data key (so the stream key
  seals once per table, not once per entry: its random-nonce budget is not spent by the cache). An entry is
  opened only after the request has resolved the table and obtained the table's keys from the same
  per-connection key cache as any data call, which unwrap the cache key. So a hit costs a catalog lookup and two
  small AEAD opens; a table whose key is unusable fails exactly as its uncached reads fail, and its entries are
  dropped. The cache key is replaced (and the table's entries dropped) after MAX_SEALS seals.
- Bounded: at most MAX_TABLES tables, MAX_ITEMS items and MAX_QUERIES query answers per table (oldest dropped).

Entries are answer bodies as DAX sends them (attribute-list ids are per scope and never change meaning), so a
hit is sent without encoding anything.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dynavault.caller import Caller
from dynavault.errors import IntegrityError

MAX_TABLES = 1024
MAX_ITEMS = 50_000
MAX_QUERIES = 5_000
#: an answer larger than this is not kept (a query cache entry is at most a 1 MB page in practice)
MAX_ENTRY_BYTES = 2 * 1024 * 1024
#: seals under one cache key (random 96-bit nonces: far below 2^32)
MAX_SEALS = 1 << 28
_KEY_AAD = b"dax-cache-key\x00"


class _TableCache:
    __slots__ = ("table_id", "items", "queries", "wrapped_key", "seals", "_opened_by", "_aead")

    def __init__(self, table_id: bytes, crypto) -> None:
        self.table_id = table_id
        #: key -> (when stored, sealed answer)
        self.items: OrderedDict[bytes, tuple[float, bytes]] = OrderedDict()
        self.queries: OrderedDict[bytes, tuple[float, bytes]] = OrderedDict()
        self.wrapped_key = crypto.stream.seal(_KEY_AAD + table_id, os.urandom(32))
        self.seals = 0
        self._opened_by = None
        self._aead: AESGCM | None = None

    def aead(self, crypto) -> AESGCM:
        """The cache key, unwrapped by ``crypto`` (the table keys the request just obtained). Unwrapped again
        whenever those keys are other ones than last time (a refresh, another table key), so a hit is opened only
        with the keys the request was allowed; the same keys unwrap the same key, so that one is kept."""
        if crypto is self._opened_by and self._aead is not None:
            return self._aead
        aead = AESGCM(crypto.stream.open(_KEY_AAD + self.table_id, self.wrapped_key))
        self._opened_by, self._aead = crypto, aead
        return aead


#: (listener port, account, region) -> (record TTL, query TTL) in seconds, or None: no cluster names it
TtlSource = Callable[[int, str, str], "tuple[float, float] | None"]


class DaxCache:
    def __init__(self, table_keys: Callable[[Caller, str], tuple[bytes, object]], *, record_ttl: float = 300.0,
                 query_ttl: float = 300.0, ttls: TtlSource | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``table_keys(caller, table name) -> (table id, TableCrypto)``: the table resolved for a data call and
        its keys (raises the table's error: not found, key unusable). ``ttls``: the TTLs of the cluster serving
        a listener, when one does; otherwise ``record_ttl`` / ``query_ttl``."""
        self._table_keys = table_keys
        self.record_ttl = record_ttl
        self.query_ttl = query_ttl
        self._ttls = ttls
        self.clock = clock
        self._tables: dict[tuple[str, str], _TableCache] = {}
        self._lock = threading.Lock()

    def lifetimes(self, port: int | None, caller: Caller) -> tuple[float, float]:
        """(record TTL, query TTL) in seconds for a request on the listener at ``port``."""
        if self._ttls is not None and port is not None:
            found = self._ttls(port, caller.account, caller.region)
            if found is not None:
                return found
        return self.record_ttl, self.query_ttl

    # ---- the table and its keys ----------------------------------------------------------------------------
    def _resolve(self, caller: Caller, scope: str, table: str):
        """(table cache, crypto), the table's keys checked as a data call checks them; a failure drops the
        table's entries and is raised as the table's own error."""
        try:
            table_id, crypto = self._table_keys(caller, table)
        except Exception:
            with self._lock:
                self._tables.pop((scope, table), None)
            raise
        with self._lock:
            tc = self._tables.get((scope, table))
            if tc is None or tc.table_id != table_id or tc.seals >= MAX_SEALS:  # new, made again, or worn out
                if len(self._tables) >= MAX_TABLES:
                    self._tables.clear()
                tc = self._tables[(scope, table)] = _TableCache(table_id, crypto)
        return tc, crypto

    @staticmethod
    def _aad(tc: _TableCache, scope: str, kind: bytes, key: bytes) -> bytes:
        return b"dax-cache\x00" + kind + tc.table_id + scope.encode() + b"\x00" + key

    def _get(self, kind: bytes, caller: Caller, scope: str, table: str, key: bytes, ttl: float) -> bytes | None:
        if ttl <= 0:
            return None
        tc, crypto = self._resolve(caller, scope, table)
        store = tc.items if kind == b"i" else tc.queries
        with self._lock:
            entry = store.get(key)
        if entry is None:
            return None
        if self.clock() - entry[0] >= ttl:
            # expired for this reader (a reader allowed longer reads the table again: a miss, never staler)
            with self._lock:
                store.pop(key, None)
            return None
        sealed = entry[1]
        try:
            return tc.aead(crypto).decrypt(sealed[:12], sealed[12:], self._aad(tc, scope, kind, key))
        except InvalidTag:
            raise IntegrityError("DAX cache entry failed authentication") from None

    def _put(self, kind: bytes, caller: Caller, scope: str, table: str, key: bytes, body: bytes | None,
             ttl: float) -> None:
        if ttl <= 0:
            return
        tc, crypto = self._resolve(caller, scope, table)
        store, cap = (tc.items, MAX_ITEMS) if kind == b"i" else (tc.queries, MAX_QUERIES)
        if body is None or len(body) > MAX_ENTRY_BYTES:
            with self._lock:
                store.pop(key, None)
            return
        nonce = os.urandom(12)
        sealed = nonce + tc.aead(crypto).encrypt(nonce, body, self._aad(tc, scope, kind, key))
        with self._lock:
            tc.seals += 1
            store[key] = (self.clock(), sealed)
            store.move_to_end(key)
            while len(store) > cap:
                store.popitem(last=False)

    # ---- the item cache -----------------------------------------------------------------------------------
    def get_item(self, caller: Caller, scope: str, table: str, key: bytes, ttl: float | None = None) -> bytes | None:
        return self._get(b"i", caller, scope, table, key, self.record_ttl if ttl is None else ttl)

    def put_item(self, caller: Caller, scope: str, table: str, key: bytes, body: bytes | None,
                 ttl: float | None = None) -> None:
        """Keep ``body`` (a GetItem answer) for ``key``; None drops the key's entry."""
        self._put(b"i", caller, scope, table, key, body, self.record_ttl if ttl is None else ttl)

    def drop_items(self, scope: str, table: str, keys: list[bytes]) -> None:
        with self._lock:
            tc = self._tables.get((scope, table))
            if tc is not None:
                for key in keys:
                    tc.items.pop(key, None)

    # ---- the query cache ----------------------------------------------------------------------------------
    @staticmethod
    def query_key(method: int, request: bytes) -> bytes:
        return method.to_bytes(4, "big", signed=True) + hashlib.sha256(request).digest()

    def get_query(self, caller: Caller, scope: str, table: str, key: bytes, ttl: float | None = None) -> bytes | None:
        return self._get(b"q", caller, scope, table, key, self.query_ttl if ttl is None else ttl)

    def put_query(self, caller: Caller, scope: str, table: str, key: bytes, body: bytes,
                  ttl: float | None = None) -> None:
        self._put(b"q", caller, scope, table, key, body, self.query_ttl if ttl is None else ttl)

    def entries(self) -> int:
        with self._lock:
            return sum(len(t.items) + len(t.queries) for t in self._tables.values())
