"""Table control plane through boto3 against a real server."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

INVALID = "One or more parameter values were invalid: "
KEYS = [{"AttributeName": "pk", "KeyType": "HASH"}]
DEFS = [{"AttributeName": "pk", "AttributeType": "S"}]


def _err(excinfo) -> tuple[str, str]:
    e = excinfo.value.response["Error"]
    return e["Code"], e["Message"]


def test_create_describe_delete_with_waiters(srv, unique_name):
    ddb = srv.client("dynamodb", access_key="100000000001")
    desc = ddb.create_table(TableName=unique_name, KeySchema=KEYS, AttributeDefinitions=DEFS,
                            ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 7},
                            Tags=[{"Key": "team", "Value": "a"}], TableClass="STANDARD_INFREQUENT_ACCESS",
                            DeletionProtectionEnabled=False)["TableDescription"]
    assert desc["TableStatus"] == "CREATING"
    assert desc["TableArn"] == f"arn:aws:dynamodb:us-east-1:100000000001:table/{unique_name}"
    assert len(desc["TableId"]) == 36
    ddb.get_waiter("table_exists").wait(TableName=unique_name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    table = ddb.describe_table(TableName=unique_name)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["ProvisionedThroughput"]["ReadCapacityUnits"] == 5
    assert table["ProvisionedThroughput"]["WriteCapacityUnits"] == 7
    assert table["TableClassSummary"] == {"TableClass": "STANDARD_INFREQUENT_ACCESS"}
    assert table["ItemCount"] == 0 and table["TableSizeBytes"] == 0
    assert "BillingModeSummary" not in table
    with pytest.raises(ClientError) as err:
        ddb.create_table(TableName=unique_name, KeySchema=KEYS, AttributeDefinitions=DEFS,
                         BillingMode="PAY_PER_REQUEST")
    assert _err(err) == ("ResourceInUseException", f"Table already exists: {unique_name}")
    assert ddb.delete_table(TableName=unique_name)["TableDescription"]["TableStatus"] == "DELETING"
    ddb.get_waiter("table_not_exists").wait(TableName=unique_name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    with pytest.raises(ClientError) as err:
        ddb.describe_table(TableName=unique_name)
    assert _err(err) == ("ResourceNotFoundException", f"Requested resource not found: Table: {unique_name} not found")
    with pytest.raises(ClientError) as err:
        ddb.delete_table(TableName=unique_name)
    assert _err(err)[0] == "ResourceNotFoundException"


@pytest.mark.parametrize("kwargs, message", [
    (dict(KeySchema=[{"AttributeName": "pk", "KeyType": "RANGE"}]),
     "Invalid KeySchema: The first KeySchemaElement is not a HASH key type"),
    (dict(KeySchema=[{"AttributeName": "x", "KeyType": "HASH"}]),
     INVALID + "Some index key attributes are not defined in AttributeDefinitions. Keys: [x], "
     "AttributeDefinitions: [pk]"),
    (dict(AttributeDefinitions=DEFS + [{"AttributeName": "extra", "AttributeType": "S"}]),
     INVALID + "Number of attributes in KeySchema does not exactly match number of attributes defined in "
     "AttributeDefinitions"),
    (dict(BillingMode="PROVISIONED"),
     INVALID + "ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED"),
    (dict(BillingMode="PAY_PER_REQUEST", ProvisionedThroughput={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}),
     INVALID + "Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is "
     "PAY_PER_REQUEST"),
    # two keys, one definition: DynamoDB's answer (recorded by dynalite) is about the definitions, checked first
    (dict(KeySchema=KEYS + KEYS), "Invalid KeySchema: Some index key attribute have no definition"),
    (dict(KeySchema=KEYS + [{"AttributeName": "b", "KeyType": "RANGE"}, {"AttributeName": "c", "KeyType": "RANGE"}]),
     "1 validation error detected: Value '[KeySchemaElement(attributeName=pk, keyType=HASH), "
     "KeySchemaElement(attributeName=b, keyType=RANGE), KeySchemaElement(attributeName=c, keyType=RANGE)]' at "
     "'keySchema' failed to satisfy constraint: Member must have length less than or equal to 2"),
])
def test_create_table_validation(srv, unique_name, kwargs, message):
    ddb = srv.client("dynamodb", access_key="100000000002", validate=False)
    args = dict(TableName=unique_name, KeySchema=KEYS, AttributeDefinitions=DEFS, BillingMode="PAY_PER_REQUEST")
    args.update(kwargs)
    if args.get("BillingMode") == "PROVISIONED":
        args.pop("ProvisionedThroughput", None)
    with pytest.raises(ClientError) as err:
        ddb.create_table(**args)
    assert _err(err) == ("ValidationException", message)
    assert unique_name not in ddb.list_tables()["TableNames"]


def test_list_tables_pagination_and_account_isolation(srv):
    ddb = srv.client("dynamodb", access_key="100000000003")
    names = [f"list-{i:02d}" for i in range(7)]
    for n in names:
        ddb.create_table(TableName=n, KeySchema=KEYS, AttributeDefinitions=DEFS, BillingMode="PAY_PER_REQUEST")
    seen, start = [], None
    while True:
        kw = {"Limit": 3}
        if start:
            kw["ExclusiveStartTableName"] = start
        page = ddb.list_tables(**kw)
        seen += page["TableNames"]
        start = page.get("LastEvaluatedTableName")
        if not start:
            break
    assert seen == names
    assert srv.client("dynamodb", access_key="100000000004").list_tables()["TableNames"] == []
    assert srv.client("dynamodb", access_key="100000000003", region="eu-west-1").list_tables()["TableNames"] == []
    # another account cannot see or use the table
    other = srv.client("dynamodb", access_key="100000000004")
    with pytest.raises(ClientError) as err:
        other.get_item(TableName="list-00", Key={"pk": {"S": "x"}})
    assert _err(err)[0] == "ResourceNotFoundException"


def test_update_table_billing_and_deletion_protection(srv, unique_name):
    ddb = srv.client("dynamodb", access_key="100000000005")
    ddb.create_table(TableName=unique_name, KeySchema=KEYS, AttributeDefinitions=DEFS,
                     BillingMode="PAY_PER_REQUEST", DeletionProtectionEnabled=True)
    t = ddb.describe_table(TableName=unique_name)["Table"]
    assert t["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert t["DeletionProtectionEnabled"] is True
    with pytest.raises(ClientError) as err:
        ddb.delete_table(TableName=unique_name)
    assert _err(err) == ("ValidationException", "Resource cannot be deleted as it is currently protected against "
                         "deletion. Disable deletion protection first.")
    t = ddb.update_table(TableName=unique_name, BillingMode="PROVISIONED",
                         ProvisionedThroughput={"ReadCapacityUnits": 2, "WriteCapacityUnits": 3})["TableDescription"]
    assert t["ProvisionedThroughput"]["ReadCapacityUnits"] == 2 and "BillingModeSummary" not in t
    ddb.update_table(TableName=unique_name, DeletionProtectionEnabled=False)
    with pytest.raises(ClientError) as err:
        ddb.update_table(TableName=unique_name)
    assert _err(err)[0] == "ValidationException"
    ddb.delete_table(TableName=unique_name)


def test_tags(srv, unique_name):
    ddb = srv.client("dynamodb", access_key="100000000006")
    arn = ddb.create_table(TableName=unique_name, KeySchema=KEYS, AttributeDefinitions=DEFS,
                           BillingMode="PAY_PER_REQUEST")["TableDescription"]["TableArn"]
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    ddb.untag_resource(ResourceArn=arn, TagKeys=["a"])
    assert ddb.list_tags_of_resource(ResourceArn=arn)["Tags"] == [{"Key": "b", "Value": "2"}]
    with pytest.raises(ClientError) as err:
        ddb.list_tags_of_resource(ResourceArn=arn.replace(unique_name, "missing-table"))
    assert _err(err)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as err:
        ddb.tag_resource(ResourceArn="not-an-arn", Tags=[{"Key": "a", "Value": "1"}])
    assert _err(err)[0] == "ValidationException"


def test_limits_and_endpoints(srv):
    ddb = srv.client("dynamodb")
    limits = ddb.describe_limits()
    assert limits["TableMaxReadCapacityUnits"] == 40000
    assert ddb.describe_endpoints()["Endpoints"][0]["CachePeriodInMinutes"] == 1440


def test_catalog_survives_restart(start_server):
    srv = start_server(allow_any_credentials=True)
    ddb = srv.client("dynamodb")
    ddb.create_table(TableName="durable", KeySchema=KEYS, AttributeDefinitions=DEFS, BillingMode="PAY_PER_REQUEST",
                     SSESpecification={"Enabled": True})
    ddb.put_item(TableName="durable", Item={"pk": {"S": "a"}, "v": {"N": "1"}})
    before = ddb.describe_table(TableName="durable")["Table"]
    srv.restart()
    ddb = srv.client("dynamodb")
    after = ddb.describe_table(TableName="durable")["Table"]
    assert after["TableId"] == before["TableId"]
    assert after["SSEDescription"] == before["SSEDescription"]
    assert after["ItemCount"] == 1
    assert ddb.get_item(TableName="durable", Key={"pk": {"S": "a"}})["Item"]["v"] == {"N": "1"}


def test_aws_cli(srv, unique_name, tmp_path):
    import json
    import os
    import shutil
    import subprocess

    aws = shutil.which("aws")
    if aws is None:
        pytest.skip("AWS CLI not installed")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))

    def cli(*args: str) -> dict:
        out = subprocess.run([aws, "--endpoint-url", srv.endpoint, "--output", "json", *args], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else {}

    cli("dynamodb", "create-table", "--table-name", unique_name, "--attribute-definitions",
        "AttributeName=pk,AttributeType=S", "--key-schema", "AttributeName=pk,KeyType=HASH",
        "--billing-mode", "PAY_PER_REQUEST", "--sse-specification", "Enabled=true")
    cli("dynamodb", "put-item", "--table-name", unique_name, "--item", '{"pk": {"S": "cli"}, "n": {"N": "2"}}')
    got = cli("dynamodb", "get-item", "--table-name", unique_name, "--key", '{"pk": {"S": "cli"}}')
    assert got["Item"]["n"] == {"N": "2"}
    desc = cli("dynamodb", "describe-table", "--table-name", unique_name)
    assert desc["Table"]["SSEDescription"]["Status"] == "ENABLED"
