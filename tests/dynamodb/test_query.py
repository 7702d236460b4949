"""Query through boto3: key conditions on S, N and B sort keys, filters, projections, Select, paging,
capacity, legacy parameters, and DynamoDB's validation errors."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_table

INVALID = "One or more parameter values were invalid: "


@pytest.fixture(scope="module")
def ddb(srv):
    return srv.client("dynamodb")


# sort key values per type, in DynamoDB order
SORTS = {
    "S": [{"S": s} for s in ["a", "ab", "abc", "b", "ba", "c", "z\u00e9"]],
    "N": [{"N": n} for n in ["-100", "-1.5", "0", "0.25", "2", "10", "1E+3"]],
    "B": [{"B": b} for b in [b"\x00", b"\x00\x01", b"\x01", b"a", b"ab", b"b", b"\xff"]],
}


def _make(ddb, name: str, sort_type: str) -> None:
    make_table(ddb, name, range_type=sort_type)
    for i, sv in enumerate(SORTS[sort_type]):
        ddb.put_item(TableName=name, Item={"pk": {"S": "p"}, "sk": sv, "i": {"N": str(i)}, "even": {"BOOL": i % 2 == 0},
                                           "m": {"M": {"x": {"N": str(i)}}}})
        ddb.put_item(TableName=name, Item={"pk": {"S": "other"}, "sk": sv})


@pytest.fixture(scope="module", params=["S", "N", "B"])
def table(request, ddb):
    name = f"query-{request.param}-{uuid.uuid4().hex[:8]}"  # unique: xdist may set the module up twice
    _make(ddb, name, request.param)
    return name, request.param


def _q(ddb, name, cond, values, **kw):
    vals = {":p": {"S": "p"}, **values}
    return ddb.query(TableName=name, KeyConditionExpression=cond, ExpressionAttributeValues=vals, **kw)


def _idx(items):
    return [int(x["i"]["N"]) for x in items]


def test_partition_only_returns_partition_in_order(ddb, table):
    name, _ = table
    r = _q(ddb, name, "pk = :p", {})
    assert _idx(r["Items"]) == list(range(7))
    assert r["Count"] == r["ScannedCount"] == 7
    assert "LastEvaluatedKey" not in r
    r = _q(ddb, name, "pk = :p", {}, ScanIndexForward=False)
    assert _idx(r["Items"]) == list(range(6, -1, -1))


@pytest.mark.parametrize("op,expect", [
    ("=", [3]), ("<", [0, 1, 2]), ("<=", [0, 1, 2, 3]), (">", [4, 5, 6]), (">=", [3, 4, 5, 6]),
])
def test_sort_comparisons(ddb, table, op, expect):
    name, t = table
    v = SORTS[t][3]
    r = _q(ddb, name, f"pk = :p AND sk {op} :v", {":v": v})
    assert _idx(r["Items"]) == expect
    # the value may come first: ":v > sk" means "sk < :v"
    flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "="}[op]
    r = _q(ddb, name, f"pk = :p AND :v {flipped} sk", {":v": v})
    assert _idx(r["Items"]) == expect
    r = _q(ddb, name, f"pk = :p AND sk {op} :v", {":v": v}, ScanIndexForward=False)
    assert _idx(r["Items"]) == expect[::-1]


def test_between(ddb, table):
    name, t = table
    r = _q(ddb, name, "pk = :p AND sk BETWEEN :a AND :b", {":a": SORTS[t][1], ":b": SORTS[t][4]})
    assert _idx(r["Items"]) == [1, 2, 3, 4]


def test_begins_with(ddb, table):
    name, t = table
    if t == "N":
        with pytest.raises(ClientError) as e:
            _q(ddb, name, "pk = :p AND begins_with(sk, :v)", {":v": {"N": "1"}})
        assert "begins_with" in e.value.response["Error"]["Message"]
        return
    prefix = {"S": {"S": "a"}, "B": {"B": b"\x00"}}[t]
    r = _q(ddb, name, "pk = :p AND begins_with(sk, :v)", {":v": prefix})
    assert _idx(r["Items"]) == [0, 1, 2] if t == "S" else [0, 1]
    r = _q(ddb, name, "pk = :p AND begins_with(sk, :v)", {":v": prefix}, ScanIndexForward=False)
    assert _idx(r["Items"]) == ([2, 1, 0] if t == "S" else [1, 0])


def test_limit_and_paging_forward_and_back(ddb, table):
    name, _ = table
    for forward in (True, False):
        seen, esk, pages = [], None, 0
        while True:
            kw = {"Limit": 3, "ScanIndexForward": forward}
            if esk:
                kw["ExclusiveStartKey"] = esk
            r = _q(ddb, name, "pk = :p", {}, **kw)
            pages += 1
            seen += _idx(r["Items"])
            esk = r.get("LastEvaluatedKey")
            if not esk:
                break
            assert set(esk) == {"pk", "sk"}
        assert seen == (list(range(7)) if forward else list(range(6, -1, -1)))
        assert pages == 3


def test_filter_counts_scanned_before_filter(ddb, table):
    name, _ = table
    r = _q(ddb, name, "pk = :p", {":t": {"BOOL": True}}, FilterExpression="even = :t")
    assert _idx(r["Items"]) == [0, 2, 4, 6]
    assert (r["Count"], r["ScannedCount"]) == (4, 7)
    # Limit bounds the items evaluated, not the items returned
    r = _q(ddb, name, "pk = :p", {":t": {"BOOL": True}}, FilterExpression="even = :t", Limit=3)
    assert _idx(r["Items"]) == [0, 2]
    assert (r["Count"], r["ScannedCount"]) == (2, 3)
    assert "LastEvaluatedKey" in r


def test_projection_select_count(ddb, table):
    name, _ = table
    r = _q(ddb, name, "pk = :p", {}, ProjectionExpression="m.x, #i", ExpressionAttributeNames={"#i": "i"}, Limit=1)
    assert r["Items"] == [{"m": {"M": {"x": {"N": "0"}}}, "i": {"N": "0"}}]
    r = _q(ddb, name, "pk = :p", {}, Select="COUNT")
    assert "Items" not in r and r["Count"] == 7
    r = _q(ddb, name, "pk = :p", {}, Select="SPECIFIC_ATTRIBUTES", ProjectionExpression="i", Limit=1)
    assert r["Items"] == [{"i": {"N": "0"}}]


def test_consumed_capacity(ddb, table):
    name, _ = table
    r = _q(ddb, name, "pk = :p", {}, ReturnConsumedCapacity="TOTAL")
    assert r["ConsumedCapacity"]["TableName"] == name
    assert r["ConsumedCapacity"]["CapacityUnits"] == 0.5
    r = _q(ddb, name, "pk = :p", {}, ReturnConsumedCapacity="TOTAL", ConsistentRead=True)
    assert r["ConsumedCapacity"]["CapacityUnits"] == 1.0
    assert "ConsumedCapacity" not in _q(ddb, name, "pk = :p", {})


def test_legacy_key_conditions_and_filter(ddb, table):
    name, t = table
    r = ddb.query(TableName=name, KeyConditions={
        "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "p"}]},
        "sk": {"ComparisonOperator": "GE", "AttributeValueList": [SORTS[t][5]]},
    }, QueryFilter={"i": {"ComparisonOperator": "LT", "AttributeValueList": [{"N": "6"}]}},
        AttributesToGet=["i"])
    assert r["Items"] == [{"i": {"N": "5"}}]
    assert r["ScannedCount"] == 2


def test_page_stops_at_one_megabyte(ddb):
    name = "query-big"
    _make(ddb, name, "N")
    blob = "x" * 350_000
    for i in range(4):
        ddb.put_item(TableName=name, Item={"pk": {"S": "big"}, "sk": {"N": str(i)}, "blob": {"S": blob}})
    r = ddb.query(TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "big"}},
                  Select="COUNT")
    # 3 × ~350 KB reaches 1 MB: the page ends there and says where to resume
    assert r["ScannedCount"] == 3
    assert r["LastEvaluatedKey"] == {"pk": {"S": "big"}, "sk": {"N": "2"}}
    r = ddb.query(TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "big"}},
                  Select="COUNT", ExclusiveStartKey=r["LastEvaluatedKey"])
    assert r["ScannedCount"] == 1 and "LastEvaluatedKey" not in r


def _err(fn, **kw) -> str:
    with pytest.raises(ClientError) as e:
        fn(**kw)
    assert e.value.response["Error"]["Code"] == "ValidationException", e.value.response
    return e.value.response["Error"]["Message"]


def test_errors(srv, ddb, table):
    name, t = table
    q = ddb.query
    v = {":p": {"S": "p"}}
    assert _err(q, TableName=name) == ("Either the KeyConditions or KeyConditionExpression parameter must be "
                                      "specified in the request.")
    assert _err(q, TableName=name, KeyConditionExpression="sk = :v",
                ExpressionAttributeValues={":v": SORTS[t][0]}) == "Query condition missed key schema element: pk"
    assert _err(q, TableName=name, KeyConditionExpression="pk = :p AND x = :p", ExpressionAttributeValues=v) == \
        "Query condition missed key schema element: sk"
    assert _err(q, TableName=name, KeyConditionExpression="pk = :p", FilterExpression="sk = :p",
                ExpressionAttributeValues=v) == ("Filter Expression can only contain non-primary key attributes: "
                                                 "Primary key attribute: sk")
    assert _err(q, TableName=name, KeyConditions={"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "p"}]}},
                QueryFilter={"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "p"}]}}) == \
        "QueryFilter can only contain non-primary key attributes: Primary key attribute: pk"
    wrong = {"S": {"N": "1"}, "N": {"S": "x"}, "B": {"S": "x"}}[t]
    assert _err(q, TableName=name, KeyConditionExpression="pk = :p AND sk > :v",
                ExpressionAttributeValues={**v, ":v": wrong}) == INVALID + "Condition parameter type does not match schema type"
    assert _err(q, TableName=name, KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"N": "1"}}) == INVALID + "Condition parameter type does not match schema type"
    assert _err(q, TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues=v,
                ExclusiveStartKey={"pk": {"S": "p"}}) == "The provided starting key is invalid"
    assert _err(q, TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues=v,
                ExclusiveStartKey={"pk": {"S": "other"}, "sk": SORTS[t][0]}) == \
        "The provided starting key is outside query boundaries based on provided conditions"
    assert _err(q, TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues=v,
                Select="ALL_PROJECTED_ATTRIBUTES") == "ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName"
    assert _err(q, TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues=v,
                Select="COUNT", ProjectionExpression="i") == "Cannot specify the ProjectionExpression when choosing to get only the Count"
    assert _err(q, TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues=v,
                Select="SPECIFIC_ATTRIBUTES") == ("Must specify the AttributesToGet or ProjectionExpression when "
                                                  "choosing to get SPECIFIC_ATTRIBUTES")
    assert _err(q, TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues=v,
                IndexName="nope") == "The table does not have the specified index: nope"
    raw = srv.client("dynamodb", validate=False)
    assert "limit" in _err(raw.query, TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues=v,
                           Limit=0)
    assert _err(q, TableName=name, KeyConditionExpression="pk > :p", ExpressionAttributeValues=v) == \
        "Query key condition not supported"
    with pytest.raises(ClientError) as e:
        q(TableName="no-such-table", KeyConditionExpression="pk = :p", ExpressionAttributeValues=v)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
