"""Global tables version 2019.11.21 in one server: ReplicaUpdates, Replicas in DescribeTable from every region,
backfill, replication both ways through the one item-change path, DeleteTable of a member, the 2017.11.29
calls, ReplicationLatency in /metrics."""

from __future__ import annotations

import time
import urllib.request

import pytest

from tests.conftest import aws_error, make_table
from tests.dynamodb.gt_util import EAST, EU, WEST, add_replica, converge, global_table, items, wait_replicas
from tests.dynamodb.streams_util import consume, summary

SERVER_SETTINGS = {"allow_any_credentials": True}
ACCOUNT = "210987654321"


@pytest.fixture(scope="module")
def c(srv):
    return {r: srv.client("dynamodb", access_key=ACCOUNT, region=r) for r in (EAST, WEST, EU)}


def test_create_replica_backfills_and_describes_from_both_regions(c, unique_name):
    east, west = c[EAST], c[WEST]
    east.create_table(
        TableName=unique_name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "v", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST", GlobalSecondaryIndexes=[{
            "IndexName": "byv", "KeySchema": [{"AttributeName": "v", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"}}])
    for i in range(300):
        east.put_item(TableName=unique_name, Item={"pk": {"S": f"k{i}"}, "v": {"S": f"v{i % 7}"}})
    assert "Replicas" not in east.describe_table(TableName=unique_name)["Table"]
    desc = add_replica(east, unique_name, WEST)
    assert desc["GlobalTableVersion"] == "2019.11.21"
    assert desc["Replicas"][0]["RegionName"] == WEST
    assert desc["Replicas"][0]["ReplicaStatus"] in ("CREATING", "ACTIVE")
    # no stream prerequisite: DynamoDB turns a NEW_AND_OLD_IMAGES stream on itself
    assert desc["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    table = wait_replicas(east, unique_name)
    assert table["Replicas"] == [{"RegionName": WEST, "ReplicaStatus": "ACTIVE",
                                  "GlobalSecondaryIndexes": [{"IndexName": "byv"}]}]
    there = west.describe_table(TableName=unique_name)["Table"]
    assert there["GlobalTableVersion"] == "2019.11.21"
    assert [r["RegionName"] for r in there["Replicas"]] == [EAST]
    assert there["TableArn"] == f"arn:aws:dynamodb:{WEST}:{ACCOUNT}:table/{unique_name}"
    assert there["TableId"] != table["TableId"]
    assert there["KeySchema"] == table["KeySchema"]
    assert there["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert there["ItemCount"] == 300
    assert items(west, unique_name) == items(east, unique_name)
    got = west.query(TableName=unique_name, IndexName="byv", KeyConditionExpression="v = :v",
                     ExpressionAttributeValues={":v": {"S": "v3"}})["Items"]
    assert len(got) == len([i for i in range(300) if i % 7 == 3])


def test_writes_replicate_both_ways_without_metadata_in_items(c, unique_name):
    east, west = c[EAST], c[WEST]
    global_table(c, unique_name, [EAST, WEST])
    east.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    west.put_item(TableName=unique_name, Item={"pk": {"S": "b"}, "n": {"N": "2"}})
    converge([east, west], unique_name, {"a": {"pk": {"S": "a"}, "n": {"N": "1"}},
                                         "b": {"pk": {"S": "b"}, "n": {"N": "2"}}})
    west.update_item(TableName=unique_name, Key={"pk": {"S": "a"}}, UpdateExpression="ADD n :one",
                     ExpressionAttributeValues={":one": {"N": "10"}})
    east.delete_item(TableName=unique_name, Key={"pk": {"S": "b"}})
    converge([east, west], unique_name, {"a": {"pk": {"S": "a"}, "n": {"N": "11"}}})
    # replication metadata never shows in an item, read any way
    assert east.get_item(TableName=unique_name, Key={"pk": {"S": "a"}}, ConsistentRead=True)["Item"] == \
        {"pk": {"S": "a"}, "n": {"N": "11"}}


def test_each_replica_stream_shows_local_and_replicated_writes_once(srv, c, unique_name):
    east, west = c[EAST], c[WEST]
    global_table(c, unique_name, [EAST, WEST])
    east.put_item(TableName=unique_name, Item={"pk": {"S": "x"}, "v": {"S": "1"}})
    converge([east, west], unique_name)
    west.put_item(TableName=unique_name, Item={"pk": {"S": "x"}, "v": {"S": "2"}})
    converge([east, west], unique_name, {"x": {"pk": {"S": "x"}, "v": {"S": "2"}}})
    time.sleep(1.0)  # time for a ping-pong, were there one
    for region in (EAST, WEST):
        st = srv.client("dynamodbstreams", access_key=ACCOUNT, region=region)
        arn = c[region].describe_table(TableName=unique_name)["Table"]["LatestStreamArn"]
        got = summary(consume(st, arn))
        assert [(e, n) for e, _, n, _ in got] == [("INSERT", {"pk": {"S": "x"}, "v": {"S": "1"}}),
                                                   ("MODIFY", {"pk": {"S": "x"}, "v": {"S": "2"}})], region


def test_three_regions_every_write_reaches_every_replica(c, unique_name):
    global_table(c, unique_name, [EAST, WEST, EU])
    assert sorted(r["RegionName"] for r in c[EU].describe_table(TableName=unique_name)["Table"]["Replicas"]) == \
        [EAST, WEST]
    for i, region in enumerate((EAST, WEST, EU) * 3):
        c[region].put_item(TableName=unique_name, Item={"pk": {"S": f"k{i}"}, "from": {"S": region}})
    got = converge(list(c.values()), unique_name)
    assert len(got) == 9


def test_replica_update_errors(c, unique_name):
    east, west = c[EAST], c[WEST]
    make_table(east, unique_name)
    make_table(west, unique_name + "-w")

    def err(updates, **kw):
        return aws_error(east.update_table, TableName=unique_name, ReplicaUpdates=updates, **kw)[:2]

    assert err([{"Create": {"RegionName": EAST}}]) == (
        "ValidationException", "Cannot add or delete the local region through ReplicaUpdates. Use CreateTable, "
        "DeleteTable, or UpdateTable as required.")
    code, msg = err([{"Create": {"RegionName": "us-fake-1"}}])
    assert code == "ValidationException" and msg.startswith(
        "Region us-fake-1 is not supported. The latest version of global tables are only supported in the "
        "following regions: [")
    assert err([{"Delete": {"RegionName": EU}}]) == (
        "ValidationException", "Update global table operation failed because one or more replicas were not part "
        "of the global table. Please retry the request without these replicas: [eu-west-1].")
    assert err([{"Update": {"RegionName": EU, "TableClassOverride": "STANDARD"}}])[1].endswith("[eu-west-1].")
    assert err([{"Update": {"RegionName": WEST}}]) == (
        "ValidationException", "There are no actions specified in the Replica Update Action of the request.")
    assert err([{}]) == (
        "ValidationException", "There are no actions specified in the Replica Update Action of the request.")
    assert err([{"Create": {"RegionName": WEST}, "Delete": {"RegionName": EU}}]) == (
        "ValidationException", "Update table operation with more than one type of replica actions not allowed.")
    assert err([{"Create": {"RegionName": WEST}}, {"Create": {"RegionName": EU}}]) == (
        "ValidationException", "Update table operation with more than one create or delete replica actions not "
        "allowed")
    assert err([{"Create": {"RegionName": WEST}}], DeletionProtectionEnabled=True) == (
        "ValidationException", "Requests that modify replicas or witnesses must not also modify other fields")
    # an owned-key table takes no replica key
    assert err([{"Create": {"RegionName": WEST, "KMSMasterKeyId": "alias/aws/dynamodb"}}]) == (
        "ValidationException", "One or more parameter values were invalid: KMSMasterKeyId must be specified for "
        "each replica.")
    # a table of that name already in the region
    east.create_table(TableName=unique_name + "-w", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                      AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                      BillingMode="PAY_PER_REQUEST")
    assert aws_error(east.update_table, TableName=unique_name + "-w",
                     ReplicaUpdates=[{"Create": {"RegionName": WEST}}])[:2] == (
        "ValidationException", f"Failed to create a the new replica of table with name: \u2018{unique_name}-w\u2019 "
        "because one or more replicas already existed as tables.")
    # nothing was changed by any of them
    assert "Replicas" not in east.describe_table(TableName=unique_name)["Table"]
    assert "StreamSpecification" not in east.describe_table(TableName=unique_name)["Table"]
    # a member: a second Create of the region, an Update of its key
    add_replica(east, unique_name, WEST)
    wait_replicas(east, unique_name)
    assert err([{"Create": {"RegionName": WEST}}])[1].endswith("because one or more replicas already existed as "
                                                               "tables.")
    assert err([{"Update": {"RegionName": WEST, "KMSMasterKeyId": "alias/aws/dynamodb"}}])[1].endswith(
        "KMSMasterKeyId must be specified for each replica.")
    assert aws_error(east.update_table, TableName=unique_name,
                     StreamSpecification={"StreamEnabled": False})[:2] == (
        "ValidationException", "Disabling Stream is not allowed for a Global Table replica")


def test_replica_update_table_class_override(c, unique_name):
    east, west = c[EAST], c[WEST]
    global_table(c, unique_name, [EAST, WEST])
    east.update_table(TableName=unique_name, ReplicaUpdates=[{"Update": {
        "RegionName": WEST, "TableClassOverride": "STANDARD_INFREQUENT_ACCESS"}}])
    rep = wait_replicas(east, unique_name)["Replicas"][0]
    assert rep["ReplicaTableClassSummary"]["TableClass"] == "STANDARD_INFREQUENT_ACCESS"
    assert west.describe_table(TableName=unique_name)["Table"]["TableClassSummary"] == {
        "TableClass": "STANDARD_INFREQUENT_ACCESS"}


def test_delete_replica_and_delete_table_of_a_member(c, unique_name):
    east, west, eu = c[EAST], c[WEST], c[EU]
    global_table(c, unique_name, [EAST, WEST, EU])
    east.put_item(TableName=unique_name, Item={"pk": {"S": "a"}})
    converge(list(c.values()), unique_name)
    east.update_table(TableName=unique_name, ReplicaUpdates=[{"Delete": {"RegionName": WEST}}])
    assert aws_error(west.describe_table, TableName=unique_name)[0] in ("ResourceNotFoundException",)
    assert [r["RegionName"] for r in east.describe_table(TableName=unique_name)["Table"]["Replicas"]] == [EU]
    assert [r["RegionName"] for r in eu.describe_table(TableName=unique_name)["Table"]["Replicas"]] == [EAST]
    # DeleteTable in a replica's region removes that replica; the last one gone, the table is regional again
    eu.delete_table(TableName=unique_name)
    table = east.describe_table(TableName=unique_name)["Table"]
    assert "Replicas" not in table and "GlobalTableVersion" not in table
    east.put_item(TableName=unique_name, Item={"pk": {"S": "b"}})
    assert set(items(east, unique_name)) == {"a", "b"}
    # and it can be made global again
    add_replica(east, unique_name, WEST)
    wait_replicas(east, unique_name)
    assert set(items(west, unique_name)) == {"a", "b"}


def test_legacy_global_table_calls(c, unique_name):
    east = c[EAST]
    global_table(c, unique_name, [EAST, WEST])
    assert east.list_global_tables()["GlobalTables"] == []
    assert aws_error(east.describe_global_table, GlobalTableName=unique_name)[:2] == (
        "GlobalTableNotFoundException",
        f"Global table not found: Global table with name: '{unique_name}' does not exist.")
    assert aws_error(east.update_global_table, GlobalTableName=unique_name,
                     ReplicaUpdates=[{"Create": {"RegionName": EU}}])[:2] == (
        "ValidationException", "version 2017.11.29 is not supported")
    assert aws_error(east.update_global_table, GlobalTableName=unique_name,
                     ReplicaUpdates=[{"Delete": {"RegionName": WEST}}])[0] == "GlobalTableNotFoundException"
    assert aws_error(east.describe_global_table_settings, GlobalTableName=unique_name)[:2] == (
        "GlobalTableNotFoundException", f"Global table with name: '{unique_name}' does not exist.")
    assert aws_error(east.create_global_table, GlobalTableName=unique_name,
                     ReplicationGroup=[{"RegionName": EAST}, {"RegionName": WEST}])[0] == "ValidationException"


def test_replication_latency_in_metrics(srv, c, unique_name):
    global_table(c, unique_name, [EAST, WEST])
    c[EAST].put_item(TableName=unique_name, Item={"pk": {"S": "m"}})
    converge([c[EAST], c[WEST]], unique_name)
    text = urllib.request.urlopen(srv.endpoint + "/metrics", timeout=5).read().decode()
    line = [x for x in text.splitlines() if x.startswith("dynavault_replication_latency_seconds_count{")
            and f'source_region="{EAST}"' in x and f'target_region="{WEST}"' in x]
    assert line and float(line[0].split()[-1]) >= 1
