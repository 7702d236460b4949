"""Request shape validation from the botocore service models.

AWS's JSON front end (Coral) checks every request against the operation's input shape before any
business logic runs, in two steps that we reproduce:

1. *Deserialization*: a JSON value of the wrong kind aborts at once with a
   ``com.amazon.coral.service#SerializationException`` naming only the problem (never the member),
   for the first offending value in body order.
2. *Constraint validation*: every ``required``/``min``/``max``/``pattern``/``enum`` violation is
   collected into one ``com.amazon.coral.validate#ValidationException``:
   ``N validation errors detected: Value 'x' at 'a.b' failed to satisfy constraint: ...; ...``.

Ordering rules (reverse-engineered from recorded AWS answers, see tests/server/test_shapes.py):

* Members of a structure are reported in Java 8 ``HashMap`` iteration order of their lower-first
  names (the service validates a generated map of members), nested errors staying with their member.
* Enum value sets are printed in the order ``String.hashCode() & 31`` (later model entries first
  within a bucket); this reproduces e.g. ``[ALL_NEW, UPDATED_OLD, ALL_OLD, NONE, UPDATED_NEW]``.
* List elements are ``name.<1-based index>.member``; map values are ``name.<key>.member``.

Everything is compiled once per service into small node objects; a request only walks the nodes
for the members it actually carries.
"""

from __future__ import annotations

import binascii
import re
from datetime import UTC, datetime
from typing import Any

import botocore.loaders

from dynavault.errors import AWSError

from .java_rules import (
    enum_order,
    hashmap_order,
    java_ref,
    java_regex,
    num_str,
    utf16_len,
)
from .plain_requests import PLAIN_MEMBERS, plain_request

_SER_PREFIX = "com.amazon.coral.service#"
_VAL_PREFIX = "com.amazon.coral.validate#"
_MAX_REPORTED = 10  # AWS stops collecting after ten violations (dynalite's observation)

_LEN_GE = "Member must have length greater than or equal to "
_LEN_LE = "Member must have length less than or equal to "
_START_OBJ = "Start of structure or map found where not expected"
_FIELD_TYPE = "Unexpected field type"
_VALUE_TYPE = "Unexpected value type in payload"
# What Coral says when a list or map sits where a nested generic collection was expected.
_CAST_MSG = (
    "class sun.reflect.generics.reflectiveObjects.ParameterizedTypeImpl cannot be cast to class "
    "java.lang.Class (sun.reflect.generics.reflectiveObjects.ParameterizedTypeImpl and java.lang.Class "
    "are in module java.base of loader 'bootstrap')"
)

# Java class packages the services' generated model classes live in (shown in some type errors).
_JAVA_NS = {
    "dynamodb": "com.amazonaws.dynamodb.v20120810",
    "dynamodbstreams": "com.amazonaws.dynamodb.v20120810",
    "kms": "com.amazonaws.kms",
    "cloudtrail": "com.amazonaws.cloudtrail.v20131101",
    "dax": "com.amazonaws.dax",
}

_SERVICE_VERSIONS = {
    "dynamodb": "2012-08-10",
    "dynamodbstreams": "2012-08-10",
    "kms": "2014-11-01",
    "cloudtrail": "2013-11-01",
    "dax": "2017-04-19",
}

# DynamoDB's real table-name rule; the model's TableArn shape (1..1024, no pattern) is looser because
# it also admits ARNs. Plain names are held to this, ARNs to the model.
_TABLE_NAME_MIN, _TABLE_NAME_MAX, _TABLE_NAME_PATTERN = 3, 255, "[a-zA-Z0-9_.-]+"
# What counts as an ARN there: a DynamoDB table ARN (a sub-resource suffix is refused later, by the service,
# as DynamoDB refuses it). Anything else -- "arn:/../x", a newline, U+202E -- is a name and must be a valid one
# (an "arn:..." value past the model's 1024 characters gets the model's length error alone).
_TABLE_ARN_RE = re.compile(r"arn:aws:dynamodb:[a-z0-9-]{1,64}:[0-9]{12}:table/[a-zA-Z0-9_.-]{3,255}(?:/[!-~]*)?")

# Where the live service is stricter than today's model (observed answers, see module doc/report).
# (The table's own KeySchema is held to 2 elements by the CreateTable handler: the same shape also
# serves multi-attribute GSI keys, which may have up to 8.)
_SHAPE_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {}


def _ser(message: str) -> AWSError:
    return AWSError("SerializationException", message, 400, type_prefix=_SER_PREFIX)


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _render(v: Any) -> str:
    """Java toString() of a deserialized value, as it appears inside ``Value '...'``."""
    if isinstance(v, str):
        return v
    if isinstance(v, _Lazy):
        return str(v)
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int | float):
        return num_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_render(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={_render(x)}" for k, x in v.items()) + "}"
    return str(v)


def _render_with(node: _Node, v: Any) -> str:
    if isinstance(node, _StructNode):
        return java_ref(node.java, v)
    if isinstance(node, _ListNode) and type(v) is list:
        return "[" + ", ".join(_render_with(node.member, x) for x in v) + "]"
    if isinstance(node, _MapNode) and type(v) is dict:
        return "{" + ", ".join(f"{k}={_render_with(node.value, x)}" for k, x in v.items()) + "}"
    return _render(v)


class _Lazy:
    """A value rendered only if a violation message needs it (keeps the valid path cheap)."""

    __slots__ = ("node", "v")

    def __init__(self, node: _Node, v: Any) -> None:
        self.node, self.v = node, v

    def __str__(self) -> str:
        return _render_with(self.node, self.v)


def _violation(value: Any, path: str, constraint: str, sensitive: bool = False) -> str:
    if value is None:
        shown = "null"
    elif sensitive:  # AWS omits secrets from the message: "Value at 'x' failed ..."
        return f"Value at '{path}' failed to satisfy constraint: {constraint}"
    else:
        shown = "'" + _render(value) + "'"
    return f"Value {shown} at '{path}' failed to satisfy constraint: {constraint}"


class _Errors(list):
    """The violations of one request, and where it sent a member as JSON null: ``nulls`` maps the id of each
    structure (a dict in the request) to the names of its members that were null."""

    __slots__ = ("nulls",)

    def __init__(self) -> None:
        super().__init__()
        self.nulls: dict[int, set[str]] = {}


def _note_null(errs: list[str], v: dict, k: str) -> None:
    nulls = getattr(errs, "nulls", None)
    if nulls is not None:
        nulls.setdefault(id(v), set()).add(k)


def _without_nulls(value: Any, nulls: dict[int, set[str]]) -> Any:
    """A copy of ``value`` without the members ``nulls`` names (only made when a request has some)."""
    if type(value) is dict:
        gone = nulls.get(id(value), ())
        return {k: _without_nulls(x, nulls) for k, x in value.items() if k not in gone}
    if type(value) is list:
        return [_without_nulls(x, nulls) for x in value]
    return value


class _Node:
    """A compiled shape in one position (a structure field, or a list element / map value)."""

    __slots__ = ("pure", "sensitive")

    def __init__(self) -> None:
        self.pure = True  # no constraint anywhere below: errs and path are never touched
        self.sensitive = False

    def check(self, v: Any, path: str | None, errs: list[str]) -> None:  # pragma: no cover
        raise NotImplementedError

    def constraint_texts(self) -> list[str]:
        return []


class _StringNode(_Node):
    __slots__ = ("min", "max", "regex", "pattern", "enum", "enum_text", "table_name")

    def __init__(self, shape: dict, table_name: bool = False) -> None:
        super().__init__()
        self.min = shape.get("min")
        self.max = shape.get("max")
        self.pattern = shape.get("pattern")
        self.regex = java_regex(self.pattern) if self.pattern else None
        if self.regex is None:
            self.pattern = None
        self.enum = frozenset(shape["enum"]) if "enum" in shape else None
        self.enum_text = ", ".join(enum_order(list(shape["enum"]))) if self.enum else ""
        self.table_name = table_name
        self.sensitive = bool(shape.get("sensitive"))
        self.pure = not (self.min or self.max is not None or self.regex or self.enum or table_name)

    def check(self, v: Any, path: str | None, errs: list[str]) -> None:
        if type(v) is not str:
            raise _ser(_scalar_mismatch(v, "String", "class java.lang.String"))
        if self.pure:
            return
        if self.table_name and self._is_name(v):
            self._check_table_name(v, path, errs)
            return
        if self.regex is not None and self.regex.fullmatch(v) is None:
            errs.append(
                _violation(v, path, "Member must satisfy regular expression pattern: " + self.pattern,
                           self.sensitive)
            )
        n = utf16_len(v)
        if self.min and n < self.min:
            errs.append(_violation(v, path, f"Member must have length greater than or equal to {self.min}",
                                   self.sensitive))
        if self.max is not None and n > self.max:
            errs.append(_violation(v, path, f"Member must have length less than or equal to {self.max}",
                                   self.sensitive))
        if self.enum is not None and v not in self.enum:
            errs.append(_violation(v, path, f"Member must satisfy enum value set: [{self.enum_text}]",
                                   self.sensitive))

    def _is_name(self, v: str) -> bool:
        """Held to the table-name rule: everything but a table ARN and "arn:..." past the model's 1024."""
        if not v.startswith("arn:"):
            return True
        return _TABLE_ARN_RE.fullmatch(v) is None and not (self.max is not None and utf16_len(v) > self.max)

    @staticmethod
    def _check_table_name(v: str, path: str | None, errs: list[str]) -> None:
        if _TABLE_NAME_RE.fullmatch(v) is None:
            errs.append(_violation(v, path, "Member must satisfy regular expression pattern: "
                                   + _TABLE_NAME_PATTERN))
        n = len(v)
        if n < _TABLE_NAME_MIN:
            errs.append(_violation(v, path, _LEN_GE + str(_TABLE_NAME_MIN)))
        if n > _TABLE_NAME_MAX:
            errs.append(_violation(v, path, _LEN_LE + str(_TABLE_NAME_MAX)))

    def key_ok(self, v: str) -> bool:
        if self.table_name and self._is_name(v):
            return _TABLE_NAME_MIN <= len(v) <= _TABLE_NAME_MAX and _TABLE_NAME_RE.fullmatch(v) is not None
        n = utf16_len(v)
        return not (
            (self.min and n < self.min)
            or (self.max is not None and n > self.max)
            or (self.regex is not None and self.regex.fullmatch(v) is None)
            or (self.enum is not None and v not in self.enum)
        )

    def constraint_texts(self) -> list[str]:
        # Coral lists a member's constraints max-length, min-length, pattern (as recorded for map keys).
        if self.table_name:
            return [
                f"Member must have length less than or equal to {_TABLE_NAME_MAX}",
                f"Member must have length greater than or equal to {_TABLE_NAME_MIN}",
                "Member must satisfy regular expression pattern: " + _TABLE_NAME_PATTERN,
            ]
        out = []
        if self.max is not None:
            out.append(f"Member must have length less than or equal to {self.max}")
        if self.min:
            out.append(f"Member must have length greater than or equal to {self.min}")
        if self.regex is not None:
            out.append("Member must satisfy regular expression pattern: " + self.pattern)
        if self.enum is not None:
            out.append(f"Member must satisfy enum value set: [{self.enum_text}]")
        return out


_TABLE_NAME_RE = re.compile(_TABLE_NAME_PATTERN)


def _scalar_mismatch(v: Any, java_simple: str, java_class: str) -> str:
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
    return _START_OBJ


class _BoolNode(_Node):
    __slots__ = ()

    def check(self, v: Any, path: str | None, errs: list[str]) -> None:
        if v is not True and v is not False:
            if type(v) is str:
                raise _ser("Unexpected token received from parser")
            raise _ser(_scalar_mismatch(v, "Boolean", "class java.lang.Boolean"))


class _NumberNode(_Node):
    __slots__ = ("min", "max", "java", "integral")

    def __init__(self, shape: dict, java: str) -> None:
        super().__init__()
        self.min = shape.get("min")
        self.max = shape.get("max")
        self.java = java
        self.integral = java in ("Integer", "Long")
        self.pure = self.min is None and self.max is None

    def check(self, v: Any, path: str | None, errs: list[str]) -> None:
        t = type(v)
        if t is not int and t is not float:
            raise _ser(_scalar_mismatch(v, self.java, "class java.lang." + self.java))
        if self.pure:
            return
        if t is float and self.java in ("Integer", "Long"):
            v = int(v)  # Coral truncates decimals given for integral members
        if self.min is not None and v < self.min:
            errs.append(_violation(v, path, f"Member must have value greater than or equal to {self.min}"))
        if self.max is not None and v > self.max:
            errs.append(_violation(v, path, f"Member must have value less than or equal to {self.max}"))

    def constraint_texts(self) -> list[str]:
        out = []
        if self.max is not None:
            out.append(f"Member must have value less than or equal to {self.max}")
        if self.min is not None:
            out.append(f"Member must have value greater than or equal to {self.min}")
        return out


class _BlobNode(_Node):
    __slots__ = ("min", "max")

    def __init__(self, shape: dict) -> None:
        super().__init__()
        self.min = shape.get("min")
        self.max = shape.get("max")
        self.sensitive = bool(shape.get("sensitive"))
        self.pure = not self.min and self.max is None

    def check(self, v: Any, path: str | None, errs: list[str]) -> None:
        if type(v) is not str:
            if type(v) is list:
                raise _ser("Unrecognized collection type class java.nio.ByteBuffer")
            if type(v) is dict:
                raise _ser(_START_OBJ)
            raise _ser("only base-64-encoded strings are convertible to bytes")
        n = len(v)
        if n % 4:
            raise _ser(f"Base64 encoded length is expected a multiple of 4 bytes but found: {n}")
        try:
            raw = binascii.a2b_base64(v, strict_mode=True)
        except (binascii.Error, ValueError):
            raise _ser("Invalid last non-pad Base64 character dectected") from None
        # Coral also rejects non-canonical encodings (stray bits in the last character).
        if binascii.b2a_base64(raw, newline=False).decode("ascii") != v:
            raise _ser("Invalid last non-pad Base64 character dectected")
        if self.pure:
            return
        size = len(raw)
        shown = f"java.nio.HeapByteBuffer[pos=0 lim={size} cap={size}]"
        if self.min and size < self.min:
            errs.append(_violation(shown, path, _LEN_GE + str(self.min),
                                   self.sensitive))
        if self.max is not None and size > self.max:
            errs.append(_violation(shown, path, f"Member must have length less than or equal to {self.max}",
                                   self.sensitive))


class _TimestampNode(_Node):
    __slots__ = ()

    def check(self, v: Any, path: str | None, errs: list[str]) -> None:
        t = type(v)
        if t is int or t is float:
            return  # epoch seconds, the JSON protocol's wire format
        if t is not str or self.seconds(v) is None:
            raise _ser(_scalar_mismatch(v, "Date", "class java.util.Date"))

    @staticmethod
    def seconds(v: str) -> float | None:
        """Epoch seconds of a timestamp sent as text (a number, or ISO 8601; no zone means UTC), else None."""
        try:
            return float(v)
        except ValueError:
            pass
        try:
            when = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class _ListNode(_Node):
    __slots__ = ("member", "min", "max", "nested")

    def __init__(self, shape: dict, nested: bool) -> None:
        super().__init__()
        self.member: _Node = _Node()
        self.min = shape.get("min")
        self.max = shape.get("max")
        self.nested = nested  # a list inside a list / map value: Coral's generic-cast error

    def check(self, v: Any, path: str | None, errs: list[str]) -> None:
        if type(v) is not list:
            if type(v) is dict:
                raise _ser(_START_OBJ)
            raise _ser(_CAST_MSG if self.nested else _FIELD_TYPE)
        member = self.member
        if self.pure:
            for x in v:
                if x is not None:
                    member.check(x, None, errs)
            return
        n = len(v)
        if self.min and n < self.min:
            errs.append(_violation(_render_with(self, v), path,
                                   f"Member must have length greater than or equal to {self.min}"))
        if self.max is not None and n > self.max:
            errs.append(_violation(_render_with(self, v), path,
                                   f"Member must have length less than or equal to {self.max}"))
        if member.pure:
            for x in v:
                if x is not None:
                    member.check(x, None, errs)
            return
        for i, x in enumerate(v, 1):
            if x is None:
                errs.append(_violation(None, f"{path}.{i}.member", "Member must not be null"))
            else:
                member.check(x, f"{path}.{i}.member", errs)

    def constraint_texts(self) -> list[str]:
        out = []
        if self.max is not None:
            out.append(f"Member must have length less than or equal to {self.max}")
        if self.min:
            out.append(f"Member must have length greater than or equal to {self.min}")
        return out


class _MapNode(_Node):
    __slots__ = ("key", "value", "min", "max", "nested", "java_value", "key_text", "value_text", "_plain")

    def __init__(self, shape: dict, nested: bool) -> None:
        super().__init__()
        self.key: _StringNode | None = None
        self.value: _Node = _Node()
        self.min = shape.get("min")
        self.max = shape.get("max")
        self.nested = nested
        self.java_value = "java.lang.Object"
        self.key_text = ""
        self.value_text = ""
        self._plain: frozenset[str] | None | bool = False  # see plain_members

    def plain_members(self) -> frozenset[str] | None:
        """When the values are structures with no required member and no size limit of their own: the names of
        their members that can never report a constraint (a DynamoDB AttributeValue's S, N, B, ...). A value
        with only such members is checked without the path its errors would carry (it can have none), which
        spares building that path for every entry. Worked out on first use, once the model is compiled."""
        plain = self._plain
        if plain is False:
            value = self.value
            if isinstance(value, _StructNode) and not value.required and not self.value_text:
                plain = frozenset(name for name, (node, _, _) in value.members.items() if node.pure)
            else:
                plain = None
            self._plain = plain
        return plain  # type: ignore[return-value]

    def check(self, v: Any, path: str | None, errs: list[str]) -> None:
        if type(v) is not dict:
            if type(v) is list:
                raise _ser(f"Unrecognized collection type java.util.Map<java.lang.String, {self.java_value}>")
            raise _ser(_CAST_MSG if self.nested else _FIELD_TYPE)
        value = self.value
        if self.pure:
            for x in v.values():
                if x is not None:
                    value.check(x, None, errs)
            return
        n = len(v)
        shown = _Lazy(self, v)
        if self.min and n < self.min:
            errs.append(_violation(shown, path, _LEN_GE + str(self.min)))
        if self.max is not None and n > self.max:
            errs.append(_violation(shown, path, f"Member must have length less than or equal to {self.max}"))
        key = self.key
        plain = self.plain_members()
        segs: list[tuple[str, list[str]]] | None = None
        for k, x in v.items():
            start = len(errs)
            if key is not None and self.key_text and not key.key_ok(k):
                errs.append(_violation(shown, path, f"Map keys must satisfy constraint: [{self.key_text}]"))
            if x is not None:
                if value.pure or (plain is not None and type(x) is dict and plain.issuperset(x)):
                    value.check(x, None, errs)
                else:
                    sub = f"{path}.{k}.member"
                    if self.value_text and _len_bad(value, x):
                        # Coral reports a map value's own size limits once, at the map.
                        errs.append(_violation(shown, path, "Map value must satisfy constraint: ["
                                               + self.value_text + "]"))
                        inner: list[str] = _Errors()
                        inner.nulls = getattr(errs, "nulls", {})  # type: ignore[attr-defined]
                        value.check(x, sub, inner)
                        own = (f"Value '{_render_with(value, x)}' at '{sub}' failed to satisfy constraint: "
                               "Member must have length")
                        errs.extend(e for e in inner if not e.startswith(own))
                    else:
                        value.check(x, sub, errs)
            if len(errs) != start:
                if segs is None:
                    segs = []
                segs.append((k, errs[start:]))
                del errs[start:]
        if segs:
            # The service validates a java.util.HashMap: report its keys in that order.
            rank = hashmap_order(list(v))
            segs.sort(key=lambda s: rank[s[0]])
            for _, msgs in segs:
                errs.extend(msgs)


def _len_bad(node: _Node, x: Any) -> bool:
    if isinstance(node, _ListNode) and type(x) is list:
        n = len(x)
    elif isinstance(node, _StringNode) and type(x) is str:
        n = utf16_len(x)
    else:
        return False
    return bool((node.min and n < node.min) or (node.max is not None and n > node.max))


class _StructNode(_Node):
    __slots__ = ("members", "required", "name", "value_pos", "java")

    def __init__(self, name: str, value_pos: bool, java: str) -> None:
        super().__init__()
        self.name = name
        self.members: dict[str, tuple[_Node, str, int]] = {}
        self.required: tuple[tuple[str, str, int], ...] = ()
        self.value_pos = value_pos  # list element / map value rather than a structure field
        self.java = java

    def check(self, v: Any, path: str | None, errs: list[str]) -> None:
        if type(v) is not dict:
            if type(v) is list:
                raise _ser(f"Unrecognized collection type class {self.java}")
            raise _ser(_VALUE_TYPE if self.value_pos else _FIELD_TYPE)
        members = self.members
        # A member sent as JSON null is absent (as for AWS's front end): noted here, and validate() hands the
        # handlers the request without it, so no operation ever sees a None where it expects a value or nothing.
        if self.pure:
            for k, x in v.items():
                if x is None:
                    _note_null(errs, v, k)
                    continue
                ent = members.get(k)
                if ent is not None:
                    ent[0].check(x, None, errs)
                    if type(x) is float or type(x) is str:
                        _normalize(v, k, x, ent[0])
            return
        prefix = None  # made only when a member below can report something (most values are scalars)
        segs: list[tuple[int, list[str]]] | None = None
        for k, x in v.items():
            if x is None:
                _note_null(errs, v, k)
                continue
            ent = members.get(k)
            if ent is None:
                continue  # unknown members are ignored
            node, sub, rank = ent
            if type(x) is float or type(x) is str:
                _normalize(v, k, x, node)
            if node.pure:
                node.check(x, None, errs)
                continue
            if prefix is None:
                prefix = path + "." if path else ""
            start = len(errs)
            node.check(x, prefix + sub, errs)
            if len(errs) != start:
                if segs is None:
                    segs = []
                segs.append((rank, errs[start:]))
                del errs[start:]
        for name, sub, rank in self.required:
            if v.get(name) is None:
                if segs is None:
                    segs = []
                segs.append((rank, [_violation(None, (path + "." if path else "") + sub, "Member must not be null")]))
        if segs:
            segs.sort(key=lambda s: s[0])
            for _, msgs in segs:
                errs.extend(msgs)


#: Java's narrowing of a double to int / long saturates at the type's bounds
_JAVA_BOUNDS = {"Integer": (-(2**31), 2**31 - 1), "Long": (-(2**63), 2**63 - 1)}


def _normalize(v: dict, k: str, x: float | str, node: _Node) -> None:
    """A member reaches its handler in one form whatever the wire allowed: an integral member sent as a decimal
    (or past 64 bits, which the JSON parser gives as a float) truncated to a whole number and saturated at its
    Java type's bounds, as Java's narrowing does; a timestamp sent as text as epoch seconds."""
    if type(x) is float:
        if isinstance(node, _NumberNode) and node.integral:
            low, high = _JAVA_BOUNDS[node.java]
            v[k] = high if x >= high else low if x <= low else int(x)
    elif isinstance(node, _TimestampNode):
        seconds = node.seconds(x)
        if seconds is not None:
            v[k] = seconds


class _Compiler:
    def __init__(self, service: str, model: dict) -> None:
        self.shapes: dict[str, dict] = model["shapes"]
        self.ns = _JAVA_NS.get(service, "com.amazonaws")
        self.service = service
        self.memo: dict[tuple[str, str, bool], _Node] = {}

    def node(self, shape_name: str, pos: str, member_name: str = "") -> _Node:
        """pos: 'field' (structure member), 'value' (list element/map value), 'nested' (list in list)."""
        shape = self.shapes[shape_name]
        override = _SHAPE_OVERRIDES.get((self.service, shape_name))
        if override:
            shape = {**shape, **override}
        t = shape["type"]
        table_name = (
            self.service == "dynamodb" and shape_name == "TableArn" and member_name in ("TableName", "")
        )
        key = (shape_name, pos, table_name)
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        node: _Node
        if t == "string":
            node = _StringNode(shape, table_name)
        elif t == "boolean":
            node = _BoolNode()
        elif t in ("integer", "long", "double", "float"):
            node = _NumberNode(shape, {"integer": "Integer", "long": "Long", "double": "Double",
                                       "float": "Float"}[t])
        elif t == "blob":
            node = _BlobNode(shape)
        elif t == "timestamp":
            node = _TimestampNode()
        elif t == "list":
            node = _ListNode(shape, nested=pos != "field")
            self.memo[key] = node
            node.member = self.node(shape["member"]["shape"], "value")
            node.pure = node.pure and not shape.get("min") and shape.get("max") is None
        elif t == "map":
            node = _MapNode(shape, nested=pos != "field")
            self.memo[key] = node
            kn = self.node(shape["key"]["shape"], "field", member_name="TableName")
            node.key = kn if isinstance(kn, _StringNode) else None
            node.value = self.node(shape["value"]["shape"], "value")
            node.java_value = self.java_class(shape["value"]["shape"])
            node.key_text = ", ".join(kn.constraint_texts())
            node.value_text = ", ".join(node.value.constraint_texts())
            node.pure = not shape.get("min") and shape.get("max") is None and not node.key_text
        elif t == "structure":
            node = _StructNode(shape_name, pos != "field", f"{self.ns}.{shape_name}")
            self.memo[key] = node
            names = list(shape.get("members", {}))
            rank = hashmap_order([_lower_first(n) for n in names], later_first=True)
            members = {}
            for n, m in shape.get("members", {}).items():
                sub = self.node(m["shape"], "field", member_name=n)
                members[n] = (sub, _lower_first(n), rank[_lower_first(n)])
            node.members = members
            node.required = tuple(
                (n, _lower_first(n), rank[_lower_first(n)]) for n in shape.get("required", ())
            )
            node.pure = not node.required
        else:
            raise ValueError(f"unsupported shape type {t!r} in {shape_name}")
        self.memo[key] = node
        return node

    def java_class(self, shape_name: str) -> str:
        t = self.shapes[shape_name]["type"]
        simple = {"string": "java.lang.String", "boolean": "java.lang.Boolean",
                  "integer": "java.lang.Integer",
                  "long": "java.lang.Long", "double": "java.lang.Double", "float": "java.lang.Float",
                  "blob": "java.nio.ByteBuffer", "timestamp": "java.util.Date"}
        if t in simple:
            return simple[t]
        if t == "list":
            return f"java.util.List<{self.java_class(self.shapes[shape_name]['member']['shape'])}>"
        if t == "map":
            value = self.java_class(self.shapes[shape_name]["value"]["shape"])
            return f"java.util.Map<java.lang.String, {value}>"
        return f"{self.ns}.{shape_name}"

    def finish(self) -> None:
        """Purity depends on children, including recursive ones: settle it by fixed point."""
        changed = True
        while changed:
            changed = False
            for node in self.memo.values():
                if not node.pure:
                    continue
                impure = False
                if isinstance(node, _StructNode):
                    impure = any(not m[0].pure for m in node.members.values())
                elif isinstance(node, _ListNode):
                    impure = not node.member.pure
                elif isinstance(node, _MapNode):
                    impure = not node.value.pure
                if impure:
                    node.pure = False
                    changed = True


def _load_model(service: str) -> dict:
    if service not in _SERVICE_VERSIONS:
        raise ValueError(f"unknown service {service!r}")
    return botocore.loaders.Loader().load_service_model(service, "service-2", _SERVICE_VERSIONS[service])


class ShapeValidator:
    """Validates request bodies against one service's botocore model, the way AWS's front end does."""

    def __init__(self, service: str) -> None:
        model = _load_model(service)
        compiler = _Compiler(service, model)
        self.service = service
        self._ops: dict[str, _StructNode | None] = {}
        for op_name, op in model["operations"].items():
            inp = op.get("input")
            node = compiler.node(inp["shape"], "field") if inp else None
            self._ops[op_name] = node if isinstance(node, _StructNode) else None
        compiler.finish()
        self._plain = PLAIN_MEMBERS if service == "dynamodb" else {}

    def has_operation(self, name: str) -> bool:
        return name in self._ops

    def validate(self, operation: str, body: dict) -> dict:
        """Raise AWSError (SerializationException / ValidationException) if ``body`` is malformed; else the
        request as its handler gets it: ``body`` itself, or a copy without the members sent as JSON null."""
        try:
            root = self._ops[operation]
        except KeyError:
            raise AWSError("UnknownOperationException", None, 400, type_prefix=_SER_PREFIX) from None
        if root is None:
            return body
        if type(body) is not dict:
            raise _ser(_START_OBJ if body is None else "Unexpected value type in payload")
        plain = self._plain.get(operation)
        if plain is not None and plain_request(plain[0], plain[1], body):
            return body
        errs = _Errors()
        root.check(body, "", errs)
        if errs:
            shown = errs[:_MAX_REPORTED]
            n = len(shown)
            raise AWSError(
                "ValidationException",
                f"{n} validation error{'s' if n != 1 else ''} detected: " + "; ".join(shown),
                400,
                type_prefix=_VAL_PREFIX,
            )
        return _without_nulls(body, errs.nulls) if errs.nulls else body
