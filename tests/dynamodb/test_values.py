"""Wire-form attribute values: validation texts, number canonicalization, ordering, equality, sizes."""

from __future__ import annotations

import base64
from decimal import Context, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynavault.dynamodb.values import (
    MAX_ITEM_SIZE,
    MSG_EMPTY_NAME,
    MSG_ITEM_SIZE,
    _num_size_decimal,
    canonical_item,
    compare,
    equals,
    item_size,
    normalize_number,
    validate_attribute_value,
    validate_item,
)
from dynavault.errors import AWSError, validation


def err(value) -> AWSError:
    with pytest.raises(AWSError) as e:
        validate_attribute_value(value, "a")
    return e.value


@pytest.mark.parametrize(
    "value",
    [
        {"S": ""},
        {"S": "x"},
        {"N": "0"},
        {"N": "-1.5e10"},
        {"N": "9.9999999999999999999999999999999999999E+125"},
        {"N": "1E-130"},
        {"B": base64.b64encode(b"\x00\x01").decode()},
        {"B": ""},
        {"BOOL": False},
        {"NULL": True},
        {"M": {}},
        {"M": {"x": {"L": [{"S": "y"}, {"NS": ["1", "2"]}]}}},
        {"L": []},
        {"SS": ["a", "b"]},
        {"NS": ["1", "1.5"]},
        {"BS": ["AA==", "AQ=="]},
    ],
)
def test_valid_values(value):
    validate_attribute_value(value, "a")


@pytest.mark.parametrize(
    "value,message",
    [
        ({}, "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"),
        ({"X": "1"}, "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"),
        (
            {"S": "a", "N": "1"},
            "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported "
            "datatypes",
        ),
        ({"N": ""}, "The parameter cannot be converted to a numeric value"),
        ({"N": "abc"}, "The parameter cannot be converted to a numeric value: abc"),
        ({"N": "NaN"}, "The parameter cannot be converted to a numeric value: NaN"),
        ({"N": "Infinity"}, "The parameter cannot be converted to a numeric value: Infinity"),
        ({"N": "1E126"}, "Number overflow. Attempting to store a number with magnitude larger than supported range"),
        ({"N": "1E-131"}, "Number underflow. Attempting to store a number with magnitude smaller than supported range"),
        ({"N": "1" * 39}, "Attempting to store more than 38 significant digits in a Number"),
        ({"NULL": False}, "One or more parameter values were invalid: Null attribute value types must have the value of true"),
        ({"SS": []}, "One or more parameter values were invalid: An string set  may not be empty"),
        ({"NS": []}, "One or more parameter values were invalid: An number set  may not be empty"),
        ({"BS": []}, "One or more parameter values were invalid: Binary sets should not be empty"),
        ({"SS": ["a", "a"]}, "One or more parameter values were invalid: Input collection [a, a] contains duplicates."),
        ({"NS": ["1", "1.0"]}, "Input collection contains duplicates"),
        (
            {"BS": ["AA==", "AA=="]},
            "One or more parameter values were invalid: Input collection [AA==, AA==]of type BS contains duplicates.",
        ),
        ({"NS": ["1", "x"]}, "The parameter cannot be converted to a numeric value: x"),
        ({"M": {"x": {"NULL": False}}}, "One or more parameter values were invalid: Null attribute value types must have the value of true"),
        ({"L": [{"N": "1E200"}]}, "Number overflow. Attempting to store a number with magnitude larger than supported range"),
    ],
)
def test_validation_messages(value, message):
    e = err(value)
    assert e.code == "ValidationException"
    assert e.message == message


def test_38_digits_with_trailing_and_leading_zeros_is_fine():
    validate_attribute_value({"N": "0000" + "1" * 38 + "000000"}, "a")
    validate_attribute_value({"N": "0.000" + "1" * 38}, "a")


@pytest.mark.parametrize("b64", ["AAA", "A===x", "!!!!"])
def test_bad_base64_is_serialization_error(b64):
    e = err({"B": b64})
    assert e.code == "SerializationException"
    assert "can not be converted to a Blob" in e.message


def test_wrong_json_types():
    assert err({"S": 5}).code == "SerializationException"
    assert err({"BOOL": "yes"}).code == "SerializationException"
    assert err([1]).code == "SerializationException"


def test_item_size_limit():
    validate_item({"pk": {"S": "x" * 1000}})
    with pytest.raises(AWSError) as e:
        validate_item({"pk": {"S": "x" * (400 * 1024)}})
    assert e.value.message == "Item size has exceeded the maximum allowed size"


def test_item_size_rules():
    assert item_size({"ab": {"S": "héllo"}}) == 2 + 6
    assert item_size({"a": {"BOOL": True}, "b": {"NULL": True}}) == 4
    assert item_size({"b": {"B": base64.b64encode(b"12345").decode()}}) == 1 + 5
    # map: 3 overhead + per element (name + value + 1)
    assert item_size({"m": {"M": {"x": {"S": "yz"}}}}) == 1 + 3 + (1 + 2 + 1)
    assert item_size({"l": {"L": [{"S": "a"}, {"S": "bc"}]}}) == 1 + 3 + (1 + 1) + (2 + 1)
    assert item_size({"n": {"N": "12345"}}) == 1 + 4
    assert item_size({"n": {"N": "1.50"}}) == item_size({"n": {"N": "1.5"}})
    assert item_size({"s": {"SS": ["ab", "c"]}}) == 1 + 3


@pytest.mark.parametrize(
    "text,canonical",
    [
        ("1.50", "1.5"),
        ("1E+2", "100"),
        ("1e2", "100"),
        ("-0", "0"),
        ("0.000", "0"),
        ("-1.2300e5", "-123000"),
        ("007", "7"),
        ("1.5E-3", "0.0015"),
        ("+5", "5"),
    ],
)
def test_normalize_number(text, canonical):
    assert normalize_number(text) == canonical


def test_canonical_item_normalizes_nested_numbers():
    item = {"a": {"N": "1.0"}, "m": {"M": {"x": {"L": [{"N": "2e1"}, {"NS": ["3.00"]}]}}}, "s": {"S": "1.0"}}
    assert canonical_item(item) == {
        "a": {"N": "1"},
        "m": {"M": {"x": {"L": [{"N": "20"}, {"NS": ["3"]}]}}},
        "s": {"S": "1.0"},
    }


def test_compare_and_equals():
    assert compare({"N": "10"}, {"N": "9"}) == 1
    assert compare({"N": "-1"}, {"N": "1e-5"}) == -1
    assert compare({"S": "a"}, {"S": "b"}) == -1
    assert compare({"S": "é"}, {"S": "z"}) == 1  # bytewise UTF-8
    assert compare({"B": "/w=="}, {"B": "AA=="}) == 1  # 0xff > 0x00
    assert compare({"S": "1"}, {"N": "1"}) is None
    assert compare({"SS": ["a"]}, {"SS": ["a"]}) is None
    assert equals({"N": "1.0"}, {"N": "1"})
    assert equals({"SS": ["a", "b"]}, {"SS": ["b", "a"]})
    assert equals({"NS": ["1", "2.0"]}, {"NS": ["2", "1"]})
    assert not equals({"NS": ["1"]}, {"NS": ["1", "2"]})
    assert equals({"M": {"a": {"L": [{"N": "1"}]}}}, {"M": {"a": {"L": [{"N": "1.00"}]}}})
    assert not equals({"L": [{"N": "1"}, {"N": "2"}]}, {"L": [{"N": "2"}, {"N": "1"}]})
    assert not equals({"S": "1"}, {"N": "1"})
    assert not equals(None, {"S": "x"})


numbers = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: d.is_zero() or (-130 <= d.adjusted() <= 125 and len(d.normalize(Context(prec=100)).as_tuple().digits) <= 38)
)


@given(numbers)
def test_normalize_is_idempotent_and_exact(d):
    text = str(d)
    n = normalize_number(text)
    assert normalize_number(n) == n
    assert Decimal(n) == d
    assert "E" not in n and "e" not in n
    validate_attribute_value({"N": n}, "a")


@given(numbers, numbers)
def test_normalize_preserves_order(a, b):
    na, nb = normalize_number(str(a)), normalize_number(str(b))
    expected = (a > b) - (a < b)
    assert compare({"N": na}, {"N": nb}) == expected
    assert compare({"N": str(a)}, {"N": str(b)}) == expected
    assert equals({"N": na}, {"N": str(b)}) == (a == b)


@given(numbers, st.sampled_from(["{}", " {} ", "+{}"]), st.booleans())
def test_number_size_by_string_matches_decimal_definition(d, shape, as_exponent):
    from dynavault.dynamodb.values import _num_size

    text = shape.format(f"{d:E}" if as_exponent else str(d))
    if text.strip().startswith("+-"):
        text = text.replace("+-", "-")
    assert _num_size(text) == _num_size_decimal(text)
    assert _num_size(normalize_number(str(d))) == _num_size_decimal(str(d))


def _plain_value_size(value: dict) -> int:
    """DynamoDB's size rules written the obvious way (the reference for the inlined ``item_size``)."""
    (t, v), = value.items()
    utf8 = lambda s: len(s.encode("utf-8"))  # noqa: E731
    return {
        "S": lambda: utf8(v),
        "N": lambda: _num_size_decimal(v),
        "B": lambda: len(base64.b64decode(v)),
        "BOOL": lambda: 1,
        "NULL": lambda: 1,
        "SS": lambda: sum(map(utf8, v)),
        "NS": lambda: sum(map(_num_size_decimal, v)),
        "BS": lambda: sum(len(base64.b64decode(x)) for x in v),
        "M": lambda: 3 + sum(utf8(k) + _plain_value_size(x) + 1 for k, x in v.items()),
        "L": lambda: 3 + sum(_plain_value_size(x) + 1 for x in v),
    }[t]()


_texts = st.text(max_size=12)
_scalars = st.one_of(
    _texts.map(lambda s: {"S": s}),
    numbers.map(lambda d: {"N": str(d)}),
    st.binary(max_size=8).map(lambda b: {"B": base64.b64encode(b).decode()}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.sets(_texts, min_size=1, max_size=3).map(lambda s: {"SS": sorted(s)}),
    st.sets(numbers, min_size=1, max_size=3).map(lambda s: {"NS": [str(d) for d in s]}),
    st.sets(st.binary(max_size=4), min_size=1, max_size=3).map(
        lambda s: {"BS": [base64.b64encode(b).decode() for b in s]}
    ),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.dictionaries(_texts, inner, max_size=3).map(lambda m: {"M": m}),
        st.lists(inner, max_size=3).map(lambda items: {"L": items}),
    ),
    max_leaves=8,
)


@given(st.dictionaries(_texts.filter(bool), _values, max_size=5))
def test_item_size_matches_the_plain_definition(item):
    assert item_size(item) == sum(len(name.encode("utf-8")) + _plain_value_size(v) for name, v in item.items())


def _validate_item_by_parts(item) -> int:
    """validate_item's definition: every attribute checked in order, then the size and its limit."""
    for name, value in item.items():
        if not name:
            raise validation(MSG_EMPTY_NAME)
        validate_attribute_value(value, name)
    size = item_size(item)
    if size > MAX_ITEM_SIZE:
        raise validation(MSG_ITEM_SIZE)
    return size


_odd_values = st.one_of(
    _values,
    st.sampled_from([{"S": 1}, {"S": None}, {"N": "x1"}, {"N": 5}, {"N": "1e999"}, {"S": "a", "N": "1"},
                     {"N": "1", "Q": 2}, {"S": "a", "Q": 2}, {}, {"Q": "a"}, [], "s", None, {"S": ["a"]}]),
)


@given(st.dictionaries(_texts, _odd_values, max_size=5))
def test_validate_item_answers_as_its_definition(item):
    def outcome(fn):
        try:
            return "ok", fn(item)
        except AWSError as e:
            return "error", e.code, e.message

    assert outcome(validate_item) == outcome(_validate_item_by_parts)
