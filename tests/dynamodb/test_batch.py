"""BatchGetItem and BatchWriteItem through boto3 against a real server (issue 6)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_table

ACCOUNT = "610000000001"


@pytest.fixture(scope="module")
def ddb(srv):
    return srv.client("dynamodb", access_key=ACCOUNT)

def _err(exc) -> tuple[str, str]:
    e = exc.value.response["Error"]
    return e["Code"], e["Message"]


def test_write_then_get_across_tables(ddb, unique_name):
    a = make_table(ddb, unique_name + "-a")["TableName"]
    b = make_table(ddb, unique_name + "-b", range_type="N")["TableName"]
    out = ddb.batch_write_item(RequestItems={
        a: [{"PutRequest": {"Item": {"pk": {"S": f"k{i}"}, "v": {"N": str(i)}}}} for i in range(10)],
        b: [{"PutRequest": {"Item": {"pk": {"S": "p"}, "sk": {"N": str(i)}, "x": {"S": "y" * i}}}}
            for i in range(15)],
    }, ReturnConsumedCapacity="TOTAL")
    assert out["UnprocessedItems"] == {}
    cc = {c["TableName"]: c["CapacityUnits"] for c in out["ConsumedCapacity"]}
    assert cc == {a: 10.0, b: 15.0}
    got = ddb.batch_get_item(RequestItems={
        a: {"Keys": [{"pk": {"S": f"k{i}"}} for i in range(0, 12, 2)], "ConsistentRead": True},
        b: {"Keys": [{"pk": {"S": "p"}, "sk": {"N": "3"}}], "ProjectionExpression": "#x",
            "ExpressionAttributeNames": {"#x": "x"}},
    }, ReturnConsumedCapacity="TOTAL")
    assert got["UnprocessedKeys"] == {}
    assert sorted(int(i["v"]["N"]) for i in got["Responses"][a]) == [0, 2, 4, 6, 8]  # k10 is missing
    assert got["Responses"][b] == [{"x": {"S": "yyy"}}]
    cc = {c["TableName"]: c["CapacityUnits"] for c in got["ConsumedCapacity"]}
    assert cc == {a: 6.0, b: 0.5}
    # deletes and puts mixed
    ddb.batch_write_item(RequestItems={a: [{"DeleteRequest": {"Key": {"pk": {"S": "k0"}}}},
                                          {"PutRequest": {"Item": {"pk": {"S": "k1"}, "v": {"N": "100"}}}}]})
    got = ddb.batch_get_item(RequestItems={a: {"Keys": [{"pk": {"S": "k0"}}, {"pk": {"S": "k1"}}]}})
    assert got["Responses"][a] == [{"pk": {"S": "k1"}, "v": {"N": "100"}}]
    assert ddb.describe_table(TableName=a)["Table"]["ItemCount"] == 9


def test_write_limits_and_validation(ddb, unique_name):
    t = make_table(ddb, unique_name)["TableName"]
    other = make_table(ddb, unique_name + "-o")["TableName"]

    def put(i, table=t):
        return {"PutRequest": {"Item": {"pk": {"S": f"k{i}"}}}}

    with pytest.raises(ClientError) as exc:
        ddb.batch_write_item(RequestItems={t: [put(i) for i in range(13)], other: [put(i) for i in range(13)]})
    assert _err(exc) == ("ValidationException", "Too many items requested for the BatchWriteItem call")
    with pytest.raises(ClientError) as exc:
        ddb.batch_write_item(RequestItems={t: [put(1), {"DeleteRequest": {"Key": {"pk": {"S": "k1"}}}}]})
    assert _err(exc) == ("ValidationException", "Provided list of item keys contains duplicates")
    # the same key in two tables is no duplicate
    ddb.batch_write_item(RequestItems={t: [put(1)], other: [put(1)]})
    with pytest.raises(ClientError) as exc:
        ddb.batch_write_item(RequestItems={t: [put(2)], unique_name + "-missing": [put(2)]})
    assert _err(exc) == ("ResourceNotFoundException", "Requested resource not found")
    with pytest.raises(ClientError) as exc:
        ddb.batch_write_item(RequestItems={t: [put(3), {"PutRequest": {"Item": {"nokey": {"S": "x"}}}}]})
    assert _err(exc) == ("ValidationException",
                         "One or more parameter values were invalid: Missing the key pk in the item")
    with pytest.raises(ClientError) as exc:
        ddb.batch_write_item(RequestItems={t: [put(4), {"PutRequest": {"Item": {
            "pk": {"S": "big"}, "v": {"S": "x" * 410_000}}}}]})
    assert _err(exc) == ("ValidationException", "Item size has exceeded the maximum allowed size")
    with pytest.raises(ClientError) as exc:
        ddb.batch_write_item(RequestItems={t: [put(5), {}]})
    assert _err(exc)[0] == "ValidationException"
    # nothing of the rejected batches was written
    got = ddb.batch_get_item(RequestItems={t: {"Keys": [{"pk": {"S": f"k{i}"}} for i in range(6)]}})
    assert [i["pk"]["S"] for i in got["Responses"][t]] == ["k1"]


def test_get_limits_and_validation(ddb, unique_name):
    t = make_table(ddb, unique_name)["TableName"]
    keys = [{"pk": {"S": f"k{i}"}} for i in range(101)]
    with pytest.raises(ClientError) as exc:
        ddb.batch_get_item(RequestItems={t: {"Keys": keys}})
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    other = make_table(ddb, unique_name + "-o")["TableName"]
    with pytest.raises(ClientError) as exc:
        ddb.batch_get_item(RequestItems={t: {"Keys": keys[:60]}, other: {"Keys": keys[:41]}})
    assert _err(exc) == ("ValidationException", "Too many items requested for the BatchGetItem call")
    with pytest.raises(ClientError) as exc:
        ddb.batch_get_item(RequestItems={t: {"Keys": [keys[0], keys[0]]}})
    assert _err(exc) == ("ValidationException", "Provided list of item keys contains duplicates")
    with pytest.raises(ClientError) as exc:
        ddb.batch_get_item(RequestItems={t: {"Keys": [{"pk": {"N": "1"}}]}})
    assert _err(exc) == ("ValidationException", "The provided key element does not match the schema")
    with pytest.raises(ClientError) as exc:
        ddb.batch_get_item(RequestItems={t: {"Keys": keys[:1], "ProjectionExpression": "pk",
                                             "AttributesToGet": ["pk"]}})
    assert _err(exc)[1].startswith("Can not use both expression and non-expression parameters")
    with pytest.raises(ClientError) as exc:
        ddb.batch_get_item(RequestItems={t: {"Keys": keys[:1]}, unique_name + "-missing": {"Keys": keys[:1]}})
    assert _err(exc) == ("ResourceNotFoundException", "Requested resource not found")
    # 100 keys are fine; missing items are simply absent
    assert ddb.batch_get_item(RequestItems={t: {"Keys": keys[:100]}})["Responses"] == {t: []}


def test_get_stops_at_16_mb(ddb, unique_name):
    t = make_table(ddb, unique_name)["TableName"]
    blob = "z" * 390_000
    for start in range(0, 50, 10):
        ddb.batch_write_item(RequestItems={t: [{"PutRequest": {"Item": {"pk": {"S": f"k{i:02d}"}, "b": {"S": blob}}}}
                                               for i in range(start, start + 10)]})
    keys = [{"pk": {"S": f"k{i:02d}"}} for i in range(50)]
    out = ddb.batch_get_item(RequestItems={t: {"Keys": keys, "ProjectionExpression": "pk"}})
    got = [i["pk"]["S"] for i in out["Responses"][t]]
    left = [k["pk"]["S"] for k in out["UnprocessedKeys"][t]["Keys"]]
    assert 0 < len(got) <= 16 * 1024 * 1024 // 390_000
    assert sorted(got + left) == [f"k{i:02d}" for i in range(50)]
    assert out["UnprocessedKeys"][t]["ProjectionExpression"] == "pk"
    # the client's retry of the unprocessed keys gets the rest
    again = ddb.batch_get_item(RequestItems=out["UnprocessedKeys"])
    assert sorted(i["pk"]["S"] for i in again["Responses"][t]) == sorted(left)
