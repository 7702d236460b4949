"""Transaction claims in the store (dynamodb/claims.py), as two processes on one store file see them: each
side here is its own SqliteKV connection pool and claimant, as a worker process is."""

from __future__ import annotations

import pytest

from dynavault.dynamodb.claims import StoreClaims
from dynavault.dynamodb.layout import CLAIM_PREFIX
from dynavault.storage.kv.sqlite import SqliteKV


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def two(tmp_path):
    clock = Clock()
    stores = [SqliteKV(tmp_path / "tables.db", writer_lock=tmp_path / "writer.lock") for _ in range(2)]
    yield [StoreClaims(s, f"host:{i}:x", ttl=10.0, clock=clock) for i, s in enumerate(stores)], clock
    for s in stores:
        s.close()


K1, K2 = CLAIM_PREFIX + b"1" * 32, CLAIM_PREFIX + b"2" * 32


def test_a_claim_is_all_or_nothing_and_seen_by_the_other_process(two):
    (a, b), _ = two
    assert a.claim(1, [K1]) == []
    assert b.claim(1, [K2, K1]) == [1]  # same owner number, another process: still another claimant
    assert b.held_by_others(b.kv, 7, [K2, K1]) == [1]
    assert a.claim(2, [K2]) == [], "b's refused claim must have claimed nothing"
    with a.kv.transaction() as tx:
        assert a.settle(tx, 1, [K1]) == []
    assert b.claim(1, [K1]) == []


def test_the_claims_of_a_dead_process_lapse(two):
    (a, b), clock = two
    assert a.claim(1, [K1, K2]) == []
    # a dies here (kill -9): its rows stay until they expire
    clock.now += 9.0
    assert b.claim(1, [K1]) == [0]
    clock.now += 1.5
    assert b.claim(1, [K1]) == []
    # a transaction of the dead holder that still tried to commit would find its claim taken
    with a.kv.transaction() as tx:
        assert a.settle(tx, 1, [K1, K2]) == [0]
    clock.now += 20
    assert b.prune() == 1  # b's own lapsed claim on K1 (K2 went with a's settle above)
