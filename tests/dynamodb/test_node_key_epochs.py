"""Node-key epochs roll over after a configured number of seals; every epoch stays readable."""

from __future__ import annotations

import sqlite3
import time

import orjson

from dynavault.dynamodb.layout import CATALOG_PREFIX
from tests.conftest import make_table


def _catalog(db) -> dict:
    con = sqlite3.connect(db)
    rows = [orjson.loads(v) for k, v in con.execute("select k, v from kv") if k.startswith(CATALOG_PREFIX)]
    con.close()
    return {r["name"]: r for r in rows}


def _wait_for_epoch(db, epoch: int, timeout: float = 5.0) -> None:
    """Give the epoch check (every 0.3 s) time to roll the key over: poll the catalog, up to a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _catalog(db)["epochs"]["sse"]["data_keys"]["node_epoch"] >= epoch:
            return
        time.sleep(0.05)


def test_epochs_roll_and_old_blobs_still_open(start_server):
    srv = start_server(allow_any_credentials=True, node_epoch_max_seals=20, epoch_check_seconds=0.3)
    ddb = srv.client("dynamodb")
    make_table(ddb, "epochs", sse={"Enabled": True})
    for round_ in range(4):
        for i in range(25):
            ddb.put_item(TableName="epochs", Item={"pk": {"S": f"r{round_}-{i}"}, "v": {"N": str(i)}})
        _wait_for_epoch(srv.data_dir / "tables.db", round_ + 1)
    srv.stop()
    data_keys = _catalog(srv.data_dir / "tables.db")["epochs"]["sse"]["data_keys"]
    assert data_keys["node_epoch"] >= 3
    assert set(data_keys["node"]) == {str(e) for e in range(data_keys["node_epoch"] + 1)}
    assert sum(data_keys["node_seals"].values()) >= 100
    # blobs of several epochs exist and all of them open after a restart
    srv.start()
    ddb = srv.client("dynamodb")
    for round_ in range(4):
        for i in range(25):
            got = ddb.get_item(TableName="epochs", Key={"pk": {"S": f"r{round_}-{i}"}})["Item"]
            assert got["v"] == {"N": str(i)}
    con = sqlite3.connect(srv.data_dir / "tables.db")
    epochs_in_blobs = {bytes(v)[1:5] for k, v in con.execute("select k, v from kv") if k.startswith(b"T")}
    con.close()
    assert len(epochs_in_blobs) >= 3
