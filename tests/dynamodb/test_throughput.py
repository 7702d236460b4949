"""Provisioned throughput enforcement (--enforce-throughput): token buckets per table and GSI, refusals with
DynamoDB's texts before anything is written, batches' unprocessed items, retries that get through, and the
default (off) never throttling. Assertions are about behaviour (refused or not, item present or not), never
about exact timings: the buckets refill while the test runs."""

from __future__ import annotations

import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from dynavault.dynamodb.throughput import MSG_GSI, MSG_TABLE

#: a short burst window keeps the tests fast: a table holds ``BURST`` seconds of its capacity
BURST = 4
SETTINGS = {"allow_any_credentials": True, "enforce_throughput": True, "throughput_burst_seconds": BURST}
CODE = "ProvisionedThroughputExceededException"


@pytest.fixture(scope="module")
def server(server_factory):
    return server_factory(group="throughput", **SETTINGS)


@pytest.fixture(scope="module")
def ddb(server):
    return server.client("dynamodb")


def _table(ddb, name: str, rcu: int = 1000, wcu: int = 5, gsi_wcu: int | None = None, gsi_rcu: int = 1000) -> None:
    args: dict = dict(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                      AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                      ProvisionedThroughput={"ReadCapacityUnits": rcu, "WriteCapacityUnits": wcu})
    if gsi_wcu is not None:
        args["AttributeDefinitions"].append({"AttributeName": "g", "AttributeType": "S"})
        args["GlobalSecondaryIndexes"] = [{
            "IndexName": "byg", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"},
            "ProvisionedThroughput": {"ReadCapacityUnits": gsi_rcu, "WriteCapacityUnits": gsi_wcu}}]
    ddb.create_table(**args)


def _until_refused(call, limit: int = 400) -> tuple[int, ClientError]:
    """Call ``call(i)`` until it is refused; -> (calls that succeeded, the refusal)."""
    for i in range(limit):
        try:
            call(i)
        except ClientError as e:
            return i, e
    raise AssertionError(f"never refused in {limit} calls")


def _put(ddb, table: str, prefix: str = "i", **attrs):
    return lambda i: ddb.put_item(TableName=table, Item={"pk": {"S": f"{prefix}{i}"}, **attrs})


def _metrics(server) -> str:
    return urllib.request.urlopen(server.endpoint + "/metrics", timeout=5).read().decode()


def test_writes_refused_once_burst_is_spent_and_nothing_written(server, ddb, unique_name):
    _table(ddb, unique_name, wcu=5)
    done, err = _until_refused(_put(ddb, unique_name))
    # the burst holds BURST seconds of 5 WCU; refill while the loop runs adds a few more
    assert BURST * 5 <= done < BURST * 5 * 4
    assert err.response["Error"]["Code"] == CODE
    assert err.response["Error"]["Message"] == MSG_TABLE
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # the refused write changed nothing
    assert "Item" not in ddb.get_item(TableName=unique_name, Key={"pk": {"S": f"i{done}"}}, ConsistentRead=True)
    assert f'dynavault_throttled_requests_total{{index="",table="{unique_name}"}}' in _metrics(server)


def test_standard_retries_get_through(server, ddb, unique_name):
    _table(ddb, unique_name, wcu=5)
    _until_refused(_put(ddb, unique_name))
    retrying = boto3.client(
        "dynamodb", endpoint_url=server.endpoint, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(retries={"mode": "standard", "max_attempts": 10}))
    retrying.put_item(TableName=unique_name, Item={"pk": {"S": "after"}})
    assert "Item" in ddb.get_item(TableName=unique_name, Key={"pk": {"S": "after"}}, ConsistentRead=True)


def test_eventually_consistent_reads_cost_half(ddb, unique_name):
    _table(ddb, unique_name, rcu=3, wcu=100)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "k"}})
    strong_table, ec_table = unique_name, unique_name + "-ec"
    _table(ddb, ec_table, rcu=3, wcu=100)
    ddb.put_item(TableName=ec_table, Item={"pk": {"S": "k"}})
    key = {"pk": {"S": "k"}}
    strong, err = _until_refused(lambda i: ddb.get_item(TableName=strong_table, Key=key, ConsistentRead=True))
    assert err.response["Error"]["Code"] == CODE
    ec, _ = _until_refused(lambda i: ddb.get_item(TableName=ec_table, Key=key))
    # 12 units of burst: about 12 strongly consistent reads, about 24 eventually consistent ones
    assert ec >= 1.5 * strong, (strong, ec)


def test_transactions_cost_double(ddb, unique_name):
    plain_table, tx_table = unique_name, unique_name + "-tx"
    _table(ddb, plain_table, wcu=5)
    _table(ddb, tx_table, wcu=5)
    plain, _ = _until_refused(_put(ddb, plain_table))
    tx, err = _until_refused(lambda i: ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": tx_table, "Item": {"pk": {"S": f"t{i}"}}}}]))
    assert err.response["Error"]["Code"] == CODE
    assert tx <= 0.75 * plain, (plain, tx)
    assert "Item" not in ddb.get_item(TableName=tx_table, Key={"pk": {"S": f"t{tx}"}}, ConsistentRead=True)


def test_batch_write_leaves_unprocessed_items(ddb, unique_name):
    _table(ddb, unique_name, wcu=1)  # BURST units of burst; refills one per second
    reqs = [{"PutRequest": {"Item": {"pk": {"S": f"b{i}"}}}} for i in range(25)]
    out = ddb.batch_write_item(RequestItems={unique_name: reqs})
    left = out["UnprocessedItems"].get(unique_name, [])
    assert 0 < len(left) < 25
    left_keys = {r["PutRequest"]["Item"]["pk"]["S"] for r in left}
    for i in range(25):
        got = ddb.get_item(TableName=unique_name, Key={"pk": {"S": f"b{i}"}}, ConsistentRead=True)
        assert ("Item" in got) == (f"b{i}" not in left_keys)
    # right away again: nothing can be processed -> the whole batch is refused
    with pytest.raises(ClientError) as exc:
        for _ in range(3):  # the bucket refills one unit a second: a slow machine may get one more through
            ddb.batch_write_item(RequestItems={unique_name: left})
    assert exc.value.response["Error"]["Code"] == CODE


def test_batch_get_leaves_unprocessed_keys(ddb, unique_name):
    _table(ddb, unique_name, rcu=1, wcu=100)
    keys = [{"pk": {"S": f"g{i}"}} for i in range(30)]
    out = ddb.batch_get_item(RequestItems={unique_name: {"Keys": keys, "ConsistentRead": True}})
    left = out["UnprocessedKeys"].get(unique_name, {}).get("Keys", [])
    assert 0 < len(left) < 30


def test_gsi_write_capacity(server, ddb, unique_name):
    _table(ddb, unique_name, wcu=1000, gsi_wcu=2)
    done, err = _until_refused(_put(ddb, unique_name, g={"S": "x"}))
    assert err.response["Error"]["Code"] == CODE
    assert err.response["Error"]["Message"] == MSG_GSI
    assert "Item" not in ddb.get_item(TableName=unique_name, Key={"pk": {"S": f"i{done}"}}, ConsistentRead=True)
    assert f'dynavault_throttled_requests_total{{index="byg",table="{unique_name}"}}' in _metrics(server)


def test_partiql_statements_are_metered(ddb, unique_name):
    _table(ddb, unique_name, rcu=2, wcu=2)
    done, err = _until_refused(lambda i: ddb.execute_statement(
        Statement=f"INSERT INTO \"{unique_name}\" VALUE {{'pk': 'p{i}'}}"))
    assert err.response["Error"]["Code"] == CODE
    assert "Item" not in ddb.get_item(TableName=unique_name, Key={"pk": {"S": f"p{done}"}}, ConsistentRead=True)
    _, err = _until_refused(lambda i: ddb.execute_statement(
        Statement=f"SELECT * FROM \"{unique_name}\" WHERE pk = 'p0'", ConsistentRead=True))
    assert err.response["Error"]["Code"] == CODE


def test_failed_conditions_spend_write_capacity(ddb, unique_name):
    _table(ddb, unique_name, wcu=1)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "a"}})

    def conditional(i):
        try:
            ddb.put_item(TableName=unique_name, Item={"pk": {"S": "a"}}, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as e:
            if e.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    _, err = _until_refused(conditional)
    assert err.response["Error"]["Code"] == CODE


def test_gsi_read_capacity(ddb, unique_name):
    # a Query on a GSI spends the index's read capacity, not the table's
    _table(ddb, unique_name, rcu=1000, wcu=1000, gsi_wcu=1000, gsi_rcu=1)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "g": {"S": "x"}})

    def query(i):
        ddb.query(TableName=unique_name, IndexName="byg", KeyConditionExpression="g = :g",
                  ExpressionAttributeValues={":g": {"S": "x"}})

    done, err = _until_refused(query)
    assert err.response["Error"]["Code"] == CODE
    assert done >= BURST * 2  # eventually consistent: half a unit each
    ddb.get_item(TableName=unique_name, Key={"pk": {"S": "a"}}, ConsistentRead=True)  # the table still reads


def test_update_table_raising_capacity_lets_writes_through(ddb, unique_name):
    _table(ddb, unique_name, wcu=1)
    _until_refused(_put(ddb, unique_name))
    ddb.update_table(TableName=unique_name,
                     ProvisionedThroughput={"ReadCapacityUnits": 1000, "WriteCapacityUnits": 1000})
    for i in range(20):
        ddb.put_item(TableName=unique_name, Item={"pk": {"S": f"more{i}"}})


def test_consumed_capacity_answers_unchanged(ddb, unique_name):
    # the buckets read ConsumedCapacity in mode INDEXES: the caller still gets what it asked for
    _table(ddb, unique_name, wcu=100)
    assert "ConsumedCapacity" not in ddb.put_item(TableName=unique_name, Item={"pk": {"S": "a"}})
    total = ddb.put_item(TableName=unique_name, Item={"pk": {"S": "b"}}, ReturnConsumedCapacity="TOTAL")
    assert total["ConsumedCapacity"] == {"TableName": unique_name, "CapacityUnits": 1.0, "WriteCapacityUnits": 1.0}


def test_off_by_default(server_factory, unique_name):
    # the same short burst window, enforcement not asked for
    off = server_factory(group="throughput-off", allow_any_credentials=True, throughput_burst_seconds=BURST)
    ddb = off.client("dynamodb")
    _table(ddb, unique_name, wcu=1)
    for i in range(BURST * 5):  # 5 times the table's burst
        ddb.put_item(TableName=unique_name, Item={"pk": {"S": f"i{i}"}})
    out = ddb.batch_write_item(RequestItems={unique_name: [
        {"PutRequest": {"Item": {"pk": {"S": f"b{i}"}}}} for i in range(25)]})
    assert out["UnprocessedItems"] == {}
