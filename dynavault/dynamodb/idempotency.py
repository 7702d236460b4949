"""ClientRequestTokens of TransactWriteItems and ExecuteTransaction, kept in the store for DynamoDB's 10 minutes.

A token's row is written in the same store transaction as the writes it made, and looked up again inside
that transaction before any write: a retry is recognised by every worker serving the store and after a
restart, and two copies of one request racing in two workers apply once (the store serializes their
transactions; the second finds the first's row and replays). A row holds a digest of the request (the
actions only: DynamoDB lets a retry change ReturnConsumedCapacity), its expiry, and what a replay answers
with — table names and capacity units, never item data. A read-only ExecuteTransaction is run again on a
retry (its row only pins the digest), so no item it read is ever kept.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import NamedTuple

import orjson

from dynavault.caller import Caller
from dynavault.errors import AWSError, validation
from dynavault.storage.kv.base import KVStore, prefix_end
from dynavault.storage.sealed import CatalogRecord

from .layout import TOKEN_PREFIX
from .values import MSG_NESTING

MSG_TOKEN_MISMATCH = "The request uses the same client token as a previous, but non-identical request."
IDEMPOTENCY_SECONDS = 600.0


class TokenClaim(NamedTuple):
    key: bytes  # the row: a hash of (account, region, operation, token)
    digest: str  # of the request's actions


class Replayed(Exception):  # noqa: N818 - a signal, not a failure
    """Raised inside the writes' transaction when the token was already used by an identical request."""

    def __init__(self, entry: dict) -> None:
        super().__init__("replayed")
        self.entry = entry


class IdempotencyTokens:
    def __init__(self, kv: KVStore, ttl: float = IDEMPOTENCY_SECONDS, clock: Callable[[], float] = time.time) -> None:
        self.kv = kv
        self.ttl = ttl
        self.clock = clock

    def __repr__(self) -> str:
        return "IdempotencyTokens()"

    def begin(self, caller: Caller, operation: str, token: str | None,
              payload: object) -> tuple[TokenClaim | None, dict | None]:
        """-> (the claim to check and record with the writes, an earlier answer to replay or None)."""
        if token is None:
            return None, None
        name = orjson.dumps([caller.account, caller.region, operation, token])
        try:
            canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            # nested deeper than the encoder goes (255 levels): far past DynamoDB's 32, refused as it refuses that
            raise validation(MSG_NESTING) from None
        claim = TokenClaim(TOKEN_PREFIX + hashlib.sha256(name).digest(), hashlib.sha256(canonical).hexdigest())
        return claim, self.check(self.kv, claim)

    def check(self, r, claim: TokenClaim) -> dict | None:
        """The live row for ``claim`` as ``r`` (the store, or the writes' transaction) sees it; raises
        IdempotentParameterMismatchException for a different request under the same token."""
        raw = r.get(claim.key)
        if raw is None:
            return None
        entry = orjson.loads(raw)
        if entry["exp"] <= self.clock():
            return None
        if entry["d"] != claim.digest:
            raise AWSError("IdempotentParameterMismatchException", MSG_TOKEN_MISMATCH)
        return entry

    def record(self, tx, claim: TokenClaim, tables: list[tuple[str, str, float]], *, responses: int = 0,
               read: bool = False) -> None:
        """Inside the transaction that made the writes: ``tables`` is (table id, name, units) in first-use order."""
        tx.put(claim.key, CatalogRecord(orjson.dumps({
            "d": claim.digest, "exp": self.clock() + self.ttl, "t": [list(t) for t in tables],
            "n": responses, "read": read})))

    def prune(self) -> int:
        """Delete expired rows (a store-wide periodic job); -> how many."""
        now = self.clock()
        with self.kv.transaction() as tx:
            old = [k for k, raw in tx.range(TOKEN_PREFIX, prefix_end(TOKEN_PREFIX)) if orjson.loads(raw)["exp"] <= now]
            for k in old:
                tx.delete(k)
        return len(old)
