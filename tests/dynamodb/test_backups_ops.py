"""On-demand backups and RestoreTableFromBackup against a real server with boto3: shapes, paging,
errors, overrides, and what a restore holds (exactly the items at backup time)."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from tests.conftest import aws_cli

ACCOUNT = "123456789012"
KEYS = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
DEFS = [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"},
        {"AttributeName": "g", "AttributeType": "S"}, {"AttributeName": "l", "AttributeType": "S"}]
GSI = {"IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
       "Projection": {"ProjectionType": "ALL"}}
LSI = {"IndexName": "by-l", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                          {"AttributeName": "l", "KeyType": "RANGE"}],
       "Projection": {"ProjectionType": "KEYS_ONLY"}}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from tests.servers import ServerProcess

    s = ServerProcess(tmp_path_factory.mktemp("backups-ops"), allow_any_credentials=True)
    yield s
    s.stop()


@pytest.fixture
def ddb(srv):
    return srv.client("dynamodb", access_key=ACCOUNT)


def _table(ddb, name: str, n: int = 20, **extra) -> None:
    args = dict(TableName=name, KeySchema=KEYS, AttributeDefinitions=DEFS, BillingMode="PAY_PER_REQUEST",
                GlobalSecondaryIndexes=[GSI], LocalSecondaryIndexes=[LSI])
    args.update(extra)
    ddb.create_table(**args)
    for i in range(n):
        ddb.put_item(TableName=name, Item=_item(i))


def _item(i: int, v: str = "v0") -> dict:
    return {"pk": {"S": f"p{i % 4}"}, "sk": {"N": str(i)}, "g": {"S": f"g{i % 3}"}, "l": {"S": f"l{i}"},
            "v": {"S": v}, "m": {"M": {"x": {"L": [{"N": "1.50"}, {"B": b"\x00\x01"}]}}}}


def _available(ddb, arn: str, timeout: float = 20.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        desc = ddb.describe_backup(BackupArn=arn)["BackupDescription"]
        if desc["BackupDetails"]["BackupStatus"] == "AVAILABLE":
            return desc
        time.sleep(0.1)
    raise AssertionError(f"backup {arn} never AVAILABLE")


def _active(ddb, name: str, timeout: float = 30.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        t = ddb.describe_table(TableName=name)["Table"]
        if t["TableStatus"] == "ACTIVE":
            return t
        assert t["TableStatus"] == "CREATING", t["TableStatus"]
        time.sleep(0.1)
    raise AssertionError(f"{name} never ACTIVE")


def _backup(ddb, table: str, name: str = "bkp") -> str:
    arn = ddb.create_backup(TableName=table, BackupName=name)["BackupDetails"]["BackupArn"]
    _available(ddb, arn)
    return arn


def _all(ddb, name: str, **kw) -> list[dict]:
    out, start = [], None
    while True:
        page = ddb.scan(TableName=name, ConsistentRead=True, **kw, **({"ExclusiveStartKey": start} if start else {}))
        out += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return sorted(out, key=lambda i: (i["pk"]["S"], int(i["sk"]["N"])))


def test_create_describe_list_delete_shapes(ddb, unique_name):
    _table(ddb, unique_name, n=10)
    table = ddb.describe_table(TableName=unique_name)["Table"]
    out = ddb.create_backup(TableName=unique_name, BackupName="first.backup_1")["BackupDetails"]
    assert out["BackupStatus"] == "CREATING" and out["BackupType"] == "USER"
    assert out["BackupName"] == "first.backup_1"
    assert out["BackupArn"].startswith(table["TableArn"] + "/backup/")
    suffix = out["BackupArn"].rsplit("/", 1)[1]
    assert len(suffix.split("-")[0]) == 14 and len(suffix.split("-")[1]) == 8
    assert out["BackupSizeBytes"] == 0  # as DynamoDB answers while CREATING
    desc = _available(ddb, out["BackupArn"])
    assert desc["BackupDetails"]["BackupSizeBytes"] == table["TableSizeBytes"] > 0
    assert desc["BackupDetails"]["BackupStatus"] == "AVAILABLE"
    source = desc["SourceTableDetails"]
    assert source["TableName"] == unique_name and source["TableId"] == table["TableId"]
    assert source["TableArn"] == table["TableArn"] and source["KeySchema"] == KEYS
    assert source["ItemCount"] == 10 and source["TableSizeBytes"] == table["TableSizeBytes"]
    assert source["BillingMode"] == "PAY_PER_REQUEST"
    features = desc["SourceTableFeatureDetails"]
    assert [g["IndexName"] for g in features["GlobalSecondaryIndexes"]] == ["by-g"]
    assert features["LocalSecondaryIndexes"] == [LSI]
    assert "SSEDescription" not in features  # AWS owned key: DynamoDB shows none
    # DeleteTable keeps the backup
    ddb.delete_table(TableName=unique_name)
    summaries = ddb.list_backups(TableName=unique_name)["BackupSummaries"]
    assert [s["BackupArn"] for s in summaries] == [out["BackupArn"]]
    s = summaries[0]
    assert s["TableId"] == table["TableId"] and s["BackupStatus"] == "AVAILABLE" and s["BackupType"] == "USER"
    gone = ddb.delete_backup(BackupArn=out["BackupArn"])["BackupDescription"]
    assert gone["BackupDetails"]["BackupStatus"] == "DELETED"
    with pytest.raises(ClientError) as err:
        ddb.describe_backup(BackupArn=out["BackupArn"])
    assert err.value.response["Error"]["Code"] == "BackupNotFoundException"
    assert err.value.response["Error"]["Message"] == f"Backup not found: {out['BackupArn']}"
    with pytest.raises(ClientError) as err:
        ddb.delete_backup(BackupArn=out["BackupArn"])
    assert err.value.response["Error"]["Code"] == "BackupNotFoundException"
    assert ddb.list_backups(TableName=unique_name)["BackupSummaries"] == []


def test_errors(ddb, srv, unique_name):
    with pytest.raises(ClientError) as err:
        ddb.create_backup(TableName=unique_name, BackupName="x12")
    assert err.value.response["Error"]["Code"] == "TableNotFoundException"
    assert err.value.response["Error"]["Message"] == f"Table not found: {unique_name}"
    _table(ddb, unique_name, n=2)
    arn = _backup(ddb, unique_name)
    # another account's backup is as absent as a made-up one
    other = srv.client("dynamodb", access_key="210987654321")
    for call in (other.describe_backup, other.delete_backup):
        with pytest.raises(ClientError) as err:
            call(BackupArn=arn)
        assert err.value.response["Error"]["Code"] == "BackupNotFoundException"
    with pytest.raises(ClientError) as err:
        other.restore_table_from_backup(TargetTableName=unique_name + "-x", BackupArn=arn)
    assert err.value.response["Error"]["Code"] == "BackupNotFoundException"
    with pytest.raises(ClientError) as err:
        ddb.restore_table_from_backup(TargetTableName=unique_name, BackupArn=arn)
    assert err.value.response["Error"]["Code"] == "TableAlreadyExistsException"
    assert err.value.response["Error"]["Message"] == f"Table already exists: {unique_name}"
    with pytest.raises(ClientError) as err:
        ddb.restore_table_from_backup(TargetTableName=unique_name + "-x", BackupArn=arn + "0")
    assert err.value.response["Error"]["Code"] == "BackupNotFoundException"
    # CreateBackup by table ARN, as DynamoDB accepts it
    table_arn = ddb.describe_table(TableName=unique_name)["Table"]["TableArn"]
    by_arn = ddb.create_backup(TableName=table_arn, BackupName="by-arn")["BackupDetails"]
    assert by_arn["BackupArn"].startswith(table_arn + "/backup/")
    with pytest.raises(ClientError) as err:
        ddb.list_backups(BackupType="NOPE")
    assert err.value.response["Error"]["Code"] == "ValidationException"


def test_list_filters_and_paging(srv, unique_name):
    ddb = srv.client("dynamodb", access_key="555555555555")  # an account of its own: only these backups
    names = [f"{unique_name}-{i}" for i in range(2)]
    for n in names:
        _table(ddb, n, n=1)
    arns = []
    for i in range(5):
        if i == 2:  # the SDK sends the time bounds in whole seconds: b2.. start a new second
            time.sleep(1.05 - time.time() % 1)
            split = int(time.time())
        arns.append(_backup(ddb, names[i % 2], f"b{i}-x"))
    assert [s["BackupArn"] for s in ddb.list_backups()["BackupSummaries"]] == arns
    assert [s["BackupArn"] for s in ddb.list_backups(TableName=names[0])["BackupSummaries"]] == arns[0::2]
    # lower bound inclusive, upper bound exclusive
    got = [s["BackupArn"] for s in ddb.list_backups(TimeRangeLowerBound=split)["BackupSummaries"]]
    assert got == arns[2:]
    got = [s["BackupArn"] for s in ddb.list_backups(TimeRangeUpperBound=split)["BackupSummaries"]]
    assert got == arns[:2]
    got = [s["BackupArn"] for s in ddb.list_backups(TableName=names[1], TimeRangeLowerBound=split)["BackupSummaries"]]
    assert got == [arns[3]]
    # paging: Limit and LastEvaluatedBackupArn / ExclusiveStartBackupArn
    seen, start = [], None
    while True:
        kw = {"ExclusiveStartBackupArn": start} if start else {}
        page = ddb.list_backups(Limit=2, **kw)
        seen += [s["BackupArn"] for s in page["BackupSummaries"]]
        start = page.get("LastEvaluatedBackupArn")
        if not start:
            break
        assert len(page["BackupSummaries"]) == 2
    assert seen == arns
    # types: USER is the default; SYSTEM (archival) backups are listed with SYSTEM or ALL only
    assert ddb.list_backups(BackupType="SYSTEM")["BackupSummaries"] == []
    assert len(ddb.list_backups(BackupType="ALL")["BackupSummaries"]) == 5
    assert len(ddb.list_backups(BackupType="USER")["BackupSummaries"]) == 5


def test_restore_holds_exactly_the_items_at_backup_time(ddb, unique_name):
    _table(ddb, unique_name, n=40)
    before = _all(ddb, unique_name)
    arn = ddb.create_backup(TableName=unique_name, BackupName="snap")["BackupDetails"]["BackupArn"]
    # writes after CreateBackup returned are not in the backup
    ddb.put_item(TableName=unique_name, Item=_item(1000))
    ddb.delete_item(TableName=unique_name, Key={"pk": {"S": "p0"}, "sk": {"N": "0"}})
    ddb.put_item(TableName=unique_name, Item=_item(1, v="changed"))
    _available(ddb, arn)
    target = unique_name + "-r"
    out = ddb.restore_table_from_backup(TargetTableName=target, BackupArn=arn)["TableDescription"]
    assert out["TableStatus"] == "CREATING"
    summary = out["RestoreSummary"]
    assert summary["SourceBackupArn"] == arn and summary["RestoreInProgress"] is True
    assert summary["SourceTableArn"].endswith(f":table/{unique_name}")
    assert "RestoreDateTime" in summary
    table = _active(ddb, target)
    assert table["RestoreSummary"]["RestoreInProgress"] is False
    assert table["ItemCount"] == 40 and table["TableId"] != out.get("SourceTableId")
    assert _all(ddb, target) == before
    # indexes are rebuilt through the item-change path: the GSI and LSI answer queries
    g = ddb.query(TableName=target, IndexName="by-g", KeyConditionExpression="g = :g",
                  ExpressionAttributeValues={":g": {"S": "g1"}})["Items"]
    assert sorted(int(i["sk"]["N"]) for i in g) == [i for i in range(40) if i % 3 == 1]
    lsi = ddb.query(TableName=target, IndexName="by-l", KeyConditionExpression="pk = :p AND l = :l",
                    ExpressionAttributeValues={":p": {"S": "p1"}, ":l": {"S": "l5"}})["Items"]
    assert [int(i["sk"]["N"]) for i in lsi] == [5]
    assert table["GlobalSecondaryIndexes"][0]["ItemCount"] == 40
    # the restored table is an ordinary table: writes, and a backup of it
    ddb.put_item(TableName=target, Item=_item(2000))
    assert ddb.get_item(TableName=target, Key={"pk": {"S": "p0"}, "sk": {"N": "2000"}})["Item"]["v"] == {"S": "v0"}
    # restoring from a backup of a deleted table works
    ddb.delete_table(TableName=unique_name)
    ddb.restore_table_from_backup(TargetTableName=unique_name, BackupArn=arn)
    assert _all(ddb, _active(ddb, unique_name)["TableName"]) == before


def test_overrides(ddb, unique_name):
    _table(ddb, unique_name, n=12)
    arn = _backup(ddb, unique_name)
    # billing mode and throughput
    target = unique_name + "-prov"
    ddb.restore_table_from_backup(
        TargetTableName=target, BackupArn=arn, BillingModeOverride="PROVISIONED",
        ProvisionedThroughputOverride={"ReadCapacityUnits": 7, "WriteCapacityUnits": 3},
        GlobalSecondaryIndexOverride=[{**GSI, "ProvisionedThroughput": {"ReadCapacityUnits": 2,
                                                                        "WriteCapacityUnits": 2}}])
    t = _active(ddb, target)
    assert t["ProvisionedThroughput"]["ReadCapacityUnits"] == 7
    assert t["ProvisionedThroughput"]["WriteCapacityUnits"] == 3
    assert "BillingModeSummary" not in t
    assert t["GlobalSecondaryIndexes"][0]["ProvisionedThroughput"]["ReadCapacityUnits"] == 2
    # no GSI, no LSI: the table keeps only its key attributes
    target = unique_name + "-bare"
    ddb.restore_table_from_backup(TargetTableName=target, BackupArn=arn, GlobalSecondaryIndexOverride=[],
                                  LocalSecondaryIndexOverride=[])
    t = _active(ddb, target)
    assert "GlobalSecondaryIndexes" not in t and "LocalSecondaryIndexes" not in t
    assert {d["AttributeName"] for d in t["AttributeDefinitions"]} == {"pk", "sk"}
    assert t["ItemCount"] == 12
    # a different GSI, on an attribute the source defined
    target = unique_name + "-gsi"
    other = {"IndexName": "by-l-global", "KeySchema": [{"AttributeName": "l", "KeyType": "HASH"}],
             "Projection": {"ProjectionType": "KEYS_ONLY"}}
    ddb.restore_table_from_backup(TargetTableName=target, BackupArn=arn, GlobalSecondaryIndexOverride=[other])
    t = _active(ddb, target)
    assert [g["IndexName"] for g in t["GlobalSecondaryIndexes"]] == ["by-l-global"]
    got = ddb.query(TableName=target, IndexName="by-l-global", KeyConditionExpression="l = :l",
                    ExpressionAttributeValues={":l": {"S": "l7"}})["Items"]
    assert [i["sk"]["N"] for i in got] == ["7"]
    # CreateTable's own validation, and nothing left behind
    bad = unique_name + "-bad"
    with pytest.raises(ClientError) as err:
        ddb.restore_table_from_backup(TargetTableName=bad, BackupArn=arn, BillingModeOverride="PAY_PER_REQUEST",
                                      ProvisionedThroughputOverride={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1})
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert "BillingMode is PAY_PER_REQUEST" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        ddb.restore_table_from_backup(TargetTableName=bad, BackupArn=arn, BillingModeOverride="PROVISIONED",
                                      GlobalSecondaryIndexOverride=[])
    assert err.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as err:
        ddb.restore_table_from_backup(TargetTableName=bad, BackupArn=arn, GlobalSecondaryIndexOverride=[
            {**other, "KeySchema": [{"AttributeName": "nowhere", "KeyType": "HASH"}]}])
    assert err.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as err:
        ddb.describe_table(TableName=bad)
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_restoring_table_is_creating_and_takes_no_data_operations(ddb, unique_name):
    # big enough that the restore is still running when the calls below arrive
    ddb.create_table(TableName=unique_name, KeySchema=KEYS[:1], AttributeDefinitions=DEFS[:1],
                     BillingMode="PAY_PER_REQUEST")
    blob = "x" * 900
    for start in range(0, 3000, 25):
        ddb.batch_write_item(RequestItems={unique_name: [
            {"PutRequest": {"Item": {"pk": {"S": f"k{i}"}, "b": {"S": blob}}}} for i in range(start, start + 25)]})
    arn = _backup(ddb, unique_name)
    target = unique_name + "-r"
    ddb.restore_table_from_backup(TargetTableName=target, BackupArn=arn)
    t = ddb.describe_table(TableName=target)["Table"]
    assert t["TableStatus"] == "CREATING" and t["RestoreSummary"]["RestoreInProgress"] is True
    with pytest.raises(ClientError) as err:
        ddb.get_item(TableName=target, Key={"pk": {"S": "k1"}})
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as err:
        ddb.delete_table(TableName=target)
    assert err.value.response["Error"]["Code"] == "ResourceInUseException"
    with pytest.raises(ClientError) as err:
        ddb.update_table(TableName=target, DeletionProtectionEnabled=True)
    assert err.value.response["Error"]["Code"] == "ResourceInUseException"
    with pytest.raises(ClientError) as err:
        ddb.delete_backup(BackupArn=arn)
    assert err.value.response["Error"]["Code"] == "BackupInUseException"
    with pytest.raises(ClientError) as err:
        ddb.create_backup(TableName=target, BackupName="too-early")
    assert err.value.response["Error"]["Code"] == "TableInUseException"
    # one backup copy at a time per table: the worker is busy with the restore, so this one stays CREATING
    first = ddb.create_backup(TableName=unique_name, BackupName="queued")["BackupDetails"]
    assert ddb.describe_backup(BackupArn=first["BackupArn"])["BackupDescription"]["BackupDetails"][
        "BackupStatus"] == "CREATING"
    with pytest.raises(ClientError) as err:
        ddb.create_backup(TableName=unique_name, BackupName="second")
    assert err.value.response["Error"]["Code"] == "BackupInUseException"
    with pytest.raises(ClientError) as err:
        ddb.delete_backup(BackupArn=first["BackupArn"])
    assert err.value.response["Error"]["Code"] == "BackupInUseException"
    t = _active(ddb, target, timeout=60)
    assert t["ItemCount"] == 3000
    ddb.delete_backup(BackupArn=arn)


def test_aws_cli(srv, unique_name, tmp_path):
    cli = aws_cli(srv.endpoint, tmp_path, ACCOUNT)
    cli("create-table", "--table-name", unique_name, "--attribute-definitions", "AttributeName=pk,AttributeType=S",
        "--key-schema", "AttributeName=pk,KeyType=HASH", "--billing-mode", "PAY_PER_REQUEST")
    cli("put-item", "--table-name", unique_name, "--item", '{"pk": {"S": "cli"}, "n": {"N": "2"}}')
    arn = cli("create-backup", "--table-name", unique_name, "--backup-name", "cli-backup")["BackupDetails"]["BackupArn"]
    deadline = time.time() + 20
    while cli("describe-backup", "--backup-arn", arn)["BackupDescription"]["BackupDetails"]["BackupStatus"] != "AVAILABLE":
        assert time.time() < deadline
        time.sleep(0.1)
    listed = cli("list-backups", "--table-name", unique_name)["BackupSummaries"]
    assert [b["BackupArn"] for b in listed] == [arn]
    out = cli("restore-table-from-backup", "--target-table-name", unique_name + "-cli", "--backup-arn", arn,
              "--sse-specification-override", "Enabled=true,SSEType=KMS")
    assert out["TableDescription"]["RestoreSummary"]["SourceBackupArn"] == arn
    _active(ddb_for(srv), unique_name + "-cli")
    got = cli("get-item", "--table-name", unique_name + "-cli", "--key", '{"pk": {"S": "cli"}}')
    assert got["Item"]["n"] == {"N": "2"}
    assert cli("delete-backup", "--backup-arn", arn)["BackupDescription"]["BackupDetails"]["BackupStatus"] == "DELETED"


def ddb_for(srv):
    return srv.client("dynamodb", access_key=ACCOUNT)
