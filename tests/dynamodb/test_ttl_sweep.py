"""The Time to Live sweeper against a real server: which items it deletes (and their index entries), the
change-path metric, bounded batches, TTL disabled again, persistence across a restart, and a table whose
KMS key is disabled (not swept until the key is back)."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest

from tests.lifecycle import create_cmk_table, wait_status

ACCOUNT = "123456789012"
FIVE_YEARS = 5 * 365 * 86400


def _ttl_removes(srv) -> int:
    text = urllib.request.urlopen(srv.endpoint + "/metrics", timeout=5).read().decode()
    m = re.search(r'^dynavault_item_changes_total\{cause="TTL",event="REMOVE"\} (\S+)$', text, re.M)
    return int(float(m.group(1))) if m else 0


def _wait_removes(srv, expected: int, timeout: float = 15.0) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        n = _ttl_removes(srv)
        if n >= expected:
            return n
        time.sleep(0.1)
    return _ttl_removes(srv)


def _enable(ddb, name: str, attr: str = "exp") -> None:
    ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": attr})


def _indexed_table(ddb, name: str) -> None:
    ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "g", "l")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{"IndexName": "byg", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}],
        LocalSecondaryIndexes=[{"IndexName": "byl", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                                                  {"AttributeName": "l", "KeyType": "RANGE"}],
                                "Projection": {"ProjectionType": "KEYS_ONLY"}}],
    )


def _keys(items) -> set[tuple[str, str]]:
    return {(i["pk"]["S"], i["sk"]["S"]) for i in items}


def _scan_all(ddb, **kw) -> list[dict]:
    out, start = [], None
    while True:
        page = ddb.scan(**kw, **({"ExclusiveStartKey": start} if start else {}))
        out += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return out


@pytest.fixture
def srv(start_server):
    return start_server(allow_any_credentials=True, ttl_sweep_seconds=0.3, ttl_cooldown_seconds=0)


def test_sweeper_deletes_exactly_the_expired_number_items_and_their_index_entries(srv, unique_name):
    ddb = srv.client("dynamodb")
    _indexed_table(ddb, unique_name)
    now = int(time.time())
    values = {
        "past": {"N": str(now - 100)},
        "past-fraction": {"N": f"{now - 50}.5"},
        "past-exponent": {"N": f"{(now - 1000) / 10**9:.9f}E9"},
        "almost-five-years": {"N": str(now - FIVE_YEARS + 86400)},
        "future": {"N": str(now + 3600)},
        "milliseconds": {"N": str(now * 1000)},
        "too-old": {"N": str(now - FIVE_YEARS - 86400)},
        "string": {"S": str(now - 100)},
        "number-set": {"NS": [str(now - 100)]},
        "string-set": {"SS": [str(now - 100)]},
        "list": {"L": [{"N": str(now - 100)}]},
        "nested": {"M": {"exp": {"N": str(now - 100)}}},
    }
    expired = {"past", "past-fraction", "past-exponent", "almost-five-years"}
    items = []
    for label, value in values.items():
        for part in range(3):  # several partitions, and sort keys within them
            items.append({"pk": {"S": f"p{part}"}, "sk": {"S": label}, "g": {"S": "G"}, "l": {"S": f"l-{label}"},
                          "exp": value})
    items.append({"pk": {"S": "p0"}, "sk": {"S": "no-attribute"}, "g": {"S": "G"}, "l": {"S": "l"}})
    for item in items:
        ddb.put_item(TableName=unique_name, Item=item)
    before = _ttl_removes(srv)
    time.sleep(1.0)  # TTL not enabled yet: nothing is deleted
    assert _ttl_removes(srv) == before
    # expired items are still returned by reads until the sweeper deletes them
    assert len(_scan_all(ddb, TableName=unique_name)) == len(items)

    _enable(ddb, unique_name)
    n_expired = 3 * len(expired)
    assert _wait_removes(srv, before + n_expired) == before + n_expired
    time.sleep(1.0)  # later passes find nothing more
    assert _ttl_removes(srv) == before + n_expired

    left = {(i["pk"]["S"], i["sk"]["S"]) for i in items if i["sk"]["S"] not in expired}
    assert _keys(_scan_all(ddb, TableName=unique_name, ConsistentRead=True)) == left
    gsi = ddb.query(TableName=unique_name, IndexName="byg", KeyConditionExpression="g = :g",
                    ExpressionAttributeValues={":g": {"S": "G"}})["Items"]
    assert _keys(gsi) == left
    lsi = []
    for part in range(3):
        lsi += ddb.query(TableName=unique_name, IndexName="byl", KeyConditionExpression="pk = :p",
                         ExpressionAttributeValues={":p": {"S": f"p{part}"}})["Items"]
    assert _keys(lsi) == left
    table = ddb.describe_table(TableName=unique_name)["Table"]
    assert table["ItemCount"] == len(left)
    assert {i["IndexName"]: i["ItemCount"] for i in table["GlobalSecondaryIndexes"]} == {"byg": len(left)}
    assert {i["IndexName"]: i["ItemCount"] for i in table["LocalSecondaryIndexes"]} == {"byl": len(left)}


def test_many_expired_items_are_deleted_in_batches(srv, unique_name):
    ddb = srv.client("dynamodb")
    ddb.create_table(TableName=unique_name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    now = int(time.time())
    n_expired, n_live = 450, 75  # several read batches (100) and many delete transactions (10)
    for start in range(0, n_expired + n_live, 25):
        puts = []
        for i in range(start, min(start + 25, n_expired + n_live)):
            exp = now - 60 if i < n_expired else now + 3600
            puts.append({"PutRequest": {"Item": {"pk": {"S": f"k{i:04d}"}, "exp": {"N": str(exp)}}}})
        ddb.batch_write_item(RequestItems={unique_name: puts})
    before = _ttl_removes(srv)
    _enable(ddb, unique_name)
    assert _wait_removes(srv, before + n_expired, timeout=30) == before + n_expired
    left = _scan_all(ddb, TableName=unique_name, ConsistentRead=True)
    assert sorted(i["pk"]["S"] for i in left) == [f"k{i:04d}" for i in range(n_expired, n_expired + n_live)]


def test_disabled_ttl_deletes_nothing_and_the_setting_survives_a_restart(srv, unique_name):
    ddb = srv.client("dynamodb")
    ddb.create_table(TableName=unique_name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    _enable(ddb, unique_name)
    ddb.update_time_to_live(TableName=unique_name, TimeToLiveSpecification={"Enabled": False, "AttributeName": "exp"})
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "exp": {"N": str(int(time.time()) - 60)}})
    before = _ttl_removes(srv)
    time.sleep(1.2)
    assert _ttl_removes(srv) == before
    assert len(_scan_all(ddb, TableName=unique_name)) == 1

    _enable(ddb, unique_name, "other")
    srv.restart()
    ddb = srv.client("dynamodb")
    assert ddb.describe_time_to_live(TableName=unique_name)["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED", "AttributeName": "other"}
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "b"}, "other": {"N": str(int(time.time()) - 60)}})
    assert _wait_removes(srv, 1) == 1  # the counter restarted with the process
    assert _keys_of(ddb, unique_name) == {"a"}


def _keys_of(ddb, name: str) -> set[str]:
    return {i["pk"]["S"] for i in _scan_all(ddb, TableName=name, ConsistentRead=True)}


def test_a_table_whose_key_is_disabled_is_not_swept_until_the_key_is_back(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, ttl_sweep_seconds=0.3, ttl_cooldown_seconds=0,
                       key_refresh_seconds=60, key_check_seconds=0.5, archive_after_seconds=600)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    create_cmk_table(ddb, unique_name, key["Arn"])
    _enable(ddb, unique_name)
    expires = int(time.time()) + 4  # not expired yet while the key is being disabled
    for i in range(4):
        ddb.put_item(TableName=unique_name, Item={"pk": {"S": f"k{i}"}, "exp": {"N": str(expires)}})
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "keep"}, "exp": {"N": str(expires + 3600)}})
    time.sleep(0.8)  # the sweeper has looked at the table, so its keys are cached (refresh: 60 s)
    kms.disable_key(KeyId=key["KeyId"])
    wait_status(ddb, unique_name, "INACCESSIBLE_ENCRYPTION_CREDENTIALS", 10)
    # while the key is unusable UpdateTimeToLive fails with the KMS error (sse-spec §1.5); Describe works
    with pytest.raises(Exception) as err:
        ddb.update_time_to_live(TableName=unique_name, TimeToLiveSpecification={"Enabled": False,
                                                                                 "AttributeName": "exp"})
    assert err.value.response["Error"]["Message"].startswith("KMS key disabled error: ")
    assert ddb.describe_time_to_live(TableName=unique_name)["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"
    while time.time() < expires + 2.5:  # expired, and several sweeps later
        time.sleep(0.2)
    assert _ttl_removes(srv) == 0
    # a flagged table is skipped without asking KMS at all (its cached keys were dropped when it was flagged)
    assert "TTL sweep skipped" not in srv.log_text()
    kms.enable_key(KeyId=key["KeyId"])
    wait_status(ddb, unique_name, "ACTIVE", 10)
    assert _wait_removes(srv, 4) == 4
    assert _keys_of(ddb, unique_name) == {"keep"}
