"""Global tables at rest: no plaintext in any replica's storage, the replication queues, clocks or checkpoints
(the canary scan); a replica's damaged blobs, clocks and queue rows are integrity errors, never wrong data;
replicated writes never travel back to where they came from."""

from __future__ import annotations

import time

import pytest

from tests.canary import flip_bit, rows_of, rows_under, scan, set_row
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
from tests.wire import signed_request

ACCOUNT = "456789012345"
REPLICATION = b"\x00\x00replication\x00"
TREES = b"T"


def test_canary_scan_covers_replicas_and_replication_rows(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, key_refresh_seconds=1)
    c = pair_clients(srv, ACCOUNT)
    global_table(c, unique_name, [EAST, WEST])
    canaries = {EAST: "canary-gt-east-Quokka4471", WEST: "canary-gt-west-Axolotl9038"}
    other = {EAST: WEST, WEST: EAST}
    for region, canary in canaries.items():
        # a replica served here is written with its origin's writes, without a queue row, unless its key is
        # unusable: then the rows wait in the queue (which always keeps its last row)
        fault = signed_request(srv.endpoint, "DynavaultAdmin.PutFault", {"TableName": unique_name,
                               "KmsUnavailable": True}, access_key=ACCOUNT, region=other[region])
        assert fault.status == 200, fault.body
        time.sleep(1.5)
        for i in range(5):
            c[region].put_item(TableName=unique_name, Item={
                "pk": {"S": f"{canary}-key-{i}"}, "v": {"S": canary}, "b": {"B": canary.encode() + b"-bin"}})
        gone = signed_request(srv.endpoint, "DynavaultAdmin.DeleteFault", {"FaultId": fault.json()["FaultId"]},
                              access_key=ACCOUNT, region=other[region])
        assert gone.status == 200, gone.body
        converge(list(c.values()), unique_name)
    c[EAST].delete_item(TableName=unique_name, Key={"pk": {"S": f"{canaries[EAST]}-key-0"}})
    converge(list(c.values()), unique_name)
    assert srv.stop() == 0
    db = srv.data_dir / "tables.db"
    # the scan covers what replication keeps: both queues, the clocks and the checkpoints
    assert rows_under(db, REPLICATION + b"q") >= 2
    assert rows_under(db, REPLICATION + b"c") >= 20
    assert rows_under(db, REPLICATION + b"p") == 2
    needles = list(canaries.values()) + [v + "-key-1" for v in canaries.values()]
    assert scan([srv.data_dir, srv.log_path], needles) == []


def test_replicated_writes_never_travel_back(start_server, unique_name):
    srv = start_server(allow_any_credentials=True)
    c = pair_clients(srv, ACCOUNT)
    global_table(c, unique_name, [EAST, WEST])
    for i in range(30):
        c[EAST].put_item(TableName=unique_name, Item={"pk": {"S": f"k{i}"}})
    converge(list(c.values()), unique_name)
    time.sleep(1.0)
    assert latency_count(srv, EAST, WEST) == 30
    assert latency_count(srv, WEST, EAST) == 0  # nothing written in us-west-2 came back


@pytest.mark.parametrize("what", ["item", "clock"])
def test_damaged_replica_rows_are_integrity_errors(start_server, unique_name, what):
    srv, c, west_id, db = stopped_pair_with_one_item(start_server, unique_name, ACCOUNT)
    if what == "item":  # the replica's only leaf (its partition directory stays intact)
        rows = rows_of(db, TREES + west_id + bytes(4))  # index 0: the base table's nodes
    else:
        rows = rows_of(db, REPLICATION + b"c" + west_id)
    assert rows
    for key, value in rows:
        set_row(db, key, flip_bit(value))
    srv.start()
    c = pair_clients(srv, ACCOUNT)
    if what == "item":
        bad = signed_request(srv.endpoint, "DynamoDB_20120810.GetItem",
                             {"TableName": unique_name, "Key": {"pk": {"S": "a"}}}, access_key=ACCOUNT, region=WEST)
    else:  # the next write of that item in us-west-2 must read its clock
        bad = signed_request(srv.endpoint, "DynamoDB_20120810.PutItem",
                             {"TableName": unique_name, "Item": {"pk": {"S": "a"}, "v": {"S": "two"}}},
                             access_key=ACCOUNT, region=WEST)
    assert bad.status == 500, bad.body
    assert bad.json()["__type"].endswith("InternalServerError")
    # the source region is untouched
    assert c[EAST].get_item(TableName=unique_name, Key={"pk": {"S": "a"}})["Item"]["v"] == {"S": "one"}


def test_a_queue_row_removed_stops_replication_from_that_point(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, key_refresh_seconds=1)
    c = pair_clients(srv, ACCOUNT)
    global_table(c, unique_name, [EAST, WEST])
    fault = signed_request(srv.endpoint, "DynavaultAdmin.PutFault", {"TableName": unique_name, "KmsUnavailable": True},
                           access_key=ACCOUNT, region=WEST)
    assert fault.status == 200
    time.sleep(1.5)  # replication to us-west-2 paused: the queue keeps what it has not applied
    for i in range(5):
        c[EAST].put_item(TableName=unique_name, Item={"pk": {"S": f"k{i}"}})
    east_id = table_id(c[EAST], unique_name)
    assert srv.stop() == 0  # (the fault lives in the process: it is gone after the restart)
    db = srv.data_dir / "tables.db"
    queue = rows_of(db, REPLICATION + b"q" + east_id)
    assert len(queue) == 5
    set_row(db, queue[2][0], None)
    srv.start()
    c = pair_clients(srv, ACCOUNT)
    deadline = time.time() + 10
    while "replication queue of" not in srv.log_text():
        assert time.time() < deadline, "the damaged queue was not noticed"
        time.sleep(0.1)
    assert "is damaged" in srv.log_text()
    got = {i["pk"]["S"] for i in c[WEST].scan(TableName=unique_name, ConsistentRead=True)["Items"]}
    assert got <= {"k0", "k1"}  # what precedes the gap at most, never what follows it
    assert len(c[EAST].scan(TableName=unique_name)["Items"]) == 5
