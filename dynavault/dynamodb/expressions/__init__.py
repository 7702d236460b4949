"""DynamoDB expressions: parse once (cached), evaluate per item.

Usage by an operation::

    ctx = ExpressionContext(req.get("ExpressionAttributeNames"), req.get("ExpressionAttributeValues"),
                            cache=the_servers_expression_cache)
    cond = parse_condition(req["ConditionExpression"], ctx)          # "Invalid ConditionExpression: ..."
    plan = parse_update(req["UpdateExpression"], ctx)
    ctx.check_all_used()                                              # after *all* expressions are parsed
    if not evaluate(cond, old_item): ...
    new_item = apply_update(plan, old_item, {"pk", "sk"})

Syntax trees are cached by expression text alone (projections, which hold no values, fully resolved by text
and names); each request then binds its own names and values to the shared tree, so the cache never holds a
request value and one client's values never reach another's request. The cache is bounded in bytes.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

from dynavault.dynamodb.expressions.ast import (
    And,
    AttrType,
    BeginsWith,
    Between,
    Compare,
    Condition,
    Contains,
    Exists,
    In,
    Not,
    Or,
    PathOp,
    Projection,
    SizeOp,
    TrueCondition,
    ValueOp,
    evaluate,
    path_str,
    project,
    resolve,
)
from dynavault.dynamodb.expressions.keycond import KeyCondition, key_condition_from_ast
from dynavault.dynamodb.expressions.parser import parse_condition_raw, parse_update_raw
from dynavault.dynamodb.expressions.reserved import RESERVED_WORDS, is_reserved
from dynavault.dynamodb.expressions.resolver import parse_projection_text, resolve_condition, resolve_update
from dynavault.dynamodb.expressions.update import UpdatePlan, apply_update, updated_attributes
from dynavault.dynamodb.values import MSG_NESTING, validate_attribute_value
from dynavault.errors import AWSError, validation

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "And",
    "AttrType",
    "BeginsWith",
    "Between",
    "Compare",
    "Condition",
    "Contains",
    "Exists",
    "ExpressionCache",
    "ExpressionContext",
    "In",
    "KeyCondition",
    "Not",
    "Or",
    "PathOp",
    "Projection",
    "RESERVED_WORDS",
    "SizeOp",
    "TrueCondition",
    "UpdatePlan",
    "ValueOp",
    "apply_update",
    "evaluate",
    "is_reserved",
    "parse_condition",
    "parse_key_condition",
    "parse_projection",
    "parse_update",
    "path_str",
    "project",
    "resolve",
    "updated_attributes",
]

_NAME_KEY = re.compile(r"#[0-9a-zA-Z_]+")
_VALUE_KEY = re.compile(r":[0-9a-zA-Z_]+")


class ExpressionContext:
    """ExpressionAttributeNames / Values of one request, validated, plus which of them the expressions used."""

    __slots__ = ("names", "values", "used_names", "used_values", "_names_key", "cache")

    def __init__(self, names: dict | None, values: dict | None, *, cache: ExpressionCache | None = None) -> None:
        """``cache``: the server's parse cache (owned by the runtime); without one every parse is fresh."""
        if names is not None:
            if not names:
                raise validation("ExpressionAttributeNames must not be empty")
            for k, v in names.items():
                if not _NAME_KEY.fullmatch(k):
                    raise validation(f'ExpressionAttributeNames contains invalid key: Syntax error; key: "{k}"')
                if v == "":
                    raise validation(f"ExpressionAttributeNames contains invalid value: Empty attribute name for key {k}")
        if values is not None:
            if not values:
                raise validation("ExpressionAttributeValues must not be empty")
            for k in values:
                if not _VALUE_KEY.fullmatch(k):
                    raise validation(f'ExpressionAttributeValues contains invalid key: Syntax error; key: "{k}"')
            for k, v in values.items():
                try:
                    validate_attribute_value(v, k)
                except AWSError as e:
                    if e.code != "ValidationException" or e.message == MSG_NESTING:
                        raise  # DynamoDB reports too deep a value with the same text as in an item
                    raise validation(f"ExpressionAttributeValues contains invalid value: {e.message} for key {k}") from None
        self.names = names or {}
        self.values = values or {}
        self.used_names: set[str] = set()
        self.used_values: set[str] = set()
        self._names_key: tuple | None = None
        self.cache = cache

    def names_key(self) -> tuple:
        if self._names_key is None:
            self._names_key = tuple(sorted(self.names.items())) if self.names else ()
        return self._names_key

    def check_all_used(self) -> None:
        """Raise DynamoDB's "unused" error for names or values no expression referred to."""
        unused = [k for k in self.names if k not in self.used_names]
        if unused:
            raise validation(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {" + ", ".join(unused) + "}"
            )
        unused = [k for k in self.values if k not in self.used_values]
        if unused:
            raise validation(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {" + ", ".join(unused) + "}"
            )

    def __repr__(self) -> str:
        # Values can hold user data; never show them.
        return f"ExpressionContext(names={sorted(self.names)}, values={sorted(self.values)})"


class ExpressionCache:
    """LRU of parsed expressions, bounded by an estimate of the memory its entries hold.

    Keys are expression texts (and, for projections, names): never request values. An entry's cost is its
    key's length times a factor measured for parsed trees (``tests/dynamodb/expressions/test_limits_and_cache.py`` checks it)."""

    # Measured with tracemalloc: raw trees hold ~25-40 bytes per character of text, resolved projections
    # with nested paths up to ~100; a short expression ~2 KB in all.
    BYTES_PER_CHAR = 100
    ENTRY_OVERHEAD = 2048

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict = OrderedDict()  # key -> (value, cost)
        self._lock = threading.Lock()

    def get(self, key: tuple):  # noqa: ANN201 - any cached value
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            self._entries.move_to_end(key)
            return hit[0]

    def put(self, key: tuple, value, chars: int) -> None:  # noqa: ANN001
        cost = chars * self.BYTES_PER_CHAR + self.ENTRY_OVERHEAD
        if cost > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._entries[key] = (value, cost)
            self.bytes += cost
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped

    def keys(self) -> list:
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


#: 16 MiB of estimated tree memory: ~2,000 typical (50-character) expressions, or 40 of the largest (4 KB).
DEFAULT_CACHE_BYTES = 16 * 1024 * 1024


def _names_chars(names: tuple) -> int:
    return sum(len(k) + len(v) for k, v in names)


def _cached(cache: ExpressionCache | None, key: tuple, chars: int, parse):  # noqa: ANN001, ANN202
    if cache is None:
        return parse()
    hit = cache.get(key)
    if hit is None:
        hit = parse()
        cache.put(key, hit, chars)
    return hit


def _raw_condition(ctx: ExpressionContext, text: str, kind: str):  # noqa: ANN202 - parser.RawNode
    return _cached(ctx.cache, ("cond", text), len(text), lambda: parse_condition_raw(text, kind))


def _bind(ctx: ExpressionContext, result: tuple):  # noqa: ANN202
    value, used_names, used_values = result
    ctx.used_names.update(used_names)
    ctx.used_values.update(used_values)
    return value


def parse_condition(text: str, ctx: ExpressionContext, *, kind: str = "ConditionExpression") -> Condition:
    """Parse a ConditionExpression or FilterExpression (``kind`` names it in error messages)."""
    return _bind(ctx, resolve_condition(_raw_condition(ctx, text, kind), kind, ctx.names, ctx.values))


def parse_update(text: str, ctx: ExpressionContext) -> UpdatePlan:
    raw = _cached(ctx.cache, ("update", text), len(text), lambda: parse_update_raw(text))
    return _bind(ctx, resolve_update(raw, ctx.names, ctx.values))


def parse_projection(text: str, ctx: ExpressionContext) -> Projection:
    # A projection holds no values: it is cached resolved, by text and names.
    names = ctx.names_key()
    hit = _cached(ctx.cache, ("projection", text, names), len(text) + _names_chars(names),
                  lambda: parse_projection_text(text, ctx.names))
    return _bind(ctx, hit)


def parse_key_condition(text: str, ctx: ExpressionContext, hash_key: str, range_key: str | None) -> KeyCondition:
    """Parse a KeyConditionExpression and check it against the key schema of the table or index queried."""
    kind = "KeyConditionExpression"
    cond, used_n, used_v = resolve_condition(_raw_condition(ctx, text, kind), kind, ctx.names, ctx.values)
    return _bind(ctx, (key_condition_from_ast(cond, hash_key, range_key), used_n, used_v))
