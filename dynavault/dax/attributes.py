"""Attribute values and keys between DAX's CBOR forms and DynamoDB's wire JSON (what the engine takes).

DynamoDB JSON keeps numbers as text and binaries as base64 text, exactly as the HTTP API hands them to the
operations, so a value from DAX is validated by the same code as one from HTTP.
"""

from __future__ import annotations

import base64
from decimal import Decimal

import cbor2

from dynavault.errors import AWSError

from . import lexdecimal
from .cbor_stream import CborStreamError, StreamDecoder, loads_one, split_first

TAG_STRING_SET = 3321
TAG_NUMBER_SET = 3322
TAG_BINARY_SET = 3323
TAG_PATH_ORDINAL = 3324
_SET_TAGS = {TAG_STRING_SET: "SS", TAG_NUMBER_SET: "NS", TAG_BINARY_SET: "BS"}
_SET_TYPES = {v: k for k, v in _SET_TAGS.items()}


def bad(message: str) -> AWSError:
    return AWSError("ValidationException", message)


def number_text(value) -> str:
    if isinstance(value, bool):
        raise bad("a number was expected")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise bad("numbers must be finite")
        return str(value)
    if isinstance(value, float):
        return number_text(Decimal(repr(value)))
    raise bad("a number was expected")


def to_av(value) -> dict:
    """A decoded CBOR value -> a DynamoDB attribute value ({"S": ...} ...)."""
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bool):
        return {"BOOL": value}
    if value is None:
        return {"NULL": True}
    if isinstance(value, (int, Decimal, float)):
        return {"N": number_text(value)}
    if isinstance(value, (bytes, bytearray)):
        return {"B": base64.b64encode(value).decode()}
    if isinstance(value, (list, tuple)):
        return {"L": [to_av(v) for v in value]}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise bad("map attribute names must be strings")
            out[k] = to_av(v)
        return {"M": out}
    if isinstance(value, cbor2.CBORTag) and value.tag in _SET_TAGS and isinstance(value.value, (list, tuple)):
        kind = _SET_TAGS[value.tag]
        members = value.value
        if kind == "SS" and all(isinstance(m, str) for m in members):
            return {"SS": list(members)}
        if kind == "NS":
            return {"NS": [number_text(m) for m in members]}
        if kind == "BS" and all(isinstance(m, (bytes, bytearray)) for m in members):
            return {"BS": [base64.b64encode(m).decode() for m in members]}
    raise bad("Supplied AttributeValue has an unsupported type")


def number_value(text: str):
    """DynamoDB number text -> an int (whole numbers without exponent) or a Decimal (CBOR tag 4)."""
    if "." not in text and "e" not in text and "E" not in text:
        return int(text)
    return Decimal(text)


def from_av(av: dict):
    """A DynamoDB attribute value -> the Python value cbor2 encodes as DAX sends it."""
    for kind, v in av.items():
        return _FROM[kind](v)
    raise ValueError("empty attribute value")


_FROM = {
    "S": lambda v: v,
    "N": number_value,
    "B": base64.b64decode,
    "BOOL": bool,
    "NULL": lambda v: None,
    "L": lambda v: [from_av(x) for x in v],
    "M": lambda v: {k: from_av(x) for k, x in v.items()},
    "SS": lambda v: cbor2.CBORTag(TAG_STRING_SET, list(v)),
    "NS": lambda v: cbor2.CBORTag(TAG_NUMBER_SET, [number_value(x) for x in v]),
    "BS": lambda v: cbor2.CBORTag(TAG_BINARY_SET, [base64.b64decode(x) for x in v]),
}


#: key schema: [(attribute name, "S" | "N" | "B")], the hash key first
KeySchema = list[tuple[str, str]]


def _scalar_av(value, kind: str) -> dict:
    if kind == "S" and isinstance(value, str):
        return {"S": value}
    if kind == "N" and isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return {"N": number_text(value)}
    if kind == "B" and isinstance(value, (bytes, bytearray)):
        return {"B": base64.b64encode(value).decode()}
    raise bad("The provided key element does not match the schema")


def decode_key(data, schema: KeySchema) -> dict:
    """Key bytes (as a client encodes them for a table's key schema) -> a DynamoDB key."""
    if not isinstance(data, (bytes, bytearray)):
        raise bad("The provided key element does not match the schema")
    data = bytes(data)
    (hname, htype) = schema[0]
    try:
        if len(schema) == 1:
            if htype == "S":
                return {hname: {"S": data.decode("utf-8")}}
            if htype == "B":
                return {hname: {"B": base64.b64encode(data).decode()}}
            return {hname: _scalar_av(loads_one(data), "N")}
        hash_value, rest = split_first(data)
        (rname, rtype) = schema[1]
        if rtype == "S":
            range_av = {"S": rest.decode("utf-8")}
        elif rtype == "B":
            range_av = {"B": base64.b64encode(rest).decode()}
        else:
            range_av = {"N": lexdecimal.decode(rest)}
        return {hname: _scalar_av(hash_value, htype), rname: range_av}
    except (CborStreamError, UnicodeDecodeError, ValueError):
        raise bad("The provided key element does not match the schema") from None


def encode_key(item: dict, schema: KeySchema) -> bytes:
    """A DynamoDB item's (or key's) key attributes -> key bytes, as the clients encode them."""
    (hname, htype) = schema[0]
    hv = from_av(item[hname])
    if len(schema) == 1:
        if htype == "S":
            return hv.encode("utf-8")
        if htype == "B":
            return hv
        return cbor2.dumps(hv)
    (rname, rtype) = schema[1]
    rv = item[rname][rtype]
    if rtype == "S":
        tail = rv.encode("utf-8")
    elif rtype == "B":
        tail = base64.b64decode(rv)
    else:
        tail = lexdecimal.encode(rv)
    return cbor2.dumps(hv) + tail


def encode_values(attr_list_id: int, names: list[str], item: dict) -> bytes:
    """A stream item: the attribute-list id, then each attribute's value in the list's order (no array around
    them: one array is encoded and its header dropped, one encoder call instead of one per value)."""
    data = cbor2.dumps([attr_list_id, *(from_av(item[n]) for n in names)])
    return data[_HEADER_BYTES[data[0] & 0x1F]:]


#: length of an array header by its additional-information bits
_HEADER_BYTES = {**{i: 1 for i in range(24)}, 24: 2, 25: 3, 26: 5, 27: 9}


def decode_values(data: bytes) -> tuple[int, list]:
    """(attribute-list id, decoded values) of a stream item a client sent."""
    if not isinstance(data, (bytes, bytearray)):
        raise bad("item values must be a byte string")
    decoder = StreamDecoder(max_value_bytes=len(data) + 1)
    decoder.feed(bytes(data))
    values = []
    try:
        while True:
            value = decoder.next()
            if value is StreamDecoder.NEED_MORE:
                break
            values.append(value)
    except CborStreamError:
        raise bad("malformed item values") from None
    if decoder.buffered() or not values:
        raise bad("malformed item values")
    list_id = values.pop(0)
    if not isinstance(list_id, int) or isinstance(list_id, bool):
        raise bad("malformed item values")
    return list_id, values
