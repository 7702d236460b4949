"""``dynavault verify`` over both servers of a global table: every replica, its replication queue, clocks,
tombstones and checkpoints open and hold no canary; a replica's damaged or moved blobs on the peer server
(items, clocks, queue rows, a checkpoint past the queue's end) are each reported, and the damaged replica item
is an integrity error (HTTP 500) when the peer serves it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.canary import flip_bit, rows_of, set_row
from tests.conftest import make_table
from tests.dynamodb.gt_util import EAST, WEST, add_replica, converge, wait_replicas
from tests.dynamodb.test_global_tables_peers import pair
from tests.wire import signed_request

ACCOUNT = "678901234567"
REPLICATION = b"\x00\x00replication\x00"
CANARIES = {EAST: "canary-gtv-east-Okapi3318", WEST: "canary-gtv-west-Tapir7742"}


def _verify(srv, data_dir: Path | None = None, *canaries: str) -> tuple[int, dict]:
    cmd = [sys.executable, "-m", "dynavault.cli", "verify", "--data-dir", str(data_dir or srv.data_dir),
           "--root-key-file", str(srv.root_key_file), "--json"]
    for c in canaries:
        cmd += ["--canary", c]
    done = subprocess.run(cmd, capture_output=True, timeout=120, text=True)
    return done.returncode, json.loads(done.stdout)


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """Two servers after a global table's writes in both regions (us-east-1's server stopped first, so
    us-west-2's last writes stay in its queue, unapplied), both stopped."""
    base = tmp_path_factory.mktemp("gtverify")
    a, b = pair(base, (ACCOUNT, "x"), (ACCOUNT, "x"), allow_any_credentials=True)
    try:
        c = {EAST: a.client("dynamodb", access_key=ACCOUNT, region=EAST),
             WEST: b.client("dynamodb", access_key=ACCOUNT, region=WEST)}
        name = "gtv-" + uuid.uuid4().hex[:8]
        make_table(c[EAST], name)
        add_replica(c[EAST], name, WEST)
        wait_replicas(c[EAST], name)
        for region, canary in CANARIES.items():
            for i in range(5):
                c[region].put_item(TableName=name, Item={"pk": {"S": f"{canary}-key-{i}"}, "v": {"S": canary}})
        c[WEST].delete_item(TableName=name, Key={"pk": {"S": f"{CANARIES[EAST]}-key-0"}})
        converge(list(c.values()), name)
        west_id = uuid.UUID(c[WEST].describe_table(TableName=name)["Table"]["TableId"]).bytes
        assert a.stop() == 0
        for i in range(3):  # queued in us-west-2, not pulled by the stopped us-east-1 server
            c[WEST].put_item(TableName=name, Item={"pk": {"S": f"{CANARIES[WEST]}-late-{i}"}})
        assert b.stop() == 0
        yield a, b, name, west_id
    finally:
        a.kill()
        b.kill()


def test_verify_opens_every_replication_row_on_both_servers(stopped):
    a, b, _, west_id = stopped
    needles = [*CANARIES.values(), *(v + "-key-1" for v in CANARIES.values())]
    for srv in (a, b):
        rc, doc = _verify(srv, None, *needles)
        assert rc == 0, doc["problems"]
        assert doc["files_scanned"] >= 2
    db = b.data_dir / "tables.db"
    assert len(rows_of(db, REPLICATION + b"q" + west_id)) >= 3  # the rows verify had to open
    assert rows_of(db, REPLICATION + b"t" + west_id)  # a tombstone (the delete)


@pytest.mark.parametrize("what", ["item", "clock", "clock-moved", "queue", "queue-removed", "checkpoint"])
def test_a_damaged_replica_row_on_the_peer_is_reported(stopped, tmp_path, what):
    _, b, _, west_id = stopped
    copy = tmp_path / "data"
    shutil.copytree(b.data_dir, copy)
    db = copy / "tables.db"
    if what == "item":
        key, value = rows_of(db, b"T" + west_id + bytes(4))[0]
        set_row(db, key, flip_bit(value))
    elif what in ("clock", "clock-moved"):
        (k1, v1), (k2, v2) = rows_of(db, REPLICATION + b"c" + west_id)[:2]
        if what == "clock":
            set_row(db, k1, flip_bit(v1))
        else:  # two items' clocks swapped: each opens only under its own key
            set_row(db, k1, v2)
            set_row(db, k2, v1)
    elif what in ("queue", "queue-removed"):
        rows = rows_of(db, REPLICATION + b"q" + west_id)
        key, value = rows[-2]
        set_row(db, key, None if what == "queue-removed" else flip_bit(value))
    else:  # us-east-1's consumer checkpoint moved past the queue's end
        key, _ = rows_of(db, REPLICATION + b"p" + west_id + EAST.encode())[0]
        set_row(db, key, b"\xff" * 12)
    rc, doc = _verify(b, copy)
    assert rc == 1, doc
    wanted = "partition" if what == "item" else "replication"
    assert any(wanted in p["where"] or wanted in p["what"] for p in doc["problems"]), doc["problems"]


def test_a_damaged_replica_item_on_the_peer_is_an_integrity_error(stopped):
    _, b, name, west_id = stopped
    db = b.data_dir / "tables.db"
    saved = rows_of(db, b"T" + west_id + bytes(4))
    for key, value in saved:
        set_row(db, key, flip_bit(value))
    b.start()
    try:
        time.sleep(0.2)
        resp = signed_request(b.endpoint, "DynamoDB_20120810.Scan", {"TableName": name, "ConsistentRead": True},
                              access_key=ACCOUNT, region=WEST)
        assert resp.status == 500, resp.body
        assert resp.json()["__type"].endswith("InternalServerError")
    finally:
        b.stop()
        for key, value in saved:
            set_row(db, key, value)
