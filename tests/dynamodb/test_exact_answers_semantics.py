"""Results and limits as DynamoDB has them: key sizes in the table and every index, list updates past a list's
end, REMOVE on what is not there, constants an operator cannot take, attribute_type on a constant, and
PartiQL's SELECT through an index and of nested paths.

Sources of the texts and behaviours (recorded AWS answers found with the `search` tool): the table key limits
("...limit of2048 bytes", no space, and "Aggregated size of all range keys..."), the index key limit
("Size limit exceeded for Index Key <name> Actual Size: <n> bytes Max Size: 2048 bytes IndexName: <index>";
the 1024-byte sort key form is assumed to follow it), the operand-type text ("Incorrect operand type for
operator or function; operator or function: <op>, operand type: <type>"), and, for PartiQL, an item selected
as `l[0]` answered under the attribute name "l[0]". Real server, boto3, exact `__type`, message and status.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.conftest import aws_error as _error

INVALID = "One or more parameter values were invalid: "
OPERAND = "Incorrect operand type for operator or function; operator or function: "
BAD_PATH = "The document path provided in the update expression is invalid for update"




def _invalid(message: str) -> tuple[str, str, int]:
    return "ValidationException", message, 400


@pytest.fixture(scope="module")
def ddb(shared_server):
    return shared_server.client("dynamodb")


@pytest.fixture(scope="module")
def indexed(ddb):
    """pk/sk table with an LSI on l, a GSI on g (hash) and s (range)."""
    name = "sem-idx-" + uuid.uuid4().hex[:8]
    ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "l", "g", "s")],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        LocalSecondaryIndexes=[{"IndexName": "by-l", "Projection": {"ProjectionType": "ALL"},
                                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                              {"AttributeName": "l", "KeyType": "RANGE"}]}],
        GlobalSecondaryIndexes=[{"IndexName": "by-g", "Projection": {"ProjectionType": "ALL"},
                                 "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"},
                                               {"AttributeName": "s", "KeyType": "RANGE"}]}])
    return name


@pytest.fixture(scope="module")
def plain(ddb):
    name = "sem-plain-" + uuid.uuid4().hex[:8]
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    return name


# -- key sizes ------------------------------------------------------------------------------------
def test_table_key_values_within_2048_and_1024_bytes(ddb, indexed):
    at_limit = {"pk": {"S": "é" * 1024}, "sk": {"S": "s" * 1024}}  # 2048 UTF-8 bytes, 1024 bytes
    ddb.put_item(TableName=indexed, Item=at_limit)
    assert ddb.get_item(TableName=indexed, Key=at_limit)["Item"] == at_limit
    too_long_hash = {"pk": {"S": "é" * 1024 + "x"}, "sk": {"S": "a"}}
    assert _error(ddb.put_item, TableName=indexed, Item=too_long_hash) == _invalid(
        INVALID + "Size of hashkey has exceeded the maximum size limit of2048 bytes")  # no space: DynamoDB's text
    too_long_range = {"pk": {"S": "a"}, "sk": {"S": "s" * 1025}}
    range_error = _invalid(INVALID + "Aggregated size of all range keys has exceeded the size limit of 1024 bytes")
    assert _error(ddb.put_item, TableName=indexed, Item=too_long_range) == range_error
    # the same answers for a key in a request: reads, deletes and batches
    hash_error = _error(ddb.put_item, TableName=indexed, Item=too_long_hash)
    for key, error in ((too_long_hash, hash_error), (too_long_range, range_error)):
        assert _error(ddb.get_item, TableName=indexed, Key=key) == error
        assert _error(ddb.delete_item, TableName=indexed, Key=key) == error
        assert _error(ddb.batch_get_item, RequestItems={indexed: {"Keys": [key]}}) == error
        assert _error(ddb.batch_write_item, RequestItems={indexed: [{"DeleteRequest": {"Key": key}}]}) == error


@pytest.mark.parametrize("attribute,value,limit,index", [
    ("g", "é" * 1025, 2048, "by-g"),  # 2050 bytes: sizes count UTF-8 bytes
    ("s", "x" * 1025, 1024, "by-g"),
    ("l", "x" * 1025, 1024, "by-l"),
], ids=["gsi-hash", "gsi-range", "lsi-range"])
def test_an_index_key_over_its_limit_refuses_the_write(ddb, indexed, attribute, value, limit, index):
    key = {"pk": {"S": "idx-" + attribute}, "sk": {"S": "1"}}
    item = {**key, "g": {"S": "g"}, "s": {"S": "s"}, "l": {"S": "l"}, attribute: {"S": value}}
    size = len(value.encode())
    expected = _invalid(f"{INVALID}Size limit exceeded for Index Key {attribute} Actual Size: {size} bytes "
                        f"Max Size: {limit} bytes IndexName: {index}")
    assert _error(ddb.put_item, TableName=indexed, Item=item) == expected
    assert "Item" not in ddb.get_item(TableName=indexed, Key=key, ConsistentRead=True)
    # an update that would make the key too long is refused too, and changes nothing
    ddb.put_item(TableName=indexed, Item={**item, attribute: {"S": "short"}})
    assert _error(ddb.update_item, TableName=indexed, Key=key, UpdateExpression="SET #a = :v",
                  ExpressionAttributeNames={"#a": attribute},
                  ExpressionAttributeValues={":v": {"S": value}}) == expected
    assert ddb.get_item(TableName=indexed, Key=key)["Item"][attribute] == {"S": "short"}
    assert _error(ddb.batch_write_item, RequestItems={indexed: [{"PutRequest": {"Item": item}}]}) == expected
    # exactly at the limit is fine
    ok = value.encode()[:limit].decode(errors="ignore")
    ddb.put_item(TableName=indexed, Item={**item, attribute: {"S": ok}})


def test_only_key_attributes_have_the_limits(ddb, indexed):
    key = {"pk": {"S": "idx-other"}, "sk": {"S": "1"}}
    ddb.put_item(TableName=indexed, Item={**key, "blob": {"B": b"\x01" * 3000}, "t": {"S": "x" * 3000}})
    assert _error(ddb.put_item, TableName=indexed, Item={**key, "g": {"S": "g"}, "s": {"S": "x" * 2000}}) == _invalid(
        f"{INVALID}Size limit exceeded for Index Key s Actual Size: 2000 bytes Max Size: 1024 bytes IndexName: by-g")


# -- list updates and REMOVE ---------------------------------------------------------------------
def test_set_past_a_lists_end_appends_in_index_order(ddb, plain):
    key = {"pk": {"S": "list-append"}}
    ddb.put_item(TableName=plain, Item={**key, "a": {"L": [{"S": "one"}, {"S": "two"}, {"S": "three"}]}})
    ddb.update_item(TableName=plain, Key=key, UpdateExpression="SET a[7] = :v",
                    ExpressionAttributeValues={":v": {"S": "hello"}})
    ddb.update_item(TableName=plain, Key=key, UpdateExpression="SET a[84] = :a, a[37] = :b, a[17] = :c, a[50] = :d",
                    ExpressionAttributeValues={":a": {"S": "a1"}, ":b": {"S": "a2"}, ":c": {"S": "a3"},
                                               ":d": {"S": "a4"}})
    got = ddb.get_item(TableName=plain, Key=key)["Item"]["a"]["L"]
    assert [v["S"] for v in got] == ["one", "two", "three", "hello", "a3", "a2", "a4", "a1"]
    # an index inside the list still replaces, and REMOVE past the end is silently nothing
    ddb.update_item(TableName=plain, Key=key, UpdateExpression="SET a[1] = :v REMOVE a[40]",
                    ExpressionAttributeValues={":v": {"S": "TWO"}})
    got = ddb.get_item(TableName=plain, Key=key)["Item"]["a"]["L"]
    assert [v["S"] for v in got] == ["one", "TWO", "three", "hello", "a3", "a2", "a4", "a1"]


def test_remove_of_a_nested_path_on_a_missing_item_is_nothing(ddb, plain):
    key = {"pk": {"S": "remove-missing-" + uuid.uuid4().hex[:6]}}
    r = ddb.update_item(TableName=plain, Key=key, UpdateExpression="REMOVE x.y, z[3]", ReturnValues="ALL_NEW")
    assert "Attributes" not in r
    assert "Item" not in ddb.get_item(TableName=plain, Key=key, ConsistentRead=True)
    # on an item that exists, a nested path under a missing attribute is an invalid path (DynamoDB's answer)
    ddb.put_item(TableName=plain, Item={**key, "a": {"S": "hello"}})
    for path in ("c.c", "a.c"):
        assert _error(ddb.update_item, TableName=plain, Key=key, UpdateExpression=f"REMOVE {path}") == _invalid(
            BAD_PATH)


# -- operand types of constants -----------------------------------------------------------------------
@pytest.mark.parametrize("expression,values,op,type_", [
    ("a < :v", {":v": {"L": [{"N": "1"}]}}, "<", "L"),
    (":v <= a", {":v": {"M": {}}}, "<=", "M"),
    ("a > :v", {":v": {"BOOL": True}}, ">", "BOOL"),
    ("a >= :v", {":v": {"NULL": True}}, ">=", "NULL"),
    ("a < :v", {":v": {"SS": ["x"]}}, "<", "SS"),
    ("a BETWEEN :v AND :w", {":v": {"L": []}, ":w": {"L": []}}, "BETWEEN", "L"),
    ("contains(:v, a)", {":v": {"N": "1"}}, "contains", "N"),
    ("contains(:v, a)", {":v": {"BOOL": False}}, "contains", "BOOL"),
])
def test_a_constant_the_operator_cannot_take_is_a_validation_error(ddb, plain, expression, values, op, type_):
    key = {"pk": {"S": "operands"}}
    ddb.put_item(TableName=plain, Item={**key, "a": {"N": "1"}})
    expected = _invalid(f"Invalid ConditionExpression: {OPERAND}{op}, operand type: {type_}")
    assert _error(ddb.update_item, TableName=plain, Key=key, UpdateExpression="SET z = :z",
                  ConditionExpression=expression, ExpressionAttributeValues={":z": {"N": "0"}, **values}) == expected
    assert _error(ddb.scan, TableName=plain, FilterExpression=expression, ExpressionAttributeValues=values) == \
        _invalid(f"Invalid FilterExpression: {OPERAND}{op}, operand type: {type_}")


def test_an_item_attribute_of_another_type_only_fails_the_condition(ddb, plain):
    key = {"pk": {"S": "operands-item"}}
    ddb.put_item(TableName=plain, Item={**key, "x": {"L": [{"N": "1"}]}, "s": {"S": "hello"}})
    for expression in ("x < :one", ":one < x", "contains(s, :one)"):
        assert _error(ddb.update_item, TableName=plain, Key=key, UpdateExpression="SET z = :one",
                      ConditionExpression=expression, ExpressionAttributeValues={":one": {"N": "1"}}) == (
            "ConditionalCheckFailedException", "The conditional request failed", 400)
    # contains() looks for any type of value in a list or set
    ddb.update_item(TableName=plain, Key=key, UpdateExpression="SET z = :one", ConditionExpression="contains(x, :one)",
                    ExpressionAttributeValues={":one": {"N": "1"}})


def test_attribute_type_of_a_constant(ddb, plain):
    key = {"pk": {"S": "attribute-type"}}
    ddb.put_item(TableName=plain, Item=key)
    ddb.update_item(TableName=plain, Key=key, UpdateExpression="SET c = :val",
                    ConditionExpression="attribute_type(:val, :type)",
                    ExpressionAttributeValues={":val": {"N": "0"}, ":type": {"S": "N"}})
    assert ddb.get_item(TableName=plain, Key=key)["Item"]["c"] == {"N": "0"}
    assert _error(ddb.update_item, TableName=plain, Key=key, UpdateExpression="SET c = :val",
                  ConditionExpression="attribute_type(:val, :type)",
                  ExpressionAttributeValues={":val": {"N": "1"}, ":type": {"S": "S"}}) == (
        "ConditionalCheckFailedException", "The conditional request failed", 400)
    # its type operand is still checked, and attribute_exists still needs a path
    assert _error(ddb.scan, TableName=plain, FilterExpression="attribute_type(:val, :type)",
                  ExpressionAttributeValues={":val": {"N": "1"}, ":type": {"S": "DOG"}}) == _invalid(
        "Invalid FilterExpression: Invalid attribute type name found; type: DOG, valid types: "
        "{B,NULL,SS,BOOL,L,BS,N,NS,S,M}")
    assert _error(ddb.scan, TableName=plain, FilterExpression="attribute_exists(:val)",
                  ExpressionAttributeValues={":val": {"N": "1"}}) == _invalid(
        "Invalid FilterExpression: Operator or function requires a document path; operator or function: "
        "attribute_exists")


# -- PartiQL SELECT ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def partiql_items(ddb, indexed):
    items = [
        {"pk": {"S": "q1"}, "sk": {"S": "1"}, "g": {"S": "green"}, "s": {"S": "b"}, "l": {"S": "z"}},
        {"pk": {"S": "q1"}, "sk": {"S": "2"}, "g": {"S": "green"}, "s": {"S": "a"}, "l": {"S": "y"},
         "m": {"M": {"nested": {"S": "deep"}, "n": {"N": "7"}}}, "lst": {"L": [{"S": "first"}, {"N": "2"}]}},
        {"pk": {"S": "q2"}, "sk": {"S": "1"}, "g": {"S": "blue"}, "s": {"S": "c"}},
    ]
    for item in items:
        ddb.put_item(TableName=indexed, Item=item)
    return items


def test_partiql_select_reads_through_an_index(ddb, indexed, partiql_items):
    got = ddb.execute_statement(Statement=f'SELECT pk, sk, s FROM "{indexed}"."by-g" WHERE g = \'green\'')["Items"]
    assert got == [{"pk": {"S": "q1"}, "sk": {"S": "2"}, "s": {"S": "a"}},
                   {"pk": {"S": "q1"}, "sk": {"S": "1"}, "s": {"S": "b"}}]  # in the index's sort key order
    got = ddb.execute_statement(Statement=f'SELECT sk FROM "{indexed}"."by-l" WHERE pk = ?',
                                Parameters=[{"S": "q1"}])["Items"]
    assert got == [{"sk": {"S": "2"}}, {"sk": {"S": "1"}}]  # l = y before l = z
    # without a key equality the index is scanned: only items that have its keys
    got = ddb.execute_statement(Statement=f'SELECT pk, sk FROM "{indexed}"."by-g" WHERE s = \'c\'')["Items"]
    assert got == [{"pk": {"S": "q2"}, "sk": {"S": "1"}}]
    assert _error(ddb.execute_statement, Statement=f'SELECT * FROM "{indexed}"."nope"') == _invalid(
        "The table does not have the specified index: nope")
    assert _error(ddb.execute_statement, Statement=f'SELECT * FROM "{indexed}"."by-g" WHERE g = \'green\'',
                  ConsistentRead=True) == _invalid("Consistent reads are not supported on global secondary indexes")


def test_partiql_select_through_an_index_pages_with_next_token(ddb, indexed, partiql_items):
    statement = f'SELECT sk, s FROM "{indexed}"."by-g" WHERE g = \'green\''
    pages, token = [], None
    while True:
        r = ddb.execute_statement(Statement=statement, Limit=1, **({"NextToken": token} if token else {}))
        pages.append([i["s"]["S"] for i in r["Items"]])
        token = r.get("NextToken")
        if not token:
            break
    assert [p for p in pages if p] == [["a"], ["b"]]


def test_partiql_select_of_nested_paths_names_them_by_path(ddb, indexed, partiql_items):
    got = ddb.execute_statement(
        Statement=f'SELECT m.nested, lst[0], m.missing, sk FROM "{indexed}" WHERE pk = \'q1\' AND sk = \'2\'')
    assert got["Items"] == [{"m.nested": {"S": "deep"}, "lst[0]": {"S": "first"}, "sk": {"S": "2"}}]
    # an item without the paths answers an empty item, as a projection does
    got = ddb.execute_statement(Statement=f'SELECT m.nested FROM "{indexed}" WHERE pk = \'q2\'')
    assert got["Items"] == [{}]


def test_a_backfill_leaves_out_items_whose_index_key_is_too_long(ddb):
    name = "sem-backfill-" + uuid.uuid4().hex[:8]
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    ddb.put_item(TableName=name, Item={"pk": {"S": "long"}, "e": {"S": "x" * 2049}})  # no index yet: fine
    ddb.put_item(TableName=name, Item={"pk": {"S": "short"}, "e": {"S": "x"}})
    ddb.update_table(TableName=name, AttributeDefinitions=[{"AttributeName": "e", "AttributeType": "S"}],
                     GlobalSecondaryIndexUpdates=[{"Create": {
                         "IndexName": "by-e", "KeySchema": [{"AttributeName": "e", "KeyType": "HASH"}],
                         "Projection": {"ProjectionType": "KEYS_ONLY"}}}])
    deadline = time.time() + 20
    while True:
        (g,) = ddb.describe_table(TableName=name)["Table"]["GlobalSecondaryIndexes"]
        if g["IndexStatus"] == "ACTIVE" or time.time() > deadline:
            break
        time.sleep(0.1)
    assert (g["IndexStatus"], g["ItemCount"]) == ("ACTIVE", 1)
    assert [i["pk"]["S"] for i in ddb.scan(TableName=name, IndexName="by-e")["Items"]] == ["short"]


@pytest.mark.parametrize("where,parameters,op,type_", [
    ("pk = 'x' AND val < ?", [{"BOOL": True}], "<", "BOOL"),
    ("pk = 'x' AND attribute_type(l, 1)", [], "attribute_type", "N"),
    ("pk = 'x' AND attribute_type(l, true)", [], "attribute_type", "BOOL"),
    ("begins_with(pk, 1)", [], "begins_with", "N"),
])
def test_partiql_operand_errors_have_no_expression_prefix(ddb, plain, where, parameters, op, type_):
    # the texts recorded from AWS for PartiQL: the condition is not a ConditionExpression, so no such prefix
    kwargs = {"Parameters": parameters} if parameters else {}
    assert _error(ddb.execute_statement, Statement=f'SELECT * FROM "{plain}" WHERE {where}', **kwargs) == _invalid(
        f"{OPERAND}{op}, operand type: {type_}")
    if where.startswith("pk = "):  # a write needs its key first
        assert _error(ddb.execute_statement, Statement=f'DELETE FROM "{plain}" WHERE {where}', **kwargs) == \
            _invalid(f"{OPERAND}{op}, operand type: {type_}")
