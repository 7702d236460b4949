"""The control plane answers as DynamoDB does: UpdateTable that changes nothing, tag rules, and the CREATING /
UPDATING / DELETING states a table shows for a while (``--create-table-seconds`` and its siblings).

Texts: the unchanged-throughput message and the ResourceInUseException texts for tables in transition are
DynamoDB's as recorded against AWS (dynalite's suite; a public table of DynamoDB behaviours verified 2026-10);
the index-ARN tagging text is today's (DynamoDB said "Invalid TableArn: ..." until late 2025). No recorded
answer for a tag with characters outside DynamoDB's alphabet was found: that one has the AWS validation
framework's form.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.conftest import aws_error as _error

MISSING = "no-such-table-" + uuid.uuid4().hex[:8]
WINDOW = 2.0




def in_use(what: str) -> tuple[str, str, int]:
    return "ResourceInUseException", f"Attempt to change a resource which is still in use: {what}", 400


@pytest.fixture(scope="module")
def ddb(shared_server):
    return shared_server.client("dynamodb")


def _table(ddb, **kwargs) -> dict:
    name = "exact-t-" + uuid.uuid4().hex[:8]
    args = dict(TableName=name, AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    args.update(kwargs)
    args.setdefault("BillingMode", "PAY_PER_REQUEST")
    return ddb.create_table(**args)["TableDescription"]


# -- UpdateTable that changes nothing -------------------------------------------------------------------
def test_update_table_with_the_same_throughput(ddb):
    name = _table(ddb, BillingMode="PROVISIONED",
                  ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 7})["TableName"]
    assert _error(ddb.update_table, TableName=name,
                  ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 7}) == (
        "ValidationException",
        "The provisioned throughput for the table will not change. The requested value equals the current value. "
        "Current ReadCapacityUnits provisioned for the table: 5. Requested ReadCapacityUnits: 5. Current "
        "WriteCapacityUnits provisioned for the table: 7. Requested WriteCapacityUnits: 7. Refer to the Amazon "
        "DynamoDB Developer Guide for current limits and how to request higher limits.", 400)
    out = ddb.update_table(TableName=name, ProvisionedThroughput={"ReadCapacityUnits": 6, "WriteCapacityUnits": 7})
    assert out["TableDescription"]["ProvisionedThroughput"]["ReadCapacityUnits"] == 6


def test_an_empty_update_is_refused_before_the_table_is_looked_up(ddb):
    text = ("At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, GlobalSecondaryIndexUpdates "
            "or SSESpecification or ReplicaUpdates is required")
    for name in (MISSING, _table(ddb)["TableName"]):
        assert _error(ddb.update_table, TableName=name) == ("ValidationException", text, 400), name
    assert _error(ddb.update_table, TableName=MISSING, DeletionProtectionEnabled=True) == (
        "ResourceNotFoundException", f"Requested resource not found: Table: {MISSING} not found", 400)


# -- CreateTable: DynamoDB's order of checks (dynalite's recorded answers) ----------------------------------
def _defs(*names: str) -> list[dict]:
    return [{"AttributeName": n, "AttributeType": "S"} for n in names]


def _keys(*pairs: tuple[str, str]) -> list[dict]:
    return [{"AttributeName": n, "KeyType": t} for n, t in pairs]


@pytest.mark.parametrize("kwargs,message", [
    # throughput comes before the key schema
    (dict(BillingMode="PROVISIONED", AttributeDefinitions=_defs("pk"), KeySchema=_keys(("pk", "RANGE"))),
     "One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified "
     "when BillingMode is PROVISIONED"),
    # definitions come before names and key types
    (dict(AttributeDefinitions=_defs("pk"), KeySchema=_keys(("pk", "HASH"), ("sk", "RANGE"))),
     "Invalid KeySchema: Some index key attribute have no definition"),
    (dict(AttributeDefinitions=_defs("pk"), KeySchema=_keys(("sk", "RANGE"))),
     "One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. "
     "Keys: [sk], AttributeDefinitions: [pk]"),
    # the same name twice, before HASH / RANGE
    (dict(AttributeDefinitions=_defs("a", "b"), KeySchema=_keys(("a", "RANGE"), ("a", "RANGE"))),
     "Both the Hash Key and the Range Key element in the KeySchema have the same name"),
    (dict(AttributeDefinitions=_defs("a", "b"), KeySchema=_keys(("a", "HASH"), ("b", "HASH"))),
     "Invalid KeySchema: The second KeySchemaElement is not a RANGE key type"),
    # the key schema before the count of definitions
    (dict(AttributeDefinitions=_defs("a", "b", "c"), KeySchema=_keys(("a", "RANGE"))),
     "Invalid KeySchema: The first KeySchemaElement is not a HASH key type"),
])
def test_create_table_order_of_checks(ddb, kwargs, message):
    args = {"TableName": "exact-ct-" + uuid.uuid4().hex[:8], "BillingMode": "PAY_PER_REQUEST", **kwargs}
    assert _error(ddb.create_table, **args) == ("ValidationException", message, 400)
    assert _error(ddb.describe_table, TableName=args["TableName"])[0] == "ResourceNotFoundException"


# -- tags -----------------------------------------------------------------------------------------------
PATTERN = r"[\p{L}\p{Z}\p{N}_.:/=+\-]*"


def test_tag_alphabet(ddb):
    arn = _table(ddb)["TableArn"]
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "a+b-c=d.e_f:g/h i", "Value": "ünïcödé 7"}])
    assert _error(ddb.tag_resource, ResourceArn=arn, Tags=[{"Key": "ok", "Value": "d%g"}, {"Key": "hi!", "Value": "x"}]) \
        == ("ValidationException",
            f"2 validation errors detected: Value 'd%g' at 'tags.1.member.value' failed to satisfy constraint: Member "
            f"must satisfy regular expression pattern: {PATTERN}; Value 'hi!' at 'tags.2.member.key' failed to "
            f"satisfy constraint: Member must satisfy regular expression pattern: {PATTERN}", 400)
    code, message, _ = _error(ddb.create_table, TableName="exact-t-" + uuid.uuid4().hex[:8], BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}], Tags=[{"Key": '"q"', "Value": ""}])
    assert (code, message) == ("ValidationException", "1 validation error detected: Value '\"q\"' at "
                               f"'tags.1.member.key' failed to satisfy constraint: Member must satisfy regular "
                               f"expression pattern: {PATTERN}")
    assert ddb.list_tags_of_resource(ResourceArn=arn)["Tags"] == [{"Key": "a+b-c=d.e_f:g/h i", "Value": "ünïcödé 7"}]


def test_tag_lengths(ddb):
    """Keys 1..128 characters, values 0..256 (characters, not bytes)."""
    arn = _table(ddb)["TableArn"]
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "é" * 128, "Value": "ü" * 256}, {"Key": "empty", "Value": ""}])
    client = boto3_unvalidated(ddb)
    # the members in the order the service's HashMap reports them (server/shapes.py): value, then key
    assert _error(client.tag_resource, ResourceArn=arn, Tags=[{"Key": "k" * 129, "Value": "v" * 257}]) == (
        "ValidationException", "2 validation errors detected: Value '" + "v" * 257 + "' at 'tags.1.member.value' "
        "failed to satisfy constraint: Member must have length less than or equal to 256; Value '" + "k" * 129 +
        "' at 'tags.1.member.key' failed to satisfy constraint: Member must have length less than or equal to 128",
        400)
    assert _error(client.tag_resource, ResourceArn=arn, Tags=[{"Key": "", "Value": "v"}])[::2] == (
        "ValidationException", 400)


def boto3_unvalidated(ddb):
    """The same endpoint and credentials without boto3's own parameter checks (it refuses what we test)."""
    import boto3
    from botocore.config import Config

    creds = ddb._request_signer._credentials
    return boto3.client("dynamodb", endpoint_url=ddb.meta.endpoint_url, region_name=ddb.meta.region_name,
                        aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
                        config=Config(parameter_validation=False, retries={"max_attempts": 1}))


def test_at_most_50_tags_per_table(ddb):
    arn = _table(ddb, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(30)])["TableArn"]
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "w"} for i in range(20, 50)])  # 50 in all
    assert _error(ddb.tag_resource, ResourceArn=arn, Tags=[{"Key": "one-more", "Value": "v"}]) == (
        "ValidationException", "The number of tags exceeds the limit of 50", 400)


def test_an_index_arn_cannot_be_tagged(ddb):
    desc = _table(ddb, AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                             {"AttributeName": "sk", "AttributeType": "S"},
                                             {"AttributeName": "x", "AttributeType": "S"}],
                  KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                  GlobalSecondaryIndexes=[{"IndexName": "gsi", "Projection": {"ProjectionType": "KEYS_ONLY"},
                                           "KeySchema": [{"AttributeName": "x", "KeyType": "HASH"}]}],
                  LocalSecondaryIndexes=[{"IndexName": "lsi", "Projection": {"ProjectionType": "KEYS_ONLY"},
                                          "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                                        {"AttributeName": "x", "KeyType": "RANGE"}]}])
    for arn in (desc["GlobalSecondaryIndexes"][0]["IndexArn"], desc["LocalSecondaryIndexes"][0]["IndexArn"]):
        expected = ("ValidationException", "One or more parameter values were invalid: Invalid resource arn provided, "
                    f"only table or stream is accepted. Provided resource arn: {arn}", 400)
        assert _error(ddb.tag_resource, ResourceArn=arn, Tags=[{"Key": "k", "Value": "v"}]) == expected
        assert _error(ddb.list_tags_of_resource, ResourceArn=arn) == expected
        assert _error(ddb.untag_resource, ResourceArn=arn, TagKeys=["k"]) == expected


# -- CREATING / UPDATING / DELETING for a while ---------------------------------------------------------
@pytest.fixture(scope="module")
def slow(server_factory):
    srv = server_factory(group="table-states", allow_any_credentials=True, create_table_seconds=WINDOW,
                         update_table_seconds=WINDOW, delete_table_seconds=WINDOW)
    return srv.client("dynamodb")


def _wait(slow, waiter: str, name: str) -> float:
    start = time.monotonic()
    slow.get_waiter(waiter).wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    return time.monotonic() - start


def test_a_new_table_is_creating_for_a_while(slow):
    start = time.monotonic()
    desc = _table(slow)
    name, arn = desc["TableName"], desc["TableArn"]
    assert desc["TableStatus"] == "CREATING"
    assert slow.describe_table(TableName=name)["Table"]["TableStatus"] == "CREATING"
    assert name in slow.list_tables()["TableNames"]
    assert _error(slow.put_item, TableName=name, Item={"pk": {"S": "a"}}) == (
        "ResourceNotFoundException", "Requested resource not found", 400)
    assert _error(slow.update_table, TableName=name, DeletionProtectionEnabled=True) == in_use(
        f"Table is being created: {name}")
    assert _error(slow.delete_table, TableName=name) == in_use(f"Table is being created: {name}")
    assert _error(slow.create_table, TableName=name, BillingMode="PAY_PER_REQUEST",
                  AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                  KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}]) == in_use(f"Table is being created: {name}")
    assert _error(slow.tag_resource, ResourceArn=arn, Tags=[{"Key": "k", "Value": "v"}]) == (
        "ResourceNotFoundException", f"Requested resource not found: ResourcArn: {arn} not found", 400)
    _wait(slow, "table_exists", name)  # boto3's waiter polls DescribeTable until ACTIVE
    assert time.monotonic() - start >= WINDOW - 0.1
    assert slow.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE"
    slow.put_item(TableName=name, Item={"pk": {"S": "a"}})


def test_a_table_becomes_active_without_being_asked(slow):
    """The runtime's tick ends the state: data operations work after the window with no DescribeTable."""
    name = _table(slow)["TableName"]
    time.sleep(WINDOW + 0.6)
    slow.put_item(TableName=name, Item={"pk": {"S": "a"}})
    assert slow.list_tables()["TableNames"].count(name) == 1


def test_an_updated_table_is_updating_for_a_while(slow):
    name = _table(slow)["TableName"]
    _wait(slow, "table_exists", name)
    out = slow.update_table(TableName=name, BillingMode="PROVISIONED",
                            ProvisionedThroughput={"ReadCapacityUnits": 2, "WriteCapacityUnits": 2})
    assert out["TableDescription"]["TableStatus"] == "UPDATING"
    assert slow.describe_table(TableName=name)["Table"]["TableStatus"] == "UPDATING"
    slow.put_item(TableName=name, Item={"pk": {"S": "a"}})  # data keeps flowing while UPDATING
    assert _error(slow.delete_table, TableName=name) == in_use(f"Table: {name} is in the process of being updated.")
    assert _error(slow.update_table, TableName=name, ProvisionedThroughput={
        "ReadCapacityUnits": 3, "WriteCapacityUnits": 3}) == in_use(f"Table: {name} is in the process of being updated.")
    _wait(slow, "table_exists", name)
    assert slow.describe_table(TableName=name)["Table"]["ProvisionedThroughput"]["ReadCapacityUnits"] == 2


def test_a_deleted_table_is_deleting_for_a_while(slow):
    name = _table(slow)["TableName"]
    _wait(slow, "table_exists", name)
    slow.put_item(TableName=name, Item={"pk": {"S": "a"}})
    assert slow.delete_table(TableName=name)["TableDescription"]["TableStatus"] == "DELETING"
    described = slow.describe_table(TableName=name)["Table"]
    assert (described["TableName"], described["TableStatus"]) == (name, "DELETING")
    assert name in slow.list_tables()["TableNames"]
    assert _error(slow.delete_table, TableName=name) == in_use(f"Table is being deleted: {name}")
    assert _error(slow.update_table, TableName=name, DeletionProtectionEnabled=True) == in_use(
        f"Table is being deleted: {name}")
    assert _error(slow.create_table, TableName=name, BillingMode="PAY_PER_REQUEST",
                  AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                  KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}]) == (
        "ResourceInUseException", f"Table already exists: {name}", 400)
    assert _error(slow.get_item, TableName=name, Key={"pk": {"S": "a"}}) == (
        "ResourceNotFoundException", "Requested resource not found", 400)
    assert _wait(slow, "table_not_exists", name) >= WINDOW - 0.5
    assert name not in slow.list_tables()["TableNames"]
    assert _table(slow, TableName=name)["TableStatus"] == "CREATING"  # the name is free again


def test_instant_by_default(ddb):
    name = _table(ddb)["TableName"]
    assert ddb.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE"
    ddb.update_table(TableName=name, DeletionProtectionEnabled=False)
    assert ddb.describe_table(TableName=name)["Table"]["TableStatus"] == "ACTIVE"
    ddb.delete_table(TableName=name)
    assert _error(ddb.describe_table, TableName=name)[0] == "ResourceNotFoundException"
