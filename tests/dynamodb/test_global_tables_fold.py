"""Same-server replicas are written in their origin write's own transaction (replication/fold.py): a write is in
every other member served by the server when its PutItem returns, with its stream record and latency metric, and
no queue row; a member whose key is unusable falls back to the queue and catches up from it, then is written
with its origin's writes again; a damaged replica never fails its origin's write. A server of several worker
processes keeps the queue."""

from __future__ import annotations

import sqlite3
import time

from tests.canary import rows_of
from tests.dynamodb.gt_util import (
    EAST,
    WEST,
    converge,
    global_table,
    latency_count,
    pair_clients,
    stopped_pair_with_one_item,
    table_id,
)
from tests.dynamodb.streams_util import consume, summary
from tests.wire import signed_request

ACCOUNT = "678901234567"
REPLICATION = b"\x00\x00replication\x00"
TREES = b"T"


def _put(srv, region: str, name: str, item: dict) -> None:
    r = signed_request(srv.endpoint, "DynamoDB_20120810.PutItem", {"TableName": name, "Item": item},
                       access_key=ACCOUNT, region=region)
    assert r.status == 200, r.body


def _get(srv, region: str, name: str, key: str) -> dict | None:
    r = signed_request(srv.endpoint, "DynamoDB_20120810.GetItem",
                       {"TableName": name, "Key": {"pk": {"S": key}}, "ConsistentRead": True},
                       access_key=ACCOUNT, region=region)
    assert r.status == 200, r.body
    return r.json().get("Item")


def _fault(srv, name: str, region: str) -> str:
    r = signed_request(srv.endpoint, "DynavaultAdmin.PutFault", {"TableName": name, "KmsUnavailable": True},
                       access_key=ACCOUNT, region=region)
    assert r.status == 200, r.body
    return r.json()["FaultId"]


def _unfault(srv, fault: str, region: str) -> None:
    r = signed_request(srv.endpoint, "DynavaultAdmin.DeleteFault", {"FaultId": fault}, access_key=ACCOUNT,
                       region=region)
    assert r.status == 200, r.body


def _immediately_visible(srv, name: str, keys: list[str], source: str = EAST, target: str = WEST) -> None:
    """Each write is in the other region's replica as soon as its PutItem returned (the replication job, every
    20 ms, would miss most of them)."""
    missed = []
    for k in keys:
        _put(srv, source, name, {"pk": {"S": k}, "v": {"S": f"from {source}"}})
        if _get(srv, target, name, k) != {"pk": {"S": k}, "v": {"S": f"from {source}"}}:
            missed.append(k)
    assert missed == []


def test_a_write_is_in_the_same_server_replica_when_its_put_returns(start_server, unique_name):
    srv = start_server(allow_any_credentials=True)
    c = pair_clients(srv, ACCOUNT)
    global_table(c, unique_name, [EAST, WEST])
    _immediately_visible(srv, unique_name, [f"k{i}" for i in range(20)])
    _immediately_visible(srv, unique_name, [f"w{i}" for i in range(10)], source=WEST, target=EAST)
    c[EAST].delete_item(TableName=unique_name, Key={"pk": {"S": "k0"}})
    assert _get(srv, WEST, unique_name, "k0") is None
    # the replica's stream shows the replicated writes, the latency metric counts each one, exactly once
    st = srv.client("dynamodbstreams", access_key=ACCOUNT, region=WEST)
    got = summary(consume(st, c[WEST].describe_table(TableName=unique_name)["Table"]["LatestStreamArn"]))
    assert [(e, k) for e, k, _, _ in got] == [("INSERT", (("pk", f"k{i}"),)) for i in range(20)] + \
        [("INSERT", (("pk", f"w{i}"),)) for i in range(10)] + [("REMOVE", (("pk", "k0"),))]
    assert latency_count(srv, EAST, WEST) == 21
    assert latency_count(srv, WEST, EAST) == 10
    # no queue row was needed: both members are served here
    db = srv.data_dir / "tables.db"
    assert rows_of(db, REPLICATION + b"q") == []
    time.sleep(0.5)  # nothing travels back later either
    assert latency_count(srv, EAST, WEST) == 21 and latency_count(srv, WEST, EAST) == 10
    assert converge(list(c.values()), unique_name)["w1"] == {"pk": {"S": "w1"}, "v": {"S": f"from {WEST}"}}


def test_a_replica_whose_key_is_unusable_is_queued_and_catches_up(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, key_refresh_seconds=1)
    c = pair_clients(srv, ACCOUNT)
    global_table(c, unique_name, [EAST, WEST])
    fault = _fault(srv, unique_name, WEST)
    time.sleep(1.5)  # every cached key of the table in us-west-2 has expired
    for i in range(5):  # the origin's writes never fail for the replica's key
        _put(srv, EAST, unique_name, {"pk": {"S": f"while-{i}"}})
    db = srv.data_dir / "tables.db"
    queue = rows_of(db, REPLICATION + b"q" + table_id(c[EAST], unique_name))
    assert len(queue) == 5  # kept for us-west-2 until it can apply them
    _unfault(srv, fault, WEST)
    got = converge(list(c.values()), unique_name, timeout=20)
    assert set(got) == {f"while-{i}" for i in range(5)}
    # once its key is back in the cache, us-west-2 is written with its origin's writes again
    deadline = time.time() + 10
    while latency_count(srv, EAST, WEST) < 5:
        assert time.time() < deadline
        time.sleep(0.1)
    time.sleep(0.5)
    _immediately_visible(srv, unique_name, [f"after-{i}" for i in range(10)])
    assert latency_count(srv, EAST, WEST) == 15


def test_a_damaged_replica_never_fails_its_origins_write(start_server, unique_name):
    srv, c, west_id, db = stopped_pair_with_one_item(start_server, unique_name, ACCOUNT)
    leaves = rows_of(db, TREES + west_id + bytes(4))  # the replica's only leaf
    assert leaves
    con = sqlite3.connect(db)
    with con:
        for key, value in leaves:
            b = bytearray(value)
            b[len(b) // 2] ^= 0x01
            con.execute("UPDATE kv SET v = ? WHERE k = ?", (bytes(b), key))
    con.close()
    srv.start()
    c = pair_clients(srv, ACCOUNT)
    time.sleep(0.5)  # the replication job has the replica's key in the cache again
    c[EAST].put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "v": {"S": "two"}})
    assert c[EAST].get_item(TableName=unique_name, Key={"pk": {"S": "a"}})["Item"]["v"] == {"S": "two"}
    assert "not written with its origin's write (queued instead)" in srv.log_text()
    assert len(rows_of(db, REPLICATION + b"q" + table_id(c[EAST], unique_name))) >= 1
    bad = signed_request(srv.endpoint, "DynamoDB_20120810.GetItem",
                         {"TableName": unique_name, "Key": {"pk": {"S": "a"}}}, access_key=ACCOUNT, region=WEST)
    assert bad.status == 500, bad.body


def test_with_several_workers_replicas_go_through_the_queue(start_server, unique_name):
    """Worker processes do not fold (fold.py: their write transactions would hold the cross-process write lock
    twice as long): the queue carries every write, and every replica converges."""
    srv = start_server(allow_any_credentials=True, workers=2)
    c = pair_clients(srv, ACCOUNT)
    global_table(c, unique_name, [EAST, WEST])
    for i in range(10):
        _put(srv, EAST, unique_name, {"pk": {"S": f"k{i}"}})
    assert set(converge(list(c.values()), unique_name)) == {f"k{i}" for i in range(10)}
    assert rows_of(srv.data_dir / "tables.db", REPLICATION + b"q" + table_id(c[EAST], unique_name))
