"""The texts of request-shape errors as AWS's JSON front end (Coral) writes them: the SerializationException
and ValidationException messages, Java's rendering of a value inside ``Value '...'``, and the list a request's
violations (and the members it sent as JSON null) are collected in. See ``shapes.py`` for the rules."""

from __future__ import annotations

from typing import Any

from dynavault.errors import AWSError

from .java_rules import num_str

SER_PREFIX = "com.amazon.coral.service#"
VAL_PREFIX = "com.amazon.coral.validate#"

LEN_GE = "Member must have length greater than or equal to "
LEN_LE = "Member must have length less than or equal to "
START_OBJ = "Start of structure or map found where not expected"
FIELD_TYPE = "Unexpected field type"
VALUE_TYPE = "Unexpected value type in payload"
# What Coral says when a list or map sits where a nested generic collection was expected.
CAST_MSG = (
    "class sun.reflect.generics.reflectiveObjects.ParameterizedTypeImpl cannot be cast to class "
    "java.lang.Class (sun.reflect.generics.reflectiveObjects.ParameterizedTypeImpl and java.lang.Class "
    "are in module java.base of loader 'bootstrap')"
)


def serialization_error(message: str) -> AWSError:
    return AWSError("SerializationException", message, 400, type_prefix=SER_PREFIX)



def render(v: Any) -> str:
    """Java toString() of a deserialized value, as it appears inside ``Value '...'``."""
    if isinstance(v, str):
        return v
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int | float):
        return num_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(render(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={render(x)}" for k, x in v.items()) + "}"
    return str(v)


def violation(value: Any, path: str, constraint: str, sensitive: bool = False) -> str:
    if value is None:
        shown = "null"
    elif sensitive:  # AWS omits secrets from the message: "Value at 'x' failed ..."
        return f"Value at '{path}' failed to satisfy constraint: {constraint}"
    else:
        shown = "'" + render(value) + "'"
    return f"Value {shown} at '{path}' failed to satisfy constraint: {constraint}"


class Violations(list):
    """The violations of one request, and where it sent a member as JSON null: ``nulls`` maps the id of each
    structure (a dict in the request) to the names of its members that were null."""

    __slots__ = ("nulls",)

    def __init__(self) -> None:
        super().__init__()
        self.nulls: dict[int, set[str]] = {}


def note_null(errs: list[str], v: dict, k: str) -> None:
    nulls = getattr(errs, "nulls", None)
    if nulls is not None:
        nulls.setdefault(id(v), set()).add(k)


def without_nulls(value: Any, nulls: dict[int, set[str]]) -> Any:
    """A copy of ``value`` without the members ``nulls`` names (only made when a request has some)."""
    if type(value) is dict:
        gone = nulls.get(id(value), ())
        return {k: without_nulls(x, nulls) for k, x in value.items() if k not in gone}
    if type(value) is list:
        return [without_nulls(x, nulls) for x in value]
    return value



def scalar_mismatch(v: Any, java_simple: str, java_class: str) -> str:
    """SerializationException text when a JSON value cannot become the expected scalar."""
    if v is True:
        return f"TRUE_VALUE cannot be converted to {java_simple}"
    if v is False:
        return f"FALSE_VALUE cannot be converted to {java_simple}"
    if type(v) is int:
        return f"NUMBER_VALUE cannot be converted to {java_simple}"
    if type(v) is float:
        return f"DECIMAL_VALUE cannot be converted to {java_simple}"
    if type(v) is str:
        return f"STRING_VALUE cannot be converted to {java_simple}"
    if type(v) is list:
        return f"Unrecognized collection type {java_class}"
    return START_OBJ
