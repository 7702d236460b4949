"""Projection expressions and key condition expressions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynavault.dynamodb.expressions import (
    ExpressionContext,
    apply_update,
    parse_key_condition,
    parse_projection,
    parse_update,
    project,
    resolve,
)
from dynavault.errors import AWSError

ITEM = {
    "pk": {"S": "k"},
    "a": {"N": "1"},
    "l": {"L": [{"S": "x"}, {"M": {"p": {"N": "1"}, "q": {"N": "2"}}}, {"S": "z"}]},
    "m": {"M": {"b": {"M": {"c": {"S": "deep"}, "d": {"S": "other"}}}, "e": {"BOOL": False}}},
}


def proj(expr: str, names: dict | None = None) -> dict:
    return project(parse_projection(expr, ExpressionContext(names, None)), ITEM)


def test_projection_top_level_nested_and_lists():
    assert proj("a, pk") == {"a": ITEM["a"], "pk": ITEM["pk"]}
    assert proj("m.b.c") == {"m": {"M": {"b": {"M": {"c": {"S": "deep"}}}}}}
    assert proj("l[2], l[0]") == {"l": {"L": [{"S": "x"}, {"S": "z"}]}}
    assert proj("l[1].q") == {"l": {"L": [{"M": {"q": {"N": "2"}}}]}}
    assert proj("absent, m.absent, l[9], a.x") == {}
    assert proj("#m.#b.d", {"#m": "m", "#b": "b"}) == {"m": {"M": {"b": {"M": {"d": {"S": "other"}}}}}}


@pytest.mark.parametrize(
    "expr,message",
    [
        ("", "Invalid ProjectionExpression: The expression can not be empty;"),
        ("a,", 'Invalid ProjectionExpression: Syntax error; token: "<EOF>", near: ","'),
        ("a b", 'Invalid ProjectionExpression: Syntax error; token: "b", near: "a b"'),
        ("a = :v", 'Invalid ProjectionExpression: Syntax error; token: "=", near: "a = :v"'),
        ("a, name", "Invalid ProjectionExpression: Attribute name is a reserved keyword; reserved keyword: name"),
        (
            "#x",
            "Invalid ProjectionExpression: An expression attribute name used in the document path is not defined; "
            "attribute name: #x",
        ),
        (
            "a, a",
            "Invalid ProjectionExpression: Two document paths overlap with each other; must remove or rewrite one of "
            "these paths; path one: [a], path two: [a]",
        ),
        (
            "m.b, m",
            "Invalid ProjectionExpression: Two document paths overlap with each other; must remove or rewrite one of "
            "these paths; path one: [m, b], path two: [m]",
        ),
        (
            "l[0], l.x",
            "Invalid ProjectionExpression: Two document paths conflict with each other; must remove or rewrite one of "
            "these paths; path one: [l, [0]], path two: [l, x]",
        ),
    ],
)
def test_projection_errors(expr, message):
    with pytest.raises(AWSError) as e:
        parse_projection(expr, ExpressionContext(None, None))
    assert e.value.message == message


V = {":p": {"S": "k"}, ":s": {"S": "a"}, ":t": {"S": "m"}, ":n": {"N": "5"}}


def kc(expr: str, hash_key: str = "pk", range_key: str | None = "sk", names: dict | None = None):
    return parse_key_condition(expr, ExpressionContext(names, V), hash_key, range_key)


def kc_error(expr: str, hash_key: str = "pk", range_key: str | None = "sk") -> str:
    with pytest.raises(AWSError) as e:
        kc(expr, hash_key, range_key)
    assert e.value.code == "ValidationException"
    return e.value.message


@pytest.mark.parametrize(
    "expr,op,values",
    [
        ("pk = :p", None, []),
        ("pk = :p AND sk = :s", "=", [V[":s"]]),
        ("sk < :s AND pk = :p", "<", [V[":s"]]),
        ("pk = :p AND sk <= :s", "<=", [V[":s"]]),
        ("pk = :p AND sk > :s", ">", [V[":s"]]),
        ("pk = :p AND sk >= :s", ">=", [V[":s"]]),
        ("pk = :p AND :s > sk", "<", [V[":s"]]),  # flipped
        ("pk = :p AND sk BETWEEN :s AND :t", "BETWEEN", [V[":s"], V[":t"]]),
        ("pk = :p AND begins_with(sk, :s)", "BEGINS_WITH", [V[":s"]]),
        ("(pk = :p) AND (sk = :s)", "=", [V[":s"]]),
    ],
)
def test_key_conditions(expr, op, values):
    k = kc(expr)
    assert k.hash_key == "pk" and k.hash_value == V[":p"]
    assert k.sort_op == op
    assert k.sort_values == values


def test_key_condition_matching():
    k = kc("pk = :p AND sk BETWEEN :s AND :t")
    assert k.matches({"pk": {"S": "k"}, "sk": {"S": "b"}})
    assert not k.matches({"pk": {"S": "k"}, "sk": {"S": "z"}})
    assert not k.matches({"pk": {"S": "j"}, "sk": {"S": "b"}})
    k = kc("pk = :p AND begins_with(sk, :s)")
    assert k.sort_matches({"S": "abc"}) and not k.sort_matches({"S": "bac"})
    k = kc("#h = :p", names={"#h": "pk"})
    assert k.matches({"pk": {"S": "k"}, "sk": {"S": "anything"}})


@pytest.mark.parametrize(
    "expr,message",
    [
        ("sk = :s", "Query condition missed key schema element: pk"),
        ("pk = :p AND attr2 = :s", "Query condition missed key schema element: sk"),
        ("pk < :p", "Query key condition not supported"),
        ("pk = :p OR sk = :s", "Invalid operator used in KeyConditionExpression: OR"),
        ("pk = :p AND NOT sk = :s", "Invalid operator used in KeyConditionExpression: NOT"),
        ("pk = :p AND sk IN (:s)", "Invalid operator used in KeyConditionExpression: IN"),
        ("pk = :p AND sk <> :s", "Invalid operator used in KeyConditionExpression: <>"),
        ("pk = :p AND attribute_exists(sk)", "Invalid operator used in KeyConditionExpression: attribute_exists"),
        ("pk = :p AND contains(sk, :s)", "Invalid operator used in KeyConditionExpression: contains"),
        ("pk = :p AND size(sk) = :n", "KeyConditionExpressions cannot contain nested operations"),
        ("pk = :p AND sk.x = :s", "KeyConditionExpressions cannot have conditions on nested attributes"),
        ("pk = :p AND sk = pk", "Invalid condition in KeyConditionExpression: Multiple attribute names used in one condition"),
        ("pk = :p AND :s = :t", "Invalid condition in KeyConditionExpression: No key attribute specified"),
        ("pk = :p AND pk = :s", "KeyConditionExpressions must only contain one condition per key"),
        (
            "pk = :p AND begins_with(sk, :n)",
            "Invalid KeyConditionExpression: Incorrect operand type for operator or function; "
            "operator or function: begins_with, operand type: N",
        ),
        ("pk = :p AND", 'Invalid KeyConditionExpression: Syntax error; token: "<EOF>", near: "AND"'),
    ],
)
def test_key_condition_errors(expr, message):
    assert kc_error(expr) == message


def test_key_condition_without_range_key():
    assert kc_error("pk = :p AND sk = :s", range_key=None) == "Query key condition not supported"


# Property: SET at a path then reading the path gives the value; other attributes are untouched.
docs = st.recursive(
    st.integers(0, 9).map(lambda i: {"N": str(i)}),
    lambda sub: st.one_of(
        st.lists(sub, min_size=1, max_size=3).map(lambda xs: {"L": xs}),
        st.dictionaries(st.sampled_from(["x", "y"]), sub, min_size=1, max_size=2).map(lambda m: {"M": m}),
    ),
    max_leaves=8,
)


def _paths(v, prefix):
    yield prefix
    if "L" in v:
        for i, e in enumerate(v["L"]):
            yield from _paths(e, (*prefix, i))
    elif "M" in v:
        for k, e in v["M"].items():
            yield from _paths(e, (*prefix, k))


@given(docs, st.data())
def test_set_then_resolve(doc, data):
    item = {"d": doc, "other": {"S": "keep"}}
    path = data.draw(st.sampled_from(list(_paths(doc, ("d",)))))
    text = "".join(f"[{e}]" if isinstance(e, int) else f".#{e}" for e in path)[1:]
    names = {f"#{e}": e for e in path if isinstance(e, str)}
    plan = parse_update(f"SET {text} = :v", ExpressionContext(names, {":v": {"S": "new"}}))
    new = apply_update(plan, item, {"pk"})
    assert resolve(new, path) == {"S": "new"}
    assert new["other"] == {"S": "keep"}
    assert resolve(item, path) != {"S": "new"}  # old item untouched
