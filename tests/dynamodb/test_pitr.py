"""Point-in-time recovery through boto3 against a real server: UpdateContinuousBackups and
DescribeContinuousBackups, RestoreTableToPointInTime (times, overrides, keys, errors), the SYSTEM backup a
deleted PITR table leaves, and the pruning of history past the recovery period."""

from __future__ import annotations

import datetime
import sqlite3
import time
import uuid

import boto3
import orjson
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.handlers import enable_millisecond_timestamp_precision

from dynavault.storage.kv.base import prefix_end
from tests.conftest import aws_cli, make_table
from tests.lifecycle import wait_status
from tests.wire import signed_request

ACCOUNT = "123456789012"
HISTORY = b"\x00\x00pitr\x00"
DISABLED = "KMS key disabled error: com.amazonaws.services.kms.model.DisabledException: "


def ms_client(srv, access_key: str = ACCOUNT):
    """A DynamoDB client that sends timestamps with milliseconds (boto3 sends whole seconds by default),
    so a test can restore to an instant between two writes made milliseconds apart."""
    session = boto3.session.Session()
    session.events.register("creating-serializer.dynamodb", enable_millisecond_timestamp_precision)
    return session.client("dynamodb", endpoint_url=srv.endpoint, region_name="us-east-1",
                          aws_access_key_id=access_key, aws_secret_access_key="testing",
                          config=Config(retries={"total_max_attempts": 1}))


def at(t: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(t, datetime.UTC)


def enable(ddb, name: str, **spec) -> dict:
    return ddb.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification={
        "PointInTimeRecoveryEnabled": True, **spec})["ContinuousBackupsDescription"]


def restore(ddb, source: str, target: str, **kw) -> dict:
    """RestoreTableToPointInTime, retried while the first base snapshot is still being copied; -> the
    restored table once ACTIVE."""
    deadline = time.time() + 20
    while True:
        try:
            ddb.restore_table_to_point_in_time(SourceTableName=source, TargetTableName=target, **kw)
            break
        except ClientError as err:
            if "being enabled" not in err.response["Error"]["Message"] or time.time() > deadline:
                raise
            time.sleep(0.05)
    return wait_status(ddb, target, "ACTIVE", 20)


def items(ddb, name: str) -> dict:
    out = {}
    for item in ddb.scan(TableName=name, ConsistentRead=True)["Items"]:
        out[item["pk"]["S"]] = item
    return out


def error(call, **kw) -> dict:
    with pytest.raises(ClientError) as err:
        call(**kw)
    return err.value.response["Error"]


def test_enable_describe_update_disable(srv, unique_name):
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    make_table(ddb, unique_name)
    off = {"ContinuousBackupsStatus": "ENABLED", "PointInTimeRecoveryDescription": {"PointInTimeRecoveryStatus":
                                                                                    "DISABLED"}}
    assert ddb.describe_continuous_backups(TableName=unique_name)["ContinuousBackupsDescription"] == off
    before = time.time()
    desc = enable(ddb, unique_name)
    pitr = desc["PointInTimeRecoveryDescription"]
    assert desc["ContinuousBackupsStatus"] == "ENABLED" and pitr["PointInTimeRecoveryStatus"] == "ENABLED"
    assert pitr["RecoveryPeriodInDays"] == 35  # DynamoDB's default
    assert before - 1 <= pitr["EarliestRestorableDateTime"].timestamp() <= pitr["LatestRestorableDateTime"].timestamp()
    assert pitr["LatestRestorableDateTime"].timestamp() <= time.time() + 1
    # the period changes in place; the earliest restorable time stays where PITR began
    again = enable(ddb, unique_name, RecoveryPeriodInDays=7)["PointInTimeRecoveryDescription"]
    assert again["RecoveryPeriodInDays"] == 7 and again["EarliestRestorableDateTime"] == pitr["EarliestRestorableDateTime"]
    table_arn = ddb.describe_table(TableName=unique_name)["Table"]["TableArn"]
    by_arn = ddb.describe_continuous_backups(TableName=table_arn)["ContinuousBackupsDescription"]
    assert by_arn["PointInTimeRecoveryDescription"]["RecoveryPeriodInDays"] == 7
    desc = ddb.update_continuous_backups(TableName=unique_name, PointInTimeRecoverySpecification={
        "PointInTimeRecoveryEnabled": False})["ContinuousBackupsDescription"]
    assert desc == off
    assert ddb.describe_continuous_backups(TableName=unique_name)["ContinuousBackupsDescription"] == off


def test_continuous_backups_errors(srv, unique_name):
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    raw = srv.client("dynamodb", access_key=ACCOUNT, validate=False)
    missing = unique_name + "-gone"
    for call, kw in ((ddb.describe_continuous_backups, {}),
                     (ddb.update_continuous_backups, {"PointInTimeRecoverySpecification": {
                         "PointInTimeRecoveryEnabled": True}})):
        err = error(call, TableName=missing, **kw)
        assert err == {"Code": "TableNotFoundException", "Message": f"Table not found: {missing}"}
    make_table(ddb, unique_name)
    for days, bound in ((36, "less than or equal to 35"), (0, "greater than or equal to 1")):
        err = error(raw.update_continuous_backups, TableName=unique_name, PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": True, "RecoveryPeriodInDays": days})
        assert err["Code"] == "ValidationException" and bound in err["Message"], err
    err = error(raw.update_continuous_backups, TableName=unique_name, PointInTimeRecoverySpecification={})
    assert err["Code"] == "ValidationException", err


def test_restore_errors(srv, unique_name):
    ddb = ms_client(srv)
    make_table(ddb, unique_name)
    target = unique_name + "-r"
    err = error(ddb.restore_table_to_point_in_time, SourceTableName=unique_name, TargetTableName=target,
                UseLatestRestorableTime=True)
    assert err == {"Code": "PointInTimeRecoveryUnavailableException",
                   "Message": f"Point in time recovery is not enabled for table '{unique_name}'"}
    err = error(ddb.restore_table_to_point_in_time, SourceTableName=unique_name + "-no", TargetTableName=target,
                UseLatestRestorableTime=True)
    assert err == {"Code": "SourceTableNotFoundException", "Message": f"Source table not found: {unique_name}-no"}
    desc = enable(ddb, unique_name)["PointInTimeRecoveryDescription"]
    earliest = desc["EarliestRestorableDateTime"].timestamp()
    for when in (earliest - 60, time.time() + 3600):
        err = error(ddb.restore_table_to_point_in_time, SourceTableName=unique_name, TargetTableName=target,
                    RestoreDateTime=at(when))
        assert err["Code"] == "InvalidRestoreTimeException", err
        assert "RestoreDateTime must be between EarliestRestorableDateTime and LatestRestorableDateTime" in \
            err["Message"]
    for kw in ({}, {"UseLatestRestorableTime": True, "RestoreDateTime": at(time.time())}):
        err = error(ddb.restore_table_to_point_in_time, SourceTableName=unique_name, TargetTableName=target, **kw)
        assert err["Code"] == "ValidationException" and err["Message"].startswith("Invalid Request: "), err
    arn = ddb.describe_table(TableName=unique_name)["Table"]["TableArn"]
    err = error(ddb.restore_table_to_point_in_time, SourceTableName=unique_name, SourceTableArn=arn,
                TargetTableName=target, UseLatestRestorableTime=True)
    assert err["Code"] == "ValidationException", err
    err = error(ddb.restore_table_to_point_in_time, SourceTableName=unique_name, TargetTableName=unique_name,
                UseLatestRestorableTime=True)
    assert err == {"Code": "TableAlreadyExistsException", "Message": f"Table already exists: {unique_name}"}
    with pytest.raises(ClientError):  # none of the refused restores left a table behind
        ddb.describe_table(TableName=target)


def test_restore_date_time_as_the_wire_allows_it(srv, unique_name):
    """Epoch seconds as a number or as text, ISO 8601 text; NaN or infinity: an invalid time, never a 500."""
    ddb = ms_client(srv)
    make_table(ddb, unique_name)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "x"}, "v": {"S": "1"}})
    enable(ddb, unique_name)
    restore(ddb, unique_name, unique_name + "-warm", UseLatestRestorableTime=True)
    now = time.time()
    target = "DynamoDB_20120810.RestoreTableToPointInTime"
    forms = {"-n": now, "-s": str(now), "-iso": at(now).isoformat().replace("+00:00", "Z")}
    for suffix, when in forms.items():
        r = signed_request(srv.endpoint, target, {"SourceTableName": unique_name,
                                                  "TargetTableName": unique_name + suffix, "RestoreDateTime": when},
                           access_key=ACCOUNT)
        assert r.status == 200, r.body
        wait_status(ddb, unique_name + suffix, "ACTIVE", 20)
        assert items(ddb, unique_name + suffix)["x"]["v"] == {"S": "1"}
    for bad in ("NaN", "Infinity", "-1e400", 1e300):
        r = signed_request(srv.endpoint, target, {"SourceTableName": unique_name, "TargetTableName": unique_name + "-b",
                                                  "RestoreDateTime": bad}, access_key=ACCOUNT)
        assert r.status == 400 and r.json()["__type"].endswith(("InvalidRestoreTimeException",
                                                                "ValidationException", "SerializationException")), \
            (bad, r.body)


def test_restore_to_instants_between_writes(srv, unique_name):
    ddb = ms_client(srv)
    ddb.create_table(TableName=unique_name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "v", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST", GlobalSecondaryIndexes=[{
                         "IndexName": "by-v", "KeySchema": [{"AttributeName": "v", "KeyType": "HASH"}],
                         "Projection": {"ProjectionType": "ALL"}}])
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "before"}, "v": {"S": "0"}})  # in the base snapshot
    enable(ddb, unique_name)
    marks = []
    for step, write in enumerate([
            lambda: ddb.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "v": {"S": "1"}}),
            lambda: ddb.update_item(TableName=unique_name, Key={"pk": {"S": "a"}}, UpdateExpression="SET v = :v",
                                    ExpressionAttributeValues={":v": {"S": "2"}}),
            lambda: ddb.delete_item(TableName=unique_name, Key={"pk": {"S": "before"}}),
            lambda: ddb.put_item(TableName=unique_name, Item={"pk": {"S": "before"}, "v": {"S": "3"}})]):
        time.sleep(0.005)
        write()
        time.sleep(0.005)
        marks.append((step, time.time()))
    want = [{"before": "0", "a": "1"}, {"before": "0", "a": "2"}, {"a": "2"}, {"a": "2", "before": "3"}]
    source_arn = ddb.describe_table(TableName=unique_name)["Table"]["TableArn"]
    for step, t in marks:
        target = f"{unique_name}-{step}"
        table = restore(ddb, unique_name, target, RestoreDateTime=at(t))
        assert {k: v["v"]["S"] for k, v in items(ddb, target).items()} == want[step]
        summary = table["RestoreSummary"]
        assert summary["SourceTableArn"] == source_arn and not summary["RestoreInProgress"]
        assert abs(summary["RestoreDateTime"].timestamp() - t) < 0.002
        assert "PointInTimeRecoveryStatus" not in str(table)
        # the index came back too (the source's GSI), and the restored table has PITR off
        got = ddb.query(TableName=target, IndexName="by-v", KeyConditionExpression="v = :v",
                        ExpressionAttributeValues={":v": {"S": want[step]["a"]}})["Items"]
        assert [i["pk"]["S"] for i in got] == ["a"]
        assert ddb.describe_continuous_backups(TableName=target)["ContinuousBackupsDescription"][
            "PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "DISABLED"
    # by ARN, to the latest restorable time
    ddb.restore_table_to_point_in_time(SourceTableArn=source_arn, TargetTableName=unique_name + "-latest",
                                       UseLatestRestorableTime=True, BillingModeOverride="PROVISIONED",
                                       ProvisionedThroughputOverride={"ReadCapacityUnits": 3,
                                                                      "WriteCapacityUnits": 4},
                                       GlobalSecondaryIndexOverride=[])
    table = wait_status(ddb, unique_name + "-latest", "ACTIVE", 20)
    assert {k: v["v"]["S"] for k, v in items(ddb, unique_name + "-latest").items()} == want[-1]
    assert table["ProvisionedThroughput"]["WriteCapacityUnits"] == 4 and "GlobalSecondaryIndexes" not in table


def test_restore_keys_override_and_unusable_key(srv, unique_name):
    ddb = ms_client(srv)
    kms = srv.client("kms", access_key=ACCOUNT)
    key_a = kms.create_key()["KeyMetadata"]
    key_b = kms.create_key()["KeyMetadata"]
    make_table(ddb, unique_name, sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_a["Arn"]})
    enable(ddb, unique_name)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "k"}, "v": {"S": "secret"}})
    # no override: the source table's current key setting
    table = restore(ddb, unique_name, unique_name + "-same", UseLatestRestorableTime=True)
    assert table["SSEDescription"]["KMSMasterKeyArn"] == key_a["Arn"]
    # an override: the new table is under key B, the items are the same
    table = restore(ddb, unique_name, unique_name + "-b", UseLatestRestorableTime=True,
                    SSESpecificationOverride={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_b["Arn"]})
    assert table["SSEDescription"]["KMSMasterKeyArn"] == key_b["Arn"]
    assert items(ddb, unique_name + "-b")["k"]["v"]["S"] == "secret"
    table = restore(ddb, unique_name, unique_name + "-owned", UseLatestRestorableTime=True,
                    SSESpecificationOverride={"Enabled": False})
    assert "SSEDescription" not in table
    # the source's key disabled: DynamoDB's KMS error, and no table, whatever key the new table would get
    kms.disable_key(KeyId=key_a["KeyId"])
    for kw in ({}, {"SSESpecificationOverride": {"Enabled": True, "SSEType": "KMS",
                                                 "KMSMasterKeyId": key_b["Arn"]}}):
        err = error(ddb.restore_table_to_point_in_time, SourceTableName=unique_name,
                    TargetTableName=unique_name + "-x", UseLatestRestorableTime=True, **kw)
        assert err["Code"] == "ValidationException" and err["Message"].startswith(
            DISABLED + f"{key_a['Arn']} is disabled."), err
        assert error(ddb.describe_table, TableName=unique_name + "-x")["Code"] == "ResourceNotFoundException"
    kms.enable_key(KeyId=key_a["KeyId"])
    # an override to a key that is disabled: CreateTable's error for it
    kms.disable_key(KeyId=key_b["KeyId"])
    err = error(ddb.restore_table_to_point_in_time, SourceTableName=unique_name, TargetTableName=unique_name + "-y",
                UseLatestRestorableTime=True, SSESpecificationOverride={"Enabled": True, "SSEType": "KMS",
                                                                        "KMSMasterKeyId": key_b["Arn"]})
    assert err["Code"] == "ValidationException" and "disabled" in err["Message"], err
    assert error(ddb.describe_table, TableName=unique_name + "-y")["Code"] == "ResourceNotFoundException"


def _history_rows(data_dir, table_id: str) -> int:
    con = sqlite3.connect(f"file:{data_dir / 'tables.db'}?mode=ro", uri=True)
    try:
        prefix = HISTORY + uuid.UUID(table_id).bytes
        return con.execute("SELECT count(*) FROM kv WHERE k >= ? AND k < ?", (prefix, prefix_end(prefix))).fetchone()[0]
    finally:
        con.close()


def test_delete_leaves_a_system_backup(srv, unique_name):
    ddb = ms_client(srv)
    make_table(ddb, unique_name)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "old"}, "v": {"S": "0"}})
    enable(ddb, unique_name)
    restore(ddb, unique_name, unique_name + "-warm", UseLatestRestorableTime=True)  # the base is complete
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "new"}, "v": {"S": "1"}})
    ddb.delete_item(TableName=unique_name, Key={"pk": {"S": "old"}})
    table_id = ddb.describe_table(TableName=unique_name)["Table"]["TableId"]
    ddb.delete_table(TableName=unique_name)
    found = [b for b in ddb.list_backups(BackupType="SYSTEM")["BackupSummaries"] if b["TableName"] == unique_name]
    assert len(found) == 1 and found[0]["BackupType"] == "SYSTEM" and found[0]["BackupStatus"] == "AVAILABLE"
    assert found[0]["TableId"] == table_id
    assert found[0] not in ddb.list_backups(BackupType="USER")["BackupSummaries"]
    assert found[0] in ddb.list_backups(BackupType="ALL")["BackupSummaries"]
    arn = found[0]["BackupArn"]
    ddb.restore_table_from_backup(BackupArn=arn, TargetTableName=unique_name)  # the same name, again
    wait_status(ddb, unique_name, "ACTIVE", 20)
    assert {k: v["v"]["S"] for k, v in items(ddb, unique_name).items()} == {"new": "1"}
    assert _history_rows(srv.data_dir, table_id) > 0  # the SYSTEM backup holds the history
    assert ddb.delete_backup(BackupArn=arn)["BackupDescription"]["BackupDetails"]["BackupStatus"] == "DELETED"
    assert _history_rows(srv.data_dir, table_id) == 0
    # a table without PITR leaves none
    other = unique_name + "-plain"
    make_table(ddb, other)
    ddb.delete_table(TableName=other)
    assert not [b for b in ddb.list_backups(BackupType="ALL")["BackupSummaries"] if b["TableName"] == other]


def test_delete_right_after_enabling_still_keeps_the_items(srv, unique_name):
    """No base snapshot complete yet (or just done): the SYSTEM backup copies the rows itself."""
    ddb = ms_client(srv)
    make_table(ddb, unique_name)
    for i in range(50):
        ddb.put_item(TableName=unique_name, Item={"pk": {"S": f"k{i}"}, "v": {"S": str(i)}})
    enable(ddb, unique_name)
    ddb.delete_table(TableName=unique_name)
    arn = [b for b in ddb.list_backups(BackupType="SYSTEM")["BackupSummaries"]
           if b["TableName"] == unique_name][0]["BackupArn"]
    ddb.restore_table_from_backup(BackupArn=arn, TargetTableName=unique_name + "-r")
    assert wait_status(ddb, unique_name + "-r", "ACTIVE", 20)["ItemCount"] == 50
    assert len(items(ddb, unique_name + "-r")) == 50


def test_disable_drops_the_history(srv, unique_name):
    ddb = ms_client(srv)
    make_table(ddb, unique_name)
    enable(ddb, unique_name)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "x"}, "v": {"S": "1"}})
    table_id = ddb.describe_table(TableName=unique_name)["Table"]["TableId"]
    assert _history_rows(srv.data_dir, table_id) == 1
    ddb.update_continuous_backups(TableName=unique_name, PointInTimeRecoverySpecification={
        "PointInTimeRecoveryEnabled": False})
    assert _history_rows(srv.data_dir, table_id) == 0
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "y"}, "v": {"S": "2"}})  # PITR off: no history
    assert _history_rows(srv.data_dir, table_id) == 0
    # on again: the earliest restorable time starts over
    t = time.time()
    desc = enable(ddb, unique_name)["PointInTimeRecoveryDescription"]
    assert desc["EarliestRestorableDateTime"].timestamp() >= t - 0.01


def test_history_and_bases_stay_within_the_recovery_period(start_server, unique_name):
    # one "day" is 0.5 s: a 1-day period is half a second, the sweep runs every 0.1 s
    srv = start_server(allow_any_credentials=True, pitr_day_seconds=0.5)
    ddb = ms_client(srv)
    make_table(ddb, unique_name)
    enable(ddb, unique_name, RecoveryPeriodInDays=1)
    table_id = ddb.describe_table(TableName=unique_name)["Table"]["TableId"]
    started = time.time()
    n = 0
    while time.time() - started < 3.0:
        ddb.put_item(TableName=unique_name, Item={"pk": {"S": f"k{n % 7}"}, "v": {"S": str(n)}})
        n += 1
        time.sleep(0.01)
    rate = n / (time.time() - started)
    desc = ddb.describe_continuous_backups(TableName=unique_name)["ContinuousBackupsDescription"][
        "PointInTimeRecoveryDescription"]
    now = time.time()
    # one period back, not where PITR began 3 s ago (the margin is the answer's way back on a loaded machine)
    assert now - 1.0 < desc["EarliestRestorableDateTime"].timestamp() <= now - 0.4
    # at most two periods of history (plus a sweep interval and a copy) are kept, not the whole 3 s
    kept = _history_rows(srv.data_dir, table_id)
    assert 0 < kept <= rate * (2 * 0.5 + 0.4) + 0.25 * n, (kept, n)  # (+ slack for a slow sweep under load)
    bases = _bases(srv.data_dir, table_id)
    assert 1 <= len(bases) <= 3, bases
    # the earliest restorable time still restores exactly
    want = {k: v["v"]["S"] for k, v in items(ddb, unique_name).items()}
    table = restore(ddb, unique_name, unique_name + "-r", UseLatestRestorableTime=True)
    assert {k: v["v"]["S"] for k, v in items(ddb, unique_name + "-r").items()} == want
    assert table["ItemCount"] == 7
    time.sleep(0.6)  # no write within the last period: the earliest restorable state is the current one
    earliest = ddb.describe_continuous_backups(TableName=unique_name)["ContinuousBackupsDescription"][
        "PointInTimeRecoveryDescription"]["EarliestRestorableDateTime"]
    restore(ddb, unique_name, unique_name + "-e", RestoreDateTime=earliest + datetime.timedelta(milliseconds=100))
    assert {k: v["v"]["S"] for k, v in items(ddb, unique_name + "-e").items()} == want  # no writes since
    # idle for more than two periods: the newest base folds in every row, and the history after it starts again
    time.sleep(1.3)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "late"}, "v": {"S": "1"}})
    want["late"] = "1"
    restore(ddb, unique_name, unique_name + "-late", UseLatestRestorableTime=True)
    assert {k: v["v"]["S"] for k, v in items(ddb, unique_name + "-late").items()} == want


def test_history_across_a_key_switch(start_server, unique_name):
    """A key switch re-wraps the table's data keys and rewrites no data: the base and the history from before
    it restore under the table's new key, and the old key is not needed any more."""
    srv = start_server(allow_any_credentials=True, sse_update_seconds=0.5, key_check_seconds=0.5)
    ddb = ms_client(srv)
    kms = srv.client("kms", access_key=ACCOUNT)
    key_a = kms.create_key()["KeyMetadata"]
    key_b = kms.create_key()["KeyMetadata"]
    make_table(ddb, unique_name, sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_a["Arn"]})
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "base"}, "v": {"S": "0"}})
    enable(ddb, unique_name)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "h"}, "v": {"S": "1"}})
    time.sleep(0.01)
    before_switch = time.time()
    time.sleep(0.01)
    ddb.update_table(TableName=unique_name, SSESpecification={"Enabled": True, "SSEType": "KMS",
                                                              "KMSMasterKeyId": key_b["Arn"]})
    deadline = time.time() + 20
    while (ddb.describe_table(TableName=unique_name)["Table"]["SSEDescription"].get("KMSMasterKeyArn")
           != key_b["Arn"] or ddb.describe_table(TableName=unique_name)["Table"]["SSEDescription"]["Status"]
           != "ENABLED"):
        assert time.time() < deadline
        time.sleep(0.1)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "h"}, "v": {"S": "2"}})
    kms.disable_key(KeyId=key_a["KeyId"])
    table = restore(ddb, unique_name, unique_name + "-r", RestoreDateTime=at(before_switch))
    assert table["SSEDescription"]["KMSMasterKeyArn"] == key_b["Arn"]  # the source's current setting
    assert {k: v["v"]["S"] for k, v in items(ddb, unique_name + "-r").items()} == {"base": "0", "h": "1"}
    restore(ddb, unique_name, unique_name + "-l", UseLatestRestorableTime=True)
    assert {k: v["v"]["S"] for k, v in items(ddb, unique_name + "-l").items()} == {"base": "0", "h": "2"}


def _bases(data_dir, table_id: str) -> list[dict]:
    con = sqlite3.connect(f"file:{data_dir / 'tables.db'}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT v FROM kv WHERE k >= ? AND k < ?", (b"\x00\x00catalog\x00", b"\x00\x00catalog\x01"))
        meta = [orjson.loads(bytes(r[0])) for r in rows]
    finally:
        con.close()
    return [m for m in meta if m.get("table_id") == table_id][0]["extra"]["pitr"]["bases"]


def test_pruning_goes_on_while_the_key_is_unusable(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, pitr_day_seconds=0.5)
    ddb = ms_client(srv)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    make_table(ddb, unique_name, sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key["Arn"]})
    enable(ddb, unique_name, RecoveryPeriodInDays=1)
    for i in range(20):
        ddb.put_item(TableName=unique_name, Item={"pk": {"S": f"k{i % 5}"}, "v": {"S": str(i)}})
    want = {k: v["v"]["S"] for k, v in items(ddb, unique_name).items()}
    table_id = ddb.describe_table(TableName=unique_name)["Table"]["TableId"]
    first = {b["id"] for b in _bases(srv.data_dir, table_id)}
    kms.disable_key(KeyId=key["KeyId"])
    time.sleep(1.6)  # three periods: the sweep rebases and prunes without the key
    assert _history_rows(srv.data_dir, table_id) == 1  # only the chain's anchor is left
    bases = _bases(srv.data_dir, table_id)
    assert bases and not first & {b["id"] for b in bases} and all(b["ok"] for b in bases[:-1]), bases
    kms.enable_key(KeyId=key["KeyId"])
    restore(ddb, unique_name, unique_name + "-r", UseLatestRestorableTime=True)
    assert {k: v["v"]["S"] for k, v in items(ddb, unique_name + "-r").items()} == want


def test_a_system_backup_expires_after_35_days(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, pitr_day_seconds=0.05)  # 35 days: 1.75 s
    ddb = ms_client(srv)
    make_table(ddb, unique_name)
    enable(ddb, unique_name)
    restore(ddb, unique_name, unique_name + "-warm", UseLatestRestorableTime=True)  # the base is complete
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "x"}, "v": {"S": "1"}})
    table_id = ddb.describe_table(TableName=unique_name)["Table"]["TableId"]
    ddb.delete_table(TableName=unique_name)

    def system() -> list:
        return [b for b in ddb.list_backups(BackupType="SYSTEM")["BackupSummaries"] if b["TableName"] == unique_name]

    assert len(system()) == 1 and _history_rows(srv.data_dir, table_id) == 1
    time.sleep(1.0)
    assert len(system()) == 1  # not yet
    deadline = time.time() + 10
    while system():
        assert time.time() < deadline, "the SYSTEM backup never expired"
        time.sleep(0.1)
    assert _history_rows(srv.data_dir, table_id) == 0
    assert "expired after 35 days" in srv.log_text()


def test_aws_cli(srv, unique_name, tmp_path):
    """The AWS CLI's point-in-time commands, end to end: enable, describe, restore to the latest time."""
    cli = aws_cli(srv.endpoint, tmp_path, ACCOUNT)
    cli("create-table", "--table-name", unique_name, "--attribute-definitions", "AttributeName=pk,AttributeType=S",
        "--key-schema", "AttributeName=pk,KeyType=HASH", "--billing-mode", "PAY_PER_REQUEST")
    off = cli("describe-continuous-backups", "--table-name", unique_name)["ContinuousBackupsDescription"]
    assert off["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "DISABLED"
    on = cli("update-continuous-backups", "--table-name", unique_name, "--point-in-time-recovery-specification",
             "PointInTimeRecoveryEnabled=true,RecoveryPeriodInDays=7")["ContinuousBackupsDescription"]
    assert on["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    assert on["PointInTimeRecoveryDescription"]["RecoveryPeriodInDays"] == 7
    cli("put-item", "--table-name", unique_name, "--item", '{"pk": {"S": "cli"}, "n": {"N": "3"}}')
    deadline = time.time() + 20
    while True:  # the first base snapshot is copied in the background
        try:
            out = cli("restore-table-to-point-in-time", "--source-table-name", unique_name,
                      "--target-table-name", unique_name + "-pitr", "--use-latest-restorable-time")
            break
        except AssertionError as refused:
            assert "being enabled" in str(refused) and time.time() < deadline, refused
            time.sleep(0.1)
    assert out["TableDescription"]["RestoreSummary"]["SourceTableArn"].endswith(unique_name)
    wait_status(ms_client(srv), unique_name + "-pitr", "ACTIVE", 20)
    got = cli("get-item", "--table-name", unique_name + "-pitr", "--key", '{"pk": {"S": "cli"}}')
    assert got["Item"]["n"] == {"N": "3"}
    refused = cli("restore-table-to-point-in-time", "--source-table-name", unique_name + "-pitr",
                  "--target-table-name", unique_name + "-x", "--use-latest-restorable-time", ok=False)
    assert "PointInTimeRecoveryUnavailableException" in refused["stderr"]
