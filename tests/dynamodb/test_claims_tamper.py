"""Transaction claim rows altered on disk (dynamodb/claims.py over a real SQLite store): a row that is not a
claim, or one claiming to last longer than any claim is made for, counts as no claim and is pruned; a
transaction is never refused, and nothing fails, because of it."""

from __future__ import annotations

import orjson
import pytest

from dynavault.dynamodb.claims import StoreClaims
from dynavault.dynamodb.layout import CLAIM_PREFIX
from dynavault.storage.kv.sqlite import SqliteKV
from dynavault.storage.sealed import CatalogRecord

K1, K2 = CLAIM_PREFIX + b"1" * 32, CLAIM_PREFIX + b"2" * 32
BAD = [b"\xff\x00 not json", b"[1, 2]", b'{"o": 3, "exp": "soon"}', b'{"o": "x"}', b'{"o": "x", "exp": 1e400}',
       b'{"o": "dead/1", "exp": 4000000000}']


@pytest.fixture
def claims(tmp_path):
    kv = SqliteKV(tmp_path / "tables.db", writer_lock=tmp_path / "writer.lock")
    yield StoreClaims(kv, "host:1:x", ttl=10.0, clock=lambda: 1000.0)
    kv.close()


@pytest.mark.parametrize("raw", BAD)
def test_an_altered_claim_row_counts_as_none_and_is_pruned(claims, raw):
    with claims.kv.transaction() as tx:
        tx.put(K1, CatalogRecord(raw))
    assert claims.held_by_others(claims.kv, 1, [K1, K2]) == []
    assert claims.claim(1, [K1, K2]) == []
    assert orjson.loads(claims.kv.get(K1))["o"] == "host:1:x/1"  # the item is claimed again
    with claims.kv.transaction() as tx:
        tx.put(K2, CatalogRecord(raw))
        assert claims.settle(tx, 1, [K1, K2]) == []  # not lost: nobody else holds it
    with claims.kv.transaction() as tx:
        tx.put(K1, CatalogRecord(raw))
    claims.release(2, [K1])
    assert claims.prune() == 1 and claims.kv.get(K1) is None
