"""Request shape validation against the real botocore models.

Expected texts come from answers recorded against real AWS (dynalite's and others' suites quote them,
the sse-spec quotes ours); the ordering cases reproduce recorded multi-error answers verbatim.
"""

from __future__ import annotations

import base64
import timeit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynavault.errors import AWSError
from dynavault.server.java_rules import enum_order
from dynavault.server.shapes import ShapeValidator

SER = "com.amazon.coral.service#"
VAL = "com.amazon.coral.validate#"


@pytest.fixture(scope="module")
def ddb() -> ShapeValidator:
    return ShapeValidator("dynamodb")


@pytest.fixture(scope="module")
def kms() -> ShapeValidator:
    return ShapeValidator("kms")


def ser_error(v: ShapeValidator, op: str, body: dict) -> str:
    with pytest.raises(AWSError) as ei:
        v.validate(op, body)
    e = ei.value
    assert (e.code, e.type_prefix, e.status) == ("SerializationException", SER, 400), e.message
    return e.message


def val_error(v: ShapeValidator, op: str, body: dict) -> str:
    with pytest.raises(AWSError) as ei:
        v.validate(op, body)
    e = ei.value
    assert (e.code, e.type_prefix, e.status) == ("ValidationException", VAL, 400), e.message
    return e.message


def one(path: str, value: str | None, constraint: str) -> str:
    shown = "null" if value is None else f"'{value}'"
    head = "1 validation error detected: Value"
    return f"{head} {shown} at '{path}' failed to satisfy constraint: {constraint}"


KEY = {"pk": {"S": "a"}}

# ---------------------------------------------------------------------------------------------- valid


ALL_TYPES_ITEM = {
    "pk": {"S": "a"},
    "n": {"N": "1.5"},
    "b": {"B": base64.b64encode(b"\x00\xff").decode()},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2"]},
    "bs": {"BS": ["AA==", "AQ=="]},
    "m": {"M": {"x": {"L": [{"NULL": True}, {"BOOL": False}, {"M": {}}]}}},
    "l": {"L": []},
}


@pytest.mark.parametrize(
    "op,body",
    [
        ("GetItem", {"TableName": "abc", "Key": KEY, "ConsistentRead": True}),
        ("GetItem", {"TableName": "arn:aws:dynamodb:us-east-1:123456789012:table/abc", "Key": KEY}),
        ("PutItem", {"TableName": "a.b-c_d", "Item": ALL_TYPES_ITEM, "ReturnValues": "ALL_OLD"}),
        ("Query", {"TableName": "abc", "KeyConditionExpression": "pk = :v", "Limit": 5,
                   "ExpressionAttributeValues": {":v": {"S": "x"}}, "ScanIndexForward": False}),
        ("CreateTable", {"TableName": "abc", "BillingMode": "PAY_PER_REQUEST",
                         "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                         "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                         "SSESpecification": {"Enabled": True, "SSEType": "KMS",
                                              "KMSMasterKeyId": "alias/x"}}),
        ("BatchWriteItem", {"RequestItems": {"abc": [{"PutRequest": {"Item": KEY}}]}}),
        ("ListTables", {}),
        # Unknown members are ignored, JSON null is the same as absent.
        ("GetItem", {"TableName": "abc", "Key": KEY, "Bogus": {"x": [1]}, "ReturnConsumedCapacity": None}),
    ],
)
def test_valid_dynamodb_requests_pass_untouched(ddb: ShapeValidator, op: str, body: dict) -> None:
    before = repr(body)
    ddb.validate(op, body)
    assert repr(body) == before


def test_valid_kms_cloudtrail_streams_requests() -> None:
    ShapeValidator("kms").validate(
        "Encrypt", {"KeyId": "alias/x", "Plaintext": "aGk=", "EncryptionContext": {"a": "b"}}
    )
    ct = ShapeValidator("cloudtrail")
    ct.validate("LookupEvents", {"StartTime": 1700000000, "EndTime": 1700000100.5, "MaxResults": 5})
    ct.validate("LookupEvents", {"StartTime": "2024-01-01T00:00:00Z"})
    ShapeValidator("dynamodbstreams").validate("GetRecords", {"ShardIterator": "x" * 10, "Limit": 10})


def test_has_operation_and_unknown() -> None:
    v = ShapeValidator("dynamodb")
    assert v.has_operation("GetItem") and v.has_operation("TransactWriteItems")
    assert not v.has_operation("Encrypt") and not v.has_operation("getitem")
    assert ShapeValidator("kms").has_operation("GenerateDataKey")
    with pytest.raises(AWSError) as ei:
        v.validate("NoSuchOp", {})
    assert ei.value.code == "UnknownOperationException"
    with pytest.raises(ValueError):
        ShapeValidator("s3")


# -------------------------------------------------------------------------------------- serialization


@pytest.mark.parametrize(
    "value,message",
    [
        (5, "NUMBER_VALUE cannot be converted to String"),
        (2147483648, "NUMBER_VALUE cannot be converted to String"),
        (34.56, "DECIMAL_VALUE cannot be converted to String"),
        (True, "TRUE_VALUE cannot be converted to String"),
        (False, "FALSE_VALUE cannot be converted to String"),
        ([], "Unrecognized collection type class java.lang.String"),
        ({}, "Start of structure or map found where not expected"),
    ],
)
def test_string_member_wrong_type(ddb: ShapeValidator, value: object, message: str) -> None:
    assert ser_error(ddb, "GetItem", {"TableName": value, "Key": KEY}) == message
    # The same conversion inside an attribute value union.
    assert ser_error(ddb, "GetItem", {"TableName": "abc", "Key": {"pk": {"S": value}}}) == message


@pytest.mark.parametrize(
    "value,message",
    [
        ("23", "Unexpected token received from parser"),
        (23, "NUMBER_VALUE cannot be converted to Boolean"),
        (34.56, "DECIMAL_VALUE cannot be converted to Boolean"),
        ([], "Unrecognized collection type class java.lang.Boolean"),
        ({}, "Start of structure or map found where not expected"),
    ],
)
def test_boolean_member_wrong_type(ddb: ShapeValidator, value: object, message: str) -> None:
    assert ser_error(ddb, "GetItem", {"TableName": "abc", "Key": KEY, "ConsistentRead": value}) == message
    assert ser_error(ddb, "PutItem", {"TableName": "abc", "Item": {"a": {"BOOL": value}}}) == message


@pytest.mark.parametrize(
    "value,message",
    [
        ("23", "STRING_VALUE cannot be converted to Integer"),
        (True, "TRUE_VALUE cannot be converted to Integer"),
        ([], "Unrecognized collection type class java.lang.Integer"),
        ({}, "Start of structure or map found where not expected"),
    ],
)
def test_integer_member_wrong_type(ddb: ShapeValidator, value: object, message: str) -> None:
    assert ser_error(ddb, "Scan", {"TableName": "abc", "Limit": value}) == message


def test_long_member_wrong_type(ddb: ShapeValidator) -> None:
    body = {"TableName": "abc", "ProvisionedThroughput": {"ReadCapacityUnits": "1", "WriteCapacityUnits": 1}}
    assert ser_error(ddb, "UpdateTable", body) == "STRING_VALUE cannot be converted to Long"


@pytest.mark.parametrize(
    "value,message",
    [
        (True, "only base-64-encoded strings are convertible to bytes"),
        (23, "only base-64-encoded strings are convertible to bytes"),
        (34.56, "only base-64-encoded strings are convertible to bytes"),
        ([], "Unrecognized collection type class java.nio.ByteBuffer"),
        ({}, "Start of structure or map found where not expected"),
        ("23456", "Base64 encoded length is expected a multiple of 4 bytes but found: 5"),
        ("=+/=", "Invalid last non-pad Base64 character dectected"),
        ("+/+=", "Invalid last non-pad Base64 character dectected"),
        ("ab!d", "Invalid last non-pad Base64 character dectected"),
    ],
)
def test_blob_wrong_type_or_bad_base64(ddb: ShapeValidator, kms: ShapeValidator, value: object,
                                       message: str) -> None:
    assert ser_error(ddb, "PutItem", {"TableName": "abc", "Item": {"a": {"B": value}}}) == message
    assert ser_error(ddb, "PutItem", {"TableName": "abc", "Item": {"a": {"BS": ["AA==", value]}}}) == message
    assert ser_error(kms, "Encrypt", {"KeyId": "k", "Plaintext": value}) == message


def test_collections_and_structures_wrong_type(ddb: ShapeValidator) -> None:
    # A list field given a scalar / an object.
    assert ser_error(ddb, "Scan", {"TableName": "abc", "AttributesToGet": "a"}) == "Unexpected field type"
    assert ser_error(ddb, "Scan", {"TableName": "abc", "AttributesToGet": {}}) == (
        "Start of structure or map found where not expected")
    # A map field given a scalar / a list: the list names the Java map type.
    assert ser_error(ddb, "GetItem", {"TableName": "abc", "Key": 5}) == "Unexpected field type"
    assert ser_error(ddb, "GetItem", {"TableName": "abc", "Key": []}) == (
        "Unrecognized collection type java.util.Map<java.lang.String, "
        "com.amazonaws.dynamodb.v20120810.AttributeValue>")
    # A structure field vs a structure in value position (map value / list element).
    assert ser_error(ddb, "CreateTable", {"TableName": "abc", "ProvisionedThroughput": 5}) == (
        "Unexpected field type")
    assert ser_error(ddb, "CreateTable", {"TableName": "abc", "ProvisionedThroughput": []}) == (
        "Unrecognized collection type class com.amazonaws.dynamodb.v20120810.ProvisionedThroughput")
    assert ser_error(ddb, "GetItem", {"TableName": "abc", "Key": {"pk": "x"}}) == (
        "Unexpected value type in payload")
    assert ser_error(ddb, "GetItem", {"TableName": "abc", "Key": {"pk": []}}) == (
        "Unrecognized collection type class com.amazonaws.dynamodb.v20120810.AttributeValue")
    assert ser_error(ddb, "CreateTable", {"TableName": "abc", "KeySchema": [1]}) == (
        "Unexpected value type in payload")
    # A map nested in a list (BatchGetItem Keys) fails Coral's generic cast.
    msg = ser_error(ddb, "BatchGetItem", {"RequestItems": {"abc": {"Keys": [5]}}})
    assert msg.startswith("class sun.reflect.generics.reflectiveObjects.ParameterizedTypeImpl cannot be cast")


def test_union_members_deep_inside_items(ddb: ShapeValidator) -> None:
    item = {"a": {"L": [{"M": {"x": {"L": [{"SS": ["ok", 7]}]}}}]}}
    assert ser_error(ddb, "PutItem", {"TableName": "abc", "Item": item}) == (
        "NUMBER_VALUE cannot be converted to String")
    item = {"a": {"M": {"x": {"NULL": "yes"}}}}
    assert ser_error(ddb, "PutItem", {"TableName": "abc", "Item": item}) == (
        "Unexpected token received from parser")
    # Attribute-value semantics are not ours: empty sets and bad numbers pass the shape check.
    ddb.validate("PutItem", {"TableName": "abc", "Item": {"a": {"SS": []}, "b": {"N": "x"}, "c": {}}})


def test_first_serialization_error_in_body_order_beats_validation(ddb: ShapeValidator) -> None:
    body = {"TableName": "x", "ConsistentRead": 1, "Key": {"pk": {"S": 1.5}}}
    assert ser_error(ddb, "GetItem", body) == "NUMBER_VALUE cannot be converted to Boolean"
    body = {"Key": {"pk": {"S": 1.5}}, "ConsistentRead": 1, "TableName": "x"}
    assert ser_error(ddb, "GetItem", body) == "DECIMAL_VALUE cannot be converted to String"


def test_timestamps(ddb: ShapeValidator) -> None:
    ct = ShapeValidator("cloudtrail")
    assert ser_error(ct, "LookupEvents", {"StartTime": True}) == "TRUE_VALUE cannot be converted to Date"
    assert ser_error(ct, "LookupEvents", {"StartTime": "yesterday"}) == (
        "STRING_VALUE cannot be converted to Date")
    assert ser_error(ct, "LookupEvents", {"StartTime": {}}) == (
        "Start of structure or map found where not expected")
    ddb.validate("RestoreTableToPointInTime", {"SourceTableName": "abc", "TargetTableName": "abd",
                                               "RestoreDateTime": 1700000000.25})


# ----------------------------------------------------------------------------------------- validation


def test_table_name_constraints(ddb: ShapeValidator) -> None:
    assert val_error(ddb, "GetItem", {"TableName": "a;", "Key": KEY}) == (
        "2 validation errors detected: "
        "Value 'a;' at 'tableName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; "
        "Value 'a;' at 'tableName' failed to satisfy constraint: "
        "Member must have length greater than or equal to 3")
    long_name = "a" * 256
    assert val_error(ddb, "CreateTable", {"TableName": long_name, "AttributeDefinitions": [], "KeySchema": [
        {"AttributeName": "a", "KeyType": "HASH"}]}) == one(
        "tableName", long_name, "Member must have length less than or equal to 255")
    # The model's TableArn shape would allow "ab"; the service does not.
    assert val_error(ddb, "DescribeTable", {"TableName": "ab"}) == one(
        "tableName", "ab", "Member must have length greater than or equal to 3")
    arn = "arn:aws:dynamodb:us-east-1:1:table/" + "t" * 1000
    assert val_error(ddb, "DescribeTable", {"TableName": arn}) == one(
        "tableName", arn, "Member must have length less than or equal to 1024")


def test_required_members(ddb: ShapeValidator) -> None:
    assert val_error(ddb, "DescribeTable", {}) == one("tableName", None, "Member must not be null")
    assert val_error(ddb, "GetItem", {"TableName": None, "Key": None}) == (
        "2 validation errors detected: "
        "Value null at 'key' failed to satisfy constraint: Member must not be null; "
        "Value null at 'tableName' failed to satisfy constraint: Member must not be null")


def test_enum_texts_follow_aws_order(ddb: ShapeValidator) -> None:
    msg = val_error(ddb, "CreateTable", {"TableName": "abc", "AttributeDefinitions": [], "KeySchema": [
        {"AttributeName": "a", "KeyType": "HASH"}], "SSESpecification": {"Enabled": True, "SSEType": "kms"}})
    assert msg == one("sSESpecification.sSEType", "kms", "Member must satisfy enum value set: [AES256, KMS]")
    assert val_error(ddb, "PutItem", {"TableName": "abc", "Item": KEY, "ReturnValues": "BOGUS"}) == one(
        "returnValues", "BOGUS",
        "Member must satisfy enum value set: [ALL_NEW, UPDATED_OLD, ALL_OLD, NONE, UPDATED_NEW]")
    assert val_error(ddb, "GetItem", {"TableName": "abc", "Key": KEY, "ReturnConsumedCapacity": "x"}) == one(
        "returnConsumedCapacity", "x", "Member must satisfy enum value set: [INDEXES, TOTAL, NONE]")
    assert val_error(ddb, "CreateTable", {"TableName": "abc", "KeySchema": [{"AttributeName": "a",
                     "KeyType": "HASH"}], "AttributeDefinitions": [{"AttributeName": "b",
                     "AttributeType": "SS"}]}) == one(
        "attributeDefinitions.1.member.attributeType", "SS", "Member must satisfy enum value set: [B, N, S]")


def test_enum_order_algorithm_matches_recorded_kms_keyspec() -> None:
    # KMS's answer for CreateKey KeySpec before SM2/ML-DSA/Ed25519 were added.
    model = ["RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521",
             "ECC_SECG_P256K1", "SYMMETRIC_DEFAULT", "HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512"]
    assert enum_order(model) == [
        "RSA_2048", "ECC_NIST_P384", "ECC_NIST_P256", "ECC_NIST_P521", "HMAC_384", "RSA_3072",
        "ECC_SECG_P256K1", "RSA_4096", "SYMMETRIC_DEFAULT", "HMAC_256", "HMAC_224", "HMAC_512"]
    assert enum_order(["OFF", "ON", "OPTIONAL"]) == ["OPTIONAL", "OFF", "ON"]


def test_nested_list_paths_and_value_rendering(ddb: ShapeValidator) -> None:
    body = {"TableName": "abc", "AttributeDefinitions": [],
            "KeySchema": [{"KeyType": "HASH"}, {"AttributeName": "a"},
                          {"KeyType": "Woop", "AttributeName": "a"}]}
    msg = val_error(ddb, "CreateTable", body)
    # KeySchema's length (2 for a table, up to 8 for a multi-attribute GSI) is the handler's check.
    assert msg == (
        "3 validation errors detected: "
        "Value null at 'keySchema.1.member.attributeName' failed to satisfy constraint: "
        "Member must not be null; "
        "Value null at 'keySchema.2.member.keyType' failed to satisfy constraint: Member must not be null; "
        "Value 'Woop' at 'keySchema.3.member.keyType' failed to satisfy constraint: "
        "Member must satisfy enum value set: [HASH, RANGE]")
    assert val_error(ddb, "Scan", {"TableName": "abc", "AttributesToGet": []}) == one(
        "attributesToGet", "[]", "Member must have length greater than or equal to 1")
    assert val_error(ddb, "Scan", {"TableName": "abc", "Segment": -1, "TotalSegments": 1}) == one(
        "segment", "-1", "Member must have value greater than or equal to 0")


def test_map_paths_keys_and_values(ddb: ShapeValidator) -> None:
    assert val_error(ddb, "BatchGetItem", {"RequestItems": {"abc": {"Keys": []}}}) == one(
        "requestItems.abc.member.keys", "[]", "Member must have length greater than or equal to 1")
    msg = val_error(ddb, "BatchWriteItem", {"RequestItems": {"a": []}})
    assert msg == (
        "2 validation errors detected: Value '{a=[]}' at 'requestItems' failed to satisfy constraint: "
        "Map keys must satisfy constraint: [Member must have length less than or equal to 255, "
        "Member must have length greater than or equal to 3, "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+]; "
        "Value '{a=[]}' at 'requestItems' failed to satisfy constraint: Map value must satisfy constraint: "
        "[Member must have length less than or equal to 25, "
        "Member must have length greater than or equal to 1]")
    assert val_error(ddb, "BatchWriteItem", {"RequestItems": {}}) == one(
        "requestItems", "{}", "Member must have length greater than or equal to 1")
    # Errors inside several map values come out in Java HashMap key order, not body order.
    msg = val_error(ddb, "Query", {"TableName": "abc", "KeyConditions": {"b": {"ComparisonOperator": "X"},
                                                                         "a": {}}})
    assert msg.index("keyConditions.a.member") < msg.index("keyConditions.b.member")


def test_recorded_query_answer_order(ddb: ShapeValidator) -> None:
    body = {"TableName": "abc;", "ReturnConsumedCapacity": "hi", "AttributesToGet": [], "IndexName": "abc;",
            "Select": "hi", "Limit": -1, "KeyConditions": {"a": {}, "b": {"ComparisonOperator": ""}},
            "ConditionalOperator": "AN", "QueryFilter": {"a": {}, "b": {"ComparisonOperator": ""}}}
    cmp = ("Member must satisfy enum value set: "
           "[IN, NULL, BETWEEN, LT, NOT_CONTAINS, EQ, GT, NOT_NULL, NE, LE, BEGINS_WITH, GE, CONTAINS]")
    pat = "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
    expected = [
        ("'hi'", "select", "Member must satisfy enum value set: "
         "[SPECIFIC_ATTRIBUTES, COUNT, ALL_ATTRIBUTES, ALL_PROJECTED_ATTRIBUTES]"),
        ("'abc;'", "indexName", pat),
        ("'hi'", "returnConsumedCapacity", "Member must satisfy enum value set: [INDEXES, TOTAL, NONE]"),
        ("null", "queryFilter.a.member.comparisonOperator", "Member must not be null"),
        ("''", "queryFilter.b.member.comparisonOperator", cmp),
        ("'abc;'", "tableName", pat),
        ("'AN'", "conditionalOperator", "Member must satisfy enum value set: [OR, AND]"),
        ("'-1'", "limit", "Member must have value greater than or equal to 1"),
        ("'[]'", "attributesToGet", "Member must have length greater than or equal to 1"),
        ("null", "keyConditions.a.member.comparisonOperator", "Member must not be null"),
    ]  # the 11th (keyConditions.b) is cut: AWS reports at most ten
    assert val_error(ddb, "Query", body) == "10 validation errors detected: " + "; ".join(
        f"Value {v} at '{p}' failed to satisfy constraint: {c}" for v, p, c in expected)


def test_recorded_scan_answer_order(ddb: ShapeValidator) -> None:
    body = {"TableName": "abc;", "ReturnConsumedCapacity": "hi", "AttributesToGet": [], "IndexName": "abc;",
            "Segment": -1, "TotalSegments": -1, "Select": "hi", "Limit": -1,
            "ScanFilter": {"a": {}, "b": {"ComparisonOperator": ""}}, "ConditionalOperator": "AN",
            "ExpressionAttributeNames": {}, "ExpressionAttributeValues": {}, "ProjectionExpression": ""}
    msg = val_error(ddb, "Scan", body)
    paths = [part.split(" at '")[1].split("'")[0] for part in msg.split(": ", 1)[1].split("; ")]
    assert paths == ["select", "indexName", "totalSegments", "returnConsumedCapacity", "tableName",
                     "conditionalOperator", "scanFilter.a.member.comparisonOperator",
                     "scanFilter.b.member.comparisonOperator", "segment", "limit"]
    assert msg.startswith("10 validation errors detected: ")


def test_error_count_wording(ddb: ShapeValidator) -> None:
    assert val_error(ddb, "DescribeTable", {"TableName": "ab"}).startswith("1 validation error detected: ")
    assert val_error(ddb, "GetItem", {}).startswith("2 validation errors detected: ")


def test_kms_constraints(kms: ShapeValidator) -> None:
    assert val_error(kms, "GenerateDataKey", {"KeyId": "k", "NumberOfBytes": 1025}) == one(
        "numberOfBytes", "1025", "Member must have value less than or equal to 1024")
    assert val_error(kms, "GenerateDataKey", {"KeyId": "k", "KeySpec": "AES_512"}) == one(
        "keySpec", "AES_512", "Member must satisfy enum value set: [AES_256, AES_128]")
    # Sensitive members never echo their value.
    secret = base64.b64encode(b"s" * 4097).decode()
    assert val_error(kms, "Encrypt", {"KeyId": "k", "Plaintext": secret}) == (
        "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: "
        "Member must have length less than or equal to 4096")
    assert val_error(kms, "Encrypt", {"Plaintext": "aGk="}) == one("keyId", None, "Member must not be null")
    assert val_error(kms, "CreateAlias", {"AliasName": "alias/bad name", "TargetKeyId": "k"}) == one(
        "aliasName", "alias/bad name", "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$")


# -------------------------------------------------------------------------------------------- property

_scalar_av = st.one_of(
    st.builds(lambda s: {"S": s}, st.text(max_size=8)),
    st.builds(lambda n: {"N": str(n)}, st.integers()),
    st.builds(lambda b: {"B": base64.b64encode(b).decode()}, st.binary(max_size=8)),
    st.builds(lambda b: {"BOOL": b}, st.booleans()),
    st.just({"NULL": True}),
)
_av = st.recursive(
    _scalar_av,
    lambda inner: st.one_of(
        st.builds(lambda xs: {"L": xs}, st.lists(inner, max_size=3)),
        st.builds(lambda m: {"M": m}, st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    ),
    max_leaves=10,
)
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(item=st.dictionaries(st.text(min_size=1, max_size=6), _av, max_size=5))
def test_well_formed_items_always_pass(ddb: ShapeValidator, item: dict) -> None:
    ddb.validate("PutItem", {"TableName": "tbl", "Item": {"pk": {"S": "k"}, **item}})


_OPS = ["PutItem", "Query", "CreateTable", "BatchWriteItem", "UpdateItem", "TransactWriteItems"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(op=st.sampled_from(_OPS), body=st.dictionaries(
    st.sampled_from(["TableName", "Item", "Key", "KeySchema", "RequestItems", "TransactItems", "Limit",
                     "ExpressionAttributeValues", "ReturnValues", "AttributeDefinitions", "Other"]), _json))
def test_arbitrary_json_never_crashes(ddb: ShapeValidator, op: str, body: dict) -> None:
    try:
        ddb.validate(op, body)
    except AWSError as e:
        assert e.code in ("SerializationException", "ValidationException")
        assert e.message


# -------------------------------------------------------------------------------------------- speed


def test_getitem_hot_path_is_microseconds(ddb: ShapeValidator) -> None:
    body = {"TableName": "my-table", "Key": {"pk": {"S": "user#1"}, "sk": {"N": "42"}}}
    n = 20000
    per_call = min(timeit.repeat(lambda: ddb.validate("GetItem", body), number=n, repeat=3)) / n
    assert per_call < 30e-6, per_call  # ~2 µs on a laptop; generous for loaded CI
