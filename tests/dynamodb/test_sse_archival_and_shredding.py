"""Archival after long inaccessibility, crypto-shredding by key deletion, the tables-by-SSE-status metric."""

from __future__ import annotations

import base64
import sqlite3
import time
import urllib.request

import orjson
import pytest
from botocore.exceptions import ClientError

from tests.canary import scan
from tests.lifecycle import create_cmk_table, wait_key_gone, wait_status

ACCOUNT = "123456789012"


def _wait_status(ddb, name, status, timeout=20.0):
    return wait_status(ddb, name, status, timeout)


def _metric(srv, label):
    text = urllib.request.urlopen(srv.endpoint + "/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(f'dynavault_tables{{sse_status="{label}"}}'):
            return float(line.split()[-1])
    return None


def test_archived_after_inaccessible_window(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, key_refresh_seconds=1, key_check_seconds=0.5,
                       archive_after_seconds=2)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    create_cmk_table(ddb, unique_name, key["Arn"])
    canary = "canary-archive-Tamarind2207"
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "c": {"S": canary}})
    kms.disable_key(KeyId=key["KeyId"])
    _wait_status(ddb, unique_name, "INACCESSIBLE_ENCRYPTION_CREDENTIALS")
    assert _metric(srv, "INACCESSIBLE_ENCRYPTION_CREDENTIALS") == 1.0
    table = _wait_status(ddb, unique_name, "ARCHIVED")
    summary = table["ArchivalSummary"]
    assert summary["ArchivalReason"] == "INACCESSIBLE_ENCRYPTION_CREDENTIALS"
    assert summary["ArchivalBackupArn"].startswith(table["TableArn"] + "/backup/")
    assert "ArchivalDateTime" in summary
    assert table["SSEDescription"]["KMSMasterKeyArn"] == key["Arn"]
    with pytest.raises(ClientError):
        ddb.get_item(TableName=unique_name, Key={"pk": {"S": "a"}})
    # enabling the key later does not un-archive (a restore is needed), the backup record is kept
    kms.enable_key(KeyId=key["KeyId"])
    time.sleep(1.2)
    assert ddb.describe_table(TableName=unique_name)["Table"]["TableStatus"] == "ARCHIVED"
    con = sqlite3.connect(f"file:{srv.data_dir / 'tables.db'}?mode=ro", uri=True)
    rows = con.execute("SELECT k, v FROM kv").fetchall()
    con.close()
    backups = [orjson.loads(bytes(v)) for k, v in rows if bytes(k).startswith(b"\x00\x00backup\x00")]
    assert [b["BackupArn"] for b in backups] == [summary["ArchivalBackupArn"]]
    assert backups[0]["sse"]["key_arn"] == key["Arn"]
    assert _metric(srv, "ARCHIVED") == 1.0
    # the archival backup record and the transitions' log lines hold no item data
    assert srv.stop() == 0
    assert scan([srv.data_dir, srv.log_path], [canary]) == []
    srv.start()
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    with pytest.raises(ClientError):  # an archived table takes no updates
        ddb.update_table(TableName=unique_name, DeletionProtectionEnabled=True)
    assert ddb.delete_table(TableName=unique_name)["TableDescription"]["TableStatus"] == "DELETING"


def test_key_deletion_shreds_the_table(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, key_refresh_seconds=1, key_check_seconds=0.5,
                       kms_day_seconds=0.2, key_deletion_check_seconds=0.5, archive_after_seconds=600)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    create_cmk_table(ddb, unique_name, key["Arn"])
    secret = "shred-me-" + unique_name
    for i in range(5):
        ddb.put_item(TableName=unique_name, Item={"pk": {"S": f"k{i}"}, "v": {"S": secret}})
    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)  # 7 * 0.2 s
    wait_key_gone(kms, key["KeyId"])
    table = _wait_status(ddb, unique_name, "INACCESSIBLE_ENCRYPTION_CREDENTIALS")
    assert "InaccessibleEncryptionDateTime" in table["SSEDescription"]
    with pytest.raises(ClientError) as err:
        ddb.get_item(TableName=unique_name, Key={"pk": {"S": "k0"}})
    assert err.value.response["Error"]["Code"] in ("ValidationException", "AccessDeniedException")
    srv.stop()
    # the data dir plus the key store: the table key blob no longer decrypts, through any path
    srv.start()
    kms = srv.client("kms", access_key=ACCOUNT)
    con = sqlite3.connect(f"file:{srv.data_dir / 'tables.db'}?mode=ro", uri=True)
    rows = con.execute("SELECT k, v FROM kv").fetchall()
    con.close()
    catalog = next(orjson.loads(bytes(v)) for k, v in rows
                   if bytes(k).startswith(b"\x00\x00catalog\x00") and bytes(k).endswith(unique_name.encode()))
    blob = base64.b64decode(catalog["sse"]["table_key_blob"])
    context = {"aws:dynamodb:tableName": unique_name, "aws:dynamodb:subscriberId": ACCOUNT}
    with pytest.raises(ClientError) as err:
        kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)
    assert err.value.response["Error"]["Code"] in ("NotFoundException", "AccessDeniedException",
                                                   "InvalidCiphertextException")
    for raw in srv.data_dir.rglob("*"):
        if raw.is_file():
            assert secret.encode() not in raw.read_bytes()
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    table = _wait_status(ddb, unique_name, "INACCESSIBLE_ENCRYPTION_CREDENTIALS")
    with pytest.raises(ClientError):
        ddb.scan(TableName=unique_name)
    with pytest.raises(ClientError):  # and no key switch can rescue it: the old key is gone
        ddb.update_table(TableName=unique_name, SSESpecification={"Enabled": True})
