"""Item operations through boto3 against a real server: expressions, legacy parameters, return values, errors."""

from __future__ import annotations

from decimal import Decimal

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_table

INVALID = "One or more parameter values were invalid: "


@pytest.fixture(scope="module")
def ddb(srv):
    return srv.client("dynamodb")


@pytest.fixture(params=["S", "N", "B"])
def table(request, ddb, unique_name):
    sort_type = request.param
    make_table(ddb, unique_name, range_type=sort_type)
    return unique_name, sort_type


def _sk(sort_type: str, i: int) -> dict:
    if sort_type == "S":
        return {"S": f"s{i}"}
    if sort_type == "N":
        return {"N": str(i)}
    return {"B": bytes([i])}  # botocore base64-encodes blobs itself


def _err(excinfo) -> tuple[str, str]:
    e = excinfo.value.response["Error"]
    return e["Code"], e["Message"]


def test_put_get_delete_round_trip(ddb, table):
    name, st = table
    key = {"pk": {"S": "p"}, "sk": _sk(st, 1)}
    item = {**key, "n": {"N": "1.500"}, "m": {"M": {"l": {"L": [{"S": "x"}, {"NULL": True}, {"BOOL": False}]}}},
            "ns": {"NS": ["3", "1", "2"]}, "bs": {"BS": [b"\x00\x01"]}}
    assert "Attributes" not in ddb.put_item(TableName=name, Item=item)
    got = ddb.get_item(TableName=name, Key=key, ConsistentRead=True)["Item"]
    assert got["n"] == {"N": "1.5"}  # numbers come back canonical
    assert sorted(got["ns"]["NS"]) == ["1", "2", "3"]
    assert got["m"] == item["m"]
    old = ddb.put_item(TableName=name, Item={**key, "v": {"S": "second"}}, ReturnValues="ALL_OLD")["Attributes"]
    assert old["n"] == {"N": "1.5"}
    assert ddb.delete_item(TableName=name, Key=key, ReturnValues="ALL_OLD")["Attributes"]["v"] == {"S": "second"}
    assert "Item" not in ddb.get_item(TableName=name, Key=key)
    assert "Attributes" not in ddb.delete_item(TableName=name, Key=key, ReturnValues="ALL_OLD")


def test_projection_and_attributes_to_get(ddb, table):
    name, st = table
    key = {"pk": {"S": "p"}, "sk": _sk(st, 2)}
    ddb.put_item(TableName=name, Item={**key, "a": {"M": {"b": {"S": "x"}, "c": {"S": "y"}}}, "l": {
        "L": [{"S": "0"}, {"S": "1"}]}, "z": {"S": "z"}})
    got = ddb.get_item(TableName=name, Key=key, ProjectionExpression="a.b, l[1], #z",
                       ExpressionAttributeNames={"#z": "z"})["Item"]
    assert got == {"a": {"M": {"b": {"S": "x"}}}, "l": {"L": [{"S": "1"}]}, "z": {"S": "z"}}
    assert ddb.get_item(TableName=name, Key=key, AttributesToGet=["z"])["Item"] == {"z": {"S": "z"}}
    with pytest.raises(ClientError) as err:
        ddb.get_item(TableName=name, Key=key, AttributesToGet=["z"], ProjectionExpression="z")
    assert _err(err)[0] == "ValidationException"
    assert "Can not use both expression and non-expression parameters" in _err(err)[1]


def test_conditions(ddb, table):
    name, st = table
    key = {"pk": {"S": "c"}, "sk": _sk(st, 3)}
    ddb.put_item(TableName=name, Item={**key, "n": {"N": "5"}, "s": {"S": "hello"}, "tags": {"SS": ["a", "b"]}},
                 ConditionExpression="attribute_not_exists(pk)")
    with pytest.raises(ClientError) as err:
        ddb.put_item(TableName=name, Item=key, ConditionExpression="attribute_not_exists(pk)",
                     ReturnValuesOnConditionCheckFailure="ALL_OLD")
    assert _err(err) == ("ConditionalCheckFailedException", "The conditional request failed")
    assert err.value.response["Item"]["n"] == {"N": "5"}
    ok = ("n BETWEEN :lo AND :hi AND begins_with(s, :pre) AND contains(tags, :a) AND size(s) = :five "
          "AND attribute_type(n, :N) AND n IN (:five, :lo) AND NOT (s = :other) OR attribute_exists(nope)")
    vals = {":lo": {"N": "1"}, ":hi": {"N": "9"}, ":pre": {"S": "he"}, ":a": {"S": "a"}, ":five": {"N": "5"},
            ":N": {"S": "N"}, ":other": {"S": "bye"}}
    ddb.delete_item(TableName=name, Key=key, ConditionExpression=ok, ExpressionAttributeValues=vals)
    assert "Item" not in ddb.get_item(TableName=name, Key=key)
    # legacy Expected with ConditionalOperator
    ddb.put_item(TableName=name, Item={**key, "n": {"N": "5"}})
    with pytest.raises(ClientError) as err:
        ddb.put_item(TableName=name, Item=key, Expected={"n": {"ComparisonOperator": "GT",
                                                                "AttributeValueList": [{"N": "7"}]},
                                                          "x": {"Exists": True, "Value": {"S": "1"}}},
                     ConditionalOperator="OR")
    assert _err(err)[0] == "ConditionalCheckFailedException"
    ddb.put_item(TableName=name, Item=key, Expected={"n": {"Value": {"N": "5"}}})


def test_update_expressions_and_return_values(ddb, table):
    name, st = table
    key = {"pk": {"S": "u"}, "sk": _sk(st, 4)}
    resp = ddb.update_item(TableName=name, Key=key, ReturnValues="ALL_NEW",
                           UpdateExpression="SET c = if_not_exists(c, :zero) + :one, l = list_append(:l, :l), "
                           "m = :m ADD s :s",
                           ExpressionAttributeValues={":zero": {"N": "0"}, ":one": {"N": "1"},
                                                      ":l": {"L": [{"S": "x"}]}, ":m": {"M": {"a": {"N": "1"}}},
                                                      ":s": {"SS": ["q"]}})
    assert resp["Attributes"]["c"] == {"N": "1"}
    assert resp["Attributes"]["l"] == {"L": [{"S": "x"}, {"S": "x"}]}
    resp = ddb.update_item(TableName=name, Key=key, ReturnValues="UPDATED_OLD",
                           UpdateExpression="SET m.a = m.a - :one, l[0] = :y REMOVE c DELETE s :s",
                           ExpressionAttributeValues={":one": {"N": "1"}, ":y": {"S": "y"}, ":s": {"SS": ["q"]}})
    assert resp["Attributes"] == {"m": {"M": {"a": {"N": "1"}}}, "l": {"L": [{"S": "x"}]}, "c": {"N": "1"},
                                  "s": {"SS": ["q"]}}
    got = ddb.get_item(TableName=name, Key=key)["Item"]
    assert got["m"] == {"M": {"a": {"N": "0"}}} and got["l"]["L"][0] == {"S": "y"}
    assert "c" not in got and "s" not in got
    resp = ddb.update_item(TableName=name, Key=key, ReturnValues="UPDATED_NEW", UpdateExpression="SET m.b = :v",
                           ExpressionAttributeValues={":v": {"BOOL": True}})
    assert resp["Attributes"] == {"m": {"M": {"b": {"BOOL": True}}}}
    # legacy AttributeUpdates
    ddb.update_item(TableName=name, Key=key, AttributeUpdates={"legacy": {"Action": "PUT", "Value": {"N": "2"}},
                                                               "l": {"Action": "DELETE"}})
    got = ddb.get_item(TableName=name, Key=key)["Item"]
    assert got["legacy"] == {"N": "2"} and "l" not in got
    # updating a key attribute is refused and changes nothing
    with pytest.raises(ClientError) as err:
        ddb.update_item(TableName=name, Key=key, UpdateExpression="SET pk = :v",
                        ExpressionAttributeValues={":v": {"S": "other"}})
    assert _err(err)[0] == "ValidationException"
    assert "This attribute is part of the key" in _err(err)[1]
    assert ddb.get_item(TableName=name, Key=key)["Item"] == got


def test_update_creates_missing_item(ddb, table):
    name, st = table
    key = {"pk": {"S": "new"}, "sk": _sk(st, 5)}
    # DynamoDB creates no item for an update that only removes (scylladb/scylladb#5862 records it)...
    assert "Attributes" not in ddb.update_item(TableName=name, Key=key, UpdateExpression="REMOVE nothing",
                                               ReturnValues="ALL_NEW")
    assert "Item" not in ddb.get_item(TableName=name, Key=key, ConsistentRead=True)
    # ...but does for one that sets something
    assert ddb.update_item(TableName=name, Key=key, UpdateExpression="SET v = :v REMOVE nothing",
                           ExpressionAttributeValues={":v": {"S": "x"}},
                           ReturnValues="ALL_NEW")["Attributes"] == {**key, "v": {"S": "x"}}


@pytest.mark.parametrize("bad_item, message", [
    ({"sk": {"S": "x"}}, INVALID + "Missing the key pk in the item"),
    ({"pk": {"N": "1"}, "sk": {"S": "x"}}, INVALID + "Type mismatch for key pk expected: S actual: N"),
    ({"pk": {"S": ""}, "sk": {"S": "x"}}, "One or more parameter values are not valid. The AttributeValue for a key "
     "attribute cannot contain an empty string value. Key: pk"),
    ({"pk": {"S": "a"}, "sk": {"S": "x"}, "ss": {"SS": []}}, INVALID + "An string set  may not be empty"),
    ({"pk": {"S": "a"}, "sk": {"S": "x"}, "n": {"N": "1e999"}},
     "Number overflow. Attempting to store a number with magnitude larger than supported range"),
    ({"pk": {"S": "a"}, "sk": {"S": "x"}, "n": {"N": "1.2345678901234567890123456789012345678901"}},
     "Attempting to store more than 38 significant digits in a Number"),
    ({"pk": {"S": "a"}, "sk": {"S": "x"}, "big": {"S": "x" * 410_000}}, "Item size has exceeded the maximum allowed size"),
    ({"pk": {"S": "a"}, "sk": {"S": "x"}, "v": {}}, "Supplied AttributeValue is empty, must contain exactly one of the "
     "supported datatypes"),
])
def test_put_validation(ddb, unique_name, bad_item, message):
    make_table(ddb, unique_name, range_type="S")
    with pytest.raises(ClientError) as err:
        ddb.put_item(TableName=unique_name, Item=bad_item)
    code, msg = _err(err)
    assert code == "ValidationException"
    assert msg == message or msg.startswith(message), msg
    assert ddb.describe_table(TableName=unique_name)["Table"]["ItemCount"] == 0


def test_expression_attribute_errors(ddb, table):
    name, st = table
    key = {"pk": {"S": "e"}, "sk": _sk(st, 6)}
    cases = [
        (dict(UpdateExpression="SET a = :v", ExpressionAttributeValues={":v": {"S": "x"}, ":unused": {"S": "y"}}),
         "Value provided in ExpressionAttributeValues unused in expressions: keys: {:unused}"),
        (dict(UpdateExpression="SET #a = :v", ExpressionAttributeValues={":v": {"S": "x"}}),
         "An expression attribute name used in the document path is not defined; attribute name: #a"),
        (dict(UpdateExpression="SET a = :v"),
         "An expression attribute value used in expression is not defined; attribute value: :v"),
        (dict(UpdateExpression="SET name = :v", ExpressionAttributeValues={":v": {"S": "x"}}),
         "Attribute name is a reserved keyword; reserved keyword: name"),
        (dict(UpdateExpression="SET a = :v, a = :v", ExpressionAttributeValues={":v": {"S": "x"}}),
         "Two document paths overlap with each other"),
        (dict(UpdateExpression="SET a :v", ExpressionAttributeValues={":v": {"S": "x"}}),
         "Invalid UpdateExpression: Syntax error; token:"),
    ]
    for kwargs, fragment in cases:
        with pytest.raises(ClientError) as err:
            ddb.update_item(TableName=name, Key=key, **kwargs)
        code, msg = _err(err)
        assert code == "ValidationException" and fragment in msg, (kwargs, msg)
    assert "Item" not in ddb.get_item(TableName=name, Key=key)


def test_key_errors_and_missing_table(ddb, table):
    name, st = table
    with pytest.raises(ClientError) as err:
        ddb.get_item(TableName=name, Key={"pk": {"S": "x"}})
    assert _err(err) == ("ValidationException", "The provided key element does not match the schema")
    with pytest.raises(ClientError) as err:
        ddb.get_item(TableName=name, Key={"pk": {"S": "x"}, "sk": _sk(st, 1), "extra": {"S": "y"}})
    assert _err(err) == ("ValidationException", "The provided key element does not match the schema")
    with pytest.raises(ClientError) as err:
        ddb.get_item(TableName="no-such-table", Key={"pk": {"S": "x"}})
    assert _err(err) == ("ResourceNotFoundException", "Requested resource not found")
    with pytest.raises(ClientError) as err:
        ddb.put_item(TableName=name, Item={"pk": {"S": "x"}, "sk": _sk(st, 1)}, ReturnValues="ALL_NEW")
    assert _err(err) == ("ValidationException", "Return values set to invalid value")


def test_consumed_capacity(ddb, table):
    name, st = table
    key = {"pk": {"S": "cap"}, "sk": _sk(st, 7)}
    resp = ddb.put_item(TableName=name, Item={**key, "blob": {"S": "x" * 3000}}, ReturnConsumedCapacity="TOTAL")
    assert resp["ConsumedCapacity"]["TableName"] == name
    assert resp["ConsumedCapacity"]["CapacityUnits"] == 3.0
    strong = ddb.get_item(TableName=name, Key=key, ConsistentRead=True, ReturnConsumedCapacity="TOTAL")
    assert strong["ConsumedCapacity"]["CapacityUnits"] == 1.0
    weak = ddb.get_item(TableName=name, Key=key, ReturnConsumedCapacity="INDEXES")
    assert weak["ConsumedCapacity"]["CapacityUnits"] == 0.5
    assert weak["ConsumedCapacity"]["Table"] == {"CapacityUnits": 0.5}
    assert "ConsumedCapacity" not in ddb.get_item(TableName=name, Key=key)


def test_item_count_and_size(ddb, table):
    name, st = table
    for i in range(5):
        ddb.put_item(TableName=name, Item={"pk": {"S": "count"}, "sk": _sk(st, 10 + i), "v": {"S": "abc"}})
    ddb.delete_item(TableName=name, Key={"pk": {"S": "count"}, "sk": _sk(st, 10)})
    t = ddb.describe_table(TableName=name)["Table"]
    assert t["ItemCount"] == 4
    assert t["TableSizeBytes"] > 4 * 8


def test_resource_api(srv, unique_name):
    res = srv.resource()
    table = res.create_table(
        TableName=unique_name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}], BillingMode="PAY_PER_REQUEST",
    )
    table.wait_until_exists()
    table.put_item(Item={"id": 1, "name": "ada", "tags": {"x", "y"}, "score": Decimal("3.25")})
    item = table.get_item(Key={"id": 1})["Item"]
    assert item["name"] == "ada" and item["tags"] == {"x", "y"} and float(item["score"]) == 3.25
    table.update_item(Key={"id": 1}, UpdateExpression="SET score = score + :d", ExpressionAttributeValues={":d": Decimal(1)})
    assert float(table.get_item(Key={"id": 1})["Item"]["score"]) == 4.25
