"""Item operations answer as DynamoDB does (issue "exact answers"): the whole request is validated before
the table is looked up, and an update that only removes does not create an item.

Texts: the unused-values and syntax messages are the ones DynamoDB answers today (the same texts this
server already gives for an existing table); ResourceNotFoundException's is DynamoDB's for data
operations.
"""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import aws_error as _error

MISSING = "no-such-table-" + uuid.uuid4().hex[:8]
KEY = {"pk": {"S": "a"}}




@pytest.fixture(scope="module")
def ddb(shared_server):
    return shared_server.client("dynamodb")


@pytest.fixture(scope="module")
def table(ddb):
    name = "exact-" + uuid.uuid4().hex[:8]
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    return name


@pytest.mark.parametrize("operation,kwargs,message", [
    ("put_item", {"Item": KEY, "ConditionExpression": "attribute_exists(pk)",
                  "ExpressionAttributeValues": {":unused": {"S": "x"}}},
     "Value provided in ExpressionAttributeValues unused in expressions: keys: {:unused}"),
    ("put_item", {"Item": {**KEY, "n": {"N": "not-a-number"}}},
     "The parameter cannot be converted to a numeric value: not-a-number"),
    ("get_item", {"Key": KEY, "ProjectionExpression": "a,,b"},
     'Invalid ProjectionExpression: Syntax error; token: ",", near: ",,b"'),
    ("delete_item", {"Key": KEY, "ConditionExpression": "pk ="},
     'Invalid ConditionExpression: Syntax error; token: "<EOF>", near: "="'),
    ("update_item", {"Key": KEY, "UpdateExpression": "SET #a = :v", "ExpressionAttributeValues": {":v": {"N": "1"}}},
     "Invalid UpdateExpression: An expression attribute name used in the document path is not defined; "
     "attribute name: #a"),
    ("update_item", {"Key": KEY, "ReturnValues": "ALL_NEW_PLEASE"},
     "1 validation error detected: Value 'ALL_NEW_PLEASE' at 'returnValues' failed to satisfy constraint: Member "
     "must satisfy enum value set: [ALL_NEW, UPDATED_OLD, ALL_OLD, NONE, UPDATED_NEW]"),
])
def test_a_bad_request_to_a_missing_table_is_a_validation_error(ddb, table, operation, kwargs, message):
    for name in (MISSING, table):  # the same answer whether or not the table exists
        code, text, status = _error(getattr(ddb, operation), TableName=name, **kwargs)
        assert (code, status) == ("ValidationException", 400), (name, text)
        assert text == message, name


@pytest.mark.parametrize("operation,kwargs", [
    ("put_item", {"Item": KEY}),
    ("get_item", {"Key": KEY, "ProjectionExpression": "pk"}),
    ("delete_item", {"Key": KEY}),
    ("update_item", {"Key": KEY, "UpdateExpression": "SET v = :v", "ExpressionAttributeValues": {":v": {"N": "1"}}}),
])
def test_a_valid_request_to_a_missing_table_is_resource_not_found(ddb, operation, kwargs):
    assert _error(getattr(ddb, operation), TableName=MISSING, **kwargs) == (
        "ResourceNotFoundException", "Requested resource not found", 400)


@pytest.mark.parametrize("update", [
    {"UpdateExpression": "REMOVE a, b.c"},
    {"UpdateExpression": "DELETE s :s", "ExpressionAttributeValues": {":s": {"SS": ["x"]}}},
    {"AttributeUpdates": {"a": {"Action": "DELETE"}}},
])
def test_an_update_that_only_removes_does_not_create_the_item(ddb, table, update):
    key = {"pk": {"S": "removes-" + uuid.uuid4().hex[:8]}}
    out = ddb.update_item(TableName=table, Key=key, ReturnValues="ALL_NEW", **update)
    assert "Attributes" not in out
    assert "Item" not in ddb.get_item(TableName=table, Key=key, ConsistentRead=True)
    ddb.transact_write_items(TransactItems=[{"Update": {"TableName": table, "Key": key, **{
        k: v for k, v in update.items() if k != "AttributeUpdates"}}}] if "UpdateExpression" in update else [
        {"ConditionCheck": {"TableName": table, "Key": key, "ConditionExpression": "attribute_not_exists(pk)"}}])
    assert "Item" not in ddb.get_item(TableName=table, Key=key, ConsistentRead=True)


def test_an_update_that_adds_or_sets_still_creates_the_item(ddb, table):
    key = {"pk": {"S": "adds-" + uuid.uuid4().hex[:8]}}
    out = ddb.update_item(TableName=table, Key=key, UpdateExpression="ADD n :one REMOVE gone",
                          ExpressionAttributeValues={":one": {"N": "1"}}, ReturnValues="ALL_NEW")
    assert out["Attributes"] == {**key, "n": {"N": "1"}}
    key2 = {"pk": {"S": "bare-" + uuid.uuid4().hex[:8]}}
    ddb.update_item(TableName=table, Key=key2)  # no actions at all: DynamoDB creates the key-only item
    assert ddb.get_item(TableName=table, Key=key2, ConsistentRead=True)["Item"] == key2
