"""The sweeper re-checks each item where it deletes it: writes that land between its scan and its delete
(a renewed expiry, a delete, TTL disabled) win. Driven step by step in-process over the real runtime
(store, catalog, keys, item-change path), since a server process cannot pause its sweeper between the two."""

from __future__ import annotations

import time

import orjson
import pytest

from dynavault.caller import Caller
from dynavault.config import Settings
from dynavault.dynamodb.operations import operations
from dynavault.dynamodb.ttl import TTLSweeper
from dynavault.server.runtime import build_runtime

T = "recheck-table"


@pytest.fixture
def env(tmp_path):
    runtime = build_runtime(Settings(data_dir=str(tmp_path / "data"), root_key_file=str(tmp_path / "root.key"),
                                     ttl_cooldown_seconds=0))
    db = runtime.components["dynamodb"]
    ops = operations(db)
    caller = Caller(account="123456789012", region="us-east-1", principal_arn="arn:aws:iam::123456789012:root",
                    connection_id=1)
    ops["CreateTable"](caller, {"TableName": T, "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                                "BillingMode": "PAY_PER_REQUEST"})
    ops["UpdateTimeToLive"](caller, {"TableName": T, "TimeToLiveSpecification": {"Enabled": True,
                                                                                  "AttributeName": "exp"}})
    yield db, ops, caller
    runtime.close()


def _put(ops, caller, pk: str, exp: int) -> None:
    ops["PutItem"](caller, {"TableName": T, "Item": {"pk": {"S": pk}, "exp": {"N": str(exp)}}})


def _left(ops, caller) -> set[str]:
    # answers hold items as raw JSON fragments, as they go on the wire
    page = orjson.loads(orjson.dumps(ops["Scan"](caller, {"TableName": T, "ConsistentRead": True})))
    return {i["pk"]["S"] for i in page["Items"]}


def test_writes_between_scan_and_delete_win(env):
    db, ops, caller = env
    past = int(time.time()) - 60
    for pk in ("renewed", "deleted", "expired"):
        _put(ops, caller, pk, past)
    sweeper = TTLSweeper(db)
    steps = sweeper._pass()
    next(steps)  # the scan: all three are expired
    _put(ops, caller, "renewed", int(time.time()) + 3600)
    ops["DeleteItem"](caller, {"TableName": T, "Key": {"pk": {"S": "deleted"}}})
    for _ in steps:
        pass
    assert sweeper.deleted == 1
    assert _left(ops, caller) == {"renewed"}


def test_ttl_disabled_between_scan_and_delete_deletes_nothing(env):
    db, ops, caller = env
    past = int(time.time()) - 60
    for i in range(3):
        _put(ops, caller, f"k{i}", past)
    sweeper = TTLSweeper(db)
    steps = sweeper._pass()
    next(steps)
    ops["UpdateTimeToLive"](caller, {"TableName": T, "TimeToLiveSpecification": {"Enabled": False,
                                                                                  "AttributeName": "exp"}})
    for _ in steps:
        pass
    assert sweeper.deleted == 0
    assert _left(ops, caller) == {"k0", "k1", "k2"}
    # enabled again: the next pass (run at once, outside any event loop) deletes them
    ops["UpdateTimeToLive"](caller, {"TableName": T, "TimeToLiveSpecification": {"Enabled": True,
                                                                                  "AttributeName": "exp"}})
    assert sweeper.sweep() == 3
    assert _left(ops, caller) == set()
