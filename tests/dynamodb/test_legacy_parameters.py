"""Legacy parameters (Expected, filters, KeyConditions, AttributeUpdates, AttributesToGet) and mixing rules."""

from __future__ import annotations

import pytest

from dynavault.dynamodb.expressions import apply_update, evaluate, project
from dynavault.dynamodb.legacy import (
    attribute_updates_to_plan,
    attributes_to_get_to_projection,
    check_no_mixing,
    expected_to_condition,
    filter_to_condition,
    key_conditions_to_key_condition,
)
from dynavault.errors import AWSError

ITEM = {"pk": {"S": "k"}, "n": {"N": "5"}, "s": {"S": "hello"}, "ss": {"SS": ["a", "b"]}, "l": {"L": [{"N": "1"}]}}
INVALID = "One or more parameter values were invalid: "


def message(fn, *args) -> str:
    with pytest.raises(AWSError) as e:
        fn(*args)
    assert e.value.code == "ValidationException"
    return e.value.message


def avl(op: str, *values: dict) -> dict:
    return {"ComparisonOperator": op, "AttributeValueList": list(values)}


@pytest.mark.parametrize(
    "expected,op,result",
    [
        ({"n": {"Value": {"N": "5.0"}}}, None, True),
        ({"n": {"Value": {"N": "6"}, "Exists": True}}, None, False),
        ({"absent": {"Exists": False}}, None, True),
        ({"n": {"Exists": False}}, None, False),
        ({"n": avl("EQ", {"N": "5"}), "s": avl("EQ", {"S": "x"})}, "AND", False),
        ({"n": avl("EQ", {"N": "5"}), "s": avl("EQ", {"S": "x"})}, "OR", True),
        ({"n": avl("NE", {"N": "4"})}, None, True),
        ({"n": avl("LT", {"N": "6"})}, None, True),
        ({"n": avl("LE", {"N": "5"})}, None, True),
        ({"n": avl("GT", {"N": "5"})}, None, False),
        ({"n": avl("GE", {"N": "5"})}, None, True),
        ({"n": avl("BETWEEN", {"N": "1"}, {"N": "9"})}, None, True),
        ({"n": avl("IN", {"N": "1"}, {"N": "5"})}, None, True),
        ({"s": avl("BEGINS_WITH", {"S": "he"})}, None, True),
        ({"s": avl("CONTAINS", {"S": "ell"})}, None, True),
        ({"ss": avl("CONTAINS", {"S": "b"})}, None, True),
        ({"ss": avl("NOT_CONTAINS", {"S": "b"})}, None, False),
        ({"absent": avl("NULL")}, None, True),
        ({"n": avl("NOT_NULL")}, None, True),
        ({"n": {"ComparisonOperator": "EQ", "Value": {"N": "5"}}}, None, True),
        ({}, None, True),
    ],
)
def test_expected(expected, op, result):
    assert evaluate(expected_to_condition(expected, op), ITEM) is result


@pytest.mark.parametrize(
    "expected,text",
    [
        (
            {"a": {"Value": {"S": "x"}, "AttributeValueList": [{"S": "x"}]}},
            INVALID + "Value and AttributeValueList cannot be used together for Attribute: a",
        ),
        (
            {"a": {"ComparisonOperator": "EQ", "Exists": True, "Value": {"S": "x"}}},
            INVALID + "Exists and ComparisonOperator cannot be used together for Attribute: a",
        ),
        (
            {"a": {"ComparisonOperator": "EQ"}},
            INVALID + "Value or AttributeValueList must be used with ComparisonOperator: EQ for Attribute: a",
        ),
        ({"a": avl("EQ", {"S": "x"}, {"S": "y"})}, INVALID + "Invalid number of argument(s) for the EQ ComparisonOperator"),
        ({"a": avl("NULL", {"S": "x"})}, INVALID + "Invalid number of argument(s) for the NULL ComparisonOperator"),
        ({"a": avl("BETWEEN", {"S": "x"})}, INVALID + "Invalid number of argument(s) for the BETWEEN ComparisonOperator"),
        ({"a": avl("IN", {"S": "x"}, {"N": "1"})}, INVALID + "AttributeValues inside AttributeValueList must be of same type"),
        ({"a": avl("GT", {"SS": ["x"]})}, INVALID + "ComparisonOperator GT is not valid for SS AttributeValue type"),
        ({"a": avl("BEGINS_WITH", {"N": "1"})}, INVALID + "ComparisonOperator BEGINS_WITH is not valid for N AttributeValue type"),
        (
            {"a": avl("BETWEEN", {"N": "9"}, {"N": "1"})},
            "The BETWEEN condition was provided a range where the lower bound is greater than the upper bound",
        ),
        (
            {"a": {"AttributeValueList": [{"S": "x"}]}},
            INVALID + "AttributeValueList can only be used with a ComparisonOperator for Attribute: a",
        ),
        ({"a": {}}, INVALID + "Value must be provided when Exists is null for Attribute: a"),
        ({"a": {"Exists": True}}, INVALID + "Value must be provided when Exists is true for Attribute: a"),
        ({"a": {"Exists": False, "Value": {"S": "x"}}}, INVALID + "Value cannot be used when Exists is false for Attribute: a"),
        ({"a": {"Value": {"SS": []}}}, INVALID + "An string set  may not be empty"),
    ],
)
def test_expected_errors(expected, text):
    assert message(expected_to_condition, expected, None) == text


def test_filters():
    cond = filter_to_condition({"n": avl("GT", {"N": "1"}), "s": avl("BEGINS_WITH", {"S": "x"})}, "OR")
    assert evaluate(cond, ITEM) is True
    cond = filter_to_condition({"n": avl("GT", {"N": "1"}), "s": avl("BEGINS_WITH", {"S": "x"})}, None)
    assert evaluate(cond, ITEM) is False
    assert message(filter_to_condition, {"n": avl("GT")}, None) == (
        INVALID + "Invalid number of argument(s) for the GT ComparisonOperator"
    )


def test_key_conditions():
    k = key_conditions_to_key_condition(
        {"pk": avl("EQ", {"S": "k"}), "sk": avl("BETWEEN", {"N": "1"}, {"N": "3"})}, "pk", "sk"
    )
    assert (k.hash_value, k.sort_key, k.sort_op, k.sort_values) == ({"S": "k"}, "sk", "BETWEEN", [{"N": "1"}, {"N": "3"}])
    assert k.matches({"pk": {"S": "k"}, "sk": {"N": "2"}})
    assert key_conditions_to_key_condition({"pk": avl("EQ", {"S": "k"})}, "pk", None).sort_op is None
    bad = {"pk": avl("EQ", {"S": "k"}), "sk": avl("NE", {"N": "1"})}
    assert message(key_conditions_to_key_condition, bad, "pk", "sk") == (
        "Attempted conditional constraint is not an indexable operation"
    )
    assert message(key_conditions_to_key_condition, {"sk": avl("EQ", {"N": "1"})}, "pk", "sk") == (
        "Query condition missed key schema element: pk"
    )
    assert message(key_conditions_to_key_condition, {"pk": avl("GT", {"S": "k"})}, "pk", "sk") == (
        "Query key condition not supported"
    )
    three = {"pk": avl("EQ", {"S": "k"}), "sk": avl("EQ", {"N": "1"}), "x": avl("EQ", {"N": "1"})}
    assert message(key_conditions_to_key_condition, three, "pk", "sk") == "Conditions can be of length 1 or 2 only"


def test_attribute_updates():
    plan = attribute_updates_to_plan(
        {
            "s": {"Action": "PUT", "Value": {"S": "new"}},
            "x": {"Value": {"N": "1"}},  # PUT is the default action
            "n": {"Action": "ADD", "Value": {"N": "2"}},
            "ss": {"Action": "DELETE", "Value": {"SS": ["a"]}},
            "l": {"Action": "ADD", "Value": {"L": [{"N": "2"}]}},
            "nl": {"Action": "ADD", "Value": {"L": [{"N": "3"}]}},
            "pk2": {"Action": "DELETE"},
        }
    )
    new = apply_update(plan, {**ITEM, "pk2": {"S": "gone"}}, {"pk"})
    assert new["s"] == {"S": "new"} and new["x"] == {"N": "1"} and new["n"] == {"N": "7"}
    assert new["ss"] == {"SS": ["b"]}
    assert new["l"] == {"L": [{"N": "1"}, {"N": "2"}]}
    assert new["nl"] == {"L": [{"N": "3"}]}
    assert "pk2" not in new
    with pytest.raises(AWSError) as e:
        apply_update(attribute_updates_to_plan({"pk": {"Value": {"S": "x"}}}), ITEM, {"pk"})
    assert e.value.message == INVALID + "Cannot update attribute pk. This attribute is part of the key"


@pytest.mark.parametrize(
    "updates,text",
    [
        ({"a": {"Action": "PUT"}}, INVALID + "Only DELETE action is allowed when no attribute value is specified"),
        ({"a": {"Action": "DELETE", "Value": {"N": "1"}}}, INVALID + "DELETE action with value is not supported for the type N"),
        ({"a": {"Action": "ADD", "Value": {"S": "x"}}}, INVALID + "ADD action is not supported for the type S"),
    ],
)
def test_attribute_update_errors(updates, text):
    assert message(attribute_updates_to_plan, updates) == text


def test_attributes_to_get():
    assert project(attributes_to_get_to_projection(["n", "name", "absent"]), {**ITEM, "name": {"S": "x"}}) == {
        "n": {"N": "5"},
        "name": {"S": "x"},
    }
    assert message(attributes_to_get_to_projection, ["a", "a"]) == INVALID + "Duplicate value in attribute name: a"


@pytest.mark.parametrize(
    "request_,operation,text",
    [
        (
            {"Expected": {}, "ConditionExpression": "a = :v"},
            "PutItem",
            "Can not use both expression and non-expression parameters in the same request: "
            "Non-expression parameters: {Expected} Expression parameters: {ConditionExpression}",
        ),
        (
            {"AttributeUpdates": {}, "Expected": {}, "UpdateExpression": "SET a = :v"},
            "UpdateItem",
            "Can not use both expression and non-expression parameters in the same request: "
            "Non-expression parameters: {AttributeUpdates, Expected} Expression parameters: {UpdateExpression}",
        ),
        (
            {"AttributesToGet": ["a"], "ProjectionExpression": "a"},
            "GetItem",
            "Can not use both expression and non-expression parameters in the same request: "
            "Non-expression parameters: {AttributesToGet} Expression parameters: {ProjectionExpression}",
        ),
        ({"ExpressionAttributeNames": {"#a": "a"}}, "GetItem", "ExpressionAttributeNames can only be specified when using expressions"),
        (
            {"ExpressionAttributeValues": {":v": {"S": "x"}}, "ProjectionExpression": "a"},
            "Scan",
            "ExpressionAttributeValues can only be specified when using expressions: FilterExpression is null",
        ),
        (
            {"ExpressionAttributeValues": {":v": {"S": "x"}}},
            "UpdateItem",
            "ExpressionAttributeValues can only be specified when using expressions: "
            "UpdateExpression and ConditionExpression are null",
        ),
    ],
)
def test_mixing(request_, operation, text):
    assert message(check_no_mixing, request_, operation) == text


def test_mixing_allowed():
    check_no_mixing({"KeyConditions": {}, "FilterExpression": "a = :v"}, "Query")
    check_no_mixing({"ConditionExpression": "a = :v", "ExpressionAttributeValues": {}}, "DeleteItem")
    check_no_mixing({"Expected": {}}, "DeleteItem")
    check_no_mixing({"ProjectionExpression": "#a", "ExpressionAttributeNames": {"#a": "a"}}, "GetItem")
