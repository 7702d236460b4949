"""Transactions under contention, across a crash, and across tables under different KMS keys (issue 6)."""

from __future__ import annotations

import random
import threading
import time

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_table

ACCOUNTS = 8
START = 100

def _transfer(src: str, dst: str, amount: int, table: str, ledger: str, txid: str) -> list[dict]:
    amt = {":a": {"N": str(amount)}}
    return [
        {"Update": {"TableName": table, "Key": {"pk": {"S": src}}, "UpdateExpression": "SET bal = bal - :a",
                    "ConditionExpression": "bal >= :a", "ExpressionAttributeValues": amt}},
        {"Update": {"TableName": table, "Key": {"pk": {"S": dst}}, "UpdateExpression": "SET bal = bal + :a",
                    "ExpressionAttributeValues": amt}},
        {"Put": {"TableName": ledger, "Item": {"pk": {"S": txid}, "src": {"S": src}, "dst": {"S": dst},
                                               "amt": {"N": str(amount)}},
                 "ConditionExpression": "attribute_not_exists(pk)"}},
    ]


def _setup_accounts(ddb, table, ledger):
    make_table(ddb, table)
    make_table(ddb, ledger)
    ddb.batch_write_item(RequestItems={table: [
        {"PutRequest": {"Item": {"pk": {"S": f"acct{i}"}, "bal": {"N": str(START)}}}} for i in range(ACCOUNTS)]})


def _check_books(ddb, table, ledger, ledger_ids):
    """Every balance equals START plus its ledger entries: a transfer is in the books whole or not at all."""
    accts = ddb.batch_get_item(RequestItems={table: {"Keys": [{"pk": {"S": f"acct{i}"}} for i in range(ACCOUNTS)],
                                                     "ConsistentRead": True}})["Responses"][table]
    balances = {a["pk"]["S"]: int(a["bal"]["N"]) for a in accts}
    assert sum(balances.values()) == START * ACCOUNTS
    entries = []
    ids = list(ledger_ids)
    for i in range(0, len(ids), 100):
        keys = [{"pk": {"S": x}} for x in ids[i:i + 100]]
        entries += ddb.batch_get_item(RequestItems={ledger: {"Keys": keys}})["Responses"].get(ledger, [])
    expected = {f"acct{i}": START for i in range(ACCOUNTS)}
    for e in entries:
        expected[e["src"]["S"]] -= int(e["amt"]["N"])
        expected[e["dst"]["S"]] += int(e["amt"]["N"])
    assert balances == expected
    assert all(v >= 0 for v in balances.values())
    return {e["pk"]["S"] for e in entries}


def test_conflicting_transfers_from_threads_keep_the_books(srv, unique_name):
    ddb = srv.client("dynamodb", access_key="630000000001")
    table, ledger = unique_name + "-acct", unique_name + "-ledger"
    _setup_accounts(ddb, table, ledger)
    done: list[str] = []
    tried: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        client = srv.client("dynamodb", access_key="630000000001")
        rng = random.Random(w)
        for n in range(40):
            src, dst = rng.sample(range(ACCOUNTS), 2)
            txid = f"w{w}-{n}"
            with lock:
                tried.append(txid)
            try:
                client.transact_write_items(TransactItems=_transfer(
                    f"acct{src}", f"acct{dst}", rng.randint(1, 60), table, ledger, txid))
                with lock:
                    done.append(txid)
            except ClientError as e:
                code = e.response["Error"]["Code"]
                if code != "TransactionCanceledException":
                    with lock:
                        errors.append(code)
                else:
                    codes = {r["Code"] for r in e.response["CancellationReasons"]}
                    assert codes <= {"None", "ConditionalCheckFailed", "TransactionConflict"}

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert done  # plenty succeed; some are cancelled by their balance condition
    present = _check_books(ddb, table, ledger, tried)
    assert present == set(done)


def test_kill_9_mid_stream_keeps_acknowledged_transactions_whole(start_server, unique_name):
    srv = start_server(allow_any_credentials=True)
    ddb = srv.client("dynamodb", access_key="630000000002")
    table, ledger = unique_name + "-acct", unique_name + "-ledger"
    _setup_accounts(ddb, table, ledger)
    acked: list[str] = []
    sent: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        client = srv.client("dynamodb", access_key="630000000002")
        rng = random.Random(7)
        n = 0
        while not stop.is_set():
            src, dst = rng.sample(range(ACCOUNTS), 2)
            txid = f"t{n}"
            n += 1
            sent.append(txid)
            try:
                client.transact_write_items(TransactItems=_transfer(
                    f"acct{src}", f"acct{dst}", rng.randint(1, 30), table, ledger, txid))
                acked.append(txid)
            except ClientError:
                pass  # cancelled by its condition: not acknowledged, must not be present
            except Exception:
                return  # the server died under us

    t = threading.Thread(target=stream)
    t.start()
    deadline = time.time() + 20
    while len(acked) < 30 and time.time() < deadline:
        time.sleep(0.05)
    srv.kill()  # SIGKILL in the middle of the stream
    stop.set()
    t.join(30)
    assert len(acked) >= 30
    srv.start()
    ddb = srv.client("dynamodb", access_key="630000000002")
    present = _check_books(ddb, table, ledger, sent)
    assert set(acked) <= present
    # at most the one in flight at the kill got committed without its answer
    assert len(present - set(acked)) <= 1


def test_unusable_key_fails_whole_transaction_and_defers_batch_items(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, key_refresh_seconds=1)
    account = "630000000003"
    ddb = srv.client("dynamodb", access_key=account)
    kms = srv.client("kms", access_key=account)
    good_key = kms.create_key()["KeyMetadata"]
    bad_key = kms.create_key()["KeyMetadata"]
    good = make_table(ddb, unique_name + "-good", sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": good_key["Arn"]})["TableName"]
    owned = make_table(ddb, unique_name + "-owned")["TableName"]
    bad = make_table(ddb, unique_name + "-bad", sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": bad_key["Arn"]})["TableName"]
    ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": t, "Item": {"pk": {"S": "seed"}}}} for t in (good, owned, bad)])
    filled = time.monotonic()  # the bad table's key was cached before this
    kms.disable_key(KeyId=bad_key["KeyId"])
    time.sleep(max(0.0, filled + 1.5 - time.monotonic()))  # past key_refresh_seconds: the cached key expires

    with pytest.raises(ClientError) as exc:
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": good, "Item": {"pk": {"S": "tx"}}}},
            {"Put": {"TableName": owned, "Item": {"pk": {"S": "tx"}}}},
            {"Put": {"TableName": bad, "Item": {"pk": {"S": "tx"}}}},
        ])
    err = exc.value.response["Error"]
    assert err["Code"] == "ValidationException"
    assert err["Message"].startswith(
        f"KMS key disabled error: com.amazonaws.services.kms.model.DisabledException: {bad_key['Arn']} is disabled.")
    for t in (good, owned):
        assert "Item" not in ddb.get_item(TableName=t, Key={"pk": {"S": "tx"}})
    with pytest.raises(ClientError) as exc:
        ddb.transact_get_items(TransactItems=[{"Get": {"TableName": t, "Key": {"pk": {"S": "seed"}}}}
                                              for t in (good, bad)])
    assert exc.value.response["Error"]["Message"].startswith("KMS key disabled error")

    # a batch serves the usable tables and hands the bad table's requests back untouched
    bad_reqs = [{"PutRequest": {"Item": {"pk": {"S": "b1"}}}}, {"DeleteRequest": {"Key": {"pk": {"S": "seed"}}}}]
    out = ddb.batch_write_item(RequestItems={good: [{"PutRequest": {"Item": {"pk": {"S": "b1"}}}}], bad: bad_reqs})
    assert out["UnprocessedItems"] == {bad: bad_reqs}
    assert "Item" in ddb.get_item(TableName=good, Key={"pk": {"S": "b1"}})
    got = ddb.batch_get_item(RequestItems={good: {"Keys": [{"pk": {"S": "seed"}}]},
                                           bad: {"Keys": [{"pk": {"S": "seed"}}]}})
    assert got["Responses"] == {good: [{"pk": {"S": "seed"}}]}
    assert got["UnprocessedKeys"] == {bad: {"Keys": [{"pk": {"S": "seed"}}]}}
    # nothing usable at all: the table's KMS error
    with pytest.raises(ClientError) as exc:
        ddb.batch_write_item(RequestItems={bad: bad_reqs})
    assert exc.value.response["Error"]["Message"].startswith("KMS key disabled error")
    with pytest.raises(ClientError) as exc:
        ddb.batch_get_item(RequestItems={bad: {"Keys": [{"pk": {"S": "seed"}}]}})
    assert exc.value.response["Error"]["Message"].startswith("KMS key disabled error")

    # key back: the client's retry of the unprocessed items goes through
    kms.enable_key(KeyId=bad_key["KeyId"])
    out = ddb.batch_write_item(RequestItems=out["UnprocessedItems"])
    assert out["UnprocessedItems"] == {}
    assert "Item" in ddb.get_item(TableName=bad, Key={"pk": {"S": "b1"}})
    assert "Item" not in ddb.get_item(TableName=bad, Key={"pk": {"S": "seed"}})
