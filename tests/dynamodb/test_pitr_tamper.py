"""PITR history is tamper-evident: a flipped byte in a history row, a row taken out of the middle of the chain,
or a row moved in from another table makes a point-in-time restore (and the restore of a SYSTEM backup that
holds the history) fail with an integrity error (HTTP 500, no table), never restore a wrong item. And it
holds no plaintext: the canary scan finds nothing in history, base snapshots, restored tables or SYSTEM
backups."""

from __future__ import annotations

import sqlite3
import uuid

import pytest
from botocore.exceptions import ClientError

from dynavault.storage.kv.base import prefix_end
from tests.canary import rows_under, scan
from tests.conftest import make_table
from tests.dynamodb.test_pitr import enable, restore

ACCOUNT = "123456789012"
HISTORY = b"\x00\x00pitr\x00"


def _history(con, table_id: str) -> list[tuple[bytes, bytes]]:
    prefix = HISTORY + uuid.UUID(table_id).bytes
    rows = con.execute("SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k", (prefix, prefix_end(prefix)))
    return [(bytes(k), bytes(v)) for k, v in rows]


def _refused(ddb, source: str, target: str) -> None:
    with pytest.raises(ClientError) as err:
        ddb.restore_table_to_point_in_time(SourceTableName=source, TargetTableName=target,
                                           UseLatestRestorableTime=True)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert err.value.response["Error"]["Code"] == "InternalServerError"
    with pytest.raises(ClientError) as gone:
        ddb.describe_table(TableName=target)
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"


def _table_with_history(ddb, name: str, tag: str) -> str:
    make_table(ddb, name)
    enable(ddb, name)
    restore(ddb, name, name + "-warm", UseLatestRestorableTime=True)  # the base snapshot is complete
    for i in range(4):
        ddb.put_item(TableName=name, Item={"pk": {"S": f"k{i}"}, "v": {"S": f"{tag}-{i}"}})
    ddb.put_item(TableName=name, Item={"pk": {"S": "k0"}, "v": {"S": f"{tag}-again"}})
    return ddb.describe_table(TableName=name)["Table"]["TableId"]


@pytest.mark.parametrize("damage", ["flip", "remove", "moved"])
def test_damaged_history_refuses_the_restore(start_server, unique_name, damage):
    srv = start_server(allow_any_credentials=True)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    mine = _table_with_history(ddb, unique_name, "mine")
    other = _table_with_history(ddb, unique_name + "-o", "other")
    assert srv.stop() == 0
    con = sqlite3.connect(srv.data_dir / "tables.db")
    rows = _history(con, mine)
    assert len(rows) == 5
    key, value = rows[2]
    with con:
        if damage == "flip":
            flipped = bytearray(value)
            flipped[len(flipped) // 2] ^= 0x01
            con.execute("UPDATE kv SET v = ? WHERE k = ?", (bytes(flipped), key))
        elif damage == "remove":  # the chain's middle link
            con.execute("DELETE FROM kv WHERE k = ?", (key,))
        else:  # the other table's row at the same place in its chain
            con.execute("UPDATE kv SET v = ? WHERE k = ?", (_history(con, other)[2][1], key))
    con.close()
    srv.start()
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    _refused(ddb, unique_name, unique_name + "-r")
    assert "integrity error on DynamoDB_20120810.RestoreTableToPointInTime" in srv.log_text()
    # the untouched table still restores; the damaged one's SYSTEM backup refuses as its restore did
    table = restore(ddb, unique_name + "-o", unique_name + "-ok", UseLatestRestorableTime=True)
    assert table["ItemCount"] == 4
    ddb.delete_table(TableName=unique_name)
    arn = [b for b in ddb.list_backups(BackupType="SYSTEM")["BackupSummaries"]
           if b["TableName"] == unique_name][0]["BackupArn"]
    with pytest.raises(ClientError) as err:
        ddb.restore_table_from_backup(BackupArn=arn, TargetTableName=unique_name + "-s")
    assert err.value.response["Error"]["Code"] == "InternalServerError"


CANARY = "canary-pitr-Kestrel5093"


def test_no_canary_in_history_point_in_time_restores_or_system_backups(start_server, unique_name):
    srv = start_server(allow_any_credentials=True)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    specs = {"owned": None, "managed": {"Enabled": True},
             "customer": {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key["Arn"]}}
    for label, spec in specs.items():
        name = f"{unique_name}-{label}"
        make_table(ddb, name, sse=spec)
        ddb.put_item(TableName=name, Item={"pk": {"S": f"{CANARY}-base"}, "v": {"S": CANARY}})  # in the base
        enable(ddb, name)
        for i in range(10):
            ddb.put_item(TableName=name, Item={"pk": {"S": f"{CANARY}-{i}"}, "v": {"M": {"deep": {"S": CANARY}}}})
        ddb.delete_item(TableName=name, Key={"pk": {"S": f"{CANARY}-3"}})
        table = restore(ddb, name, name + "-r", UseLatestRestorableTime=True)
        assert table["ItemCount"] == 10
        got = ddb.get_item(TableName=name + "-r", Key={"pk": {"S": f"{CANARY}-1"}})["Item"]
        assert got["v"]["M"]["deep"]["S"] == CANARY
        ddb.delete_table(TableName=name)  # its SYSTEM backup keeps the base and the history, sealed
    assert len([b for b in ddb.list_backups(BackupType="SYSTEM")["BackupSummaries"]
                if b["TableName"].startswith(unique_name)]) == 3
    assert srv.stop() == 0
    store = srv.data_dir / "tables.db"
    assert rows_under(store, HISTORY) == 3 * 11 and rows_under(store, b"\x00\x00backupdata\x00") > 0
    assert scan([srv.data_dir, srv.log_path], [CANARY]) == []
