"""TransactWriteItems / TransactGetItems through boto3 against a real server (issue 6)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_table

ACCOUNT = "620000000001"
CANCELLED = "Transaction cancelled, please refer cancellation reasons for specific reasons"


@pytest.fixture(scope="module")
def ddb(srv):
    return srv.client("dynamodb", access_key=ACCOUNT)

def _get(ddb, t, pk):
    return ddb.get_item(TableName=t, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")


def _cancel(exc):
    r = exc.value.response
    assert r["Error"]["Code"] == "TransactionCanceledException"
    return r["Error"]["Message"], r["CancellationReasons"]


def test_all_four_actions_commit_together(ddb, unique_name):
    a = make_table(ddb, unique_name + "-a")["TableName"]
    b = make_table(ddb, unique_name + "-b")["TableName"]
    ddb.put_item(TableName=a, Item={"pk": {"S": "acct"}, "bal": {"N": "10"}})
    ddb.put_item(TableName=b, Item={"pk": {"S": "gone"}})
    ddb.put_item(TableName=b, Item={"pk": {"S": "flag"}, "on": {"BOOL": True}})
    out = ddb.transact_write_items(TransactItems=[
        {"Update": {"TableName": a, "Key": {"pk": {"S": "acct"}}, "UpdateExpression": "SET bal = bal - :d",
                    "ConditionExpression": "bal >= :d", "ExpressionAttributeValues": {":d": {"N": "4"}}}},
        {"Put": {"TableName": a, "Item": {"pk": {"S": "new"}, "v": {"S": "x"}},
                 "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Delete": {"TableName": b, "Key": {"pk": {"S": "gone"}}}},
        {"ConditionCheck": {"TableName": b, "Key": {"pk": {"S": "flag"}}, "ConditionExpression": "#o = :t",
                            "ExpressionAttributeNames": {"#o": "on"},
                            "ExpressionAttributeValues": {":t": {"BOOL": True}}}},
    ], ReturnConsumedCapacity="TOTAL")
    cc = {c["TableName"]: c["CapacityUnits"] for c in out["ConsumedCapacity"]}
    assert cc == {a: 4.0, b: 3.0}  # 2 per transactional write, 1 for the check
    assert _get(ddb, a, "acct")["bal"] == {"N": "6"}
    assert _get(ddb, a, "new") == {"pk": {"S": "new"}, "v": {"S": "x"}}
    assert _get(ddb, b, "gone") is None
    assert ddb.describe_table(TableName=a)["Table"]["ItemCount"] == 2


def test_cancellation_reasons_in_request_order_nothing_written(ddb, unique_name):
    t = make_table(ddb, unique_name)["TableName"]
    ddb.put_item(TableName=t, Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    ddb.put_item(TableName=t, Item={"pk": {"S": "c"}, "n": {"N": "3"}})
    with pytest.raises(ClientError) as exc:
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": t, "Item": {"pk": {"S": "b"}}}},
            {"Update": {"TableName": t, "Key": {"pk": {"S": "a"}}, "UpdateExpression": "SET n = :v",
                        "ConditionExpression": "n = :x", "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        "ExpressionAttributeValues": {":v": {"N": "9"}, ":x": {"N": "2"}}}},
            {"Delete": {"TableName": t, "Key": {"pk": {"S": "c"}}, "ConditionExpression": "n = :x",
                        "ExpressionAttributeValues": {":x": {"N": "4"}}}},
            {"Update": {"TableName": t, "Key": {"pk": {"S": "d"}}, "UpdateExpression": "SET n = n + :v",
                        "ExpressionAttributeValues": {":v": {"N": "1"}}}},
        ])
    message, reasons = _cancel(exc)
    assert message == f"{CANCELLED} [None, ConditionalCheckFailed, ConditionalCheckFailed, ValidationError]"
    assert reasons[0] == {"Code": "None"}
    assert reasons[1] == {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed",
                          "Item": {"pk": {"S": "a"}, "n": {"N": "1"}}}
    assert reasons[2] == {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"}
    assert reasons[3]["Code"] == "ValidationError"
    assert reasons[3]["Message"] == "The provided expression refers to an attribute that does not exist in the item"
    assert _get(ddb, t, "b") is None
    assert _get(ddb, t, "a")["n"] == {"N": "1"}
    assert _get(ddb, t, "c") is not None
    # boto3's modeled exception carries the reasons too
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(TransactItems=[{"ConditionCheck": {
            "TableName": t, "Key": {"pk": {"S": "zz"}}, "ConditionExpression": "attribute_exists(pk)"}}])


def test_validation_errors(ddb, unique_name):
    t = make_table(ddb, unique_name)["TableName"]
    put = {"Put": {"TableName": t, "Item": {"pk": {"S": "a"}}}}

    def fails(items):
        with pytest.raises(ClientError) as exc:
            ddb.transact_write_items(TransactItems=items)
        e = exc.value.response["Error"]
        return e["Code"], e["Message"]

    assert fails([put, {"Delete": {"TableName": t, "Key": {"pk": {"S": "a"}}}}]) == (
        "ValidationException", "Transaction request cannot include multiple operations on one item")
    assert fails([{**put, "Delete": {"TableName": t, "Key": {"pk": {"S": "b"}}}}]) == (
        "ValidationException", "TransactItems can only contain one of Check, Put, Update or Delete")
    assert fails([put, {"Put": {"TableName": unique_name + "-nope", "Item": {"pk": {"S": "a"}}}}]) == (
        "ResourceNotFoundException", "Requested resource not found")
    # a key of the wrong type cancels with a ValidationError reason, as DynamoDB answers it inside a transaction
    # (tests/dynamodb/test_exact_answers_batch_transact.py has the reasons)
    assert fails([{"Delete": {"TableName": t, "Key": {"pk": {"N": "1"}}}}]) == (
        "TransactionCanceledException",
        "Transaction cancelled, please refer cancellation reasons for specific reasons [ValidationError]")
    code, msg = fails([{"Put": {"TableName": t, "Item": {"pk": {"S": str(i)}}}} for i in range(101)])
    assert code == "ValidationException" and "Member must have length less than or equal to 100" in msg
    # 100 actions are fine
    ddb.transact_write_items(TransactItems=[{"Put": {"TableName": t, "Item": {"pk": {"S": str(i)}}}}
                                            for i in range(100)])
    assert ddb.describe_table(TableName=t)["Table"]["ItemCount"] == 100
    assert _get(ddb, t, "a") is None  # nothing of the rejected requests


def test_client_request_token(ddb, unique_name):
    t = make_table(ddb, unique_name)["TableName"]
    ddb.put_item(TableName=t, Item={"pk": {"S": "c"}, "n": {"N": "0"}})
    inc = [{"Update": {"TableName": t, "Key": {"pk": {"S": "c"}}, "UpdateExpression": "ADD n :one",
                       "ExpressionAttributeValues": {":one": {"N": "1"}}}}]
    token = unique_name[:36]
    ddb.transact_write_items(TransactItems=inc, ClientRequestToken=token)
    again = ddb.transact_write_items(TransactItems=inc, ClientRequestToken=token, ReturnConsumedCapacity="TOTAL")
    assert again["ConsumedCapacity"][0]["ReadCapacityUnits"] > 0  # a replay reports reads
    assert _get(ddb, t, "c")["n"] == {"N": "1"}  # ran once
    other = [{**inc[0], "Update": {**inc[0]["Update"], "ExpressionAttributeValues": {":one": {"N": "2"}}}}]
    with pytest.raises(ClientError) as exc:
        ddb.transact_write_items(TransactItems=other, ClientRequestToken=token)
    assert exc.value.response["Error"]["Code"] == "IdempotentParameterMismatchException"
    # another token is another request
    ddb.transact_write_items(TransactItems=inc, ClientRequestToken=token[:-1] + "#")
    assert _get(ddb, t, "c")["n"] == {"N": "2"}
    # boto3 fills a token in by itself; two calls are two transactions
    ddb.transact_write_items(TransactItems=inc)
    ddb.transact_write_items(TransactItems=inc)
    assert _get(ddb, t, "c")["n"] == {"N": "4"}


def test_transact_get_items(ddb, unique_name):
    a = make_table(ddb, unique_name + "-a")["TableName"]
    b = make_table(ddb, unique_name + "-b")["TableName"]
    ddb.put_item(TableName=a, Item={"pk": {"S": "1"}, "x": {"S": "one"}, "y": {"N": "5"}})
    ddb.put_item(TableName=b, Item={"pk": {"S": "2"}, "x": {"S": "two"}})
    out = ddb.transact_get_items(TransactItems=[
        {"Get": {"TableName": a, "Key": {"pk": {"S": "1"}}, "ProjectionExpression": "#x",
                 "ExpressionAttributeNames": {"#x": "x"}}},
        {"Get": {"TableName": b, "Key": {"pk": {"S": "missing"}}}},
        {"Get": {"TableName": b, "Key": {"pk": {"S": "2"}}}},
    ], ReturnConsumedCapacity="TOTAL")
    assert out["Responses"] == [{"Item": {"x": {"S": "one"}}}, {}, {"Item": {"pk": {"S": "2"}, "x": {"S": "two"}}}]
    assert {c["TableName"]: c["CapacityUnits"] for c in out["ConsumedCapacity"]} == {a: 2.0, b: 4.0}
    with pytest.raises(ClientError) as exc:
        ddb.transact_get_items(TransactItems=[{"Get": {"TableName": unique_name + "-x", "Key": {"pk": {"S": "1"}}}}])
    assert exc.value.response["Error"]["Code"] == "ResourceNotFoundException"
