"""Update expressions: parsing errors, applying to nested maps/lists, ReturnValues UPDATED_*."""

from __future__ import annotations

import copy

import pytest

from dynavault.dynamodb.expressions import ExpressionContext, apply_update, parse_update, updated_attributes
from dynavault.errors import AWSError

KEYS = {"pk", "sk"}

BASE = {
    "pk": {"S": "k"},
    "n": {"N": "10"},
    "s": {"S": "str"},
    "l": {"L": [{"N": "0"}, {"N": "1"}, {"N": "2"}]},
    "m": {"M": {"a": {"M": {"b": {"N": "1"}}}, "lst": {"L": [{"S": "x"}]}}},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2"]},
}

VALUES = {
    ":one": {"N": "1"},
    ":five": {"N": "5"},
    ":big": {"N": "9.9999999999999999999999999999999999999E+125"},
    ":s": {"S": "new"},
    ":l": {"L": [{"S": "y"}]},
    ":ss": {"SS": ["b", "c"]},
    ":ns": {"NS": ["2.0", "3"]},
    ":bs": {"BS": ["AQ=="]},
    ":m": {"M": {"z": {"BOOL": True}}},
}


def run(expr: str, item: dict | None = None, names: dict | None = None) -> dict:
    item = copy.deepcopy(BASE) if item is None else item
    before = copy.deepcopy(item)
    plan = parse_update(expr, ExpressionContext(names, VALUES))
    new = apply_update(plan, item, KEYS)
    assert item == before, "apply_update must not modify the old item"
    return new


def run_error(expr: str, item: dict | None = None) -> str:
    item = copy.deepcopy(BASE) if item is None else item
    with pytest.raises(AWSError) as e:
        run(expr, item)
    assert e.value.code == "ValidationException"
    return e.value.message


def parse_error(expr: str, values: dict | None = VALUES, names: dict | None = None) -> str:
    with pytest.raises(AWSError) as e:
        parse_update(expr, ExpressionContext(names, values))
    return e.value.message


def test_set_top_level_and_new_item():
    assert run("SET s = :s")["s"] == {"S": "new"}
    assert run("SET x = :s", {}) == {"x": {"S": "new"}}
    assert run("SET x = :s", None)["x"] == {"S": "new"}


def test_set_nested_map_and_list():
    new = run("SET m.a.b = :five, m.a.c = :s, m.lst[0] = :s, l[1] = :s")
    assert new["m"] == {"M": {"a": {"M": {"b": {"N": "5"}, "c": {"S": "new"}}}, "lst": {"L": [{"S": "new"}]}}}
    assert new["l"] == {"L": [{"N": "0"}, {"S": "new"}, {"N": "2"}]}


def test_set_list_index_past_end_appends():
    assert run("SET l[10] = :s")["l"]["L"] == [{"N": "0"}, {"N": "1"}, {"N": "2"}, {"S": "new"}]


def test_set_arithmetic_and_functions():
    new = run("SET n = n + :five, c = if_not_exists(c, :one) - :five, l = list_append(l, :l), q = list_append(:l, l)")
    assert new["n"] == {"N": "15"}
    assert new["c"] == {"N": "-4"}
    assert new["l"]["L"][-1] == {"S": "y"}
    assert new["q"]["L"][0] == {"S": "y"} and len(new["q"]["L"]) == 4
    assert run("SET n = if_not_exists(n, :one)")["n"] == {"N": "10"}
    assert run("SET x = (n + :one)")["x"] == {"N": "11"}
    assert run("SET n = n - n2", {"n": {"N": "1.5"}, "n2": {"N": "0.25"}})["n"] == {"N": "1.25"}


def test_rhs_sees_the_old_item():
    new = run("SET a = n, n = :five")
    assert new["a"] == {"N": "10"} and new["n"] == {"N": "5"}


def test_remove():
    new = run("REMOVE s, m.a.b, l[0], l[2], absent, m.absent")
    assert "s" not in new
    assert new["m"]["M"]["a"] == {"M": {}}
    assert new["l"] == {"L": [{"N": "1"}]}
    assert run("REMOVE l[7]")["l"] == BASE["l"]


def test_add_and_delete():
    new = run("ADD n :five, ss :ss, ns :ns, newn :one, newset :bs")
    assert new["n"] == {"N": "15"}
    assert new["ss"] == {"SS": ["a", "b", "c"]}
    assert new["ns"] == {"NS": ["1", "2", "3"]}
    assert new["newn"] == {"N": "1"}
    assert new["newset"] == {"BS": ["AQ=="]}
    new = run("DELETE ss :ss, ns :ns, absent :bs")
    assert new["ss"] == {"SS": ["a"]} and new["ns"] == {"NS": ["1"]} and "absent" not in new
    assert "ss" not in run("DELETE ss :ss", {"ss": {"SS": ["b", "c"]}})
    assert run("ADD m.a.x :one")["m"]["M"]["a"]["M"]["x"] == {"N": "1"}


def test_all_clauses_together_and_case_insensitive_keywords():
    new = run("set s = :s remove n add ns :ns delete ss :ss")
    assert new["s"] == {"S": "new"} and "n" not in new and new["ss"] == {"SS": ["a"]}


def test_expression_attribute_names():
    new = run("SET #a.#b = :s REMOVE #k", names={"#a": "m", "#b": "a", "#k": "s"})
    assert new["m"]["M"]["a"] == {"S": "new"} and "s" not in new


@pytest.mark.parametrize(
    "expr,message",
    [
        ("SET n = absent", "The provided expression refers to an attribute that does not exist in the item"),
        ("SET n = absent + :one", "The provided expression refers to an attribute that does not exist in the item"),
        ("SET n = list_append(absent, :l)", "The provided expression refers to an attribute that does not exist in the item"),
        ("SET n = s + :one", "An operand in the update expression has an incorrect data type"),
        ("SET n = list_append(s, :l)", "An operand in the update expression has an incorrect data type"),
        ("ADD s :one", "An operand in the update expression has an incorrect data type"),
        ("ADD ss :ns", "An operand in the update expression has an incorrect data type"),
        ("DELETE ns :ss", "An operand in the update expression has an incorrect data type"),
        ("SET absent.x = :s", "The document path provided in the update expression is invalid for update"),
        ("SET s.x = :s", "The document path provided in the update expression is invalid for update"),
        ("SET m[0] = :s", "The document path provided in the update expression is invalid for update"),
        ("SET l.x = :s", "The document path provided in the update expression is invalid for update"),
        ("REMOVE absent.x", "The document path provided in the update expression is invalid for update"),
        ("SET pk = :s", "One or more parameter values were invalid: Cannot update attribute pk. This attribute is part of the key"),
        ("REMOVE sk", "One or more parameter values were invalid: Cannot update attribute sk. This attribute is part of the key"),
        ("SET n = :big + :big", "Number overflow. Attempting to store a number with magnitude larger than supported range"),
    ],
)
def test_runtime_errors(expr, message):
    assert run_error(expr) == message


@pytest.mark.parametrize(
    "expr,message",
    [
        ("", "Invalid UpdateExpression: The expression can not be empty;"),
        ("SET", 'Invalid UpdateExpression: Syntax error; token: "<EOF>", near: "SET"'),
        ("SET a", 'Invalid UpdateExpression: Syntax error; token: "<EOF>", near: "a"'),
        ("SET a = :one +", 'Invalid UpdateExpression: Syntax error; token: "<EOF>", near: "+"'),
        ("SET a = :one + :one + :one", 'Invalid UpdateExpression: Syntax error; token: "+", near: ":one + :one"'),
        ("SET a = :one / :one", 'Invalid UpdateExpression: Syntax error; token: "/", near: ":one / :one"'),
        ("UPSERT a = :one", 'Invalid UpdateExpression: Syntax error; token: "UPSERT", near: "UPSERT a"'),
        ("ADD a", 'Invalid UpdateExpression: Syntax error; token: "<EOF>", near: "a"'),
        ("SET a = :one SET b = :one", 'Invalid UpdateExpression: The "SET" section can only be used once in an update expression;'),
        ("SET name = :one", "Invalid UpdateExpression: Attribute name is a reserved keyword; reserved keyword: name"),
        ("SET a = :nope", "Invalid UpdateExpression: An expression attribute value used in expression is not defined; attribute value: :nope"),
        ("SET #a = :one", "Invalid UpdateExpression: An expression attribute name used in the document path is not defined; attribute name: #a"),
        (
            "SET a = :one REMOVE a",
            "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these "
            "paths; path one: [a], path two: [a]",
        ),
        (
            "SET a.b = :one, a.b.c = :one",
            "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these "
            "paths; path one: [a, b], path two: [a, b, c]",
        ),
        (
            "SET a[0] = :one REMOVE a.b",
            "Invalid UpdateExpression: Two document paths conflict with each other; must remove or rewrite one of "
            "these paths; path one: [a, [0]], path two: [a, b]",
        ),
        ("ADD a :s", "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: STRING"),
        ("ADD a :l", "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: ADD, operand type: LIST"),
        ("DELETE a :one", "Invalid UpdateExpression: Incorrect operand type for operator or function; operator: DELETE, operand type: NUMBER"),
        ("SET a = :s + :one", "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: +, operand type: S"),
        ("SET a = list_append(:one, a)", "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: list_append, operand type: N"),
        ("SET a = if_not_exists(:one, :one)", "Invalid UpdateExpression: Operator or function requires a document path; operator or function: if_not_exists"),
        ("SET a = list_append(a)", "Invalid UpdateExpression: Incorrect number of operands for operator or function; operator or function: list_append, number of operands: 1"),
        ("SET a = nope(a)", "Invalid UpdateExpression: Invalid function name; function: nope"),
    ],
)
def test_parse_errors(expr, message):
    assert parse_error(expr) == message


def test_updated_attributes():
    plan = parse_update("SET m.a.b = :five, s = :s REMOVE n ADD ss :ss", ExpressionContext(None, VALUES))
    old = copy.deepcopy(BASE)
    new = apply_update(plan, old, KEYS)
    assert updated_attributes(plan, old, new, "UPDATED_OLD") == {
        "m": {"M": {"a": {"M": {"b": {"N": "1"}}}}},
        "s": {"S": "str"},
        "n": {"N": "10"},
        "ss": {"SS": ["a", "b"]},
    }
    assert updated_attributes(plan, old, new, "UPDATED_NEW") == {
        "m": {"M": {"a": {"M": {"b": {"N": "5"}}}}},
        "s": {"S": "new"},
        "ss": {"SS": ["a", "b", "c"]},
    }
    assert updated_attributes(plan, None, new, "UPDATED_OLD") == {}


def test_unchanged_subdocuments_are_shared_not_copied():
    old = copy.deepcopy(BASE)
    new = apply_update(parse_update("SET m.a.b = :five", ExpressionContext(None, VALUES)), old, KEYS)
    assert new["l"] is old["l"]
    assert new["m"]["M"]["lst"] is old["m"]["M"]["lst"]
    assert new["m"] is not old["m"]


def test_list_index_range_is_dynamodbs():
    # Recorded against DynamoDB: 4294967294 is the largest index it takes (SET past the end appends), one
    # more is refused with this text; an index too long for any integer gets the same answer.
    assert run("SET l[4294967294] = :one")["l"]["L"][-1] == {"N": "1"}
    for index in ("4294967295", "9" * 30):
        assert parse_error(f"SET l[{index}] = :one") == (
            f"Invalid UpdateExpression: List index is not within the allowable range; index: [{index}]")
