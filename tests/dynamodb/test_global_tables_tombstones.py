"""Tombstones (the clocks of deleted items) are pruned once every other member has confirmed it has nothing
older still to send, and a delete racing a late put still converges: the put held back by a network cut does
not come back after the tombstone it lost to."""

from __future__ import annotations

import sqlite3
import time
import uuid

from dynavault.storage.kv.base import prefix_end
from tests.canary import rows_under
from tests.conftest import make_table
from tests.dynamodb.gt_util import EAST, WEST, add_replica, converge, global_table, items, wait_replicas
from tests.dynamodb.test_global_tables_peers import Forwarder, free_port, pair

ACCOUNT = "567890123456"
REPLICATION = b"\x00\x00replication\x00"


def _counts(db, prefixes: list[bytes]) -> list[int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        with con:
            con.execute("BEGIN")
            return [con.execute("SELECT count(*) FROM kv WHERE k >= ? AND k < ?", (p, prefix_end(p))).fetchone()[0]
                    for p in prefixes]
    finally:
        con.close()


def _tid(ddb, name: str) -> bytes:
    return uuid.UUID(ddb.describe_table(TableName=name)["Table"]["TableId"]).bytes


def _wait_count(db, prefix: bytes, want: int, timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while (n := rows_under(db, prefix)) != want:
        assert time.time() < deadline, f"{n} rows, expected {want}"
        time.sleep(0.2)


def test_tombstones_are_pruned_once_every_member_confirmed_them(start_server, unique_name):
    srv = start_server(allow_any_credentials=True)
    c = {r: srv.client("dynamodb", access_key=ACCOUNT, region=r) for r in (EAST, WEST)}
    global_table(c, unique_name, [EAST, WEST])
    for i in range(10):
        c[EAST].put_item(TableName=unique_name, Item={"pk": {"S": f"k{i}"}})
    c[WEST].put_item(TableName=unique_name, Item={"pk": {"S": "kept"}})
    converge(list(c.values()), unique_name)
    for i in range(10):
        c[EAST if i % 2 else WEST].delete_item(TableName=unique_name, Key={"pk": {"S": f"k{i}"}})
    converge(list(c.values()), unique_name, {"kept": {"pk": {"S": "kept"}}})
    db = srv.data_dir / "tables.db"
    ids = {r: _tid(c[r], unique_name) for r in (EAST, WEST)}
    for tid in ids.values():
        # pruning may have begun with the oldest deletes (one snapshot: a tombstone goes with its list row)
        tombstones, clocks = _counts(db, [REPLICATION + b"t" + tid, REPLICATION + b"c" + tid])
        assert tombstones >= 1 and clocks == tombstones + 1
    for tid in ids.values():  # pruned within a few seconds (one-second margin, one pass a second)
        _wait_count(db, REPLICATION + b"t" + tid, 0)
        assert rows_under(db, REPLICATION + b"c" + tid) == 1  # the live item keeps its clock
    # a put of a pruned key, and a later delete, still replicate and converge
    c[WEST].put_item(TableName=unique_name, Item={"pk": {"S": "k3"}, "v": {"S": "again"}})
    converge(list(c.values()), unique_name, {"kept": {"pk": {"S": "kept"}},
                                             "k3": {"pk": {"S": "k3"}, "v": {"S": "again"}}})
    c[EAST].delete_item(TableName=unique_name, Key={"pk": {"S": "k3"}})
    converge(list(c.values()), unique_name, {"kept": {"pk": {"S": "kept"}}})


def test_a_delete_racing_a_late_put_across_servers_keeps_its_tombstone(tmp_path, unique_name):
    """us-west-2 puts an item while us-east-1 cannot pull from it; us-east-1 then deletes it (the later write).
    us-east-1's tombstone must outlive the cut (what it pulled from us-west-2 is older than the delete): when
    the put arrives it loses, and both sides end without the item. Pruning it too early brings the put back
    in us-east-1 only."""
    pa, pb = free_port(), free_port()
    to_b = Forwarder(pb)
    a, b = pair(tmp_path, (ACCOUNT, "x"), (ACCOUNT, "x"), ports=(pa, pb), peer_ports=(to_b.port, pa),
                allow_any_credentials=True)
    try:
        c = {EAST: a.client("dynamodb", access_key=ACCOUNT, region=EAST),
             WEST: b.client("dynamodb", access_key=ACCOUNT, region=WEST)}
        make_table(c[EAST], unique_name)
        add_replica(c[EAST], unique_name, WEST)
        wait_replicas(c[EAST], unique_name)
        c[EAST].put_item(TableName=unique_name, Item={"pk": {"S": "x"}, "by": {"S": "east"}})
        converge(list(c.values()), unique_name)
        to_b.cut()  # us-east-1 cannot pull from us-west-2; us-west-2 still pulls from us-east-1
        c[WEST].put_item(TableName=unique_name, Item={"pk": {"S": "x"}, "by": {"S": "west, late"}})
        time.sleep(0.05)
        c[EAST].delete_item(TableName=unique_name, Key={"pk": {"S": "x"}})
        # us-west-2 applies the delete (later than its put) and keeps it as its own tombstone
        deadline = time.time() + 15
        while items(c[WEST], unique_name):
            assert time.time() < deadline, "the delete never reached us-west-2"
            time.sleep(0.1)
        east_db = a.data_dir / "tables.db"
        east_t = REPLICATION + b"t" + _tid(c[EAST], unique_name)
        assert rows_under(east_db, east_t) == 1
        time.sleep(4.0)  # four pruning passes: the tombstone stays, us-west-2 has not confirmed past it
        assert rows_under(east_db, east_t) == 1
        to_b.heal()
        time.sleep(1.0)
        assert converge(list(c.values()), unique_name, {}, timeout=30) == {}
        # once both sides wrote again (each pull then confirms the other side is past the delete), both prune
        for region in (EAST, WEST):
            c[region].put_item(TableName=unique_name, Item={"pk": {"S": f"after-{region}"}})
        converge(list(c.values()), unique_name)
        _wait_count(east_db, east_t, 0)
        _wait_count(b.data_dir / "tables.db", REPLICATION + b"t" + _tid(c[WEST], unique_name), 0)
        assert converge(list(c.values()), unique_name) == {
            f"after-{r}": {"pk": {"S": f"after-{r}"}} for r in (EAST, WEST)}
    finally:
        a.kill()
        b.kill()
        to_b.close()
