"""The table-key cache's scope and lifetime, in-process on a fake key port and an injected clock (no server, no
sleeps): one Decrypt per (connection, principal, table) per refresh interval; a closed connection, an expired
entry, a new table key blob or a deleted table each cost the next request a Decrypt; the process-wide cache is
opt-in. tests/sse/test_key_cache.py proves the same end to end, counted in the audit trail."""

from __future__ import annotations

import dataclasses

from dynavault.sse.table_keys import TableKeyRef, TableKeyService
from tests.sse.fake_key_port import ACCOUNT, ARN, OWNED_ACCOUNT, USER, Clock, FakeKeys, table

REFRESH = 300.0
BOB = dataclasses.replace(USER, principal_arn=f"arn:aws:iam::{ACCOUNT}:user/bob")


def _service(port: FakeKeys, clock: Clock, *, shared: bool = False) -> TableKeyService:
    return TableKeyService(port, owned_key_arn=lambda region: "owned", owned_account=OWNED_ACCOUNT,
                           refresh_seconds=REFRESH, shared_cache=shared, clock=clock)


def _on(connection: int, caller=USER):
    return dataclasses.replace(caller, connection_id=connection)


def _decrypts(port: FakeKeys) -> int:
    return sum(1 for op, _ in port.calls if op == "Decrypt")


def test_one_decrypt_per_connection_until_the_interval_passes() -> None:
    port, clock = FakeKeys(), Clock()
    keys = _service(port, clock)
    ref = table(keys)
    for _ in range(1000):  # a connection's repeated requests: all served by one entry
        keys.crypto_for(_on(1), ref)
    assert _decrypts(port) == 1
    clock.now += REFRESH - 0.001
    keys.crypto_for(_on(1), ref)
    assert _decrypts(port) == 1
    clock.now += 0.001  # exactly the interval: the entry is stale
    keys.crypto_for(_on(1), ref)
    assert _decrypts(port) == 2
    for conn in range(2, 52):  # a connection per request: a Decrypt per request
        keys.crypto_for(_on(conn), ref)
    assert _decrypts(port) == 52
    assert keys.cached_entries() == 51


def test_entries_are_per_principal_and_per_table() -> None:
    port, clock = FakeKeys(), Clock()
    keys = _service(port, clock)
    ref, other = table(keys), table(keys)
    keys.crypto_for(_on(1), ref)
    keys.crypto_for(_on(1, BOB), ref)  # same connection, another principal: its own Decrypt (its own policy check)
    keys.crypto_for(_on(1), other)
    assert [(op, who) for op, who in port.calls if op == "Decrypt"] == [
        ("Decrypt", USER.principal_arn), ("Decrypt", BOB.principal_arn), ("Decrypt", USER.principal_arn)]
    keys.crypto_for(_on(1, BOB), ref)
    assert _decrypts(port) == 3


def test_a_closed_connection_drops_its_entries_only() -> None:
    port, clock = FakeKeys(), Clock()
    keys = _service(port, clock)
    a, b = table(keys), table(keys)
    for conn in (1, 2):
        keys.crypto_for(_on(conn), a)
        keys.crypto_for(_on(conn), b)
    assert keys.cached_entries() == 4
    keys.drop_connection(1)
    assert keys.cached_entries() == 2
    keys.crypto_for(_on(2), a)  # the other connection's entry still serves
    assert _decrypts(port) == 4
    keys.crypto_for(_on(1), a)  # a new request on a reused connection id decrypts again
    assert _decrypts(port) == 5
    keys.drop_connection(99)  # unknown: nothing happens
    assert keys.cached_entries() == 3


def test_prune_drops_expired_entries_and_unused_key_material() -> None:
    port, clock = FakeKeys(), Clock()
    keys = _service(port, clock)
    ref = table(keys)
    blob = ref.sse["table_key_blob"]
    keys.crypto_for(_on(1), ref)
    clock.now += REFRESH / 2
    keys.crypto_for(_on(2), ref)
    clock.now += REFRESH / 2
    keys.prune()  # connection 1's entry is now stale, connection 2's is not
    assert keys.cached_entries() == 1
    assert keys.live_crypto(blob) is not None
    clock.now += REFRESH / 2
    keys.prune()
    assert keys.cached_entries() == 0
    assert keys.live_crypto(blob) is None  # no live entry holds the table's keys: they leave memory
    keys.crypto_for(_on(2), ref)
    assert _decrypts(port) == 3


def test_a_new_table_key_blob_is_decrypted_at_once() -> None:
    port, clock = FakeKeys(), Clock()
    keys = _service(port, clock)
    ref = table(keys)
    first = keys.crypto_for(_on(1), ref)
    # a key switch committed: the catalog now names another blob for the same table
    switched = keys.create_table_keys(USER, "t1", ref.table_id, ref.sse["mode"], ARN)
    moved = TableKeyRef(ref.table_id, ref.table_name, ref.account, ref.region, switched)
    second = keys.crypto_for(_on(1), moved)
    assert _decrypts(port) == 2 and second is not first
    keys.retire(moved)  # DeleteTable forgets every entry of the table
    assert keys.cached_entries() == 0


def test_process_wide_cache_is_opt_in() -> None:
    port, clock = FakeKeys(), Clock()
    keys = _service(port, clock, shared=True)
    ref = table(keys)
    for conn in range(1, 20):
        keys.crypto_for(_on(conn), ref)
    assert _decrypts(port) == 1
    keys.crypto_for(_on(1, BOB), ref)  # still per principal
    assert _decrypts(port) == 2
    clock.now += REFRESH
    keys.crypto_for(_on(7), ref)
    assert _decrypts(port) == 3
