"""Item claims in the store: the items in-flight transactions hold, seen by every process serving the store.

With ``--workers N`` two transactions on the same item may run in two processes. The store orders their
writes, but DynamoDB refuses the second with ``TransactionConflict`` while the first is in flight; for that
the claims must be where every worker looks. A transaction commits its claims in a small store transaction
of their own before its writes, and its write transaction deletes them (so a commit costs one extra store
transaction, not two). A non-transactional multi-item write (BatchWriteItem, a PartiQL statement) only
checks, inside its write transaction: in DynamoDB it conflicts with an in-flight transaction, never with
another plain write.

A row is keyed by an HMAC of the item's key under the table's token key (the store learns only equality of
claimed items, as it does of partition keys), and holds the claimant (a process label and a counter) and an
expiry: the claims of a worker that died mid-transaction (kill -9 included) lapse after ``ttl`` seconds. A row
that is not a claim (altered on disk) counts as none and is pruned: a claim only ever refuses, and a live one
lasts seconds.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable, Sequence

import orjson

from dynavault.storage.kv.base import KVReader, KVStore, KVTransaction, prefix_end
from dynavault.storage.sealed import CatalogRecord

from .layout import CLAIM_PREFIX

#: the HMAC domain of claim keys: an index id no table has (index ids are small), so no claim key can equal a
#: partition token of the same table
_CLAIM_DOMAIN = 0xFFFFFFFF
#: how long a claim lasts if its transaction never ends (its process died); a live one ends in milliseconds
CLAIM_SECONDS = 10.0


def _row(raw: bytes | None) -> dict | None:
    """A stored claim ``{"o": claimant, "exp": time}``, or None (absent, or not a claim)."""
    if raw is None:
        return None
    try:
        row = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    ok = isinstance(row, dict) and isinstance(row.get("o"), str) and isinstance(row.get("exp"), (int, float)) \
        and not isinstance(row["exp"], bool) and math.isfinite(row["exp"])
    return row if ok else None


def claim_key(crypto, hkey: bytes, skey: bytes) -> bytes:
    """The store row of one item's claim (``crypto``: the table's TableCrypto)."""
    msg = len(hkey).to_bytes(4, "big") + hkey + skey
    return CLAIM_PREFIX + crypto.token(_CLAIM_DOMAIN, msg).raw


def token_claim_key(token_key: bytes) -> bytes:
    """The store row that says a request with this ClientRequestToken (``TokenClaim.key``) is in flight: a
    retry racing it is told TransactionInProgressException, as DynamoDB tells it."""
    return CLAIM_PREFIX + hashlib.sha256(b"client-request-token\0" + token_key).digest()


class StoreClaims:
    """Claims every process serving the store sees. ``claim`` is all-or-nothing and never waits for a claim."""

    def __init__(self, kv: KVStore, holder: str, *, ttl: float = CLAIM_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.kv = kv
        self.holder = holder  # unique per process lifetime (Leases.holder)
        self.ttl = ttl
        self.clock = clock

    def __repr__(self) -> str:
        return f"StoreClaims({self.holder})"

    def _who(self, owner: int) -> str:
        return f"{self.holder}/{owner}"

    def _other(self, r: KVReader, key: bytes, me: str, now: float) -> bool:
        row = _row(r.get(key))
        # a claim ends within its ttl of being made: one that claims to last longer was not made by a claimant
        return row is not None and row["o"] != me and now < row["exp"] <= now + self.ttl + 1.0

    def claim(self, owner: int, keys: Sequence[bytes]) -> list[int]:
        """Claim every key for ``owner`` in one committed store transaction; -> the positions held by another
        live claimant (nothing is claimed then)."""
        me, now = self._who(owner), self.clock()
        with self.kv.transaction() as tx:
            busy = [i for i, k in enumerate(keys) if self._other(tx, k, me, now)]
            if busy:
                return busy
            row = CatalogRecord(orjson.dumps({"o": me, "exp": now + self.ttl}))
            for k in keys:
                tx.put(k, row)
        return []

    def held_by_others(self, r: KVReader, owner: int, keys: Sequence[bytes]) -> list[int]:
        """Positions of ``keys`` another live claimant holds, as ``r`` (a snapshot or write transaction) sees."""
        me, now = self._who(owner), self.clock()
        return [i for i, k in enumerate(keys) if self._other(r, k, me, now)]

    def settle(self, tx: KVTransaction, owner: int, keys: Sequence[bytes]) -> list[int]:
        """Inside the claimant's write transaction: drop its claims with its writes; -> the positions it no
        longer holds (its claim lapsed and another took the item: the writes must not commit)."""
        me = self._who(owner)
        lost = []
        now = self.clock()
        for i, k in enumerate(keys):
            raw = tx.get(k)
            row = _row(raw)
            if row is not None and row["exp"] > now + self.ttl + 1.0:
                row = None  # no claimant made it (see _other)
            if raw is not None and (row is None or row["o"] == me):
                tx.delete(k)
            elif row is not None:
                lost.append(i)
        return lost

    def release(self, owner: int, keys: Iterable[bytes]) -> None:
        """Drop ``owner``'s claims in a store transaction of their own (its writes did not commit)."""
        me = self._who(owner)
        with self.kv.transaction() as tx:
            for k in keys:
                row = _row(tx.get(k))
                if row is not None and row["o"] == me:
                    tx.delete(k)

    def prune(self) -> int:
        """Delete lapsed claims (a store-wide periodic job); -> how many."""
        now = self.clock()
        with self.kv.transaction() as tx:
            old = [k for k, raw in tx.range(CLAIM_PREFIX, prefix_end(CLAIM_PREFIX))
                   if (row := _row(raw)) is None or not now < row["exp"] <= now + self.ttl + 1.0]
            for k in old:
                tx.delete(k)
        return len(old)
