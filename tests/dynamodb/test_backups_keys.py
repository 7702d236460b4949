"""Backups and the key hierarchy (sse-spec.md §1.5, §1.6): a backup stays under the key it was taken
under, a restore needs that key usable (its KMS error otherwise, and no table), SSESpecificationOverride
picks the new table's key with CreateTable's rules, a deleted key shreds its backups, and an archived
table comes back from its ArchivalBackupArn."""

from __future__ import annotations

import sqlite3
import time
import uuid

import orjson
import pytest
from botocore.exceptions import ClientError

from tests.lifecycle import create_cmk_table, wait_key_gone, wait_status

ACCOUNT = "123456789012"
INVALID = "One or more parameter values were invalid: "
DISABLED = "KMS key disabled error: com.amazonaws.services.kms.model.DisabledException: "


def _available(ddb, arn: str) -> dict:
    deadline = time.time() + 20
    while time.time() < deadline:
        desc = ddb.describe_backup(BackupArn=arn)["BackupDescription"]
        if desc["BackupDetails"]["BackupStatus"] == "AVAILABLE":
            return desc
        time.sleep(0.1)
    raise AssertionError("backup never AVAILABLE")


def _backup(ddb, table: str) -> str:
    arn = ddb.create_backup(TableName=table, BackupName="keys-bk")["BackupDetails"]["BackupArn"]
    _available(ddb, arn)
    return arn


def _fill(ddb, name: str, n: int = 5, tag: str = "x") -> list[dict]:
    items = [{"pk": {"S": f"k{i}"}, "v": {"S": f"{tag}-{i}"}} for i in range(n)]
    for item in items:
        ddb.put_item(TableName=name, Item=item)
    return items


def _items(ddb, name: str) -> list[dict]:
    return sorted(ddb.scan(TableName=name, ConsistentRead=True)["Items"], key=lambda i: i["pk"]["S"])


def _refused(ddb, target: str, arn: str, code: str, prefix: str, **kw) -> None:
    with pytest.raises(ClientError) as err:
        ddb.restore_table_from_backup(TargetTableName=target, BackupArn=arn, **kw)
    assert err.value.response["Error"]["Code"] == code, err.value.response
    assert err.value.response["Error"]["Message"].startswith(prefix), err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as gone:  # and no table left behind
        ddb.describe_table(TableName=target)
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"


def _backup_record(data_dir, arn: str) -> dict:
    con = sqlite3.connect(f"file:{data_dir / 'tables.db'}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT v FROM kv WHERE k = ?", (b"\x00\x00backup\x00" + arn.encode(),)).fetchone()
    finally:
        con.close()
    return orjson.loads(bytes(row[0]))


def _wait_switch(ddb, name: str, arn: str) -> None:
    deadline = time.time() + 20
    while time.time() < deadline:
        sse = ddb.describe_table(TableName=name)["Table"].get("SSEDescription") or {}
        if sse.get("Status") == "ENABLED" and sse.get("KMSMasterKeyArn") == arn:
            return
        time.sleep(0.1)
    raise AssertionError("switch never finished")


def test_a_backup_keeps_its_key_across_a_switch_and_needs_it_to_restore(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, sse_update_seconds=0.5, key_check_seconds=0.5)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key_a = kms.create_key()["KeyMetadata"]
    key_b = kms.create_key()["KeyMetadata"]
    create_cmk_table(ddb, unique_name, key_a["Arn"])
    before = _fill(ddb, unique_name)
    arn_a = _backup(ddb, unique_name)
    blob_a = _backup_record(srv.data_dir, arn_a)["sse"]["table_key_blob"]
    ddb.update_table(TableName=unique_name, SSESpecification={"Enabled": True, "SSEType": "KMS",
                                                              "KMSMasterKeyId": key_b["KeyId"]})
    _wait_switch(ddb, unique_name, key_b["Arn"])
    _fill(ddb, unique_name, tag="after")
    # DescribeBackup shows the key in force when the backup was taken; the switch did not re-key it
    shown = _available(ddb, arn_a)["SourceTableFeatureDetails"]["SSEDescription"]
    assert shown == {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": key_a["Arn"]}
    assert _backup_record(srv.data_dir, arn_a)["sse"]["table_key_blob"] == blob_a
    arn_b = _backup(ddb, unique_name)
    assert _available(ddb, arn_b)["SourceTableFeatureDetails"]["SSEDescription"]["KMSMasterKeyArn"] == key_b["Arn"]
    # without an override the restored table takes the backup's key
    ddb.restore_table_from_backup(TargetTableName=unique_name + "-a", BackupArn=arn_a)
    table = wait_status(ddb, unique_name + "-a", "ACTIVE", 20)
    assert table["SSEDescription"]["KMSMasterKeyArn"] == key_a["Arn"]
    assert _items(ddb, unique_name + "-a") == before
    # the restore's own grant on the backup's key is retired once the table is ACTIVE
    assert [g for g in kms.list_grants(KeyId=key_a["KeyId"])["Grants"] if g["Operations"] == ["Decrypt"]] == []
    # the backup's key disabled: the restore fails with the KMS error naming it, whatever key the new table gets
    kms.disable_key(KeyId=key_a["KeyId"])
    _refused(ddb, unique_name + "-x", arn_a, "ValidationException", DISABLED + f"{key_a['Arn']} is disabled.")
    _refused(ddb, unique_name + "-x", arn_a, "ValidationException", DISABLED + f"{key_a['Arn']} is disabled.",
             SSESpecificationOverride={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_b["Arn"]})
    ddb.restore_table_from_backup(TargetTableName=unique_name + "-b", BackupArn=arn_b)  # key B still works
    assert wait_status(ddb, unique_name + "-b", "ACTIVE", 20)["ItemCount"] == 5
    kms.enable_key(KeyId=key_a["KeyId"])
    # pending deletion
    kms.schedule_key_deletion(KeyId=key_a["KeyId"], PendingWindowInDays=7)
    _refused(ddb, unique_name + "-x", arn_a, "ValidationException",
             f"KMS validation error: com.amazonaws.services.kms.model.KMSInvalidStateException: {key_a['Arn']} "
             "is pending deletion.")
    kms.cancel_key_deletion(KeyId=key_a["KeyId"])
    kms.enable_key(KeyId=key_a["KeyId"])  # CancelKeyDeletion leaves it Disabled
    ddb.restore_table_from_backup(TargetTableName=unique_name + "-c", BackupArn=arn_a,
                                  SSESpecificationOverride={"Enabled": False})
    table = wait_status(ddb, unique_name + "-c", "ACTIVE", 20)
    assert "SSEDescription" not in table and _items(ddb, unique_name + "-c") == before


def test_sse_specification_override_rules(start_server, unique_name):
    srv = start_server(allow_any_credentials=True)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    disabled = kms.create_key()["KeyMetadata"]
    kms.disable_key(KeyId=disabled["KeyId"])
    ddb.create_table(TableName=unique_name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    before = _fill(ddb, unique_name)
    arn = _backup(ddb, unique_name)
    target = unique_name + "-x"
    missing = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{uuid.uuid4()}"
    cases = [
        ({"Enabled": False, "SSEType": "KMS"}, INVALID + "SSEType can not be specified if Enabled is false"),
        ({"Enabled": False, "KMSMasterKeyId": key["Arn"]},
         INVALID + "KMSMasterKeyId can not be specified if Enabled is false"),
        ({"Enabled": True, "KMSMasterKeyId": key["Arn"]},
         INVALID + "SSEType KMS is required if KMSMasterKeyId is specified"),
        ({"Enabled": True, "SSEType": "AES256"}, INVALID + "SSEType AES256 is not supported"),
        ({"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": disabled["Arn"]},
         DISABLED + f"{disabled['Arn']} is disabled."),
        ({"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": missing},
         "KMS validation error: com.amazonaws.services.kms.model.NotFoundException: "
         f"Key '{missing}' does not exist"),
    ]
    for spec, prefix in cases:
        _refused(ddb, target, arn, "ValidationException", prefix, SSESpecificationOverride=spec)
    assert kms.list_grants(KeyId=disabled["KeyId"])["Grants"] == []
    # managed key, customer key by alias: the stored key is the resolved ARN
    ddb.restore_table_from_backup(TargetTableName=unique_name + "-m", BackupArn=arn,
                                  SSESpecificationOverride={"Enabled": True})
    managed = wait_status(ddb, unique_name + "-m", "ACTIVE", 20)["SSEDescription"]
    assert managed["Status"] == "ENABLED" and managed["KMSMasterKeyArn"].startswith("arn:aws:kms:us-east-1:")
    kms.create_alias(AliasName="alias/restore-target", TargetKeyId=key["KeyId"])
    ddb.restore_table_from_backup(TargetTableName=unique_name + "-c", BackupArn=arn, SSESpecificationOverride={
        "Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": "alias/restore-target"})
    table = wait_status(ddb, unique_name + "-c", "ACTIVE", 20)
    assert table["SSEDescription"]["KMSMasterKeyArn"] == key["Arn"]
    assert _items(ddb, unique_name + "-c") == before == _items(ddb, unique_name + "-m")


def test_create_backup_needs_a_usable_key(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, key_refresh_seconds=1, key_check_seconds=0.5)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    create_cmk_table(ddb, unique_name, key["Arn"])
    _fill(ddb, unique_name)
    kms.disable_key(KeyId=key["KeyId"])
    time.sleep(1.2)
    with pytest.raises(ClientError) as err:
        ddb.create_backup(TableName=unique_name, BackupName="no-key")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert err.value.response["Error"]["Message"].startswith(DISABLED + f"{key['Arn']} is disabled.")
    wait_status(ddb, unique_name, "INACCESSIBLE_ENCRYPTION_CREDENTIALS", 20)
    with pytest.raises(ClientError) as err:
        ddb.create_backup(TableName=unique_name, BackupName="no-key")
    assert err.value.response["Error"]["Message"].startswith(DISABLED + f"{key['Arn']} is disabled.")
    assert ddb.list_backups(TableName=unique_name)["BackupSummaries"] == []


def test_a_deleted_key_shreds_its_backups_forever(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, key_refresh_seconds=1, key_check_seconds=0.5,
                       kms_day_seconds=0.2, key_deletion_check_seconds=0.5, archive_after_seconds=600)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    create_cmk_table(ddb, unique_name, key["Arn"])
    _fill(ddb, unique_name)
    arn = _backup(ddb, unique_name)
    ddb.delete_table(TableName=unique_name)
    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)  # 7 x 0.2 s
    wait_key_gone(kms, key["KeyId"])
    # the Decrypt of the backup's table key is what fails: DynamoDB's text for a ciphertext under a gone key
    prefix = ("KMS key access denied error: com.amazonaws.services.kms.model.AWSKMSException: The ciphertext "
              "refers to a customer master key that does not exist")
    _refused(ddb, unique_name, arn, "AccessDeniedException", prefix)
    srv.stop()
    srv.start()
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    _refused(ddb, unique_name, arn, "AccessDeniedException", prefix)
    # the backup is still listed (DynamoDB keeps it until deleted), and can be deleted
    assert ddb.describe_backup(BackupArn=arn)["BackupDescription"]["BackupDetails"]["BackupStatus"] == "AVAILABLE"
    ddb.delete_backup(BackupArn=arn)


def test_restore_an_archived_table_from_its_archival_backup(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, key_refresh_seconds=1, key_check_seconds=0.5,
                       archive_after_seconds=1.5)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    create_cmk_table(ddb, unique_name, key["Arn"])
    before = sorted(_fill(ddb, unique_name, n=30), key=lambda i: i["pk"]["S"])
    kms.disable_key(KeyId=key["KeyId"])
    table = wait_status(ddb, unique_name, "ARCHIVED", 30)
    arn = table["ArchivalSummary"]["ArchivalBackupArn"]
    desc = ddb.describe_backup(BackupArn=arn)["BackupDescription"]
    assert desc["BackupDetails"]["BackupType"] == "SYSTEM"
    assert desc["BackupDetails"]["BackupStatus"] == "AVAILABLE"
    assert desc["SourceTableDetails"]["ItemCount"] == 30
    assert desc["SourceTableFeatureDetails"]["SSEDescription"]["KMSMasterKeyArn"] == key["Arn"]
    listed = ddb.list_backups(TableName=unique_name, BackupType="SYSTEM")["BackupSummaries"]
    assert [b["BackupArn"] for b in listed] == [arn]
    assert ddb.list_backups(TableName=unique_name)["BackupSummaries"] == []  # USER is the default
    # while the last key is unusable, the restore fails and leaves nothing
    _refused(ddb, unique_name + "-r", arn, "ValidationException", DISABLED + f"{key['Arn']} is disabled.")
    kms.enable_key(KeyId=key["KeyId"])
    ddb.restore_table_from_backup(TargetTableName=unique_name + "-r", BackupArn=arn)
    assert _items(ddb, wait_status(ddb, unique_name + "-r", "ACTIVE", 20)["TableName"]) == before
    # to restore under the same name the archived table is deleted first; the archival backup outlives it
    ddb.delete_table(TableName=unique_name)
    ddb.restore_table_from_backup(TargetTableName=unique_name, BackupArn=arn)
    table = wait_status(ddb, unique_name, "ACTIVE", 20)
    assert table["SSEDescription"]["KMSMasterKeyArn"] == key["Arn"] and _items(ddb, unique_name) == before
