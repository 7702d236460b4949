"""Resolved expression trees and their evaluation over wire-form items.

Trees are built once per distinct expression (see ``parser``) and shared between requests, so nothing here
mutates a node or an item. Paths are tuples of ``str`` (map keys / attribute names) and ``int`` (list indexes),
already resolved through ExpressionAttributeNames.
"""

from __future__ import annotations

import base64
from typing import Any

from dynavault.dynamodb.values import compare, equals, value_type

Path = tuple  # tuple[str | int, ...]


def path_str(path: Path) -> str:
    """DynamoDB's rendering of a document path in messages: ``[a, b, [1]]``."""
    return "[" + ", ".join(f"[{e}]" if isinstance(e, int) else e for e in path) + "]"


def resolve(item: dict | None, path: Path) -> dict | None:
    """The value at ``path`` in ``item`` or None when any step is missing or of the wrong type."""
    if not item:
        return None
    v = item.get(path[0])
    for e in path[1:]:
        if v is None:
            return None
        if isinstance(e, int):
            lst = v.get("L")
            if lst is None or e >= len(lst):
                return None
            v = lst[e]
        else:
            m = v.get("M")
            if m is None:
                return None
            v = m.get(e)
    return v


# ---------------------------------------------------------------------------------------------- operands


class Operand:
    __slots__ = ()

    def get(self, item: dict | None) -> dict | None:  # pragma: no cover - abstract
        raise NotImplementedError


class PathOp(Operand):
    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, item: dict | None) -> dict | None:
        return resolve(item, self.path)

    def __repr__(self) -> str:
        return f"PathOp({self.path!r})"


class ValueOp(Operand):
    __slots__ = ("value",)

    def __init__(self, value: dict) -> None:
        self.value = value

    def get(self, item: dict | None) -> dict | None:
        return self.value

    def __repr__(self) -> str:
        return f"ValueOp({self.value!r})"


class SizeOp(Operand):
    """size(operand): string length, binary length, or number of elements of a set, list or map."""

    __slots__ = ("arg",)

    def __init__(self, arg: Operand) -> None:
        self.arg = arg

    def get(self, item: dict | None) -> dict | None:
        v = self.arg.get(item)
        if v is None:
            return None
        t = value_type(v)
        x = v[t]
        if t == "S":
            n = len(x)
        elif t == "B":
            n = len(base64.b64decode(x))
        elif t in ("SS", "NS", "BS", "L", "M"):
            n = len(x)
        else:
            return None
        return {"N": str(n)}

    def __repr__(self) -> str:
        return f"SizeOp({self.arg!r})"


# ---------------------------------------------------------------------------------------------- conditions


class Condition:
    """A boolean expression node; ``eval(item)`` with ``item`` None meaning "no such item"."""

    __slots__ = ()

    def eval(self, item: dict | None) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


class Compare(Condition):
    __slots__ = ("op", "left", "right")

    def __init__(self, op: str, left: Operand, right: Operand) -> None:
        self.op = op
        self.left = left
        self.right = right

    def eval(self, item: dict | None) -> bool:
        a = self.left.get(item)
        b = self.right.get(item)
        op = self.op
        if op == "=":
            return equals(a, b)
        if op == "<>":
            # A missing operand is "not equal" to anything, as in DynamoDB.
            return not equals(a, b)
        if a is None or b is None:
            return False
        c = compare(a, b)
        if c is None:
            return False
        if op == "<":
            return c < 0
        if op == "<=":
            return c <= 0
        if op == ">":
            return c > 0
        return c >= 0

    def __repr__(self) -> str:
        return f"Compare({self.op!r}, {self.left!r}, {self.right!r})"


class Between(Condition):
    __slots__ = ("arg", "low", "high")

    def __init__(self, arg: Operand, low: Operand, high: Operand) -> None:
        self.arg = arg
        self.low = low
        self.high = high

    def eval(self, item: dict | None) -> bool:
        v = self.arg.get(item)
        lo = self.low.get(item)
        hi = self.high.get(item)
        if v is None or lo is None or hi is None:
            return False
        c1 = compare(lo, v)
        if c1 is None or c1 > 0:
            return False
        c2 = compare(v, hi)
        return c2 is not None and c2 <= 0

    def __repr__(self) -> str:
        return f"Between({self.arg!r}, {self.low!r}, {self.high!r})"


class In(Condition):
    __slots__ = ("arg", "options")

    def __init__(self, arg: Operand, options: tuple) -> None:
        self.arg = arg
        self.options = options

    def eval(self, item: dict | None) -> bool:
        v = self.arg.get(item)
        if v is None:
            return False
        return any(equals(v, o.get(item)) for o in self.options)

    def __repr__(self) -> str:
        return f"In({self.arg!r}, {self.options!r})"


class And(Condition):
    __slots__ = ("left", "right")

    def __init__(self, left: Condition, right: Condition) -> None:
        self.left = left
        self.right = right

    def eval(self, item: dict | None) -> bool:
        return self.left.eval(item) and self.right.eval(item)

    def __repr__(self) -> str:
        return f"And({self.left!r}, {self.right!r})"


class Or(Condition):
    __slots__ = ("left", "right")

    def __init__(self, left: Condition, right: Condition) -> None:
        self.left = left
        self.right = right

    def eval(self, item: dict | None) -> bool:
        return self.left.eval(item) or self.right.eval(item)

    def __repr__(self) -> str:
        return f"Or({self.left!r}, {self.right!r})"


class Not(Condition):
    __slots__ = ("arg",)

    def __init__(self, arg: Condition) -> None:
        self.arg = arg

    def eval(self, item: dict | None) -> bool:
        return not self.arg.eval(item)

    def __repr__(self) -> str:
        return f"Not({self.arg!r})"


class Exists(Condition):
    """attribute_exists(path) when ``positive``, attribute_not_exists(path) otherwise."""

    __slots__ = ("path", "positive")

    def __init__(self, path: Path, positive: bool) -> None:
        self.path = path
        self.positive = positive

    def eval(self, item: dict | None) -> bool:
        return (resolve(item, self.path) is not None) == self.positive

    def __repr__(self) -> str:
        return f"Exists({self.path!r}, {self.positive})"


class AttrType(Condition):
    __slots__ = ("path", "type")

    def __init__(self, path: Path, type_: str) -> None:
        self.path = path
        self.type = type_

    def eval(self, item: dict | None) -> bool:
        v = resolve(item, self.path)
        return v is not None and value_type(v) == self.type

    def __repr__(self) -> str:
        return f"AttrType({self.path!r}, {self.type!r})"


class BeginsWith(Condition):
    __slots__ = ("arg", "prefix")

    def __init__(self, arg: Operand, prefix: Operand) -> None:
        self.arg = arg
        self.prefix = prefix

    def eval(self, item: dict | None) -> bool:
        v = self.arg.get(item)
        p = self.prefix.get(item)
        if v is None or p is None:
            return False
        t = value_type(v)
        if t != value_type(p):
            return False
        if t == "S":
            return v["S"].startswith(p["S"])
        if t == "B":
            return base64.b64decode(v["B"]).startswith(base64.b64decode(p["B"]))
        return False

    def __repr__(self) -> str:
        return f"BeginsWith({self.arg!r}, {self.prefix!r})"


_SET_MEMBER = {"SS": "S", "NS": "N", "BS": "B"}


class Contains(Condition):
    """contains(a, b): substring of S, subsequence of B, member of a set, element of a list."""

    __slots__ = ("arg", "needle")

    def __init__(self, arg: Operand, needle: Operand) -> None:
        self.arg = arg
        self.needle = needle

    def eval(self, item: dict | None) -> bool:
        v = self.arg.get(item)
        x = self.needle.get(item)
        if v is None or x is None:
            return False
        t = value_type(v)
        tx = value_type(x)
        if t == "S":
            return tx == "S" and x["S"] in v["S"]
        if t == "B":
            return tx == "B" and base64.b64decode(x["B"]) in base64.b64decode(v["B"])
        member = _SET_MEMBER.get(t)
        if member is not None:
            if tx != member:
                return False
            return any(equals({member: m}, x) for m in v[t])
        if t == "L":
            return any(equals(e, x) for e in v["L"])
        return False

    def __repr__(self) -> str:
        return f"Contains({self.arg!r}, {self.needle!r})"


class TrueCondition(Condition):
    """An empty legacy condition map: always true."""

    __slots__ = ()

    def eval(self, item: dict | None) -> bool:
        return True

    def __repr__(self) -> str:
        return "TrueCondition()"


def evaluate(cond: Condition | None, item: dict | None) -> bool:
    """Evaluate a parsed condition against an item (None = the item does not exist)."""
    if cond is None:
        return True
    return cond.eval(item)


# ---------------------------------------------------------------------------------------------- projection


class Projection:
    """A set of document paths, kept as a trie so projecting an item walks each container once."""

    __slots__ = ("paths", "trie")

    def __init__(self, paths: tuple) -> None:
        self.paths = paths
        trie: dict = {}
        for p in paths:
            node = trie
            for e in p[:-1]:
                nxt = node.get(e)
                if nxt is None:
                    nxt = node[e] = {}
                node = nxt
            node[p[-1]] = None  # leaf: take the whole value
        self.trie = trie

    def __repr__(self) -> str:
        return f"Projection({self.paths!r})"


def _project_value(v: dict, node: dict) -> dict | None:
    first = next(iter(node))
    if isinstance(first, int):
        lst = v.get("L")
        if lst is None:
            return None
        out_l = []
        for idx in sorted(node):
            if idx < len(lst):
                sub = node[idx]
                r = lst[idx] if sub is None else _project_value(lst[idx], sub)
                if r is not None:
                    out_l.append(r)
        return {"L": out_l} if out_l else None
    m = v.get("M")
    if m is None:
        return None
    out_m = {}
    for k, sub in node.items():
        child = m.get(k)
        if child is None:
            continue
        r = child if sub is None else _project_value(child, sub)
        if r is not None:
            out_m[k] = r
    return {"M": out_m} if out_m else None


def project(p: Projection | None, item: dict | None) -> dict:
    """The item restricted to the projection's paths (nested maps and lists keep only what was asked)."""
    if item is None:
        return {}
    if p is None:
        return item
    out: dict[str, Any] = {}
    for name, sub in p.trie.items():
        v = item.get(name)
        if v is None:
            continue
        if sub is None:
            out[name] = v
        else:
            r = _project_value(v, sub)
            if r is not None:
                out[name] = r
    return out
