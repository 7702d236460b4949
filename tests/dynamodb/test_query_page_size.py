"""A Query or Scan page ends where the items' DynamoDB sizes reach 1 MB, never where their stored JSON (always
longer: base64 binaries, quotes, type tags) would: the items taken unparsed are sized exactly once the page gets
near the limit, and for ReturnConsumedCapacity."""

from __future__ import annotations

import math
import uuid

import pytest

from tests.conftest import make_table

BLOB = bytes(range(256)) * 1016  # 260,096 bytes: ~347 KB of base64 in the stored JSON
SIZE = 2 + 1 + 2 + 1 + 4 + len(BLOB)  # pk "p", sk 0..5 (one digit: 1 byte), blob: 260,106 bytes each


@pytest.fixture(scope="module")
def ddb(srv):
    return srv.client("dynamodb")


@pytest.fixture(scope="module")
def table(ddb):
    name = f"page-size-{uuid.uuid4().hex[:8]}"
    make_table(ddb, name, range_type="N")
    for i in range(6):
        ddb.put_item(TableName=name, Item={"pk": {"S": "p"}, "sk": {"N": str(i)}, "blob": {"B": BLOB}})
    return name


@pytest.mark.parametrize("select", [None, "COUNT"])
def test_query_page_ends_by_item_size_not_json_length(ddb, table, select) -> None:
    # four items are 1,040,424 bytes (under 1 MB, though their JSON is ~1.39 MB): the fifth ends the page
    kw = {"Select": select} if select else {}
    r = ddb.query(TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}},
                  ReturnConsumedCapacity="TOTAL", **kw)
    assert r["ScannedCount"] == r["Count"] == 5
    assert r["LastEvaluatedKey"] == {"pk": {"S": "p"}, "sk": {"N": "4"}}
    assert r["ConsumedCapacity"]["CapacityUnits"] == math.ceil(5 * SIZE / 4096) / 2
    if select is None:
        assert [i["sk"]["N"] for i in r["Items"]] == ["0", "1", "2", "3", "4"]
        assert r["Items"][4]["blob"]["B"] == BLOB
    r = ddb.query(TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}},
                  ExclusiveStartKey=r["LastEvaluatedKey"], **kw)
    assert r["ScannedCount"] == 1 and "LastEvaluatedKey" not in r


def test_scan_page_ends_by_item_size_without_capacity(ddb, table) -> None:
    r = ddb.scan(TableName=table)
    assert r["ScannedCount"] == 5
    assert r["LastEvaluatedKey"] == {"pk": {"S": "p"}, "sk": {"N": "4"}}
    assert "ConsumedCapacity" not in r


def test_a_limit_still_ends_the_page_first(ddb, table) -> None:
    r = ddb.query(TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}},
                  Limit=2, ReturnConsumedCapacity="TOTAL")
    assert r["Count"] == 2 and r["LastEvaluatedKey"] == {"pk": {"S": "p"}, "sk": {"N": "1"}}
    assert r["ConsumedCapacity"]["CapacityUnits"] == math.ceil(2 * SIZE / 4096) / 2
