"""Numbers over the wire that only the string rules can read: a zero with an exponent past Decimal's range.

"0E+999999999999999999999" is a valid DynamoDB number (zero is in range whatever its exponent), so the
validator accepts it; every later step must then treat it as 0 instead of handing it to Decimal() raw.
"""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import make_table

HUGE_ZERO = "0E+999999999999999999999"
HUGE_NEG_ZERO = "-0.000e-999999999999999999999"


@pytest.fixture(scope="module")
def table(shared_server):
    ddb = shared_server.client("dynamodb")
    name = f"numbers-{uuid.uuid4().hex[:8]}"
    make_table(ddb, name, hash_type="N")
    return name


@pytest.mark.parametrize("zero", [HUGE_ZERO, HUGE_NEG_ZERO])
def test_zero_with_huge_exponent_is_zero(shared_server, table, zero: str) -> None:
    ddb = shared_server.client("dynamodb")
    ddb.put_item(TableName=table, Item={"pk": {"N": zero}, "a": {"N": zero}, "s": {"NS": [zero, "1"]}})
    item = ddb.get_item(TableName=table, Key={"pk": {"N": zero}}, ConsistentRead=True)["Item"]
    assert item == {"pk": {"N": "0"}, "a": {"N": "0"}, "s": {"NS": ["0", "1"]}} or item == {
        "pk": {"N": "0"}, "a": {"N": "0"}, "s": {"NS": ["1", "0"]}}
    assert ddb.get_item(TableName=table, Key={"pk": {"N": "0"}}, ConsistentRead=True)["Item"] == item
    # comparisons and set equality see it as 0 too
    ddb.put_item(TableName=table, Item={"pk": {"N": "0"}, "a": {"N": "0"}, "s": {"NS": ["0", "1"]}},
                 ConditionExpression="a = :z AND a <= :z AND s = :s",
                 ExpressionAttributeValues={":z": {"N": zero}, ":s": {"NS": ["1", zero]}})
    ddb.update_item(TableName=table, Key={"pk": {"N": "0"}}, UpdateExpression="DELETE s :z",
                    ExpressionAttributeValues={":z": {"NS": [zero]}})
    after = ddb.get_item(TableName=table, Key={"pk": {"N": "0"}}, ConsistentRead=True)["Item"]
    assert after["s"] == {"NS": ["1"]}


@pytest.mark.parametrize("zero", [HUGE_ZERO, HUGE_NEG_ZERO])
def test_arithmetic_on_a_huge_exponent_zero(shared_server, table, zero: str) -> None:
    ddb = shared_server.client("dynamodb")
    ddb.put_item(TableName=table, Item={"pk": {"N": "7"}, "a": {"N": "2"}})
    for expression in ("ADD a :z", "SET a = a + :z", "SET a = a - :z", "SET b = :z + :z"):
        ddb.update_item(TableName=table, Key={"pk": {"N": "7"}}, UpdateExpression=expression,
                        ExpressionAttributeValues={":z": {"N": zero}})
    item = ddb.get_item(TableName=table, Key={"pk": {"N": "7"}}, ConsistentRead=True)["Item"]
    assert item == {"pk": {"N": "7"}, "a": {"N": "2"}, "b": {"N": "0"}}
