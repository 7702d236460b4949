"""DynamoDB attribute values in wire form: validation, number canonicalization, ordering, equality, sizes.

Values stay exactly as on the wire (``{"S": "x"}``, ``{"N": "1.5"}``, ``{"B": "<base64>"}`` ...) so items can be
serialized again without re-encoding; numbers stay strings and are only turned into ``Decimal`` to compare or
to compute. Error texts are DynamoDB's own (including its typos and double spaces), because clients match them.
"""

from __future__ import annotations

import base64
import binascii
from decimal import Decimal
from typing import Any

from dynavault.errors import AWSError, validation

from .numbers import EXACT_CTX, normalize_number, number_parts, to_decimal

TYPES = frozenset({"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"})
SCALAR_ORDERED = frozenset({"S", "N", "B"})

MAX_ITEM_SIZE = 400 * 1024
# A value holds at most 32 levels counting the attribute itself (31 maps or lists around a scalar).
MAX_NESTING = 32

MSG_EMPTY = "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"
MSG_MULTI = (
    "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes"
)
MSG_NULL = "One or more parameter values were invalid: Null attribute value types must have the value of true"
MSG_EMPTY_SS = "One or more parameter values were invalid: An string set  may not be empty"
MSG_EMPTY_NS = "One or more parameter values were invalid: An number set  may not be empty"
MSG_EMPTY_BS = "One or more parameter values were invalid: Binary sets should not be empty"
MSG_ITEM_SIZE = "Item size has exceeded the maximum allowed size"
MSG_NESTING = (
    "Nesting Levels have exceeded supported limits: Attributes in the item have nested levels beyond supported limit"
)
MSG_EMPTY_NAME = "One or more parameter values were invalid: Empty attribute name"


def _serialization(message: str) -> AWSError:
    # Wrong JSON shapes are rejected by DynamoDB's front end before validation.
    return AWSError("SerializationException", message, type_prefix="com.amazon.coral.service#")


def _type_of(value: Any) -> str:
    """The one type key of a wire value, or raise DynamoDB's empty / more-than-one error."""
    if not isinstance(value, dict):
        if isinstance(value, list):
            raise _serialization("Start of list found where not expected")
        raise _serialization("Start of structure or map found where not expected.")
    found = None
    for key in value:
        if key in TYPES:
            if found is not None:
                raise validation(MSG_MULTI)
            found = key
    if found is None:
        raise validation(MSG_EMPTY)
    return found


def parse_number(text: Any) -> Decimal:
    """Parse and range-check a DynamoDB number string; raise DynamoDB's messages."""
    if not isinstance(text, str):
        raise _serialization(f"class {_java_class(text)} can not be converted to an String")
    # number_parts decides everything on the string, so Decimal() only ever sees a valid nonzero number.
    if number_parts(text)[0] == 0:
        return Decimal(0)
    return Decimal(text.strip())


def _java_class(value: Any) -> str:
    if isinstance(value, bool):
        return "java.lang.Boolean"
    if isinstance(value, int):
        return "java.lang.Integer"
    if isinstance(value, float):
        return "java.lang.Double"
    return "java.lang.Object"


def decode_binary(text: Any) -> bytes:
    """Decode a wire B value (base64), with DynamoDB's SerializationException texts."""
    if not isinstance(text, str):
        if isinstance(text, list):
            raise _serialization("Start of list found where not expected")
        if isinstance(text, dict):
            raise _serialization("Start of structure or map found where not expected.")
        raise _serialization(f"class {_java_class(text)} can not be converted to a Blob")
    if len(text) % 4:
        raise _serialization(
            f"'{text}' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 "
            f"bytes but found: {len(text)}"
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        bad = next((c for c in text if not (c.isascii() and (c.isalnum() or c in "+/="))), "=")
        raise _serialization(f"'{text}' can not be converted to a Blob: Invalid Base64 character: '{bad}'") from None


def _fmt_collection(items: list) -> str:
    return "[" + ", ".join(str(x) for x in items) + "]"


def validate_attribute_value(value: Any, path: str = "", depth: int = 1) -> None:
    """Raise DynamoDB's error for an invalid wire value; ``path`` names where it sits (for nested context).

    ``depth`` is the value's nesting level (the attribute itself is 1); deeper than MAX_NESTING is refused
    before descending, so hostile nesting costs bounded recursion."""
    t = _type_of(value)
    v = value[t]
    if t == "S":
        if not isinstance(v, str):
            raise _serialization(f"class {_java_class(v)} can not be converted to an String")
    elif t == "N":
        parse_number(v)
    elif t == "B":
        decode_binary(v)
    elif t == "BOOL":
        if not isinstance(v, bool):
            raise _serialization(f"'{str(v).upper()}' can not be converted to an Boolean")
    elif t == "NULL":
        if v is not True:
            raise validation(MSG_NULL)
    elif t == "M":
        if not isinstance(v, dict):
            raise _serialization("Expected map or null")
        if v and depth >= MAX_NESTING:
            raise validation(MSG_NESTING)
        for name, child in v.items():
            validate_attribute_value(child, f"{path}.{name}" if path else name, depth + 1)
    elif t == "L":
        if not isinstance(v, list):
            raise _serialization("Expected list or null")
        if v and depth >= MAX_NESTING:
            raise validation(MSG_NESTING)
        for i, child in enumerate(v):
            validate_attribute_value(child, f"{path}[{i}]", depth + 1)
    else:
        _validate_set(t, v)


def _validate_set(t: str, members: Any) -> None:
    if not isinstance(members, list):
        raise _serialization("Expected list or null")
    if not members:
        raise validation({"SS": MSG_EMPTY_SS, "NS": MSG_EMPTY_NS, "BS": MSG_EMPTY_BS}[t])
    if t == "SS":
        for m in members:
            if not isinstance(m, str):
                raise _serialization(f"class {_java_class(m)} can not be converted to an String")
        if len(set(members)) != len(members):
            raise validation(
                f"One or more parameter values were invalid: Input collection {_fmt_collection(members)} "
                "contains duplicates."
            )
    elif t == "NS":
        seen = set()
        for m in members:
            num = parse_number(m)
            if num in seen:
                raise validation("Input collection contains duplicates")
            seen.add(num)
    else:
        decoded = [decode_binary(m) for m in members]
        if len(set(decoded)) != len(decoded):
            # DynamoDB really omits the space before "of type BS".
            raise validation(
                f"One or more parameter values were invalid: Input collection {_fmt_collection(members)}"
                "of type BS contains duplicates."
            )


def validate_item(item: dict) -> int:
    """Validate every attribute of an item and its 400 KB size limit; -> its size (``item_size``: the same
    for the item as sent and its canonical form, whose numbers keep their significant digits)."""
    if not isinstance(item, dict):
        raise _serialization("Start of list found where not expected")
    size = 0
    for name, value in item.items():
        if not name:
            raise validation(MSG_EMPTY_NAME)
        size += _utf8_len(name)
        # a lone S or N string (most attributes) is checked and counted here, as the general path would
        if type(value) is dict and len(value) == 1:
            text = value.get("S")
            if type(text) is str:
                size += _utf8_len(text)
                continue
            text = value.get("N")
            if type(text) is str:
                parse_number(text)
                size += _num_size(text)
                continue
        validate_attribute_value(value, name)
        size += value_size(value)
    if size > MAX_ITEM_SIZE:
        raise validation(MSG_ITEM_SIZE)
    return size


def canonical_value(value: dict) -> dict:
    """A wire value with every number canonical (a new dict only where something changes)."""
    for t, v in value.items():
        if t == "N":
            n = normalize_number(v)
            return value if n == v else {"N": n}
        if t == "NS":
            ns = [normalize_number(x) for x in v]
            return value if ns == v else {"NS": ns}
        if t == "M":
            return {"M": {k: canonical_value(x) for k, x in v.items()}}
        if t == "L":
            return {"L": [canonical_value(x) for x in v]}
        return value
    return value


def canonical_item(item: dict) -> dict:
    """The item as DynamoDB stores and returns it: numbers normalized everywhere."""
    return {k: v if "S" in v and len(v) == 1 else canonical_value(v) for k, v in item.items()}


def _num_size(text: str) -> int:
    """~1 byte per two significant digits plus one, per the DynamoDB developer guide.

    Counted on the string (no Decimal: this runs for every number of every item read or written); valid
    numbers have at most 38 significant digits, so nothing is rounded away first."""
    s = text.strip()
    if s[:1] in ("-", "+"):
        s = s[1:]
    e = s.find("e")
    if e < 0:
        e = s.find("E")
    if e >= 0:
        s = s[:e]
    digits = s.replace(".", "").strip("0")
    if not digits:
        return 1  # zero
    return (len(digits) + 1) // 2 + 1


def _num_size_decimal(text: str) -> int:
    """The reference definition (Decimal normalisation), kept for the property test of ``_num_size``."""
    num = Decimal(text.strip())
    if num.is_zero():
        return 1
    digits = "".join(map(str, num.normalize(EXACT_CTX).as_tuple().digits))
    return (len(digits) + 1) // 2 + 1


def value_size(value: dict) -> int:
    """Size in bytes of one wire value by DynamoDB's item-size rules."""
    for t, v in value.items():
        if t == "S":
            return _utf8_len(v)
        if t == "N":
            return _num_size(v)
        if t == "B":
            return len(base64.b64decode(v))
        if t in ("BOOL", "NULL"):
            return 1
        if t == "SS":
            return sum(map(_utf8_len, v))
        if t == "NS":
            return sum(_num_size(x) for x in v)
        if t == "BS":
            return sum(len(base64.b64decode(x)) for x in v)
        if t == "M":
            # 3 bytes for the map, 1 per element, plus each element's name and value.
            return 3 + sum(_utf8_len(k) + value_size(x) + 1 for k, x in v.items())
        if t == "L":
            return 3 + sum(value_size(x) + 1 for x in v)
    return 0


def _utf8_len(text: str) -> int:
    # isascii() reads a flag CPython keeps on every str: no copy for the common case
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def item_size(item: dict) -> int:
    """DynamoDB's item size: UTF-8 attribute names plus their values' sizes.

    Runs for every item a query, scan or write touches (limits and capacity), so the scalar types are
    counted inline; ``tests/dynamodb/test_values.py`` checks it against the plain definition."""
    total = 0
    for name, value in item.items():
        total += _utf8_len(name)
        if len(value) == 1:
            if "S" in value:
                total += _utf8_len(value["S"])
                continue
            if "N" in value:
                total += _num_size(value["N"])
                continue
        total += value_size(value)
    return total


def value_type(value: dict) -> str:
    """The type key of a (valid) wire value."""
    for t in value:
        return t
    return ""


def _binary(text: str) -> bytes:
    return base64.b64decode(text)


def compare(a: dict, b: dict) -> int | None:
    """DynamoDB ordering of two scalars of the same type: N numerically, S and B bytewise; None otherwise."""
    ta = value_type(a)
    if ta != value_type(b) or ta not in SCALAR_ORDERED:
        return None
    x, y = a[ta], b[ta]
    if ta == "N":
        dx, dy = to_decimal(x), to_decimal(y)
        return (dx > dy) - (dx < dy)
    if ta == "B":
        x, y = _binary(x), _binary(y)
    # str order by code point is the same as UTF-8 byte order.
    return (x > y) - (x < y)


def equals(a: dict | None, b: dict | None) -> bool:
    """Value equality: numbers numerically, sets order-free, maps and lists deeply."""
    if a is None or b is None:
        return False
    ta = value_type(a)
    if ta != value_type(b):
        return False
    x, y = a[ta], b[ta]
    if ta == "S" or ta == "BOOL" or ta == "NULL":
        return x == y
    if ta == "N":
        return x == y or to_decimal(x) == to_decimal(y)
    if ta == "B":
        return x == y or _binary(x) == _binary(y)
    if ta == "SS":
        return len(x) == len(y) and set(x) == set(y)
    if ta == "NS":
        return len(x) == len(y) and {to_decimal(n) for n in x} == {to_decimal(n) for n in y}
    if ta == "BS":
        return len(x) == len(y) and {_binary(n) for n in x} == {_binary(n) for n in y}
    if ta == "L":
        return len(x) == len(y) and all(equals(p, q) for p, q in zip(x, y, strict=True))
    if ta == "M":
        return x.keys() == y.keys() and all(equals(x[k], y[k]) for k in x)
    return False


def set_key(t: str, member: str) -> Any:
    """Identity of a set member for set algebra (numbers numerically, binaries by bytes)."""
    if t == "NS":
        return to_decimal(member)
    if t == "BS":
        return _binary(member)
    return member
