"""The compiled nodes of a service model's shapes (see ``shapes.py``): one per shape and position, each checking
a request's value in that place, raising a SerializationException at once for a value of the wrong kind and
collecting constraint violations in Coral's words and order."""

from __future__ import annotations

import binascii
import re
from datetime import UTC, datetime
from typing import Any

from .java_rules import enum_order, hashmap_order, java_ref, java_regex, utf16_len
from .shape_text import (
    CAST_MSG,
    FIELD_TYPE,
    LEN_GE,
    LEN_LE,
    START_OBJ,
    VALUE_TYPE,
    Violations,
    note_null,
    render,
    scalar_mismatch,
    serialization_error,
    violation,
)

# DynamoDB's real table-name rule; the model's TableArn shape (1..1024, no pattern) is looser because
# it also admits ARNs. Plain names are held to this, ARNs to the model.
_TABLE_NAME_MIN, _TABLE_NAME_MAX, _TABLE_NAME_PATTERN = 3, 255, "[a-zA-Z0-9_.-]+"
# What counts as an ARN there: a DynamoDB table ARN (a sub-resource suffix is refused later, by the service,
# as DynamoDB refuses it). Anything else -- "arn:/../x", a newline, U+202E -- is a name and must be a valid one
# (an "arn:..." value past the model's 1024 characters gets the model's length error alone).
_TABLE_ARN_RE = re.compile(r"arn:aws:dynamodb:[a-z0-9-]{1,64}:[0-9]{12}:table/[a-zA-Z0-9_.-]{3,255}(?:/[!-~]*)?")


def _render_with(node: Node, v: Any) -> str:
    if isinstance(node, StructNode):
        return java_ref(node.java, v)
    if isinstance(node, ListNode) and type(v) is list:
        return "[" + ", ".join(_render_with(node.member, x) for x in v) + "]"
    if isinstance(node, MapNode) and type(v) is dict:
        return "{" + ", ".join(f"{k}={_render_with(node.value, x)}" for k, x in v.items()) + "}"
    return render(v)


class _Lazy:
    """A value rendered only if a violation message needs it (keeps the valid path cheap)."""

    __slots__ = ("node", "v")

    def __init__(self, node: Node, v: Any) -> None:
        self.node, self.v = node, v

    def __str__(self) -> str:
        return _render_with(self.node, self.v)



class Node:
    """A compiled shape in one position (a structure field, or a list element / map value)."""

    __slots__ = ("pure", "sensitive")

    def __init__(self) -> None:
        self.pure = True  # no constraint anywhere below: errs and path are never touched
        self.sensitive = False

    def check(self, v: Any, path: str | None, errs: list[str]) -> None:  # pragma: no cover
        raise NotImplementedError

    def constraint_texts(self) -> list[str]:
        return []


class StringNode(Node):
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
            raise serialization_error(scalar_mismatch(v, "String", "class java.lang.String"))
        if self.pure:
            return
        if self.table_name and self._is_name(v):
            self._check_table_name(v, path, errs)
            return
        if self.regex is not None and self.regex.fullmatch(v) is None:
            errs.append(
                violation(v, path, "Member must satisfy regular expression pattern: " + self.pattern,
                           self.sensitive)
            )
        n = utf16_len(v)
        if self.min and n < self.min:
            errs.append(violation(v, path, f"Member must have length greater than or equal to {self.min}",
                                   self.sensitive))
        if self.max is not None and n > self.max:
            errs.append(violation(v, path, f"Member must have length less than or equal to {self.max}",
                                   self.sensitive))
        if self.enum is not None and v not in self.enum:
            errs.append(violation(v, path, f"Member must satisfy enum value set: [{self.enum_text}]",
                                   self.sensitive))

    def _is_name(self, v: str) -> bool:
        """Held to the table-name rule: everything but a table ARN and "arn:..." past the model's 1024."""
        if not v.startswith("arn:"):
            return True
        return _TABLE_ARN_RE.fullmatch(v) is None and not (self.max is not None and utf16_len(v) > self.max)

    @staticmethod
    def _check_table_name(v: str, path: str | None, errs: list[str]) -> None:
        if _TABLE_NAME_RE.fullmatch(v) is None:
            errs.append(violation(v, path, "Member must satisfy regular expression pattern: "
                                   + _TABLE_NAME_PATTERN))
        n = len(v)
        if n < _TABLE_NAME_MIN:
            errs.append(violation(v, path, LEN_GE + str(_TABLE_NAME_MIN)))
        if n > _TABLE_NAME_MAX:
            errs.append(violation(v, path, LEN_LE + str(_TABLE_NAME_MAX)))

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


class BoolNode(Node):
    __slots__ = ()

    def check(self, v: Any, path: str | None, errs: list[str]) -> None:
        if v is not True and v is not False:
            if type(v) is str:
                raise serialization_error("Unexpected token received from parser")
            raise serialization_error(scalar_mismatch(v, "Boolean", "class java.lang.Boolean"))


class NumberNode(Node):
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
            raise serialization_error(scalar_mismatch(v, self.java, "class java.lang." + self.java))
        if self.pure:
            return
        if t is float and self.java in ("Integer", "Long"):
            v = int(v)  # Coral truncates decimals given for integral members
        if self.min is not None and v < self.min:
            errs.append(violation(v, path, f"Member must have value greater than or equal to {self.min}"))
        if self.max is not None and v > self.max:
            errs.append(violation(v, path, f"Member must have value less than or equal to {self.max}"))

    def constraint_texts(self) -> list[str]:
        out = []
        if self.max is not None:
            out.append(f"Member must have value less than or equal to {self.max}")
        if self.min is not None:
            out.append(f"Member must have value greater than or equal to {self.min}")
        return out


class BlobNode(Node):
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
                raise serialization_error("Unrecognized collection type class java.nio.ByteBuffer")
            if type(v) is dict:
                raise serialization_error(START_OBJ)
            raise serialization_error("only base-64-encoded strings are convertible to bytes")
        n = len(v)
        if n % 4:
            raise serialization_error(f"Base64 encoded length is expected a multiple of 4 bytes but found: {n}")
        try:
            raw = binascii.a2b_base64(v, strict_mode=True)
        except (binascii.Error, ValueError):
            raise serialization_error("Invalid last non-pad Base64 character dectected") from None
        # Coral also rejects non-canonical encodings (stray bits in the last character).
        if binascii.b2a_base64(raw, newline=False).decode("ascii") != v:
            raise serialization_error("Invalid last non-pad Base64 character dectected")
        if self.pure:
            return
        size = len(raw)
        shown = f"java.nio.HeapByteBuffer[pos=0 lim={size} cap={size}]"
        if self.min and size < self.min:
            errs.append(violation(shown, path, LEN_GE + str(self.min),
                                   self.sensitive))
        if self.max is not None and size > self.max:
            errs.append(violation(shown, path, f"Member must have length less than or equal to {self.max}",
                                   self.sensitive))


class TimestampNode(Node):
    __slots__ = ()

    def check(self, v: Any, path: str | None, errs: list[str]) -> None:
        t = type(v)
        if t is int or t is float:
            return  # epoch seconds, the JSON protocol's wire format
        if t is not str or self.seconds(v) is None:
            raise serialization_error(scalar_mismatch(v, "Date", "class java.util.Date"))

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


class ListNode(Node):
    __slots__ = ("member", "min", "max", "nested")

    def __init__(self, shape: dict, nested: bool) -> None:
        super().__init__()
        self.member: Node = Node()
        self.min = shape.get("min")
        self.max = shape.get("max")
        self.nested = nested  # a list inside a list / map value: Coral's generic-cast error

    def check(self, v: Any, path: str | None, errs: list[str]) -> None:
        if type(v) is not list:
            if type(v) is dict:
                raise serialization_error(START_OBJ)
            raise serialization_error(CAST_MSG if self.nested else FIELD_TYPE)
        member = self.member
        if self.pure:
            for x in v:
                if x is not None:
                    member.check(x, None, errs)
            return
        n = len(v)
        if self.min and n < self.min:
            errs.append(violation(_render_with(self, v), path,
                                   f"Member must have length greater than or equal to {self.min}"))
        if self.max is not None and n > self.max:
            errs.append(violation(_render_with(self, v), path,
                                   f"Member must have length less than or equal to {self.max}"))
        if member.pure:
            for x in v:
                if x is not None:
                    member.check(x, None, errs)
            return
        for i, x in enumerate(v, 1):
            if x is None:
                errs.append(violation(None, f"{path}.{i}.member", "Member must not be null"))
            else:
                member.check(x, f"{path}.{i}.member", errs)

    def constraint_texts(self) -> list[str]:
        out = []
        if self.max is not None:
            out.append(f"Member must have length less than or equal to {self.max}")
        if self.min:
            out.append(f"Member must have length greater than or equal to {self.min}")
        return out


class MapNode(Node):
    __slots__ = ("key", "value", "min", "max", "nested", "java_value", "key_text", "value_text", "_plain")

    def __init__(self, shape: dict, nested: bool) -> None:
        super().__init__()
        self.key: StringNode | None = None
        self.value: Node = Node()
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
            if isinstance(value, StructNode) and not value.required and not self.value_text:
                plain = frozenset(name for name, (node, _, _) in value.members.items() if node.pure)
            else:
                plain = None
            self._plain = plain
        return plain  # type: ignore[return-value]

    def check(self, v: Any, path: str | None, errs: list[str]) -> None:
        if type(v) is not dict:
            if type(v) is list:
                raise serialization_error(f"Unrecognized collection type java.util.Map<java.lang.String, {self.java_value}>")
            raise serialization_error(CAST_MSG if self.nested else FIELD_TYPE)
        value = self.value
        if self.pure:
            for x in v.values():
                if x is not None:
                    value.check(x, None, errs)
            return
        n = len(v)
        shown = _Lazy(self, v)
        if self.min and n < self.min:
            errs.append(violation(shown, path, LEN_GE + str(self.min)))
        if self.max is not None and n > self.max:
            errs.append(violation(shown, path, f"Member must have length less than or equal to {self.max}"))
        key = self.key
        plain = self.plain_members()
        segs: list[tuple[str, list[str]]] | None = None
        for k, x in v.items():
            start = len(errs)
            if key is not None and self.key_text and not key.key_ok(k):
                errs.append(violation(shown, path, f"Map keys must satisfy constraint: [{self.key_text}]"))
            if x is not None:
                if value.pure or (plain is not None and type(x) is dict and plain.issuperset(x)):
                    value.check(x, None, errs)
                else:
                    sub = f"{path}.{k}.member"
                    if self.value_text and _len_bad(value, x):
                        # Coral reports a map value's own size limits once, at the map.
                        errs.append(violation(shown, path, "Map value must satisfy constraint: ["
                                               + self.value_text + "]"))
                        inner: list[str] = Violations()
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


def _len_bad(node: Node, x: Any) -> bool:
    if isinstance(node, ListNode) and type(x) is list:
        n = len(x)
    elif isinstance(node, StringNode) and type(x) is str:
        n = utf16_len(x)
    else:
        return False
    return bool((node.min and n < node.min) or (node.max is not None and n > node.max))


class StructNode(Node):
    __slots__ = ("members", "required", "name", "value_pos", "java")

    def __init__(self, name: str, value_pos: bool, java: str) -> None:
        super().__init__()
        self.name = name
        self.members: dict[str, tuple[Node, str, int]] = {}
        self.required: tuple[tuple[str, str, int], ...] = ()
        self.value_pos = value_pos  # list element / map value rather than a structure field
        self.java = java

    def check(self, v: Any, path: str | None, errs: list[str]) -> None:
        if type(v) is not dict:
            if type(v) is list:
                raise serialization_error(f"Unrecognized collection type class {self.java}")
            raise serialization_error(VALUE_TYPE if self.value_pos else FIELD_TYPE)
        members = self.members
        # A member sent as JSON null is absent (as for AWS's front end): noted here, and validate() hands the
        # handlers the request without it, so no operation ever sees a None where it expects a value or nothing.
        if self.pure:
            for k, x in v.items():
                if x is None:
                    note_null(errs, v, k)
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
                note_null(errs, v, k)
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
                segs.append((rank, [violation(None, (path + "." if path else "") + sub, "Member must not be null")]))
        if segs:
            segs.sort(key=lambda s: s[0])
            for _, msgs in segs:
                errs.extend(msgs)


#: Java's narrowing of a double to int / long saturates at the type's bounds
_JAVA_BOUNDS = {"Integer": (-(2**31), 2**31 - 1), "Long": (-(2**63), 2**63 - 1)}


def _normalize(v: dict, k: str, x: float | str, node: Node) -> None:
    """A member reaches its handler in one form whatever the wire allowed: an integral member sent as a decimal
    (or past 64 bits, which the JSON parser gives as a float) truncated to a whole number and saturated at its
    Java type's bounds, as Java's narrowing does; a timestamp sent as text as epoch seconds."""
    if type(x) is float:
        if isinstance(node, NumberNode) and node.integral:
            low, high = _JAVA_BOUNDS[node.java]
            v[k] = high if x >= high else low if x <= low else int(x)
    elif isinstance(node, TimestampNode):
        seconds = node.seconds(x)
        if seconds is not None:
            v[k] = seconds


