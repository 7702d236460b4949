"""On-demand tables under --enforce-throughput: OnDemandThroughput maximums are kept in the catalog, shown by
DescribeTable, changed by UpdateTable, and requests over them are refused with DynamoDB's ThrottlingException
before anything is written; without a maximum an on-demand table is never throttled."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from dynavault.dynamodb.throughput import MSG_ON_DEMAND
from tests.dynamodb.test_throughput import SETTINGS, _until_refused


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory(group="throughput", **SETTINGS)


@pytest.fixture(scope="module")
def ddb(server):
    return server.client("dynamodb")


def _on_demand(ddb, name: str, **maximums) -> dict:
    args: dict = dict(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                      AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                      BillingMode="PAY_PER_REQUEST")
    if maximums:
        args["OnDemandThroughput"] = maximums
    return ddb.create_table(**args)["TableDescription"]


def test_on_demand_maximums_are_kept_shown_and_updated(ddb, unique_name):
    desc = _on_demand(ddb, unique_name, MaxReadRequestUnits=50, MaxWriteRequestUnits=5)
    assert desc["OnDemandThroughput"] == {"MaxReadRequestUnits": 50, "MaxWriteRequestUnits": 5}
    assert ddb.describe_table(TableName=unique_name)["Table"]["OnDemandThroughput"] == {
        "MaxReadRequestUnits": 50, "MaxWriteRequestUnits": 5}
    ddb.update_table(TableName=unique_name, OnDemandThroughput={"MaxReadRequestUnits": -1})  # -1 removes it
    assert ddb.describe_table(TableName=unique_name)["Table"]["OnDemandThroughput"] == {
        "MaxReadRequestUnits": -1, "MaxWriteRequestUnits": 5}
    with pytest.raises(ClientError) as err:
        ddb.update_table(TableName=unique_name, OnDemandThroughput={"MaxWriteRequestUnits": 0})
    assert err.value.response["Error"]["Code"] == "ValidationException"
    plain = unique_name + "-none"
    assert "OnDemandThroughput" not in _on_demand(ddb, plain)


def test_writes_over_the_on_demand_maximum_are_throttled_and_nothing_is_written(ddb, unique_name):
    _on_demand(ddb, unique_name, MaxWriteRequestUnits=5)
    done, err = _until_refused(lambda i: ddb.put_item(TableName=unique_name, Item={"pk": {"S": f"w{i}"}}))
    assert 5 <= done < 40  # one second of 5 units, no burst (the bucket refills while the test runs)
    assert err.response["Error"]["Code"] == "ThrottlingException"
    assert err.response["Error"]["Message"] == MSG_ON_DEMAND
    assert "Item" not in ddb.get_item(TableName=unique_name, Key={"pk": {"S": f"w{done}"}})


def test_reads_over_the_on_demand_maximum_are_throttled(ddb, unique_name):
    _on_demand(ddb, unique_name, MaxReadRequestUnits=3)
    done, err = _until_refused(lambda i: ddb.get_item(TableName=unique_name, Key={"pk": {"S": "x"}},
                                                      ConsistentRead=True))
    assert 3 <= done < 30
    assert err.response["Error"]["Code"] == "ThrottlingException"


def test_without_a_maximum_an_on_demand_table_is_not_throttled(ddb, unique_name):
    _on_demand(ddb, unique_name)
    for i in range(60):
        ddb.put_item(TableName=unique_name, Item={"pk": {"S": f"n{i}"}})


def test_a_client_with_standard_retries_gets_through_the_maximum(server, unique_name):
    ddb = server.client("dynamodb")
    _on_demand(ddb, unique_name, MaxWriteRequestUnits=2)
    retrying = boto3.client("dynamodb", endpoint_url=server.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(retries={"mode": "standard", "total_max_attempts": 10}))
    for i in range(8):
        retrying.put_item(TableName=unique_name, Item={"pk": {"S": f"r{i}"}})
    assert ddb.scan(TableName=unique_name, Select="COUNT")["Count"] == 8
