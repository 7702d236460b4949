"""What replication leaves behind: a replica Create that stopped between making the replica's table and writing
its group is removed at start (it would stay CREATING for good); a member that left its group because its key
stayed unusable keeps no replication rows (checkpoints, queue, clocks), on its server or on the other's."""

from __future__ import annotations

import sqlite3
import uuid

import orjson

from tests.canary import rows_under
from tests.conftest import aws_error, make_table
from tests.dynamodb.gt_util import EAST, WEST, add_replica, converge, wait_replicas
from tests.dynamodb.test_global_tables_peers_ops import ACCOUNT as PEERS_ACCOUNT
from tests.dynamodb.test_global_tables_peers_ops import (
    FAST_KEYS,
    all_replicas,
    clients,
    cmk_pair,
    group,
    until,
)

ACCOUNT = "789012345678"
CATALOG = b"\x00\x00catalog\x00"
REPLICATION = b"\x00\x00replication\x00"


def _tid(ddb, name: str) -> bytes:
    return uuid.UUID(ddb.describe_table(TableName=name)["Table"]["TableId"]).bytes


def _edit_catalog(db, key: bytes, status: str | None = None, extra: dict | None = None) -> None:
    """Rewrites a stopped server's catalog record of a table (plaintext metadata): its status, members of extra."""
    con = sqlite3.connect(db)
    with con:
        doc = orjson.loads(con.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()[0])
        if status is not None:
            doc["status"] = status
        doc["extra"] = {**doc.get("extra", {}), **(extra or {})}
        con.execute("UPDATE kv SET v = ? WHERE k = ?", (orjson.dumps(doc), key))
    con.close()


def test_a_replica_create_stopped_before_joining_its_group_is_removed_at_start(start_server, unique_name):
    srv = start_server(allow_any_credentials=True)
    c = {r: srv.client("dynamodb", access_key=ACCOUNT, region=r) for r in (EAST, WEST)}
    make_table(c[EAST], unique_name)
    c[EAST].put_item(TableName=unique_name, Item={"pk": {"S": "a"}})
    # what a Create leaves when its server stops between its two transactions: the replica's table, CREATING,
    # made from us-east-1, in no group
    make_table(c[WEST], unique_name, StreamSpecification={"StreamEnabled": True,
                                                          "StreamViewType": "NEW_AND_OLD_IMAGES"})
    assert srv.stop() == 0
    db = srv.data_dir / "tables.db"
    key = CATALOG + f"{ACCOUNT}\x00{WEST}\x00{unique_name}".encode()
    _edit_catalog(db, key, status="CREATING", extra={"replica_source": EAST})
    srv.start()
    c = {r: srv.client("dynamodb", access_key=ACCOUNT, region=r) for r in (EAST, WEST)}
    assert aws_error(c[WEST].describe_table, TableName=unique_name)[0] == "ResourceNotFoundException"
    assert "was being created from us-east-1 when the server stopped: removed" in srv.log_text()
    # the replica can be created again, and is filled
    add_replica(c[EAST], unique_name, WEST)
    wait_replicas(c[EAST], unique_name)
    assert set(converge(list(c.values()), unique_name)) == {"a"}


def test_a_member_that_left_by_key_loss_keeps_no_replication_rows(tmp_path, unique_name):
    servers = group(tmp_path, (EAST, WEST), **FAST_KEYS, replica_inaccessible_seconds=2)
    try:
        c, kms, keys = cmk_pair(servers, unique_name)
        for region in (EAST, WEST):
            for i in range(3):
                c[region].put_item(TableName=unique_name, Item={"pk": {"S": f"{region}-{i}"}})
        converge(list(c.values()), unique_name)
        ids = {r: _tid(c[r], unique_name) for r in (EAST, WEST)}
        kms[WEST].disable_key(KeyId=keys[WEST]["KeyId"])
        until(lambda: all("Replicas" not in c[r].describe_table(TableName=unique_name)["Table"] for r in c),
              "the replica gone from the group on both servers", timeout=60)
        for s in servers.values():
            assert s.stop() == 0
        west_db, east_db = (servers[r].data_dir / "tables.db" for r in (WEST, EAST))
        for kind in (b"p", b"q", b"c", b"t"):  # the member that left: nothing at all
            assert rows_under(west_db, REPLICATION + kind + ids[WEST]) == 0, kind
        # the one that stayed: no checkpoint of the region that left (its pull position there, its consumer here)
        assert rows_under(east_db, REPLICATION + b"p" + ids[EAST]) == 0
    finally:
        for s in servers.values():
            s.kill()


def test_a_create_in_another_server_that_stopped_before_asking_it_is_undone(tmp_path, unique_name):
    """us-east-1's server wrote us-west-2 into the group (CREATING) and stopped before asking us-west-2's server
    to make the table: once restarted, that server says it has no such table, and the Create is undone."""
    servers = group(tmp_path, (EAST, WEST), allow_any_credentials=True)
    try:
        c = clients(servers)
        make_table(c[EAST], unique_name)
        c[EAST].put_item(TableName=unique_name, Item={"pk": {"S": "a"}})
        a = servers[EAST]
        assert a.stop() == 0
        db = a.data_dir / "tables.db"
        key = CATALOG + f"{PEERS_ACCOUNT}\x00{EAST}\x00{unique_name}".encode()
        _edit_catalog(db, key, extra={"replication": {"version": "2019.11.21", "members": {
            EAST: {"status": "ACTIVE", "since": 1.0},
            WEST: {"status": "CREATING", "remote": True, "since": 2.0}}}})
        a.start()
        c = clients(servers)
        until(lambda: "Replicas" not in c[EAST].describe_table(TableName=unique_name)["Table"],
              "the half-made Create undone", timeout=15)
        assert "the Create is undone" in a.log_text()
        # and it can be made again, for real
        add_replica(c[EAST], unique_name, WEST)
        until(lambda: all_replicas(c, unique_name), "the replica ACTIVE on both servers")
        assert set(converge(list(c.values()), unique_name)) == {"a"}
    finally:
        for s in servers.values():
            s.kill()
