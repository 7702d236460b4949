"""keyorder: bytewise order of encodings == DynamoDB order; round trips; number validation."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynavault.dynamodb.keyorder import (
    decode_key_tuple,
    encode_key_tuple,
    encode_key_value,
    prefix_range,
)
from dynavault.dynamodb.numbers import normalize_number as canonical_number
from dynavault.errors import AWSError

SETTINGS = settings(max_examples=300, deadline=None)


@st.composite
def numbers(draw) -> str:
    """A valid DynamoDB number in a random textual form (plain or exponent, padded zeros, signs)."""
    if draw(st.integers(0, 20)) == 0:
        return draw(st.sampled_from(["0", "-0", "0.000", "0E+5", "+0"]))
    ndig = draw(st.integers(1, 38))
    mant = draw(st.integers(10 ** (ndig - 1), 10**ndig - 1))
    # value = mant × 10^exp with its leading digit at 10^(exp + ndig - 1) in [-130, 125]
    exp = draw(st.integers(-130 - (ndig - 1), 125 - (ndig - 1)))
    neg = draw(st.booleans())
    style = draw(st.sampled_from(["e", "plain", "padded"]))
    digits = str(mant)
    if style == "e":
        text = f"{digits}E{exp:+d}"
    else:
        d = Decimal((0, tuple(map(int, digits)), exp))  # exact: scaleb() would round to 28 digits
        text = format(d, "f")
        if style == "padded" and "." in text:
            text = "00" + text + "000"
        elif style == "padded":
            text = text + ".000"
    return ("-" if neg else draw(st.sampled_from(["", "+"]))) + text


def _dec(text: str) -> Decimal:
    return Decimal(text)


@SETTINGS
@given(numbers(), numbers())
def test_number_order_matches_decimal(a: str, b: str) -> None:
    ea, eb = encode_key_value("N", a), encode_key_value("N", b)
    da, db = _dec(a), _dec(b)
    assert (ea < eb) == (da < db)
    assert (ea == eb) == (da == db)


@SETTINGS
@given(numbers())
def test_number_round_trip_is_canonical(a: str) -> None:
    enc = encode_key_value("N", a)
    [(t, back)] = decode_key_tuple(enc)
    assert t == "N"
    assert Decimal(back) == Decimal(a)
    assert back == canonical_number(a)
    assert "E" not in back and "e" not in back
    if "." in back:
        assert not back.endswith("0") and not back.endswith(".")
    assert encode_key_value("N", back) == enc


def test_equal_numbers_encode_equal() -> None:
    forms = ["1", "1.0", "10E-1", "0.1e1", "+1.000", "001"]
    encs = {encode_key_value("N", f) for f in forms}
    assert len(encs) == 1
    assert encode_key_value("N", "-0") == encode_key_value("N", "0")
    assert canonical_number("1.50") == "1.5"
    assert canonical_number("1E+2") == "100"
    assert canonical_number("-0.0") == "0"


def test_number_extremes_order() -> None:
    seq = [
        "-9.9999999999999999999999999999999999999E+125",
        "-1E+125",
        "-1",
        "-1E-130",
        "0",
        "1E-130",
        "1.1E-130",
        "0.5",
        "1",
        "1." + "0" * 36 + "1",  # 38 significant digits
        "2",
        "10",
        "1E+125",
        "9.9999999999999999999999999999999999999E+125",
    ]
    encs = [encode_key_value("N", s) for s in seq]
    assert encs == sorted(encs)
    assert len(set(encs)) == len(encs)


@pytest.mark.parametrize(
    "text,message",
    [
        ("abc", "The parameter cannot be converted to a numeric value: abc"),
        ("NaN", "The parameter cannot be converted to a numeric value: NaN"),
        ("1_000", "The parameter cannot be converted to a numeric value: 1_000"),
        ("1E+126", "Number overflow. Attempting to store a number with magnitude larger than supported range"),
        ("-1E-131", "Number underflow. Attempting to store a number with magnitude smaller than supported range"),
        ("1.234567890123456789012345678901234567891", "Attempting to store more than 38 significant digits in a Number"),
    ],
)
def test_invalid_numbers(text: str, message: str) -> None:
    with pytest.raises(AWSError) as ei:
        encode_key_value("N", text)
    assert ei.value.code == "ValidationException"
    assert ei.value.message == message


TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
BIN = st.binary(max_size=12) | st.lists(st.sampled_from([b"\x00", b"\xff", b"\x01", b"a"]), max_size=6).map(b"".join)


@SETTINGS
@given(TEXT, TEXT)
def test_string_order_is_utf8_bytewise(a: str, b: str) -> None:
    ea, eb = encode_key_value("S", a), encode_key_value("S", b)
    assert (ea < eb) == (a.encode() < b.encode())
    assert (ea == eb) == (a == b)


@SETTINGS
@given(BIN, BIN)
def test_binary_order_is_bytewise(a: bytes, b: bytes) -> None:
    ea, eb = encode_key_value("B", a), encode_key_value("B", b)
    assert (ea < eb) == (a < b)
    assert decode_key_tuple(ea) == [("B", a)]


def _value(t: str):
    return {"S": TEXT, "B": BIN, "N": numbers()}[t]


def _model(t: str, v):
    return {"S": lambda x: x.encode(), "B": lambda x: x, "N": Decimal}[t](v)


@st.composite
def tuple_pairs(draw):
    schema = draw(st.lists(st.sampled_from("SNB"), min_size=1, max_size=4))
    a = [(t, draw(_value(t))) for t in schema]
    b = [(t, draw(_value(t))) for t in schema]
    # share a prefix often, so later elements decide the comparison
    cut = draw(st.integers(0, len(schema)))
    b[:cut] = a[:cut]
    return a, b


@SETTINGS
@given(tuple_pairs())
def test_tuples_compare_lexicographically_and_round_trip(pair) -> None:
    a, b = pair
    ea, eb = encode_key_tuple(a), encode_key_tuple(b)
    ma = [_model(t, v) for t, v in a]
    mb = [_model(t, v) for t, v in b]
    assert (ea < eb) == (ma < mb)
    assert (ea == eb) == (ma == mb)
    back = decode_key_tuple(ea)
    assert [t for t, _ in back] == [t for t, _ in a]
    assert [_model(t, v) for t, v in back] == ma


@SETTINGS
@given(st.sampled_from("SB"), st.data())
def test_prefix_range_covers_exactly_the_prefixed_values(t: str, data) -> None:
    gen = TEXT if t == "S" else BIN
    head = encode_key_value("N", data.draw(numbers()))
    prefix = data.draw(gen)
    other = data.draw(gen)
    value = other if data.draw(st.booleans()) else prefix + other
    lo, hi = prefix_range(t, prefix, head)
    enc = head + encode_key_value(t, value)
    inside = lo <= enc and (hi is None or enc < hi)
    assert inside == _model(t, value).startswith(_model(t, prefix))


NUMBERISH = st.text(st.sampled_from("0123456789.eE+- ٠١"), max_size=14) | st.builds(
    lambda d, e: d + e, st.text(st.sampled_from("0123456789."), min_size=1, max_size=60),
    st.sampled_from(["", "e5", "E-140", "e+126", "e" + "9" * 30, "E-" + "0" * 12 + "7"]),
)


@SETTINGS
@given(NUMBERISH)
def test_key_encoding_and_value_validation_accept_the_same_numbers(text: str) -> None:
    # One parser: an N key value is encodable exactly when it is a valid attribute value, and a refused
    # one gets the same ValidationException text from both.
    from dynavault.dynamodb.values import validate_attribute_value

    def outcome(f):
        try:
            f()
        except AWSError as e:
            return e.message
        return None

    from_values = outcome(lambda: validate_attribute_value({"N": text}, "n"))
    from_keys = outcome(lambda: encode_key_value("N", text))
    assert from_keys == from_values
    if from_keys is None:
        assert decode_key_tuple(encode_key_value("N", text)) == [("N", canonical_number(text))]


def test_unicode_digits_encode_as_the_digits_they_stand_for() -> None:
    # The grammar admits any Unicode decimal digit (as Decimal does); "٠" (Arabic-Indic zero) is a zero.
    assert encode_key_value("N", "١٢") == encode_key_value("N", "12")
    assert encode_key_value("N", "٠" * 40 + "١") == encode_key_value("N", "1")
    assert encode_key_value("N", "-١.٥٠") == encode_key_value("N", "-1.5")
