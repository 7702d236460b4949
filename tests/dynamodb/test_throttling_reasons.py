"""ThrottlingReasons on throttling answers, and GSI OnDemandThroughput (kept, shown, updated, enforced).

Read the way an application reads them: boto3 parses the members DynamoDB's service model gives the errors
(``ThrottlingReasons`` in ProvisionedThroughputExceededException and RequestLimitExceeded,
``throttlingReasons`` in ThrottlingException) into ``e.response``."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from dynavault.dynamodb.throughput import MSG_ON_DEMAND
from tests.conftest import make_table
from tests.dynamodb.test_throughput import SETTINGS, _put, _table, _until_refused
from tests.server.test_faults import put_fault


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory(group="throughput", **SETTINGS)


@pytest.fixture(scope="module")
def ddb(server):
    return server.client("dynamodb")


def _arn(ddb, table: str) -> str:
    return ddb.describe_table(TableName=table)["Table"]["TableArn"]


def _on_demand_with_gsi(ddb, name: str, table_max: dict | None = None, gsi_max: dict | None = None) -> dict:
    gsi: dict = {"IndexName": "byg", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                 "Projection": {"ProjectionType": "ALL"}}
    if gsi_max is not None:
        gsi["OnDemandThroughput"] = gsi_max
    args: dict = dict(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                      AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                            {"AttributeName": "g", "AttributeType": "S"}],
                      BillingMode="PAY_PER_REQUEST", GlobalSecondaryIndexes=[gsi])
    if table_max is not None:
        args["OnDemandThroughput"] = table_max
    return ddb.create_table(**args)["TableDescription"]


def _gsi(desc: dict) -> dict:
    return desc["GlobalSecondaryIndexes"][0]


def _code_text(err: ClientError) -> tuple[str, str]:
    return err.response["Error"]["Code"], err.response["Error"]["Message"]


# -- ThrottlingReasons ------------------------------------------------------------------------------
def test_provisioned_table_write_refusal_names_the_table(ddb, unique_name):
    _table(ddb, unique_name, wcu=2)
    _, err = _until_refused(_put(ddb, unique_name))
    assert err.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert err.response["ThrottlingReasons"] == [
        {"reason": "TableWriteProvisionedThroughputExceeded", "resource": _arn(ddb, unique_name)}]


def test_provisioned_table_read_refusal_names_the_table(ddb, unique_name):
    _table(ddb, unique_name, rcu=2)
    _, err = _until_refused(lambda i: ddb.get_item(TableName=unique_name, Key={"pk": {"S": "x"}},
                                                   ConsistentRead=True))
    assert err.response["ThrottlingReasons"] == [
        {"reason": "TableReadProvisionedThroughputExceeded", "resource": _arn(ddb, unique_name)}]


def test_gsi_write_refusal_names_the_index(ddb, unique_name):
    _table(ddb, unique_name, wcu=1000, gsi_wcu=2)
    _, err = _until_refused(_put(ddb, unique_name, g={"S": "v"}))
    assert err.response["ThrottlingReasons"] == [
        {"reason": "IndexWriteProvisionedThroughputExceeded", "resource": _arn(ddb, unique_name) + "/index/byg"}]


def test_batch_refused_entirely_carries_reasons(ddb, unique_name):
    _table(ddb, unique_name, wcu=1)
    _until_refused(_put(ddb, unique_name))  # the burst is spent

    def batch(i):
        ddb.batch_write_item(RequestItems={unique_name: [
            {"PutRequest": {"Item": {"pk": {"S": f"b{i}-{j}"}}}} for j in range(5)]})
    _, err = _until_refused(batch)
    assert err.response["ThrottlingReasons"][0] == {
        "reason": "TableWriteProvisionedThroughputExceeded", "resource": _arn(ddb, unique_name)}


def test_on_demand_table_maximum_refusal_names_the_table(ddb, unique_name):
    _on_demand_with_gsi(ddb, unique_name, table_max={"MaxWriteRequestUnits": 2})
    _, err = _until_refused(_put(ddb, unique_name))
    assert _code_text(err) == ("ThrottlingException", MSG_ON_DEMAND)
    assert err.response["throttlingReasons"] == [
        {"reason": "TableWriteMaxOnDemandThroughputExceeded", "resource": _arn(ddb, unique_name)}]


@pytest.mark.parametrize("error,member,limit", [
    ("ProvisionedThroughputExceededException", "ThrottlingReasons", "ProvisionedThroughputExceeded"),
    ("ThrottlingException", "throttlingReasons", "MaxOnDemandThroughputExceeded"),
    ("RequestLimitExceeded", "ThrottlingReasons", "AccountLimitExceeded"),
])
def test_injected_throttles_carry_reasons(srv, error, member, limit):
    key = f"37{abs(hash(error)) % 10**10:010d}"
    ddb = srv.client("dynamodb", access_key=key)
    make_table(ddb, "thr")
    arn = _arn(ddb, "thr")
    put_fault(srv, key, Operation="PutItem", TableName="thr", Error=error, Count=1)
    put_fault(srv, key, Operation="Query", TableName="thr", Error=error, Count=1)
    put_fault(srv, key, Operation="DescribeTable", TableName="thr", Error=error, Count=1)
    with pytest.raises(ClientError) as put:
        ddb.put_item(TableName="thr", Item={"pk": {"S": "a"}})
    assert put.value.response["Error"]["Code"] == error
    assert put.value.response[member] == [{"reason": f"TableWrite{limit}", "resource": arn}]
    with pytest.raises(ClientError) as query:
        ddb.query(TableName="thr", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}})
    assert query.value.response[member] == [{"reason": f"TableRead{limit}", "resource": arn}]
    with pytest.raises(ClientError) as control:  # a control-plane throttle names no table capacity
        ddb.describe_table(TableName="thr")
    assert member not in control.value.response


# -- GSI OnDemandThroughput ---------------------------------------------------------------------------
def test_gsi_maximums_are_kept_shown_and_updated(ddb, unique_name):
    desc = _on_demand_with_gsi(ddb, unique_name, gsi_max={"MaxReadRequestUnits": 40, "MaxWriteRequestUnits": 4})
    assert _gsi(desc)["OnDemandThroughput"] == {"MaxReadRequestUnits": 40, "MaxWriteRequestUnits": 4}
    assert "OnDemandThroughput" not in desc  # the table's own: never set
    ddb.update_table(TableName=unique_name, GlobalSecondaryIndexUpdates=[
        {"Update": {"IndexName": "byg", "OnDemandThroughput": {"MaxWriteRequestUnits": 9}}}])
    got = _gsi(ddb.describe_table(TableName=unique_name)["Table"])
    assert got["OnDemandThroughput"] == {"MaxReadRequestUnits": 40, "MaxWriteRequestUnits": 9}
    ddb.update_table(TableName=unique_name, GlobalSecondaryIndexUpdates=[
        {"Update": {"IndexName": "byg", "OnDemandThroughput": {"MaxReadRequestUnits": -1,
                                                               "MaxWriteRequestUnits": -1}}}])
    assert "OnDemandThroughput" not in _gsi(ddb.describe_table(TableName=unique_name)["Table"])


def test_gsi_without_maximums_shows_none(ddb, unique_name):
    assert "OnDemandThroughput" not in _gsi(_on_demand_with_gsi(ddb, unique_name))


def test_gsi_created_by_update_table_keeps_its_maximums(ddb, unique_name):
    ddb.create_table(TableName=unique_name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    desc = ddb.update_table(
        TableName=unique_name, AttributeDefinitions=[{"AttributeName": "g", "AttributeType": "S"}],
        GlobalSecondaryIndexUpdates=[{"Create": {
            "IndexName": "byg", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"}, "OnDemandThroughput": {"MaxReadRequestUnits": 7}}}],
    )["TableDescription"]
    assert _gsi(desc)["OnDemandThroughput"] == {"MaxReadRequestUnits": 7, "MaxWriteRequestUnits": -1}


@pytest.mark.parametrize("maximums,text", [
    ({"MaxReadRequestUnits": 0}, "Requested MaxReadRequestUnits for OnDemandThroughput for index : byg is outside "
                                 "of valid range"),
    ({"MaxWriteRequestUnits": -1}, "Requested MaxWriteRequestUnits for OnDemandThroughput for index : byg is "
                                   "outside of valid range"),  # -1 clears on update; at create it is invalid
])
def test_gsi_maximums_out_of_range_at_create(ddb, unique_name, maximums, text):
    with pytest.raises(ClientError) as err:
        _on_demand_with_gsi(ddb, unique_name, gsi_max=maximums)
    assert _code_text(err.value) == ("ValidationException", "One or more parameter values were invalid: " + text)


def test_gsi_maximums_refused_on_a_provisioned_table(ddb, unique_name):
    with pytest.raises(ClientError) as err:
        ddb.create_table(
            TableName=unique_name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "g", "AttributeType": "S"}],
            ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
            GlobalSecondaryIndexes=[{
                "IndexName": "byg", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
                "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
                "OnDemandThroughput": {"MaxReadRequestUnits": 5}}])
    assert _code_text(err.value) == (
        "ValidationException", "One or more parameter values were invalid: MaxReadRequestUnits for "
        "OnDemandThroughput for index: byg cannot be specified when the table BillingMode is PROVISIONED")


def test_bad_gsi_update_changes_nothing(ddb, unique_name):
    _on_demand_with_gsi(ddb, unique_name, gsi_max={"MaxWriteRequestUnits": 4})
    with pytest.raises(ClientError) as err:
        ddb.update_table(TableName=unique_name, GlobalSecondaryIndexUpdates=[
            {"Update": {"IndexName": "byg", "OnDemandThroughput": {"MaxWriteRequestUnits": 0}}}])
    assert err.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as err:  # an on-demand table's index takes no provisioned throughput
        ddb.update_table(TableName=unique_name, GlobalSecondaryIndexUpdates=[
            {"Update": {"IndexName": "byg", "ProvisionedThroughput": {"ReadCapacityUnits": 1,
                                                                      "WriteCapacityUnits": 1}}}])
    assert _code_text(err.value) == (
        "ValidationException", "One or more parameter values were invalid: The only Updates for index: byg when "
        "TableThroughputMode is PAY_PER_REQUEST can be to OnDemandThroughput, WarmThroughput")
    assert _gsi(ddb.describe_table(TableName=unique_name)["Table"])["OnDemandThroughput"] == {
        "MaxReadRequestUnits": -1, "MaxWriteRequestUnits": 4}


def test_gsi_write_maximum_is_enforced_and_nothing_written(ddb, unique_name):
    _on_demand_with_gsi(ddb, unique_name, gsi_max={"MaxWriteRequestUnits": 3})
    done, err = _until_refused(_put(ddb, unique_name, g={"S": "v"}))
    assert 3 <= done < 40
    assert _code_text(err) == ("ThrottlingException", MSG_ON_DEMAND)
    assert err.response["throttlingReasons"] == [
        {"reason": "IndexWriteMaxOnDemandThroughputExceeded", "resource": _arn(ddb, unique_name) + "/index/byg"}]
    assert "Item" not in ddb.get_item(TableName=unique_name, Key={"pk": {"S": f"i{done}"}})


def test_gsi_read_maximum_is_enforced_on_index_queries_only(ddb, unique_name):
    _on_demand_with_gsi(ddb, unique_name, gsi_max={"MaxReadRequestUnits": 2})

    def query(i):
        ddb.query(TableName=unique_name, IndexName="byg", KeyConditionExpression="g = :g",
                  ExpressionAttributeValues={":g": {"S": "v"}})
    done, err = _until_refused(query)
    assert 2 <= done < 60
    assert err.response["throttlingReasons"][0]["reason"] == "IndexReadMaxOnDemandThroughputExceeded"
    for _ in range(20):  # the table's own reads have no maximum
        ddb.get_item(TableName=unique_name, Key={"pk": {"S": "x"}}, ConsistentRead=True)
