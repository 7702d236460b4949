"""Invariant 4: a flipped bit or a moved blob is an integrity error (HTTP 500), never wrong data."""

from __future__ import annotations

import shutil
import sqlite3
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.canary import rows_of, set_row
from tests.conftest import make_table
from tests.servers import ServerProcess


def _make_table(ddb, name: str, n: int) -> str:
    make_table(ddb, name)
    for i in range(n):
        ddb.put_item(TableName=name, Item={"pk": {"S": f"item-{i}"}, "v": {"S": f"{name}-value-{i}"}})
    return ddb.describe_table(TableName=name)["Table"]["TableId"]


def _rows(db, table_id: str) -> list[tuple[bytes, bytes]]:
    return rows_of(db, b"T" + uuid.UUID(table_id).bytes)


def _outcomes(ddb, name: str, n: int) -> tuple[int, list[int]]:
    """-> (reads that returned the right value, indexes of reads that failed with 500)."""
    good, failed = 0, []
    for i in range(n):
        try:
            item = ddb.get_item(TableName=name, Key={"pk": {"S": f"item-{i}"}})["Item"]
        except ClientError as err:
            assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 500
            assert err.response["Error"]["Code"] == "InternalServerError"
            failed.append(i)
            continue
        assert item["v"]["S"] == f"{name}-value-{i}", "tampered read returned wrong data"
        good += 1
    return good, failed


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[ServerProcess, str, str]:
    """A data dir a real server wrote, then stopped: "victim" (6 items) and "other" (3). -> (the stopped server,
    victim's table id, other's); each test tampers with a copy of it."""
    srv = ServerProcess(tmp_path_factory.mktemp("written"), allow_any_credentials=True)
    ddb = srv.client("dynamodb")
    a = _make_table(ddb, "victim", 6)
    b = _make_table(ddb, "other", 3)
    srv.stop()
    return srv, a, b


@pytest.mark.parametrize("attack", ["flip", "swap-partitions", "swap-tables", "move-node-id"])
def test_tampering_is_detected(start_server, written, tmp_path, attack):
    origin, a, b = written
    data = tmp_path / "data"
    shutil.copytree(origin.data_dir, data)
    db = data / "tables.db"
    rows_a, rows_b = _rows(db, a), _rows(db, b)
    assert len(rows_a) == 6 and len(rows_b) == 3
    if attack == "flip":
        key, value = rows_a[2]
        flipped = bytearray(value)
        flipped[len(flipped) // 2] ^= 0x01
        set_row(db, key, bytes(flipped))
        expected_failures = 1
    elif attack == "swap-partitions":
        (k1, v1), (k2, v2) = rows_a[0], rows_a[1]
        set_row(db, k1, v2)
        set_row(db, k2, v1)
        expected_failures = 2
    elif attack == "swap-tables":
        set_row(db, rows_a[3][0], rows_b[0][1])
        expected_failures = 1
    else:  # the same blob under another node id of the same partition
        key, value = rows_a[4]
        con = sqlite3.connect(db)
        con.execute("delete from kv where k = ?", (key,))
        con.execute("insert into kv values (?, ?)", (key[:-8] + (7).to_bytes(8, "big"), value))
        con.execute("insert into kv values (?, ?)", (key, rows_a[5][1]))
        con.commit()
        con.close()
        expected_failures = 1
    srv = start_server(allow_any_credentials=True, data_dir=data, root_key_file=origin.root_key_file)
    good, failed = _outcomes(ddb := srv.client("dynamodb"), "victim", 6)
    assert len(failed) == expected_failures, (good, failed)
    assert good == 6 - expected_failures
    assert "integrity error" in srv.log_text()
    assert _outcomes(ddb, "other", 3) == (3, [])
