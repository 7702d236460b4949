"""Scan through boto3: pagination, parallel segments, filters, concurrent writes, errors."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_table


@pytest.fixture(scope="module")
def table(srv):
    ddb = srv.client("dynamodb")
    name = f"scan-{uuid.uuid4().hex[:8]}"  # unique: xdist may set the module up twice
    make_table(ddb, name, range_type="N")
    for p in range(40):
        for s in range(p % 4 + 1):
            ddb.put_item(TableName=name, Item={"pk": {"S": f"p{p}"}, "sk": {"N": str(s)}, "v": {"N": str(p * 10 + s)}})
    return name


def _all(ddb, name, **kw):
    items, esk, pages = [], None, 0
    while True:
        args = dict(kw)
        if esk:
            args["ExclusiveStartKey"] = esk
        r = ddb.scan(TableName=name, **args)
        pages += 1
        items += r.get("Items", [])
        esk = r.get("LastEvaluatedKey")
        if not esk:
            return items, pages


def _keys(items):
    return [(i["pk"]["S"], int(i["sk"]["N"])) for i in items]


EXPECTED = sorted((f"p{p}", s) for p in range(40) for s in range(p % 4 + 1))


def test_full_scan_and_pages(srv, table):
    ddb = srv.client("dynamodb")
    items, pages = _all(ddb, table)
    assert sorted(_keys(items)) == EXPECTED and pages == 1
    items, pages = _all(ddb, table, Limit=7)
    keys = _keys(items)
    assert sorted(keys) == EXPECTED and len(set(keys)) == len(keys)
    assert pages == -(-len(EXPECTED) // 7) + (1 if len(EXPECTED) % 7 == 0 else 0)
    # partitions come whole and in sort order: a scan walks each item collection in key order
    by_pk: dict[str, list[int]] = {}
    for pk, sk in keys:
        by_pk.setdefault(pk, []).append(sk)
    assert all(v == sorted(v) for v in by_pk.values())
    order = [pk for pk, _ in keys]
    assert [pk for i, pk in enumerate(order) if i == 0 or order[i - 1] != pk] == list(by_pk)


@pytest.mark.parametrize("total", [1, 2, 3, 7])
def test_parallel_segments_are_disjoint_and_complete(srv, table, total):
    ddb = srv.client("dynamodb")
    seen = []
    for seg in range(total):
        items, _ = _all(ddb, table, Segment=seg, TotalSegments=total, Limit=5)
        seen += _keys(items)
    assert sorted(seen) == EXPECTED


def test_filter_count_and_projection(srv, table):
    ddb = srv.client("dynamodb")
    r = ddb.scan(TableName=table, FilterExpression="v >= :x AND sk = :z",
                 ExpressionAttributeValues={":x": {"N": "200"}, ":z": {"N": "0"}}, ProjectionExpression="pk")
    assert sorted(i["pk"]["S"] for i in r["Items"]) == sorted(f"p{p}" for p in range(20, 40))
    assert r["Count"] == 20 and r["ScannedCount"] == len(EXPECTED)
    r = ddb.scan(TableName=table, Select="COUNT", ScanFilter={"sk": {"ComparisonOperator": "GT",
                                                                       "AttributeValueList": [{"N": "2"}]}})
    assert r["Count"] == 10 and "Items" not in r
    r = ddb.scan(TableName=table, ReturnConsumedCapacity="TOTAL", ConsistentRead=True)
    assert r["ConsumedCapacity"]["CapacityUnits"] >= 1.0


def test_pagination_survives_concurrent_writes(srv, unique_name):
    ddb = srv.client("dynamodb")
    name = unique_name
    make_table(ddb, name)
    stable = {f"s{i}" for i in range(60)}
    for k in stable:
        ddb.put_item(TableName=name, Item={"pk": {"S": k}})
    seen, esk, n = [], None, 0
    while True:
        args = {"Limit": 8}
        if esk:
            args["ExclusiveStartKey"] = esk
        r = ddb.scan(TableName=name, **args)
        seen += [i["pk"]["S"] for i in r["Items"]]
        # churn between pages: new items, deleted items, rewritten stable items
        ddb.put_item(TableName=name, Item={"pk": {"S": f"new{n}"}})
        ddb.delete_item(TableName=name, Key={"pk": {"S": f"new{n - 1}"}})
        ddb.put_item(TableName=name, Item={"pk": {"S": f"s{n % 60}"}, "x": {"N": str(n)}})
        n += 1
        esk = r.get("LastEvaluatedKey")
        if not esk:
            break
    stable_seen = [k for k in seen if k in stable]
    assert sorted(stable_seen) == sorted(stable)  # every unchanged item exactly once


def _err(fn, **kw) -> str:
    with pytest.raises(ClientError) as e:
        fn(**kw)
    assert e.value.response["Error"]["Code"] == "ValidationException"
    return e.value.response["Error"]["Message"]


def test_errors(srv, table):
    raw = srv.client("dynamodb", validate=False)
    assert _err(raw.scan, TableName=table, Segment=1) == (
        "The TotalSegments parameter is required but was not present in the request when Segment parameter is present")
    assert _err(raw.scan, TableName=table, TotalSegments=2) == (
        "The Segment parameter is required but was not present in the request when parameter TotalSegments is present")
    assert _err(raw.scan, TableName=table, Segment=3, TotalSegments=3) == (
        "The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: 3 is not less "
        "than TotalSegments: 3")
    assert "limit" in _err(raw.scan, TableName=table, Limit=0)
    assert _err(raw.scan, TableName=table, ExclusiveStartKey={"pk": {"S": "p1"}}) == (
        "The provided starting key is invalid: The provided key element does not match the schema")
    assert _err(raw.scan, TableName=table, ExclusiveStartKey={"pk": {"S": "p1"}, "sk": {"S": "1"}}) == (
        "The provided starting key is invalid: The provided key element does not match the schema")
    assert _err(raw.scan, TableName=table, Select="ALL_PROJECTED_ATTRIBUTES") == (
        "ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName")
    assert _err(raw.scan, TableName=table, IndexName="missing") == "The table does not have the specified index: missing"
