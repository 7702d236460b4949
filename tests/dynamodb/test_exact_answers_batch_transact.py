"""Batches and transactions answer as DynamoDB does: the request is validated before any table is looked up,
and a transaction reports each problem the way DynamoDB reports it.

Which failures are plain ValidationExceptions and which cancel the transaction with a ``ValidationError``
reason follows answers recorded against AWS (a public conformance suite, eu-west-2 / us-east-1, 2026):
- key values that are bad on their own (empty string or binary) and a Put item over 400 KB: ValidationException,
  raised before the transaction runs;
- a key that does not fit the table's schema (wrong type, not a scalar, an attribute missing): cancellation,
  with the PutItem text for a Put item ("Type mismatch for key ...", "Missing the key ...") and "The provided
  key element does not match the schema" for a Key parameter (Update, Delete, ConditionCheck, Get);
- an Update whose result passes 400 KB: cancellation, "Item size to update has exceeded the maximum allowed size".
"""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from tests.conftest import aws_error as _error

MISSING = "no-such-table-" + uuid.uuid4().hex[:8]
CANCELLED = "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]"
SCHEMA = "The provided key element does not match the schema"
DUPLICATE = "Transaction request cannot include multiple operations on one item"
UNUSED = "Value provided in ExpressionAttributeValues unused in expressions: keys: {:v}"




def _reasons(call, **kwargs) -> list[dict]:
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    e = exc.value.response
    assert e["Error"]["Code"] == "TransactionCanceledException"
    reasons = e["CancellationReasons"]
    assert e["Error"]["Message"] == CANCELLED.format(", ".join(r["Code"] for r in reasons))
    return reasons


@pytest.fixture(scope="module")
def ddb(shared_server):
    return shared_server.client("dynamodb")


@pytest.fixture(scope="module")
def table(ddb):
    name = "exact-bt-" + uuid.uuid4().hex[:8]
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    return name


def key(v: str) -> dict:
    return {"pk": {"S": v}}


def _absent(ddb, table, *values: str) -> None:
    for v in values:
        assert "Item" not in ddb.get_item(TableName=table, Key=key(v), ConsistentRead=True), v


# -- validation before the table lookup -----------------------------------------------------------------
def _unused_check(table: str) -> dict:
    return {"ConditionCheck": {"TableName": table, "Key": key("cc"), "ConditionExpression": "attribute_not_exists(pk)",
                               "ExpressionAttributeValues": {":v": {"S": "x"}}}}


def test_transact_write_checks_every_action_before_any_table(ddb, table):
    missing_put = {"Put": {"TableName": MISSING, "Item": key("a")}}
    for items in ([missing_put, _unused_check(table)], [_unused_check(table), missing_put],
                  [{"Put": {"TableName": table, "Item": key("cc")}}, _unused_check(table)]):
        assert _error(ddb.transact_write_items, TransactItems=items) == ("ValidationException", UNUSED, 400)
    syntax = {"ConditionCheck": {"TableName": table, "Key": key("cc"), "ConditionExpression": "attribute_not_exists("}}
    assert _error(ddb.transact_write_items, TransactItems=[missing_put, syntax]) == (
        "ValidationException", 'Invalid ConditionExpression: Syntax error; token: "<EOF>", near: "("', 400)
    _absent(ddb, table, "cc")


def test_transact_write_to_a_missing_table(ddb, table):
    assert _error(ddb.transact_write_items, TransactItems=[
        {"Put": {"TableName": table, "Item": key("rnf")}},
        {"Delete": {"TableName": MISSING, "Key": key("rnf")}}]) == (
        "ResourceNotFoundException", "Requested resource not found", 400)
    _absent(ddb, table, "rnf")


def test_transact_get_checks_every_get_before_any_table(ddb, table):
    bad = {"Get": {"TableName": table, "Key": key("g"), "ProjectionExpression": "a,,b"}}
    assert _error(ddb.transact_get_items, TransactItems=[{"Get": {"TableName": MISSING, "Key": key("g")}}, bad]) == (
        "ValidationException", 'Invalid ProjectionExpression: Syntax error; token: ",", near: ",,b"', 400)
    assert _error(ddb.transact_get_items, TransactItems=[{"Get": {"TableName": MISSING, "Key": key("g")}}]) == (
        "ResourceNotFoundException", "Requested resource not found", 400)


@pytest.mark.parametrize("request_items,message", [
    ({"{t}": {"Keys": [key("a")], "ProjectionExpression": "#x"}},
     "Invalid ProjectionExpression: An expression attribute name used in the document path is not defined; "
     "attribute name: #x"),
    ({"{t}": {"Keys": [key("a")], "ProjectionExpression": "pk", "ExpressionAttributeNames": {"#u": "u"}}},
     "Value provided in ExpressionAttributeNames unused in expressions: keys: {#u}"),
])
def test_batch_get_checks_the_request_before_any_table(ddb, table, request_items, message):
    bad = {k.format(t=table): v for k, v in request_items.items()}
    assert _error(ddb.batch_get_item, RequestItems={MISSING: {"Keys": [key("a")]}, **bad}) == (
        "ValidationException", message, 400)


def test_batch_write_checks_the_request_before_any_table(ddb, table):
    bad_item = {"PutRequest": {"Item": {**key("w"), "n": {"N": "nan"}}}}
    assert _error(ddb.batch_write_item, RequestItems={
        MISSING: [{"PutRequest": {"Item": key("w")}}], table: [bad_item]}) == (
        "ValidationException", "The parameter cannot be converted to a numeric value: nan", 400)
    assert _error(ddb.batch_write_item, RequestItems={MISSING: [{"PutRequest": {"Item": key("w")}}]}) == (
        "ResourceNotFoundException", "Requested resource not found", 400)
    _absent(ddb, table, "w")


# -- per-action problems inside a transaction -------------------------------------------------------------
@pytest.mark.parametrize("action,message", [
    ({"Put": {"Item": {"pk": {"N": "5"}}}},
     "One or more parameter values were invalid: Type mismatch for key pk expected: S actual: N"),
    ({"Put": {"Item": {"pk": {"L": [{"S": "x"}]}}}},
     "One or more parameter values were invalid: Type mismatch for key pk expected: S actual: L"),
    ({"Put": {"Item": {"other": {"S": "x"}}}}, "One or more parameter values were invalid: Missing the key pk in the item"),
    ({"Update": {"Key": {"pk": {"N": "5"}}, "UpdateExpression": "SET a = :v",
                 "ExpressionAttributeValues": {":v": {"S": "x"}}}}, SCHEMA),
    ({"Delete": {"Key": {"pk": {"L": [{"S": "x"}]}}}}, SCHEMA),
    ({"ConditionCheck": {"Key": {"other": {"S": "x"}}, "ConditionExpression": "attribute_not_exists(pk)"}}, SCHEMA),
])
def test_a_key_that_does_not_fit_the_schema_cancels(ddb, table, action, message):
    (kind, body), = action.items()
    first = {"Put": {"TableName": table, "Item": key("fits")}}
    reasons = _reasons(ddb.transact_write_items, TransactItems=[first, {kind: {"TableName": table, **body}}])
    assert reasons == [{"Code": "None"}, {"Code": "ValidationError", "Message": message}]
    _absent(ddb, table, "fits")


@pytest.mark.parametrize("action", [
    {"Put": {"Item": {"pk": {"S": ""}}}},
    {"Update": {"Key": {"pk": {"S": ""}}, "UpdateExpression": "SET a = :v",
                "ExpressionAttributeValues": {":v": {"S": "x"}}}},
    {"Delete": {"Key": {"pk": {"S": ""}}}},
])
def test_an_empty_key_value_is_a_validation_error(ddb, table, action):
    (kind, body), = action.items()
    assert _error(ddb.transact_write_items, TransactItems=[{kind: {"TableName": table, **body}}]) == (
        "ValidationException", "One or more parameter values are not valid. The AttributeValue for a key attribute "
        "cannot contain an empty string value. Key: pk", 400)


def test_transact_get_with_a_key_that_does_not_fit_cancels(ddb, table):
    reasons = _reasons(ddb.transact_get_items, TransactItems=[
        {"Get": {"TableName": table, "Key": key("a")}}, {"Get": {"TableName": table, "Key": {}}}])
    assert reasons == [{"Code": "None"}, {"Code": "ValidationError", "Message": SCHEMA}]


def test_duplicate_targets(ddb, table):
    assert _error(ddb.transact_write_items, TransactItems=[
        {"Put": {"TableName": table, "Item": key("dup")}},
        {"ConditionCheck": {"TableName": table, "Key": key("dup"), "ConditionExpression": "attribute_exists(pk)"}}]) == (
        "ValidationException", DUPLICATE, 400)
    assert _error(ddb.transact_get_items, TransactItems=[
        {"Get": {"TableName": table, "Key": key("dup")}}, {"Get": {"TableName": table, "Key": key("dup")}}]) == (
        "ValidationException", DUPLICATE, 400)
    _absent(ddb, table, "dup")


# -- sizes ------------------------------------------------------------------------------------------------
MAX_ITEM = 400 * 1024


def _sized(pk: str, size: int) -> dict:
    """An item of exactly ``size`` bytes (name and value lengths, as DynamoDB counts them)."""
    base = len("pk") + len(pk) + len("p")
    return {"pk": {"S": pk}, "p": {"S": "x" * (size - base)}}


def test_a_put_over_400_kb_is_a_validation_error(ddb, table):
    assert _error(ddb.transact_write_items, TransactItems=[
        {"Put": {"TableName": table, "Item": _sized("big", MAX_ITEM + 1)}}]) == (
        "ValidationException", "Item size has exceeded the maximum allowed size", 400)
    ddb.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": _sized("big", MAX_ITEM)}}])


def test_an_update_growing_past_400_kb_cancels(ddb, table):
    ddb.put_item(TableName=table, Item={**key("grow"), "small": {"S": "y"}})
    big = _sized("grow", MAX_ITEM)["p"]
    reasons = _reasons(ddb.transact_write_items, TransactItems=[
        {"Update": {"TableName": table, "Key": key("grow"), "UpdateExpression": "SET p = :p",
                    "ExpressionAttributeValues": {":p": big}}}])
    assert reasons == [{"Code": "ValidationError",
                        "Message": "Item size to update has exceeded the maximum allowed size"}]
    assert ddb.get_item(TableName=table, Key=key("grow"), ConsistentRead=True)["Item"] == {
        **key("grow"), "small": {"S": "y"}}


def test_a_transaction_over_4_mb_is_refused(ddb, table):
    items = [{"Put": {"TableName": table, "Item": _sized(f"t{i:02}", 390 * 1024)}} for i in range(11)]
    code, message, status = _error(ddb.transact_write_items, TransactItems=items)
    assert (code, status) == ("ValidationException", 400)
    assert message == ("Collection size of items exceeded, which can also be caused by the aggregate size of the "
                       "items in the transaction exceeding the 4MB limit")
    _absent(ddb, table, "t00", "t10")
    ddb.transact_write_items(TransactItems=items[:10])  # 3.9 MB is fine
    assert _error(ddb.transact_get_items, TransactItems=[
        {"Get": {"TableName": table, "Key": key(f"t{i:02}")}} for i in range(10)] + [
        {"Get": {"TableName": table, "Key": key("big")}}])[0] == "ValidationException"


def test_more_than_100_actions(ddb, table):
    code, message, status = _error(ddb.transact_get_items, TransactItems=[
        {"Get": {"TableName": table, "Key": key(str(i))}} for i in range(101)])
    assert (code, status) == ("ValidationException", 400)
    assert message.startswith("1 validation error detected: Value '[")
    assert message.endswith("]' at 'transactItems' failed to satisfy constraint: Member must have length less than "
                            "or equal to 100")


# -- PartiQL: what the statement alone shows comes before its table --------------------------------------
def test_partiql_statement_errors_come_before_the_table(ddb, table):
    bad_number = f"INSERT INTO \"{MISSING}\" VALUE {{'pk': 'a', 'n': ?}}"
    for statement, params in ((f'SELEC * FROM "{MISSING}"', None), (bad_number, [{"N": "nan"}])):
        code, _, status = _error(ddb.execute_statement, Statement=statement, **({"Parameters": params} if params else {}))
        assert (code, status) == ("ValidationException", 400), statement
    code, _, _ = _error(ddb.execute_transaction, TransactStatements=[
        {"Statement": f"INSERT INTO \"{MISSING}\" VALUE {{'pk': 'a'}}"}, {"Statement": "DELETE FROM"}])
    assert code == "ValidationException"
    too_big = f"INSERT INTO \"{MISSING}\" VALUE {{'pk': 'a', 'p': ?}}"
    assert _error(ddb.execute_statement, Statement=too_big, Parameters=[{"S": "x" * MAX_ITEM}]) == (
        "ValidationException", "Item size has exceeded the maximum allowed size", 400)
    assert _error(ddb.execute_statement, Statement=f"SELECT * FROM \"{MISSING}\" WHERE pk = 'a'")[::2] == (
        "ResourceNotFoundException", 400)
