"""TransactionConflict: items held by an in-flight transaction (issue 6).

The server runs handlers one at a time, so over HTTP two transactions never overlap. These tests call
the real service in-process: once with an item held by another in-flight transaction (a claim in the
engine's real claim table), and once from many threads at the same time, which the server does not do
today but a threaded worker pool would.
"""

from __future__ import annotations

import random
import threading

import orjson
import pytest

from dynavault.caller import Caller
from dynavault.config import Settings
from dynavault.dynamodb.operations import operations
from dynavault.errors import AWSError
from dynavault.server.runtime import build_runtime

T = "conflict-table"


def _service(runtime):
    """(database, operations, caller) of ``runtime``, with table T made."""
    db = runtime.components["dynamodb"]
    ops = operations(db)
    caller = Caller(account="123456789012", region="us-east-1", principal_arn="arn:aws:iam::123456789012:root",
                    connection_id=1)
    ops["CreateTable"](caller, {"TableName": T, "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                                "BillingMode": "PAY_PER_REQUEST"})
    return db, ops, caller


@pytest.fixture
def db(tmp_path):
    runtime = build_runtime(Settings(data_dir=str(tmp_path / "data"), root_key_file=str(tmp_path / "root.key")))
    yield _service(runtime)
    runtime.close()


def _raises(fn, *args) -> AWSError:
    with pytest.raises(AWSError) as exc:
        fn(*args)
    return exc.value


def test_item_held_by_an_inflight_transaction(db):
    db, ops, caller = db
    CLAIMS = db.transaction_state.claims  # the store's claim table, as the engine sees it
    meta = db.data_table(caller, T)
    from dynavault.dynamodb.keys import key_of_request

    hkey, skey, _ = key_of_request(meta, {"pk": {"S": "held"}})
    ident = (meta.table_id, hkey, skey)
    other = 10**15
    assert CLAIMS.claim(other, [ident]) == []
    try:
        e = _raises(ops["TransactWriteItems"], caller, {"TransactItems": [
            {"Put": {"TableName": T, "Item": {"pk": {"S": "free"}}}},
            {"Put": {"TableName": T, "Item": {"pk": {"S": "held"}}}}]})
        assert e.code == "TransactionCanceledException"
        assert [r["Code"] for r in e.extra["CancellationReasons"]] == ["None", "TransactionConflict"]
        e = _raises(ops["TransactGetItems"], caller, {"TransactItems": [
            {"Get": {"TableName": T, "Key": {"pk": {"S": "held"}}}}]})
        assert e.code == "TransactionCanceledException"
        e = _raises(ops["BatchWriteItem"], caller, {"RequestItems": {T: [
            {"PutRequest": {"Item": {"pk": {"S": "held"}}}}]}})
        assert e.code == "TransactionConflictException"
        e = _raises(ops["ExecuteStatement"], caller, {"Statement": f"INSERT INTO \"{T}\" VALUE {{'pk': 'held'}}"})
        assert e.code == "TransactionConflictException"
        assert "Item" not in ops["GetItem"](caller, {"TableName": T, "Key": {"pk": {"S": "free"}}})
    finally:
        CLAIMS.release(other, [ident])
    ops["TransactWriteItems"](caller, {"TransactItems": [{"Put": {"TableName": T, "Item": {"pk": {"S": "held"}}}}]})
    assert "Item" in ops["GetItem"](caller, {"TableName": T, "Key": {"pk": {"S": "held"}}})
    assert CLAIMS.held() == 0


def test_threads_calling_the_service_directly_keep_the_sum(db):
    db, ops, caller = db
    CLAIMS = db.transaction_state.claims  # the store's claim table, as the engine sees it
    n_accts = 5
    for i in range(n_accts):
        ops["PutItem"](caller, {"TableName": T, "Item": {"pk": {"S": f"a{i}"}, "bal": {"N": "50"}}})
    outcomes: dict[str, int] = {}
    lock = threading.Lock()

    def worker(w: int) -> None:
        rng = random.Random(w)
        for _ in range(60):
            src, dst = rng.sample(range(n_accts), 2)
            amt = {":a": {"N": str(rng.randint(1, 20))}}
            try:
                ops["TransactWriteItems"](caller, {"TransactItems": [
                    {"Update": {"TableName": T, "Key": {"pk": {"S": f"a{src}"}}, "UpdateExpression": "SET bal = bal - :a",
                                "ConditionExpression": "bal >= :a", "ExpressionAttributeValues": amt}},
                    {"Update": {"TableName": T, "Key": {"pk": {"S": f"a{dst}"}}, "UpdateExpression": "SET bal = bal + :a",
                                "ExpressionAttributeValues": amt}}]})
                key = "ok"
            except AWSError as e:
                assert e.code == "TransactionCanceledException", e
                key = "+".join(sorted({r["Code"] for r in e.extra["CancellationReasons"]} - {"None"}))
            with lock:
                outcomes[key] = outcomes.get(key, 0) + 1

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.get("ok", 0) > 0
    assert set(outcomes) <= {"ok", "ConditionalCheckFailed", "TransactionConflict",
                             "ConditionalCheckFailed+TransactionConflict"}
    total = 0
    for i in range(n_accts):
        # a handler's result is what goes on the wire: decode it as a client would
        got = orjson.loads(orjson.dumps(ops["GetItem"](caller, {"TableName": T, "Key": {"pk": {"S": f"a{i}"}}})))
        bal = int(got["Item"]["bal"]["N"])
        assert bal >= 0
        total += bal
    assert total == 50 * n_accts
    assert CLAIMS.held() == 0


def test_snapshot_reads_on_other_threads_always_see_the_whole_sum(db):
    """TransactGetItems, Scan and BatchGetItem read from a snapshot without the write lock: run beside
    writers on other threads, every answer still sees each transfer whole (the books always balance)."""
    db, ops, caller = db
    CLAIMS = db.transaction_state.claims  # the store's claim table, as the engine sees it
    n_accts = 4
    for i in range(n_accts):
        ops["PutItem"](caller, {"TableName": T, "Item": {"pk": {"S": f"a{i}"}, "bal": {"N": "50"}}})
    keys = [{"pk": {"S": f"a{i}"}} for i in range(n_accts)]
    stop = threading.Event()

    def writer(w: int) -> None:
        rng = random.Random(w)
        while not stop.is_set():
            src, dst = rng.sample(range(n_accts), 2)
            amt = {":a": {"N": str(rng.randint(1, 20))}}
            try:
                ops["TransactWriteItems"](caller, {"TransactItems": [
                    {"Update": {"TableName": T, "Key": keys[src], "UpdateExpression": "SET bal = bal - :a",
                                "ConditionExpression": "bal >= :a", "ExpressionAttributeValues": amt}},
                    {"Update": {"TableName": T, "Key": keys[dst], "UpdateExpression": "SET bal = bal + :a",
                                "ExpressionAttributeValues": amt}}]})
            except AWSError as e:
                assert e.code == "TransactionCanceledException", e

    def total(items: list) -> int:
        items = orjson.loads(orjson.dumps(items))
        assert len(items) == n_accts
        return sum(int(it["bal"]["N"]) for it in items)

    writers = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(2)]
    for t in writers:
        t.start()
    sums = []
    try:
        for _ in range(100):
            try:
                got = ops["TransactGetItems"](caller, {"TransactItems": [
                    {"Get": {"TableName": T, "Key": k}} for k in keys]})
                sums.append(total([r["Item"] for r in got["Responses"]]))
            except AWSError as e:  # an item claimed by an in-flight write transaction: allowed, as today
                assert e.code == "TransactionCanceledException", e
            sums.append(total(ops["Scan"](caller, {"TableName": T})["Items"]))
            sums.append(total(ops["BatchGetItem"](caller, {"RequestItems": {T: {"Keys": keys}}})["Responses"][T]))
    finally:
        stop.set()
        for t in writers:
            t.join(10)
    assert sums and set(sums) == {50 * n_accts}
    assert CLAIMS.held() == 0


def _transfer(token: str) -> dict:
    return {"ClientRequestToken": token, "TransactItems": [
        {"Update": {"TableName": T, "Key": {"pk": {"S": "acct"}}, "UpdateExpression": "ADD bal :a",
                    "ExpressionAttributeValues": {":a": {"N": "1"}}}}]}


def _balance(ops, caller) -> int:
    got = orjson.loads(orjson.dumps(ops["GetItem"](caller, {"TableName": T, "Key": {"pk": {"S": "acct"}}})))
    return int(got.get("Item", {}).get("bal", {}).get("N", "0"))


def test_the_same_request_in_flight_in_this_process_is_transaction_in_progress(db):
    """A retry racing the first send of its ClientRequestToken (another thread) is told the first is still in
    progress, as DynamoDB tells it, not a TransactionConflict with its own item; nothing is written."""
    db, ops, caller = db
    claims = db.transaction_state.claims
    request = _transfer("tok-race")
    token, _ = db.transaction_state.tokens.begin(caller, "TransactWriteItems", "tok-race", request["TransactItems"])
    other = 10**15
    assert claims.claim(other, [("token", token.key)]) == []
    try:
        e = _raises(ops["TransactWriteItems"], caller, request)
        assert (e.code, e.message) == ("TransactionInProgressException",
                                       "Transaction from previous request is still in progress")
        assert _balance(ops, caller) == 0
        ops["TransactWriteItems"](caller, _transfer("tok-other"))  # another token is not held up
        assert _balance(ops, caller) == 1
    finally:
        claims.release(other, [("token", token.key)])
    ops["TransactWriteItems"](caller, request)
    ops["TransactWriteItems"](caller, request)  # a replay
    assert _balance(ops, caller) == 2
    assert claims.held() == 0


def test_the_same_request_in_flight_in_another_worker_is_transaction_in_progress(tmp_path):
    """With workers the token's claim is a store row another process's retry finds."""
    from dynavault.dynamodb.claims import StoreClaims, token_claim_key
    from dynavault.storage.kv.sqlite import SqliteKV

    settings = Settings(data_dir=str(tmp_path / "data"), root_key_file=str(tmp_path / "root.key"))
    runtime = build_runtime(settings, worker=True)
    other_store = None
    try:
        db, ops, caller = _service(runtime)
        assert db.transaction_state.shared is not None
        request = _transfer("tok-race")
        token, _ = db.transaction_state.tokens.begin(caller, "TransactWriteItems", "tok-race",
                                                     request["TransactItems"])
        data = tmp_path / "data"
        other_store = SqliteKV(data / "tables.db", writer_lock=data / "writer.lock")
        other = StoreClaims(other_store, "elsewhere:1:x")
        assert other.claim(1, [token_claim_key(token.key)]) == []
        e = _raises(ops["TransactWriteItems"], caller, request)
        assert e.code == "TransactionInProgressException"
        assert _balance(ops, caller) == 0
        ops["TransactWriteItems"](caller, _transfer("tok-other"))
        other.release(1, [token_claim_key(token.key)])
        ops["TransactWriteItems"](caller, request)
        ops["TransactWriteItems"](caller, request)
        assert _balance(ops, caller) == 2
    finally:
        if other_store is not None:
            other_store.close()
        runtime.close()
