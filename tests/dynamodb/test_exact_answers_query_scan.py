"""Query and Scan answer as DynamoDB does: the request is validated before the table is looked up, and an
ExclusiveStartKey must be exactly the key of the table (plus the index's key, reading an index).

Texts: ExclusiveStartKey's are DynamoDB's as recorded by other emulators' suites checked against AWS (a Scan
of the table names the key-schema reason; a Query, or a Scan of an index, gives the short form).
"""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import aws_error as _error

MISSING = "no-such-table-" + uuid.uuid4().hex[:8]
SHORT = "The provided starting key is invalid"
LONG = "The provided starting key is invalid: The provided key element does not match the schema"




@pytest.fixture(scope="module")
def ddb(shared_server):
    return shared_server.client("dynamodb")


@pytest.fixture(scope="module")
def table(ddb):
    """pk (S) + sk (N), an LSI on lsk (S) and a GSI on gpk (S) / gsk (N)."""
    name = "exact-qs-" + uuid.uuid4().hex[:8]
    ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t in
                              (("pk", "S"), ("sk", "N"), ("lsk", "S"), ("gpk", "S"), ("gsk", "N"))],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        LocalSecondaryIndexes=[{"IndexName": "lsi", "Projection": {"ProjectionType": "ALL"}, "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "lsk", "KeyType": "RANGE"}]}],
        GlobalSecondaryIndexes=[{"IndexName": "gsi", "Projection": {"ProjectionType": "ALL"}, "KeySchema": [
            {"AttributeName": "gpk", "KeyType": "HASH"}, {"AttributeName": "gsk", "KeyType": "RANGE"}]}])
    for i in range(3):
        ddb.put_item(TableName=name, Item={"pk": {"S": "p"}, "sk": {"N": str(i)}, "lsk": {"S": f"l{i}"},
                                           "gpk": {"S": "g"}, "gsk": {"N": str(i)}})
    return name


QUERY = {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p"}}}


@pytest.mark.parametrize("operation,kwargs,message", [
    ("query", {**QUERY, "ExpressionAttributeValues": {":p": {"S": "p"}, ":unused": {"S": "x"}}},
     "Value provided in ExpressionAttributeValues unused in expressions: keys: {:unused}"),
    ("query", {"KeyConditionExpression": "pk = "},
     'Invalid KeyConditionExpression: Syntax error; token: "<EOF>", near: "= "'),
    ("query", {**QUERY, "FilterExpression": "#a = :p"},
     "Invalid FilterExpression: An expression attribute name used in the document path is not defined; "
     "attribute name: #a"),
    ("query", {},
     "Either the KeyConditions or KeyConditionExpression parameter must be specified in the request."),
    ("query", {**QUERY, "Select": "COUNT", "ProjectionExpression": "pk"},
     "Cannot specify the ProjectionExpression when choosing to get only the Count"),
    ("query", {**QUERY, "Select": "ALL_PROJECTED_ATTRIBUTES"},
     "ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName"),
    ("query", {**QUERY, "ExclusiveStartKey": {"pk": {"N": "x1"}}},
     "The provided starting key is invalid: The parameter cannot be converted to a numeric value: x1"),
    ("scan", {"FilterExpression": "a = :v"},
     "Invalid FilterExpression: An expression attribute value used in expression is not defined; "
     "attribute value: :v"),
    ("scan", {"Segment": 1},
     "The TotalSegments parameter is required but was not present in the request when Segment parameter is "
     "present"),
    ("scan", {"Segment": 3, "TotalSegments": 2},
     "The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: 3 is not less "
     "than TotalSegments: 2"),
    ("scan", {"ProjectionExpression": "a,,b"}, 'Invalid ProjectionExpression: Syntax error; token: ",", near: ",,b"'),
    ("scan", {"ScanFilter": {"a": {"ComparisonOperator": "NULL"}}, "FilterExpression": "attribute_exists(a)"},
     "Can not use both expression and non-expression parameters in the same request: Non-expression "
     "parameters: {ScanFilter} Expression parameters: {FilterExpression}"),
])
def test_a_bad_request_to_a_missing_table_is_a_validation_error(ddb, table, operation, kwargs, message):
    for name in (MISSING, table):  # the same answer whether or not the table exists
        code, text, status = _error(getattr(ddb, operation), TableName=name, **kwargs)
        assert (code, status) == ("ValidationException", 400), (name, text)
        assert text == message, name


@pytest.mark.parametrize("operation,kwargs", [
    ("query", QUERY),
    ("query", {**QUERY, "IndexName": "gsi", "ExclusiveStartKey": {"pk": {"S": "p"}}}),
    ("scan", {"Limit": 1, "FilterExpression": "attribute_exists(a)"}),
    ("scan", {"IndexName": "no-such-index"}),
])
def test_a_valid_request_to_a_missing_table_is_resource_not_found(ddb, operation, kwargs):
    assert _error(getattr(ddb, operation), TableName=MISSING, **kwargs) == (
        "ResourceNotFoundException", "Requested resource not found", 400)


S = {"S": "p"}
N0 = {"N": "0"}


@pytest.mark.parametrize("esk,message", [
    ({"pk": S}, LONG),  # the sort key is missing
    ({"pk": S, "sk": N0, "x": S}, LONG),  # an attribute that is not a key
    ({"pk": S, "sk": {"S": "0"}}, LONG),  # the sort key of another type
    ({"pk": {"S": ""}, "sk": N0}, LONG),
])
def test_scan_start_key_of_the_table(ddb, table, esk, message):
    assert _error(ddb.scan, TableName=table, ExclusiveStartKey=esk) == ("ValidationException", message, 400)


@pytest.mark.parametrize("index,esk", [
    ("gsi", {"pk": S, "sk": N0}),  # the index's key is missing
    ("gsi", {"gpk": {"S": "g"}, "gsk": N0}),  # the table's key is missing
    ("gsi", {"pk": S, "sk": N0, "gpk": {"S": "g"}, "gsk": {"S": "0"}}),  # an index key of another type
    ("lsi", {"pk": S, "sk": N0}),
    ("lsi", {"pk": S, "lsk": {"S": "l0"}}),
])
def test_scan_start_key_of_an_index(ddb, table, index, esk):
    assert _error(ddb.scan, TableName=table, IndexName=index, ExclusiveStartKey=esk) == (
        "ValidationException", SHORT, 400)


@pytest.mark.parametrize("index,condition,values,esk", [
    (None, "pk = :p", {":p": S}, {"pk": S}),
    (None, "pk = :p", {":p": S}, {"pk": S, "sk": {"S": "0"}}),
    (None, "pk = :p", {":p": S}, {"pk": S, "sk": N0, "lsk": {"S": "l0"}}),
    ("lsi", "pk = :p", {":p": S}, {"pk": S, "lsk": {"S": "l0"}}),
    ("gsi", "gpk = :g", {":g": {"S": "g"}}, {"gpk": {"S": "g"}, "gsk": N0, "pk": S}),
])
def test_query_start_key(ddb, table, index, condition, values, esk):
    kwargs = {"IndexName": index} if index else {}
    assert _error(ddb.query, TableName=table, KeyConditionExpression=condition, ExpressionAttributeValues=values,
                  ExclusiveStartKey=esk, **kwargs) == ("ValidationException", SHORT, 400)


def test_a_start_key_that_matches_resumes(ddb, table):
    """The exact keys a page hands back are accepted, for the table and both indexes."""
    for kwargs in ({}, {"IndexName": "lsi"}, {"IndexName": "gsi"}):
        first = ddb.scan(TableName=table, Limit=1, **kwargs)
        rest = ddb.scan(TableName=table, ExclusiveStartKey=first["LastEvaluatedKey"], **kwargs)
        assert first["Count"] + rest["Count"] == 3, kwargs
    first = ddb.query(TableName=table, IndexName="gsi", KeyConditionExpression="gpk = :g",
                      ExpressionAttributeValues={":g": {"S": "g"}}, Limit=2)
    rest = ddb.query(TableName=table, IndexName="gsi", KeyConditionExpression="gpk = :g",
                     ExpressionAttributeValues={":g": {"S": "g"}}, ExclusiveStartKey=first["LastEvaluatedKey"])
    assert [i["gsk"]["N"] for i in first["Items"] + rest["Items"]] == ["0", "1", "2"]


@pytest.mark.parametrize("condition,values,esk,message", [
    ("pk = :p AND sk > :v", {":p": S, ":v": {"N": "1"}}, {"pk": S, "sk": N0},
     "The provided starting key does not match the range key predicate"),
    ("pk = :p AND sk BETWEEN :a AND :b", {":p": S, ":a": {"N": "1"}, ":b": {"N": "2"}}, {"pk": S, "sk": {"N": "3"}},
     "The provided starting key does not match the range key predicate"),
    ("pk = :p AND sk >= :v", {":p": S, ":v": N0}, {"pk": {"S": "other"}, "sk": {"N": "1"}},
     "The query can return at most one row and cannot be restarted"),
    ("pk = :p", {":p": S}, {"pk": {"S": "other"}, "sk": N0},
     "The provided starting key is outside query boundaries based on provided conditions"),
])
def test_query_start_key_outside_the_condition(ddb, table, condition, values, esk, message):
    assert _error(ddb.query, TableName=table, KeyConditionExpression=condition, ExpressionAttributeValues=values,
                  ExclusiveStartKey=esk) == ("ValidationException", message, 400)


def test_query_pages_through_a_sort_condition(ddb, table):
    """Every LastEvaluatedKey of a bounded query lies inside its condition, so it resumes."""
    kwargs = dict(TableName=table, KeyConditionExpression="pk = :p AND sk >= :v",
                  ExpressionAttributeValues={":p": S, ":v": {"N": "1"}}, Limit=1)
    seen, start = [], None
    while True:
        page = ddb.query(**kwargs, **({"ExclusiveStartKey": start} if start else {}))
        seen += [i["sk"]["N"] for i in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    assert seen == ["1", "2"]
