"""DescribeTableReplicaAutoScaling lists every replica of a global table (this region's too) with its status
and its indexes' statuses, and no auto scaling settings (there is no Application Auto Scaling here)."""

from __future__ import annotations

from tests.conftest import make_table
from tests.dynamodb.gt_util import EAST, WEST, add_replica, wait_replicas

SERVER_SETTINGS = {"allow_any_credentials": True}
ACCOUNT = "210987654322"


def test_every_replica_from_either_region(srv, unique_name):
    east = srv.client("dynamodb", access_key=ACCOUNT, region=EAST)
    west = srv.client("dynamodb", access_key=ACCOUNT, region=WEST)
    east.create_table(
        TableName=unique_name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "v", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST", GlobalSecondaryIndexes=[{
            "IndexName": "byv", "KeySchema": [{"AttributeName": "v", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"}}])
    plain = east.describe_table_replica_auto_scaling(TableName=unique_name)["TableAutoScalingDescription"]
    assert plain == {"TableName": unique_name, "TableStatus": "ACTIVE", "Replicas": []}
    add_replica(east, unique_name, WEST)
    wait_replicas(east, unique_name)
    expected = [{"RegionName": r, "ReplicaStatus": "ACTIVE",
                 "GlobalSecondaryIndexes": [{"IndexName": "byv", "IndexStatus": "ACTIVE"}]} for r in (EAST, WEST)]
    for client in (east, west):
        got = client.describe_table_replica_auto_scaling(TableName=unique_name)["TableAutoScalingDescription"]
        assert got == {"TableName": unique_name, "TableStatus": "ACTIVE", "Replicas": expected}


def test_a_table_with_no_index(srv, unique_name):
    east = srv.client("dynamodb", access_key=ACCOUNT, region=EAST)
    make_table(east, unique_name)
    add_replica(east, unique_name, WEST)
    wait_replicas(east, unique_name)
    got = east.describe_table_replica_auto_scaling(TableName=unique_name)["TableAutoScalingDescription"]
    assert got["Replicas"] == [{"RegionName": r, "ReplicaStatus": "ACTIVE", "GlobalSecondaryIndexes": []}
                               for r in (EAST, WEST)]
