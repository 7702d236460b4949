"""Backups are tamper-evident and hold no plaintext: a backup blob swapped between two backups of one table,
or moved in from another table's backup, makes the restore fail with an integrity error (HTTP 500, no
table), never restore wrong data; the canary scan finds nothing in backups or restored tables."""

from __future__ import annotations

import sqlite3
import time

import orjson
import pytest
from botocore.exceptions import ClientError

from dynavault.storage.kv.base import prefix_end
from tests.canary import scan

ACCOUNT = "123456789012"
DATA = b"\x00\x00backupdata\x00"
CANARY = "canary-backup-Peregrine4471"


def _table(ddb, name: str, sse: dict | None = None) -> None:
    args = dict(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                           {"AttributeName": "sk", "KeyType": "RANGE"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                      {"AttributeName": "sk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST")
    if sse:
        args["SSESpecification"] = sse
    ddb.create_table(**args)


def _backup(ddb, table: str) -> str:
    arn = ddb.create_backup(TableName=table, BackupName="tamper")["BackupDetails"]["BackupArn"]
    deadline = time.time() + 20
    while ddb.describe_backup(BackupArn=arn)["BackupDescription"]["BackupDetails"]["BackupStatus"] != "AVAILABLE":
        assert time.time() < deadline
        time.sleep(0.1)
    return arn


def _rows(con, arn: str) -> dict[bytes, bytes]:
    """The backup's data rows, by their original row key."""
    rec = orjson.loads(bytes(con.execute("SELECT v FROM kv WHERE k = ?",
                                         (b"\x00\x00backup\x00" + arn.encode(),)).fetchone()[0]))
    prefix = DATA + bytes.fromhex(rec["BackupId"])
    rows = con.execute("SELECT k, v FROM kv WHERE k >= ? AND k < ?", (prefix, prefix_end(prefix))).fetchall()
    return {bytes(k)[len(prefix):]: bytes(v) for k, v in rows}, prefix


def _integrity_error(ddb, target: str, arn: str) -> None:
    with pytest.raises(ClientError) as err:
        ddb.restore_table_from_backup(TargetTableName=target, BackupArn=arn)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert err.value.response["Error"]["Code"] == "InternalServerError"
    with pytest.raises(ClientError) as gone:
        ddb.describe_table(TableName=target)
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_blob_swapped_between_backups_of_one_table_fails(start_server, unique_name):
    srv = start_server(allow_any_credentials=True)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    _table(ddb, unique_name)
    for i in range(5):
        ddb.put_item(TableName=unique_name, Item={"pk": {"S": "one"}, "sk": {"S": f"s{i}"}, "v": {"S": "old"}})
    first = _backup(ddb, unique_name)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "one"}, "sk": {"S": "s0"}, "v": {"S": "new"}})
    second = _backup(ddb, unique_name)
    assert srv.stop() == 0
    con = sqlite3.connect(srv.data_dir / "tables.db")
    a, pa = _rows(con, first)
    b, pb = _rows(con, second)
    # same places (same table, same partition, same node ids), different contents: AES-GCM alone accepts either
    swapped = [k for k in a if k in b and a[k] != b[k] and k.startswith(b"T")]
    assert swapped
    with con:
        for k in swapped:
            con.execute("UPDATE kv SET v = ? WHERE k = ?", (b[k], pa + k))
            con.execute("UPDATE kv SET v = ? WHERE k = ?", (a[k], pb + k))
    con.close()
    srv.start()
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    _integrity_error(ddb, unique_name + "-a", first)
    _integrity_error(ddb, unique_name + "-b", second)
    assert "integrity error on DynamoDB_20120810.RestoreTableFromBackup" in srv.log_text()


def test_a_blob_from_another_tables_backup_fails(start_server, unique_name):
    srv = start_server(allow_any_credentials=True)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    arns = []
    for t in ("x", "y"):
        _table(ddb, f"{unique_name}-{t}")
        ddb.put_item(TableName=f"{unique_name}-{t}", Item={"pk": {"S": "p"}, "sk": {"S": "s"}, "t": {"S": t}})
        arns.append(_backup(ddb, f"{unique_name}-{t}"))
    assert srv.stop() == 0
    con = sqlite3.connect(srv.data_dir / "tables.db")
    x, _ = _rows(con, arns[0])
    y, py = _rows(con, arns[1])
    xt = [v for k, v in x.items() if k.startswith(b"T")]
    yt = [k for k in y if k.startswith(b"T")]
    with con:
        con.execute("UPDATE kv SET v = ? WHERE k = ?", (xt[0], py + yt[0]))
    con.close()
    srv.start()
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    _integrity_error(ddb, unique_name + "-r", arns[1])
    # the untouched backup still restores
    ddb.restore_table_from_backup(TargetTableName=unique_name + "-ok", BackupArn=arns[0])
    deadline = time.time() + 20
    while ddb.describe_table(TableName=unique_name + "-ok")["Table"]["TableStatus"] != "ACTIVE":
        assert time.time() < deadline
        time.sleep(0.1)
    got = ddb.get_item(TableName=unique_name + "-ok", Key={"pk": {"S": "p"}, "sk": {"S": "s"}})["Item"]
    assert got["t"] == {"S": "x"}


def test_no_canary_in_backups_or_restored_tables(start_server, unique_name):
    srv = start_server(allow_any_credentials=True)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    specs = {"owned": None, "managed": {"Enabled": True},
             "customer": {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key["Arn"]}}
    for label, spec in specs.items():
        name = f"{unique_name}-{label}"
        _table(ddb, name, spec)
        for i in range(40):
            ddb.put_item(TableName=name, Item={"pk": {"S": f"{CANARY}-{i % 3}"}, "sk": {"S": f"{CANARY}-{i}"},
                                               "v": {"M": {"deep": {"S": CANARY}}}})
        arn = _backup(ddb, name)
        ddb.restore_table_from_backup(TargetTableName=name + "-r", BackupArn=arn)
        deadline = time.time() + 20
        while ddb.describe_table(TableName=name + "-r")["Table"]["TableStatus"] != "ACTIVE":
            assert time.time() < deadline
            time.sleep(0.1)
        got = ddb.get_item(TableName=name + "-r", Key={"pk": {"S": f"{CANARY}-1"}, "sk": {"S": f"{CANARY}-1"}})
        assert got["Item"]["v"]["M"]["deep"]["S"] == CANARY
        ddb.delete_table(TableName=name)  # the backup outlives its table, sealed
    assert srv.stop() == 0
    con = sqlite3.connect(f"file:{srv.data_dir / 'tables.db'}?mode=ro", uri=True)
    assert con.execute("SELECT count(*) FROM kv WHERE k >= ? AND k < ?", (DATA, prefix_end(DATA))).fetchone()[0] > 0
    con.close()
    assert scan([srv.data_dir, srv.log_path], [CANARY]) == []
