"""Primary keys: extraction and validation with DynamoDB's messages, and their storage encoding."""

from __future__ import annotations

from dynavault.errors import AWSError, validation

from .catalog import TableMeta
from .keyorder import encode_key_value
from .numbers import normalize_number
from .values import decode_binary, validate_attribute_value

_INVALID = "One or more parameter values were invalid: "
MAX_HASH_BYTES = 2048
MAX_RANGE_BYTES = 1024
MSG_KEY_SCHEMA = "The provided key element does not match the schema"


class KeySchemaMismatch(AWSError):
    """A key that does not fit the table's key schema (an attribute missing, extra or of another type).
    Alone it is a ValidationException; inside a transaction DynamoDB reports it as the action's
    ``ValidationError`` cancellation reason, unlike the value checks (empty or oversized key values)."""

    def __init__(self, message: str) -> None:
        super().__init__("ValidationException", message)


def _scalar(type_: str, value: dict) -> str | bytes:
    raw = value[type_]
    if type_ == "B":
        return decode_binary(raw)
    if type_ == "N":
        return normalize_number(raw)
    return raw


def _check_key_value(name: str, expected: str, value: dict, *, is_hash: bool, from_item: bool) -> str | bytes:
    if expected == "S" and type(value) is dict and len(value) == 1:
        # The common case, a plain string key of fitting size, accepted without the general checks (which
        # give the same answer for it); anything else takes them.
        s = value.get("S")
        if type(s) is str and s and s.isascii() and len(s) <= (MAX_HASH_BYTES if is_hash else MAX_RANGE_BYTES):
            return s
    validate_attribute_value(value, name)
    actual = next(iter(value))
    if actual != expected:
        if from_item:
            raise KeySchemaMismatch(f"{_INVALID}Type mismatch for key {name} expected: {expected} actual: {actual}")
        raise KeySchemaMismatch(MSG_KEY_SCHEMA)
    scalar = _scalar(expected, value)
    if expected in ("S", "B") and len(scalar) == 0:
        kind = "string" if expected == "S" else "binary"
        raise validation("One or more parameter values are not valid. The AttributeValue for a key attribute cannot "
                         f"contain an empty {kind} value. Key: {name}")
    size = len(scalar.encode()) if isinstance(scalar, str) and expected == "S" else len(scalar)
    if is_hash and size > MAX_HASH_BYTES:
        raise validation(f"{_INVALID}Size of hashkey has exceeded the maximum size limit of2048 bytes")
    if not is_hash and size > MAX_RANGE_BYTES:
        raise validation(f"{_INVALID}Aggregated size of all range keys has exceeded the size limit of 1024 bytes")
    return scalar


def key_of_item(meta: TableMeta, item: dict) -> tuple[bytes, bytes, dict]:
    """(hash key bytes, sort key bytes, key dict) for an item being written."""
    hv = item.get(meta.hash_key)
    if hv is None:
        raise KeySchemaMismatch(f"{_INVALID}Missing the key {meta.hash_key} in the item")
    h = _check_key_value(meta.hash_key, meta.hash_type, hv, is_hash=True, from_item=True)
    key = {meta.hash_key: hv}
    sort = b""
    if meta.range_key:
        rv = item.get(meta.range_key)
        if rv is None:
            raise KeySchemaMismatch(f"{_INVALID}Missing the key {meta.range_key} in the item")
        r = _check_key_value(meta.range_key, meta.range_type, rv, is_hash=False, from_item=True)
        key[meta.range_key] = rv
        sort = encode_key_value(meta.range_type, r)
    return encode_key_value(meta.hash_type, h), sort, key


def partition_key_bytes(meta: TableMeta, value: dict) -> bytes:
    """A lone partition key value (a read pinned to one partition), checked as a request's key."""
    return encode_key_value(meta.hash_type,
                            _check_key_value(meta.hash_key, meta.hash_type, value, is_hash=True, from_item=False))


def key_of_request(meta: TableMeta, key: dict) -> tuple[bytes, bytes, dict]:
    """The same for a Key parameter: exactly the key attributes, no others."""
    if not isinstance(key, dict) or set(key) != meta.key_names:
        raise KeySchemaMismatch(MSG_KEY_SCHEMA)
    h = _check_key_value(meta.hash_key, meta.hash_type, key[meta.hash_key], is_hash=True, from_item=False)
    sort = b""
    if meta.range_key:
        r = _check_key_value(meta.range_key, meta.range_type, key[meta.range_key], is_hash=False, from_item=False)
        sort = encode_key_value(meta.range_type, r)
    return encode_key_value(meta.hash_type, h), sort, key
