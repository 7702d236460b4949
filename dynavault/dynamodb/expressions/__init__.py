"""DynamoDB expressions: parse once (cached), evaluate per item.

Usage by an operation::

    ctx = ExpressionContext(req.get("ExpressionAttributeNames"), req.get("ExpressionAttributeValues"))
    cond = parse_condition(req["ConditionExpression"], ctx)          # "Invalid ConditionExpression: ..."
    plan = parse_update(req["UpdateExpression"], ctx)
    ctx.check_all_used()                                              # after *all* expressions are parsed
    if not evaluate(cond, old_item): ...
    new_item = apply_update(plan, old_item, {"pk", "sk"})

Parsed trees are cached by (kind, expression, names, values), so a hot Query or UpdateItem pays only for a
dictionary lookup; the context still learns which names and values the cached expression used.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict

import orjson

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
from dynavault.dynamodb.expressions.parser import (
    parse_condition_text,
    parse_projection_text,
    parse_update_text,
)
from dynavault.dynamodb.expressions.reserved import RESERVED_WORDS, is_reserved
from dynavault.dynamodb.expressions.update import UpdatePlan, apply_update, updated_attributes
from dynavault.dynamodb.values import validate_attribute_value
from dynavault.errors import AWSError, validation

__all__ = [
    "And",
    "AttrType",
    "BeginsWith",
    "Between",
    "Compare",
    "Condition",
    "Contains",
    "Exists",
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

    __slots__ = ("names", "values", "used_names", "used_values", "_key")

    def __init__(self, names: dict | None, values: dict | None) -> None:
        if names is not None:
            if not names:
                raise validation("ExpressionAttributeNames must not be empty")
            for k in names:
                if not _NAME_KEY.fullmatch(k):
                    raise validation(f'ExpressionAttributeNames contains invalid key: Syntax error; key: "{k}"')
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
                    if e.code != "ValidationException":
                        raise
                    raise validation(f"ExpressionAttributeValues contains invalid value: {e.message} for key {k}") from None
        self.names = names or {}
        self.values = values or {}
        self.used_names: set[str] = set()
        self.used_values: set[str] = set()
        self._key: tuple | None = None

    def cache_key(self) -> tuple:
        if self._key is None:
            names = tuple(sorted(self.names.items())) if self.names else ()
            values = orjson.dumps(self.values, option=orjson.OPT_SORT_KEYS) if self.values else b""
            self._key = (names, values)
        return self._key

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


_CACHE_SIZE = 2048
_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def _cached(key: tuple, ctx: ExpressionContext, build):  # noqa: ANN001, ANN202 - internal
    full = (key, ctx.cache_key())
    with _cache_lock:
        hit = _cache.get(full)
        if hit is not None:
            _cache.move_to_end(full)
    if hit is None:
        # Parse against a private copy of the values so a cached tree never aliases a caller's dicts.
        values = orjson.loads(full[1][1]) if full[1][1] else None
        hit = build(values)
        with _cache_lock:
            _cache[full] = hit
            if len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    result, used_names, used_values = hit
    ctx.used_names.update(used_names)
    ctx.used_values.update(used_values)
    return result


def parse_condition(text: str, ctx: ExpressionContext, *, kind: str = "ConditionExpression") -> Condition:
    """Parse a ConditionExpression or FilterExpression (``kind`` names it in error messages)."""
    return _cached(("cond", kind, text), ctx, lambda values: parse_condition_text(text, kind, ctx.names, values))


def parse_update(text: str, ctx: ExpressionContext) -> UpdatePlan:
    return _cached(("update", text), ctx, lambda values: parse_update_text(text, ctx.names, values))


def parse_projection(text: str, ctx: ExpressionContext) -> Projection:
    def build(values):  # noqa: ANN001, ANN202
        return parse_projection_text(text, ctx.names)

    return _cached(("projection", text), ctx, build)


def parse_key_condition(text: str, ctx: ExpressionContext, hash_key: str, range_key: str | None) -> KeyCondition:
    """Parse a KeyConditionExpression and check it against the key schema of the table or index queried."""

    def build(values):  # noqa: ANN001, ANN202
        cond, used_n, used_v = parse_condition_text(text, "KeyConditionExpression", ctx.names, values)
        return key_condition_from_ast(cond, hash_key, range_key), used_n, used_v

    return _cached(("key", text, hash_key, range_key), ctx, build)
