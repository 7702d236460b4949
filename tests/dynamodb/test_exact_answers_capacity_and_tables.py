"""Answers about tables as DynamoDB gives them: ItemCollectionMetrics for tables with LSIs, capacity per
index (INDEXES) for every kind of write, Scan's capacity from the total size it read, GSI descriptions,
AttributeDefinitions, the DeleteTable answer, and table ARNs in every operation that takes a table name.

DynamoDB's rules followed here: ItemCollectionMetrics is returned only for tables with local secondary indexes,
with SizeEstimateRangeGB a [lower, upper] GB range ([0.0, 1.0] for small collections, as AWS's examples show);
a Scan or Query charges ceil(total bytes read / 4 KB) read units, half for eventually consistent reads;
`Backfilling` is shown only while an index UpdateTable adds is CREATING; DeleteTable answers TableStatus
DELETING without the key schema, attribute definitions or index lists (AWS's DeleteTable example);
ConsumedCapacity.TableName is the table's ARN when the request named the table by its ARN (the API reference).
"""

from __future__ import annotations

import math
import time
import uuid

import pytest
from botocore.exceptions import ClientError

HASH = {"AttributeName": "pk", "KeyType": "HASH"}
RANGE = {"AttributeName": "sk", "KeyType": "RANGE"}
SMALL = [0.0, 1.0]


def _defs(*names: str) -> list[dict]:
    return [{"AttributeName": n, "AttributeType": "S"} for n in names]


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def ddb(shared_server):
    return shared_server.client("dynamodb")


@pytest.fixture(scope="module")
def lsi_table(ddb):
    """pk/sk with an LSI on l and a GSI on g."""
    name = _name("cap-lsi")
    ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST", AttributeDefinitions=_defs("pk", "sk", "l", "g"),
        KeySchema=[HASH, RANGE],
        LocalSecondaryIndexes=[{"IndexName": "by-l", "Projection": {"ProjectionType": "KEYS_ONLY"},
                                "KeySchema": [HASH, {"AttributeName": "l", "KeyType": "RANGE"}]}],
        GlobalSecondaryIndexes=[{"IndexName": "by-g", "Projection": {"ProjectionType": "KEYS_ONLY"},
                                 "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}]}])
    return name


@pytest.fixture(scope="module")
def plain_table(ddb):
    name = _name("cap-plain")
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", AttributeDefinitions=_defs("pk"),
                     KeySchema=[HASH])
    return name


# -- ItemCollectionMetrics -----------------------------------------------------------------------------
def test_item_collection_metrics_for_single_writes(ddb, lsi_table, plain_table):
    key = {"pk": {"S": "icm"}, "sk": {"S": "1"}}
    metrics = {"ItemCollectionKey": {"pk": {"S": "icm"}}, "SizeEstimateRangeGB": SMALL}
    r = ddb.put_item(TableName=lsi_table, Item={**key, "l": {"S": "x"}}, ReturnItemCollectionMetrics="SIZE")
    assert r["ItemCollectionMetrics"] == metrics
    r = ddb.update_item(TableName=lsi_table, Key=key, UpdateExpression="SET v = :v",
                        ExpressionAttributeValues={":v": {"N": "1"}}, ReturnItemCollectionMetrics="SIZE")
    assert r["ItemCollectionMetrics"] == metrics
    r = ddb.delete_item(TableName=lsi_table, Key=key, ReturnItemCollectionMetrics="SIZE")
    assert r["ItemCollectionMetrics"] == metrics
    # not asked for, or NONE, or a table without LSIs: no metrics
    assert "ItemCollectionMetrics" not in ddb.put_item(TableName=lsi_table, Item=key)
    assert "ItemCollectionMetrics" not in ddb.put_item(TableName=lsi_table, Item=key,
                                                       ReturnItemCollectionMetrics="NONE")
    assert "ItemCollectionMetrics" not in ddb.put_item(TableName=plain_table, Item={"pk": {"S": "icm"}},
                                                       ReturnItemCollectionMetrics="SIZE")


def test_item_collection_metrics_for_batches_and_transactions(ddb, lsi_table, plain_table):
    puts = [{"PutRequest": {"Item": {"pk": {"S": pk}, "sk": {"S": str(i)}}}}
            for i, pk in enumerate(["b1", "b1", "b2"])]
    r = ddb.batch_write_item(RequestItems={lsi_table: puts, plain_table: [{"PutRequest": {"Item": {"pk": {"S": "x"}}}}]},
                             ReturnItemCollectionMetrics="SIZE")
    assert r["ItemCollectionMetrics"] == {lsi_table: [
        {"ItemCollectionKey": {"pk": {"S": "b1"}}, "SizeEstimateRangeGB": SMALL},
        {"ItemCollectionKey": {"pk": {"S": "b2"}}, "SizeEstimateRangeGB": SMALL}]}
    r = ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": lsi_table, "Item": {"pk": {"S": "t1"}, "sk": {"S": "1"}}}},
        {"ConditionCheck": {"TableName": lsi_table, "Key": {"pk": {"S": "b2"}, "sk": {"S": "2"}},
                            "ConditionExpression": "attribute_exists(pk)"}}], ReturnItemCollectionMetrics="SIZE")
    assert r["ItemCollectionMetrics"] == {lsi_table: [
        {"ItemCollectionKey": {"pk": {"S": "t1"}}, "SizeEstimateRangeGB": SMALL}]}


# -- capacity per index ----------------------------------------------------------------------------------
def test_indexes_capacity_for_every_kind_of_write(ddb, lsi_table):
    item = {"pk": {"S": "cap"}, "sk": {"S": "1"}, "l": {"S": "x"}, "g": {"S": "y"}}
    per_index = {"Table": {"CapacityUnits": 1.0}, "LocalSecondaryIndexes": {"by-l": {"CapacityUnits": 1.0}},
                 "GlobalSecondaryIndexes": {"by-g": {"CapacityUnits": 1.0}}}
    cc = ddb.put_item(TableName=lsi_table, Item=item, ReturnConsumedCapacity="INDEXES")["ConsumedCapacity"]
    assert cc == {"TableName": lsi_table, "CapacityUnits": 3.0, "WriteCapacityUnits": 3.0, **per_index}
    (cc,) = ddb.batch_write_item(RequestItems={lsi_table: [{"PutRequest": {"Item": {**item, "sk": {"S": "2"}}}}]},
                                 ReturnConsumedCapacity="INDEXES")["ConsumedCapacity"]
    assert cc == {"TableName": lsi_table, "CapacityUnits": 3.0, "WriteCapacityUnits": 3.0, **per_index}
    (cc,) = ddb.transact_write_items(TransactItems=[{"Put": {"TableName": lsi_table,
                                                             "Item": {**item, "sk": {"S": "3"}}}}],
                                     ReturnConsumedCapacity="INDEXES")["ConsumedCapacity"]
    doubled = {"Table": {"CapacityUnits": 2.0}, "LocalSecondaryIndexes": {"by-l": {"CapacityUnits": 2.0}},
               "GlobalSecondaryIndexes": {"by-g": {"CapacityUnits": 2.0}}}  # transactions cost twice
    assert cc == {"TableName": lsi_table, "CapacityUnits": 6.0, "WriteCapacityUnits": 6.0, **doubled}
    r = ddb.execute_statement(Statement=f"UPDATE \"{lsi_table}\" SET g = 'z' WHERE pk = 'cap' AND sk = '1'",
                              ReturnConsumedCapacity="INDEXES")
    # the GSI entry moves (a delete and a put); the KEYS_ONLY LSI entry does not change
    assert r["ConsumedCapacity"] == {"TableName": lsi_table, "CapacityUnits": 3.0, "WriteCapacityUnits": 3.0,
                                     "Table": {"CapacityUnits": 1.0},
                                     "GlobalSecondaryIndexes": {"by-g": {"CapacityUnits": 2.0}}}


def test_scan_capacity_rounds_the_total_size_read(ddb):
    name = _name("cap-scan")
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", AttributeDefinitions=_defs("pk"),
                     KeySchema=[HASH])
    for i in range(10):  # 2 + 3 + 1 + 1000 = 1006 bytes each
        ddb.put_item(TableName=name, Item={"pk": {"S": f"k{i:02d}"}, "v": {"S": "x" * 1000}})
    total = 10 * 1006
    strong = ddb.scan(TableName=name, ConsistentRead=True, ReturnConsumedCapacity="TOTAL")
    weak = ddb.scan(TableName=name, ReturnConsumedCapacity="TOTAL")
    assert strong["Count"] == weak["Count"] == 10
    assert strong["ConsumedCapacity"]["CapacityUnits"] == math.ceil(total / 4096) == 3  # not 10 (per item)
    assert weak["ConsumedCapacity"]["CapacityUnits"] == 1.5
    # a filter does not change what was read; an empty read still costs the minimum
    filtered = ddb.scan(TableName=name, FilterExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "k00"}},
                        ReturnConsumedCapacity="TOTAL")
    assert (filtered["Count"], filtered["ConsumedCapacity"]["CapacityUnits"]) == (1, 1.5)
    empty = ddb.query(TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "no"}},
                      ReturnConsumedCapacity="TOTAL")
    assert empty["ConsumedCapacity"]["CapacityUnits"] == 0.5


# -- descriptions -------------------------------------------------------------------------------------------
def _wait_index(ddb, name: str, index: str, status: str = "ACTIVE") -> dict:
    deadline = time.time() + 20
    while time.time() < deadline:
        for g in ddb.describe_table(TableName=name)["Table"].get("GlobalSecondaryIndexes", []):
            if g["IndexName"] == index and g["IndexStatus"] == status:
                return g
        time.sleep(0.1)
    raise AssertionError(f"index {index} never {status}")


def _wait_index_gone(ddb, name: str, index: str) -> dict:
    deadline = time.time() + 20
    while time.time() < deadline:
        table = ddb.describe_table(TableName=name)["Table"]
        if index not in [g["IndexName"] for g in table.get("GlobalSecondaryIndexes", [])]:
            return table
        time.sleep(0.1)
    raise AssertionError(f"index {index} never gone")


def test_gsi_descriptions_and_attribute_definitions(ddb):
    name = _name("desc-gsi")
    composite = {"IndexName": "by-abcd", "Projection": {"ProjectionType": "ALL"},
                 "KeySchema": [{"AttributeName": "a", "KeyType": "HASH"}, {"AttributeName": "b", "KeyType": "HASH"},
                               {"AttributeName": "c", "KeyType": "RANGE"}, {"AttributeName": "d", "KeyType": "RANGE"}]}
    created = ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", KeySchema=[HASH],
                               AttributeDefinitions=_defs("pk", "a", "b", "c", "d"),
                               GlobalSecondaryIndexes=[composite])["TableDescription"]
    assert created["AttributeDefinitions"] == _defs("pk", "a", "b", "c", "d")
    (g,) = created["GlobalSecondaryIndexes"]
    assert g["KeySchema"] == composite["KeySchema"] and "Backfilling" not in g
    ddb.put_item(TableName=name, Item={"pk": {"S": "1"}, "e": {"S": "x"}})
    r = ddb.update_table(TableName=name, AttributeDefinitions=_defs("e"), GlobalSecondaryIndexUpdates=[
        {"Create": {"IndexName": "by-e", "KeySchema": [{"AttributeName": "e", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"}}}])["TableDescription"]
    adding = [x for x in r["GlobalSecondaryIndexes"] if x["IndexName"] == "by-e"][0]
    assert (adding["IndexStatus"], adding["Backfilling"]) == ("CREATING", True)
    assert "Backfilling" not in _wait_index(ddb, name, "by-e")  # only while CREATING
    assert ddb.describe_table(TableName=name)["Table"]["AttributeDefinitions"] == _defs("pk", "a", "b", "c", "d", "e")
    # a deleted index's key attributes leave AttributeDefinitions with it
    ddb.update_table(TableName=name, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "by-abcd"}}])
    table = _wait_index_gone(ddb, name, "by-abcd")
    assert table["AttributeDefinitions"] == _defs("pk", "e")


def test_delete_table_answer(ddb):
    name = _name("desc-delete")
    arn = ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", KeySchema=[HASH],
                           AttributeDefinitions=_defs("pk", "g"),
                           GlobalSecondaryIndexes=[{"IndexName": "by-g", "Projection": {"ProjectionType": "ALL"},
                                                    "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}]}]
                           )["TableDescription"]["TableArn"]
    ddb.put_item(TableName=name, Item={"pk": {"S": "a"}, "g": {"S": "b"}})
    desc = ddb.delete_table(TableName=name)["TableDescription"]
    assert desc["TableStatus"] == "DELETING"
    assert (desc["TableName"], desc["TableArn"], desc["ItemCount"]) == (name, arn, 1)
    assert desc["ProvisionedThroughput"] == {"NumberOfDecreasesToday": 0, "ReadCapacityUnits": 0,
                                             "WriteCapacityUnits": 0}
    assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    for member in ("KeySchema", "AttributeDefinitions", "CreationDateTime", "GlobalSecondaryIndexes"):
        assert member not in desc, member
    with pytest.raises(ClientError) as exc:
        ddb.describe_table(TableName=name)
    assert exc.value.response["Error"]["Code"] == "ResourceNotFoundException"


# -- table ARNs -------------------------------------------------------------------------------------------
def test_a_table_arn_works_in_every_operation_that_takes_a_table(ddb):
    name = _name("arn-everywhere")
    arn = ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", KeySchema=[HASH, RANGE],
                           AttributeDefinitions=_defs("pk", "sk"))["TableDescription"]["TableArn"]
    key = {"pk": {"S": "a"}, "sk": {"S": "1"}}
    ddb.put_item(TableName=arn, Item=key)
    # ConsumedCapacity names the table as the request did
    assert ddb.get_item(TableName=arn, Key=key, ReturnConsumedCapacity="TOTAL")["ConsumedCapacity"]["TableName"] == arn
    assert ddb.get_item(TableName=name, Key=key, ReturnConsumedCapacity="TOTAL")["ConsumedCapacity"]["TableName"] == \
        name
    assert ddb.query(TableName=arn, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}},
                     ReturnConsumedCapacity="TOTAL")["ConsumedCapacity"]["TableName"] == arn
    assert ddb.scan(TableName=arn, ReturnConsumedCapacity="INDEXES")["ConsumedCapacity"]["TableName"] == arn
    (cc,) = ddb.batch_write_item(RequestItems={arn: [{"DeleteRequest": {"Key": {"pk": {"S": "x"}, "sk": {"S": "1"}}}}]},
                                 ReturnConsumedCapacity="TOTAL")["ConsumedCapacity"]
    assert cc["TableName"] == arn
    (cc,) = ddb.transact_write_items(TransactItems=[
        {"ConditionCheck": {"TableName": arn, "Key": key, "ConditionExpression": "attribute_exists(pk)"}},
        {"Update": {"TableName": arn, "Key": {**key, "sk": {"S": "2"}}, "UpdateExpression": "SET v = :v",
                    "ExpressionAttributeValues": {":v": {"N": "1"}}}}], ReturnConsumedCapacity="TOTAL")[
        "ConsumedCapacity"]
    assert cc["TableName"] == arn
    assert ddb.get_item(TableName=name, Key={**key, "sk": {"S": "2"}})["Item"]["v"] == {"N": "1"}
    # the control plane
    assert ddb.update_time_to_live(TableName=arn, TimeToLiveSpecification={"Enabled": True, "AttributeName": "t"})[
        "TimeToLiveSpecification"] == {"Enabled": True, "AttributeName": "t"}
    assert ddb.describe_time_to_live(TableName=arn)["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"
    backup = ddb.create_backup(TableName=arn, BackupName="by-arn")["BackupDetails"]
    assert backup["BackupArn"].startswith(arn + "/backup/")
    assert [b["BackupName"] for b in ddb.list_backups(TableName=arn)["BackupSummaries"]] == ["by-arn"]
    assert ddb.describe_table(TableName=arn)["Table"]["TableArn"] == arn
    assert ddb.delete_table(TableName=arn)["TableDescription"]["TableName"] == name
