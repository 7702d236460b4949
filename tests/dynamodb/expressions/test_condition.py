"""Condition / filter expressions: grammar, error texts, evaluation, and a model-based check."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynavault.dynamodb.expressions import ExpressionContext, evaluate, parse_condition
from dynavault.errors import AWSError

ITEM = {
    "pk": {"S": "user#1"},
    "n": {"N": "10"},
    "s": {"S": "hello world"},
    "b": {"B": "AQID"},  # 01 02 03
    "t": {"BOOL": True},
    "z": {"NULL": True},
    "ss": {"SS": ["red", "green"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": ["AQ=="]},
    "l": {"L": [{"S": "x"}, {"N": "2"}, {"M": {"deep": {"S": "v"}}}]},
    "m": {"M": {"a": {"M": {"b": {"N": "7"}}}, "name": {"S": "inner"}}},
    "name": {"S": "reserved"},
}

VALUES = {
    ":n5": {"N": "5"},
    ":n10": {"N": "10.0"},
    ":n20": {"N": "20"},
    ":s": {"S": "hello"},
    ":world": {"S": "world"},
    ":red": {"S": "red"},
    ":one": {"N": "1"},
    ":two": {"N": "2"},
    ":b01": {"B": "AQ=="},
    ":b02": {"B": "Ag=="},
    ":tS": {"S": "S"},
    ":tSS": {"S": "SS"},
    ":tN": {"S": "N"},
    ":x": {"S": "x"},
    ":v": {"S": "v"},
    ":true": {"BOOL": True},
    ":l": {"L": [{"S": "x"}, {"N": "2"}, {"M": {"deep": {"S": "v"}}}]},
    ":seven": {"N": "7"},
    ":three": {"N": "3"},
}


def check(expr: str, item: dict | None = ITEM, names: dict | None = None) -> bool:
    ctx = ExpressionContext(names, VALUES)
    return evaluate(parse_condition(expr, ctx), item)


def error(expr: str, names: dict | None = None, values: dict | None = VALUES, kind: str = "ConditionExpression") -> str:
    ctx = ExpressionContext(names, values)
    with pytest.raises(AWSError) as e:
        parse_condition(expr, ctx, kind=kind)
    assert e.value.code == "ValidationException"
    return e.value.message


@pytest.mark.parametrize(
    "expr,expected",
    [
        ("n = :n10", True),
        ("n <> :n10", False),
        ("n <> :s", True),
        ("absent <> :s", True),
        ("absent = :s", False),
        ("n < :n20", True),
        ("n <= :n10", True),
        ("n > :n5", True),
        ("n >= :n20", False),
        ("s > :s", True),
        ("n > :s", False),
        ("absent < :n5", False),
        ("n BETWEEN :n5 AND :n20", True),
        ("n BETWEEN :n10 AND :n10", True),
        ("n BETWEEN :one AND :two", False),
        ("s BETWEEN :one AND :two", False),
        ("n IN (:n5, :n10)", True),
        ("n IN (:n5, :n20)", False),
        ("absent IN (:n5)", False),
        ("attribute_exists(n)", True),
        ("attribute_exists(absent)", False),
        ("attribute_not_exists(absent)", True),
        ("attribute_exists(m.a.b)", True),
        ("attribute_exists(m.a.c)", False),
        ("attribute_exists(l[2].deep)", True),
        ("attribute_exists(l[3])", False),
        ("attribute_exists(s[0])", False),
        ("attribute_exists(s.x)", False),
        ("attribute_type(s, :tS)", True),
        ("attribute_type(ss, :tSS)", True),
        ("attribute_type(s, :tN)", False),
        ("attribute_type(absent, :tS)", False),
        ("begins_with(s, :s)", True),
        ("begins_with(s, :world)", False),
        ("begins_with(b, :b01)", True),
        ("begins_with(b, :b02)", False),
        ("begins_with(n, :s)", False),
        ("contains(s, :world)", True),
        ("contains(ss, :red)", True),
        ("contains(ss, :s)", False),
        ("contains(ns, :one)", True),
        ("contains(ns, :two)", False),
        ("contains(bs, :b01)", True),
        ("contains(b, :b02)", True),
        ("contains(l, :x)", True),
        ("contains(l, :two)", True),
        ("contains(l, :v)", False),
        ("contains(n, :n10)", False),
        ("size(s) = :n10", False),
        ("size(s) > :n10", True),
        ("size(ss) = :two", True),
        ("size(l) = :three", True),
        ("size(m) = :two", True),
        ("size(b) = :three", True),
        ("size(n) = :two", False),
        ("size(absent) = :two", False),
        ("m.a.b = :seven", True),
        ("l[1] = :two", True),
        ("l[2].deep = :v", True),
        ("l = :l", True),
        ("t = :true", True),
        ("#n = :s", False),
        ("m.#n = :s", False),
        ("NOT n = :n10", False),
        ("NOT (n = :n10)", False),
        ("n = :n10 AND s = :s", False),
        ("n = :n10 OR s = :s", True),
        ("n = :n5 OR s = :s OR attribute_exists(pk)", True),
        ("n = :n5 OR n = :n10 AND s = :s", False),  # AND binds tighter
        ("(n = :n5 OR n = :n10) AND s <> :s", True),
        ("NOT n = :n5 AND n = :n10", True),  # NOT binds tighter than AND
        ("not attribute_exists(absent) and (size(s) > :one)", True),
        ("(n) = :n10", True),
        ("(size(s)) > :one", True),
        ("n BETWEEN (:n5) AND (:n20)", True),
        ("  n\t=\n:n10  ", True),
        ("n=:n10", True),
    ],
)
def test_evaluate(expr, expected):
    names = {"#n": "name"} if "#n" in expr else None
    assert check(expr, names=names) is expected


def test_absent_item_behaves_like_empty():
    assert check("attribute_not_exists(pk)", None) is True
    assert check("attribute_exists(pk)", None) is False
    assert check("n <> :n5", None) is True


@pytest.mark.parametrize(
    "expr,message",
    [
        ("", "Invalid ConditionExpression: The expression can not be empty;"),
        ("a > b > c", 'Invalid ConditionExpression: Syntax error; token: ">", near: "b > c"'),
        ("n = ", 'Invalid ConditionExpression: Syntax error; token: "<EOF>", near: "= "'),
        ("n", 'Invalid ConditionExpression: Syntax error; token: "<EOF>", near: "n"'),
        ("n = :n5 !", 'Invalid ConditionExpression: Syntax error; token: "!", near: ":n5 !"'),
        ("n == :n5", 'Invalid ConditionExpression: Syntax error; token: "=", near: "== :n5"'),
        ("n = :n5 AND", 'Invalid ConditionExpression: Syntax error; token: "<EOF>", near: "AND"'),
        ("n BETWEEN :n5", 'Invalid ConditionExpression: Syntax error; token: "<EOF>", near: ":n5"'),
        ("n IN ()", 'Invalid ConditionExpression: Syntax error; token: ")", near: "()"'),
        ("name = :s", "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: name"),
        ("m.Size = :s", "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: Size"),
        (
            "#x = :s",
            "Invalid ConditionExpression: An expression attribute name used in the document path is not defined; "
            "attribute name: #x",
        ),
        (
            "n = :nope",
            "Invalid ConditionExpression: An expression attribute value used in expression is not defined; "
            "attribute value: :nope",
        ),
        ("((n = :n5))", "Invalid ConditionExpression: The expression has redundant parentheses;"),
        ("((n)) = :n5", "Invalid ConditionExpression: The expression has redundant parentheses;"),
        ("foo(n)", "Invalid ConditionExpression: Invalid function name; function: foo"),
        (
            "size(s)",
            "Invalid ConditionExpression: The function is not allowed to be used this way in an expression; "
            "function: size",
        ),
        (
            "attribute_exists(n) = :true",
            "Invalid ConditionExpression: The function is not allowed to be used this way in an expression; "
            "function: attribute_exists",
        ),
        (
            "begins_with(s)",
            "Invalid ConditionExpression: Incorrect number of operands for operator or function; "
            "operator or function: begins_with, number of operands: 1",
        ),
        (
            "attribute_exists(:s)",
            "Invalid ConditionExpression: Operator or function requires a document path; "
            "operator or function: attribute_exists",
        ),
        (
            "begins_with(s, :n5)",
            "Invalid ConditionExpression: Incorrect operand type for operator or function; "
            "operator or function: begins_with, operand type: N",
        ),
        (
            "attribute_type(s, :n5)",
            "Invalid ConditionExpression: Incorrect operand type for operator or function; "
            "operator or function: attribute_type, operand type: N",
        ),
        (
            "attribute_type(s, :x)",
            "Invalid ConditionExpression: Invalid attribute type name found; type: x, "
            "valid types: {B,NULL,SS,BOOL,L,BS,N,NS,S,M}",
        ),
        (
            "size(:n5) > :one",
            "Invalid ConditionExpression: Incorrect operand type for operator or function; "
            "operator or function: size, operand type: N",
        ),
        (
            "n = n",
            "Invalid ConditionExpression: The first operand must be distinct from the remaining operands for this "
            "operator or function; operator: =, first operand: [n]",
        ),
        (
            "n BETWEEN :n20 AND :n5",
            "Invalid ConditionExpression: The BETWEEN operator requires upper bound to be greater than or equal to "
            "lower bound; lower bound operand: AttributeValue: {N:20}, upper bound operand: AttributeValue: {N:5}",
        ),
        (
            "n BETWEEN :n5 AND :s",
            "Invalid ConditionExpression: The BETWEEN operator requires same data type for lower and upper bounds; "
            "lower bound operand: AttributeValue: {N:5}, upper bound operand: AttributeValue: {S:hello}",
        ),
    ],
)
def test_errors(expr, message):
    assert error(expr) == message


def test_error_kind_prefix():
    assert error("a >", kind="FilterExpression").startswith("Invalid FilterExpression: Syntax error;")


def test_in_operand_limit():
    values = {f":v{i}": {"N": str(i)} for i in range(101)}
    opts = ", ".join(values)
    assert error(f"a IN ({opts})", values=values) == (
        "Invalid ConditionExpression: The IN operator is provided with too many operands; number of operands: 101"
    )
    values.pop(":v100")
    ctx = ExpressionContext(None, values)
    assert evaluate(parse_condition(f"a IN ({', '.join(values)})", ctx), {"a": {"N": "99"}})


def test_error_priority_reserved_before_undefined():
    # DynamoDB reports kinds of errors in a fixed order, not in text order.
    assert "reserved keyword" in error("#x = :s AND name = :s")


def test_context_unused_and_cache_records_usage():
    names = {"#a": "a", "#b": "b"}
    values = {":v": {"S": "x"}, ":w": {"S": "y"}}
    for _ in range(2):  # second round is served from the parse cache
        ctx = ExpressionContext(names, values)
        parse_condition("#a = :v", ctx)
        with pytest.raises(AWSError) as e:
            ctx.check_all_used()
        assert e.value.message == "Value provided in ExpressionAttributeNames unused in expressions: keys: {#b}"
        parse_condition("#b = :v", ctx)
        with pytest.raises(AWSError) as e:
            ctx.check_all_used()
        assert e.value.message == "Value provided in ExpressionAttributeValues unused in expressions: keys: {:w}"
        parse_condition("#b = :w", ctx)
        ctx.check_all_used()


def test_cache_distinguishes_values():
    a = parse_condition("x = :v", ExpressionContext(None, {":v": {"N": "1"}}))
    b = parse_condition("x = :v", ExpressionContext(None, {":v": {"N": "2"}}))
    assert evaluate(a, {"x": {"N": "1"}}) and not evaluate(b, {"x": {"N": "1"}})
    # The shared cache is keyed on the text only: values are bound per request, never kept.
    c = parse_condition("x = :v", ExpressionContext(None, {":v": {"N": "1"}}))
    assert evaluate(c, {"x": {"N": "1"}}) and c is not a


@pytest.mark.parametrize(
    "names,values,message",
    [
        ({}, None, "ExpressionAttributeNames must not be empty"),
        (None, {}, "ExpressionAttributeValues must not be empty"),
        ({"n": "x"}, None, 'ExpressionAttributeNames contains invalid key: Syntax error; key: "n"'),
        (None, {"v": {"S": "x"}}, 'ExpressionAttributeValues contains invalid key: Syntax error; key: "v"'),
        (
            None,
            {":v": {}},
            "ExpressionAttributeValues contains invalid value: Supplied AttributeValue is empty, must contain "
            "exactly one of the supported datatypes for key :v",
        ),
        (
            None,
            {":v": {"SS": []}},
            "ExpressionAttributeValues contains invalid value: One or more parameter values were invalid: "
            "An string set  may not be empty for key :v",
        ),
    ],
)
def test_context_validation(names, values, message):
    with pytest.raises(AWSError) as e:
        ExpressionContext(names, values)
    assert e.value.message == message


def test_context_repr_hides_values():
    ctx = ExpressionContext(None, {":secret": {"S": "canary-value"}})
    assert "canary-value" not in repr(ctx)


# ------------------------------------------------------------------------------------ model-based check
# Random conditions over random items, rendered to text and also evaluated by a tiny independent reference.

ATTRS = ["a", "b", "c"]
scalar = st.one_of(
    st.integers(-5, 5).map(lambda i: ("N", Decimal(i))),
    st.sampled_from(["", "a", "ab", "b", "ba"]).map(lambda s: ("S", s)),
)
items = st.dictionaries(st.sampled_from(ATTRS), scalar, max_size=3)


def wire(v):
    return {v[0]: str(v[1]) if v[0] == "N" else v[1]}


def ref_cmp(x, y):
    if x is None or y is None or x[0] != y[0]:
        return None
    return (x[1] > y[1]) - (x[1] < y[1])


leaf = st.one_of(
    st.tuples(st.just("cmp"), st.sampled_from(["=", "<>", "<", "<=", ">", ">="]), st.sampled_from(ATTRS), scalar),
    st.tuples(st.just("between"), st.sampled_from(ATTRS), scalar, scalar),
    st.tuples(st.just("in"), st.sampled_from(ATTRS), st.lists(scalar, min_size=1, max_size=3)),
    st.tuples(st.just("exists"), st.booleans(), st.sampled_from(ATTRS)),
    st.tuples(st.just("begins"), st.sampled_from(ATTRS), st.sampled_from(["", "a", "b"])),
    st.tuples(st.just("size"), st.sampled_from(ATTRS), st.integers(0, 2)),
)
conditions = st.recursive(
    leaf,
    lambda sub: st.one_of(
        st.tuples(st.just("and"), sub, sub), st.tuples(st.just("or"), sub, sub), st.tuples(st.just("not"), sub)
    ),
    max_leaves=6,
)


def render(c, values):
    def val(v):
        name = f":v{len(values)}"
        values[name] = wire(v)
        return name

    k = c[0]
    if k == "cmp":
        return f"{c[2]} {c[1]} {val(c[3])}"
    if k == "between":
        return f"{c[1]} BETWEEN {val(c[2])} AND {val(c[3])}"
    if k == "in":
        return f"{c[1]} IN ({', '.join(val(v) for v in c[2])})"
    if k == "exists":
        return f"{'attribute_exists' if c[1] else 'attribute_not_exists'}({c[2]})"
    if k == "begins":
        return f"begins_with({c[1]}, {val(('S', c[2]))})"
    if k == "size":
        return f"size({c[1]}) = {val(('N', Decimal(c[2])))}"
    if k == "not":
        return f"NOT ({render(c[1], values)})"
    return f"({render(c[1], values)}) {k.upper()} ({render(c[2], values)})"


def ref_eval(c, item):
    k = c[0]
    if k == "cmp":
        r = ref_cmp(item.get(c[2]), c[3])
        if c[1] == "=":
            return r == 0
        if c[1] == "<>":
            return r != 0
        return r is not None and {"<": r < 0, "<=": r <= 0, ">": r > 0, ">=": r >= 0}[c[1]]
    if k == "between":
        x = item.get(c[1])
        lo, hi = ref_cmp(c[2], x), ref_cmp(x, c[3])
        return lo is not None and hi is not None and lo <= 0 and hi <= 0
    if k == "in":
        return any(ref_cmp(item.get(c[1]), v) == 0 for v in c[2])
    if k == "exists":
        return (c[2] in item) == c[1]
    if k == "begins":
        x = item.get(c[1])
        return x is not None and x[0] == "S" and x[1].startswith(c[2])
    if k == "size":
        x = item.get(c[1])
        return x is not None and x[0] == "S" and len(x[1]) == c[2]
    if k == "not":
        return not ref_eval(c[1], item)
    if k == "and":
        return ref_eval(c[1], item) and ref_eval(c[2], item)
    return ref_eval(c[1], item) or ref_eval(c[2], item)


def _valid_between(c) -> bool:
    if c[0] == "between":
        return c[2][0] == c[3][0] and c[2][1] <= c[3][1]
    return all(_valid_between(x) for x in c[1:] if isinstance(x, tuple) and x and isinstance(x[0], str))


@settings(max_examples=300, deadline=None)
@given(conditions, items)
def test_matches_reference(cond, item):
    if not _valid_between(cond):
        return  # DynamoDB rejects such BETWEEN bounds at parse time (tested above)
    values: dict = {}
    text = render(cond, values)
    parsed = parse_condition(text, ExpressionContext(None, values or None))
    wire_item = {k: wire(v) for k, v in item.items()}
    assert evaluate(parsed, wire_item) == ref_eval(cond, item), text
