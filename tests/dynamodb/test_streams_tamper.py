"""Invariant 4 for stream records: a flipped bit, a record swapped, moved to another position, shard or table,
or deleted from the middle of a shard, is an integrity error (HTTP 500), never wrong data."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.dynamodb.streams_util import all_shards, create_stream_table

PREFIX = b"\x00\x00stream\x00"


def _records(db, table_id: str) -> list[tuple[bytes, bytes]]:
    prefix = PREFIX + uuid.UUID(table_id).bytes + b"r"
    con = sqlite3.connect(db)
    rows = [(bytes(k), bytes(v)) for k, v in con.execute("select k, v from kv order by k") if bytes(k).startswith(prefix)]
    con.close()
    return rows


def _sql(db, *statements: tuple) -> None:
    con = sqlite3.connect(db)
    for sql, args in statements:
        con.execute(sql, args)
    con.commit()
    con.close()


def _read(st, arn: str) -> list[str]:
    """Values read from the stream's first shard; raises ClientError on a refused read."""
    sid = all_shards(st, arn)[0]["ShardId"]
    it = st.get_shard_iterator(StreamArn=arn, ShardId=sid, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    return [r["dynamodb"]["NewImage"]["v"]["S"] for r in st.get_records(ShardIterator=it)["Records"]]


@pytest.mark.parametrize("attack", ["flip", "swap", "move", "delete-middle", "swap-tables", "other-shard"])
def test_tampered_stream_records_fail_closed(start_server, unique_name, attack):
    srv = start_server(allow_any_credentials=True, stream_status_seconds=0, stream_shard_max_records=4)
    ddb, st = srv.client("dynamodb"), srv.client("dynamodbstreams")
    a = create_stream_table(ddb, "victim")
    b = create_stream_table(ddb, "other")
    for i in range(6):  # victim: shard 0 holds 4 records, shard 1 two
        ddb.put_item(TableName="victim", Item={"pk": {"S": f"k{i}"}, "sk": {"S": "s"}, "v": {"S": f"victim-{i}"}})
    for i in range(3):
        ddb.put_item(TableName="other", Item={"pk": {"S": f"k{i}"}, "sk": {"S": "s"}, "v": {"S": f"other-{i}"}})
    truth = _read(st, a["LatestStreamArn"])
    assert truth == [f"victim-{i}" for i in range(4)]
    srv.stop()
    db = srv.data_dir / "tables.db"
    rows_a, rows_b = _records(db, a["TableId"]), _records(db, b["TableId"])
    assert len(rows_a) == 6 and len(rows_b) == 3
    update = "update kv set v = ? where k = ?"
    if attack == "flip":
        value = bytearray(rows_a[1][1])
        value[len(value) // 2] ^= 1
        _sql(db, (update, (bytes(value), rows_a[1][0])))
    elif attack == "swap":  # two records trade places within their shard
        _sql(db, (update, (rows_a[2][1], rows_a[1][0])), (update, (rows_a[1][1], rows_a[2][0])))
    elif attack == "move":  # a record under another sequence number of the same shard
        _sql(db, (update, (rows_a[0][1], rows_a[3][0])))
    elif attack == "delete-middle":  # a change vanishes: the gap is noticed
        _sql(db, ("delete from kv where k = ?", (rows_a[1][0],)))
    elif attack == "swap-tables":  # another table's record at the same position
        _sql(db, (update, (rows_b[0][1], rows_a[0][0])))
    else:  # a record of the next shard put into the first one
        _sql(db, (update, (rows_a[4][1], rows_a[2][0])))
    # the offline auditor's tool finds it too
    cmd = [sys.executable, "-m", "dynavault.cli", "verify", "--data-dir", str(srv.data_dir),
           "--root-key-file", str(srv.root_key_file)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "stream record" in p.stdout, p.stdout + p.stderr
    srv.start()
    st = srv.client("dynamodbstreams")
    with pytest.raises(ClientError) as err:
        got = _read(st, a["LatestStreamArn"])
        assert got == truth, "tampered stream returned wrong data"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert err.value.response["Error"]["Code"] == "InternalServerError"
    assert "integrity error" in srv.log_text()
    assert _read(st, b["LatestStreamArn"]) == [f"other-{i}" for i in range(3)]
