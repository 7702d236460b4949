"""kill -9 during CreateBackup and during a restore: after the restart a backup is AVAILABLE and complete
or absent, and a half-restored table is never ACTIVE (it resumes and completes, or is removed). Also: a
backup is a snapshot of one instant while writes go on."""

from __future__ import annotations

import threading
import time

import orjson
import pytest
from botocore.exceptions import ClientError

from tests.canary import rows_of

ACCOUNT = "123456789012"
N = 4000
BLOB = "b" * 1000


def _fill(ddb, name: str, n: int = N) -> None:
    for start in range(0, n, 25):
        ddb.batch_write_item(RequestItems={name: [
            {"PutRequest": {"Item": {"pk": {"S": f"k{i:05d}"}, "v": {"N": "0"}, "b": {"S": BLOB}}}}
            for i in range(start, min(n, start + 25))]})


def _table(ddb, name: str, key_arn: str | None = None) -> None:
    args = dict(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    if key_arn:
        args["SSESpecification"] = {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn}
    ddb.create_table(**args)


def _rows(data_dir, prefix: bytes) -> list[tuple[bytes, bytes]]:
    return rows_of(data_dir / "tables.db", prefix)


def _progress(data_dir, target: str) -> None:
    """Wait until the restore into ``target`` has committed its first batch (read from the store)."""
    deadline = time.time() + 60
    while time.time() < deadline:
        rows = [orjson.loads(v) for k, v in _rows(data_dir, b"\x00\x00catalog\x00") if k.endswith(target.encode())]
        if rows and (rows[0].get("extra", {}).get("restore") or {}).get("done", 0) > 0:
            return
        time.sleep(0.02)
    raise AssertionError("the restore made no progress")


def _scan_count(ddb, name: str) -> int:
    n, start = 0, None
    while True:
        page = ddb.scan(TableName=name, Select="COUNT", **({"ExclusiveStartKey": start} if start else {}))
        n += page["Count"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return n


def _wait_active(ddb, name: str, timeout: float = 90.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        t = ddb.describe_table(TableName=name)["Table"]
        if t["TableStatus"] == "ACTIVE":
            return t
        assert t["TableStatus"] == "CREATING" and t["RestoreSummary"]["RestoreInProgress"] is True
        try:  # never readable half-way
            ddb.get_item(TableName=name, Key={"pk": {"S": "k00001"}})
        except ClientError as err:
            assert err.response["Error"]["Code"] == "ResourceNotFoundException"
        else:  # it became ACTIVE in between: only then does a read answer
            assert ddb.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE"
        time.sleep(0.2)
    raise AssertionError(f"{name} never ACTIVE")


def test_kill_during_create_backup(start_server, unique_name):
    srv = start_server(allow_any_credentials=True)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    _table(ddb, unique_name)
    _fill(ddb, unique_name)
    interrupted = []
    for attempt in range(4):
        arn = ddb.create_backup(TableName=unique_name, BackupName=f"crash-{attempt}")["BackupDetails"]["BackupArn"]
        srv.kill()  # SIGKILL while the worker copies
        raw = dict(_rows(srv.data_dir, b"\x00\x00backup\x00"))[b"\x00\x00backup\x00" + arn.encode()]
        rec = orjson.loads(raw)
        if rec["BackupStatus"] == "CREATING":
            interrupted.append((arn, rec["BackupId"]))
        srv.start()
        ddb = srv.client("dynamodb", access_key=ACCOUNT)
        if interrupted and interrupted[-1][0] == arn:
            break
    assert interrupted, "no kill landed while a copy was running"
    arn, backup_id = interrupted[-1]
    # absent, and none of its copied rows is left
    with pytest.raises(ClientError) as err:
        ddb.describe_backup(BackupArn=arn)
    assert err.value.response["Error"]["Code"] == "BackupNotFoundException"
    assert _rows(srv.data_dir, b"\x00\x00backupdata\x00" + bytes.fromhex(backup_id)) == []
    assert "was being created when the server stopped: removed" in srv.log_text()
    # every backup that survived is AVAILABLE and complete
    for summary in ddb.list_backups(TableName=unique_name)["BackupSummaries"]:
        assert summary["BackupStatus"] == "AVAILABLE"
        target = unique_name + "-" + summary["BackupArn"][-8:]
        ddb.restore_table_from_backup(TargetTableName=target, BackupArn=summary["BackupArn"])
        assert _wait_active(ddb, target)["ItemCount"] == N and _scan_count(ddb, target) == N
    # and a backup taken now works
    arn = ddb.create_backup(TableName=unique_name, BackupName="after")["BackupDetails"]["BackupArn"]
    _wait_available(ddb, arn)


def _wait_available(ddb, arn: str) -> None:
    deadline = time.time() + 30
    while ddb.describe_backup(BackupArn=arn)["BackupDescription"]["BackupDetails"]["BackupStatus"] != "AVAILABLE":
        assert time.time() < deadline
        time.sleep(0.1)


def _backed_up_table(start_server, name: str, *, key_check_seconds: float):
    """A server, its clients, a filled table under a new customer managed key, and an AVAILABLE backup of it."""
    srv = start_server(allow_any_credentials=True, key_check_seconds=key_check_seconds)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    _table(ddb, name, key["Arn"])
    _fill(ddb, name)
    arn = ddb.create_backup(TableName=name, BackupName="crash")["BackupDetails"]["BackupArn"]
    _wait_available(ddb, arn)
    return srv, ddb, kms, key, arn


def test_kill_during_restore_resumes_through_its_grant(start_server, unique_name):
    srv, ddb, kms, key, arn = _backed_up_table(start_server, unique_name, key_check_seconds=0.5)
    ddb.delete_table(TableName=unique_name)  # its grant goes: a resume needs the restore's own grant
    target = unique_name + "-r"
    ddb.restore_table_from_backup(TargetTableName=target, BackupArn=arn)
    _progress(srv.data_dir, target)
    srv.kill()
    catalog = [orjson.loads(v) for k, v in _rows(srv.data_dir, b"\x00\x00catalog\x00") if k.endswith(target.encode())]
    assert catalog[0]["status"] == "CREATING"
    done = catalog[0]["extra"]["restore"]["done"]
    assert 0 < done < N, done  # half-restored at the kill
    srv.start()
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    table = _wait_active(ddb, target)
    assert table["ItemCount"] == N and _scan_count(ddb, target) == N
    assert table["SSEDescription"]["KMSMasterKeyArn"] == key["Arn"]
    assert f"resuming at {done} / {N} items" in srv.log_text()
    assert [g for g in kms.list_grants(KeyId=key["KeyId"])["Grants"] if g["Operations"] == ["Decrypt"]] == []


def test_a_restore_that_cannot_resume_leaves_no_table(start_server, unique_name):
    srv, ddb, kms, key, arn = _backed_up_table(start_server, unique_name, key_check_seconds=60)
    target = unique_name + "-r"
    ddb.restore_table_from_backup(TargetTableName=target, BackupArn=arn)
    _progress(srv.data_dir, target)
    srv.kill()
    srv.start()  # the restore resumes at start; disable its key and kill again before it finishes
    kms = srv.client("kms", access_key=ACCOUNT)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms.disable_key(KeyId=key["KeyId"])
    srv.kill()
    catalog = [orjson.loads(v) for k, v in _rows(srv.data_dir, b"\x00\x00catalog\x00") if k.endswith(target.encode())]
    if catalog and catalog[0]["status"] == "ACTIVE":
        pytest.skip("the resumed restore finished before the key was disabled")
    srv.start()
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    with pytest.raises(ClientError) as err:
        ddb.describe_table(TableName=target)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert "the half-restored table was removed" in srv.log_text()
    assert ddb.describe_table(TableName=unique_name)["Table"]["TableStatus"] == "ACTIVE"


def test_a_backup_is_one_instant_while_writes_go_on(start_server, unique_name):
    srv = start_server(allow_any_credentials=True)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    _table(ddb, unique_name)
    _fill(ddb, unique_name)
    writer = srv.client("dynamodb", access_key=ACCOUNT)
    stop = threading.Event()
    written = []

    def write() -> None:
        i = 0
        while not stop.is_set():
            writer.update_item(TableName=unique_name, Key={"pk": {"S": f"k{i % N:05d}"}},
                               UpdateExpression="SET v = :v", ExpressionAttributeValues={":v": {"N": "1"}})
            writer.put_item(TableName=unique_name, Item={"pk": {"S": f"new{i}"}, "v": {"N": "1"}})
            written.append(i)
            i += 1

    t = threading.Thread(target=write)
    t.start()
    time.sleep(0.3)
    try:
        arn = ddb.create_backup(TableName=unique_name, BackupName="instant")["BackupDetails"]["BackupArn"]
        at = len(written)
        deadline = time.time() + 30
        while ddb.describe_backup(BackupArn=arn)["BackupDescription"]["BackupDetails"]["BackupStatus"] != "AVAILABLE":
            assert time.time() < deadline
            time.sleep(0.05)
        during = len(written) - at
    finally:
        stop.set()
        t.join()
    assert during > 0, "no write landed while the backup was being copied"
    count = ddb.describe_backup(BackupArn=arn)["BackupDescription"]["SourceTableDetails"]["ItemCount"]
    target = unique_name + "-r"
    ddb.restore_table_from_backup(TargetTableName=target, BackupArn=arn)
    _wait_active(ddb, target)
    items, start = [], None
    while True:
        page = ddb.scan(TableName=target, ProjectionExpression="pk, v", **({"ExclusiveStartKey": start} if start else {}))
        items += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    assert len(items) == count
    # one instant: the updates form a prefix of the key space, and each new item comes with its update
    updated = sorted(int(i["pk"]["S"][1:]) for i in items if i["pk"]["S"].startswith("k") and i["v"]["N"] == "1")
    new = sorted(int(i["pk"]["S"][3:]) for i in items if i["pk"]["S"].startswith("new"))
    assert new == list(range(len(new)))
    assert updated == list(range(len(updated)))
    assert len(new) in (len(updated), len(updated) - 1)
