"""A Query or Scan page with no filter, projection or base fetch takes its items as stored in a short loop
(``Page.take``); a page with any of those goes item by item through ``Page.add``. A filter that keeps every item
must give the very same pages: items, counts, where the page ends (by Limit or by 1 MB of item sizes), the
LastEvaluatedKey and the consumed capacity."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import make_table

BIG = bytes(range(256)) * 1200  # ~307 KB: three of them and some small ones reach 1 MB mid-partition


@pytest.fixture(scope="module")
def ddb(srv):
    return srv.client("dynamodb")


@pytest.fixture(scope="module")
def table(ddb):
    name = f"page-take-{uuid.uuid4().hex[:8]}"
    make_table(ddb, name, range_type="N")
    for i in range(14):
        item = {"pk": {"S": "p"}, "sk": {"N": str(i)}, "d": {"S": "x" * (i * 37)}}
        if i in (3, 5, 6, 7, 11):
            item["blob"] = {"B": BIG}
        ddb.put_item(TableName=name, Item=item)
    for i in range(9):
        ddb.put_item(TableName=name, Item={"pk": {"S": f"q{i % 3}"}, "sk": {"N": str(i)}, "d": {"N": str(i)}})
    return name


def _pages(call, **kw) -> list[dict]:
    pages = []
    while True:
        r = call(**kw)
        r.pop("ResponseMetadata")
        pages.append(r)
        if "LastEvaluatedKey" not in r:
            return pages
        kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]


@pytest.mark.parametrize("op", ["query", "scan"])
@pytest.mark.parametrize("forward", [True, False])
@pytest.mark.parametrize("limit,select", [(None, None), (1, None), (2, None), (5, None), (None, "COUNT"),
                                          (3, "COUNT")])
def test_pages_taken_as_stored_are_the_pages_a_filter_keeping_all_gives(ddb, table, op, forward, limit, select):
    if op == "scan" and not forward:
        pytest.skip("Scan has one direction")
    kw: dict = {"TableName": table, "ReturnConsumedCapacity": "TOTAL"}
    if op == "query":
        call = ddb.query
        kw.update(KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}},
                  ScanIndexForward=forward)
    else:
        call = ddb.scan
    if limit is not None:
        kw["Limit"] = limit
    if select is not None:
        kw["Select"] = select
    plain = _pages(call, **kw)
    names = {"#d": "d"}
    filtered = _pages(call, FilterExpression="attribute_exists(#d)", ExpressionAttributeNames=names, **kw)
    assert plain == filtered
    if limit is None and op == "query":
        assert len(plain) > 1  # the 1 MB end was reached mid-partition
    assert sum(p["Count"] for p in plain) == (14 if op == "query" else 23)
