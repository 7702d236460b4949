"""The hot requests (GetItem, Query, PutItem) accepted without walking the model (``shapes.py``).

A GetItem, Query or PutItem made of the members below, each of the plainest form (a table name by the name
rule, string and number AttributeValues, booleans, enum values, a Limit in range), has nothing the model walk
could report or change (no constraint it could break, no null to drop, no number to narrow): it is accepted as
is. Anything else, however slightly off, takes the full walk, so every answer to a bad request is the walk's.
"""

from __future__ import annotations

import re
from typing import Any

_PLAIN_NAME = re.compile(r"[a-zA-Z0-9_.-]{3,255}")
_CAPACITY = frozenset(("INDEXES", "TOTAL", "NONE"))
_SELECT = frozenset(("ALL_ATTRIBUTES", "ALL_PROJECTED_ATTRIBUTES", "SPECIFIC_ATTRIBUTES", "COUNT"))


def _plain_values(m: Any) -> bool:
    """A map of short names to AttributeValues of one S or N string each."""
    if type(m) is not dict or not m:
        return False
    for k, x in m.items():
        if type(k) is not str or len(k) > 255 or type(x) is not dict or len(x) != 1:
            return False
        v = x.get("S")
        if v is None:
            v = x.get("N")
        if type(v) is not str:
            return False
    return True


def _plain_names(m: Any) -> bool:
    if type(m) is not dict or not m:
        return False
    return all(type(k) is str and type(v) is str and len(v) <= 255 for k, v in m.items())


def _plain_member(k: str, v: Any) -> bool:
    if k == "TableName" or k == "IndexName":
        return type(v) is str and _PLAIN_NAME.fullmatch(v) is not None
    if k == "Key" or k == "Item" or k == "ExpressionAttributeValues":
        return _plain_values(v)
    if k in ("KeyConditionExpression", "ProjectionExpression", "FilterExpression", "ConditionExpression"):
        return type(v) is str
    if k == "ConsistentRead" or k == "ScanIndexForward":
        return type(v) is bool
    if k == "ExpressionAttributeNames":
        return _plain_names(v)
    if k == "Limit":
        return type(v) is int and 1 <= v < 2**31
    if k == "ReturnConsumedCapacity":
        return type(v) is str and v in _CAPACITY
    if k == "Select":
        return type(v) is str and v in _SELECT
    return False


PLAIN_MEMBERS = {
    "GetItem": (frozenset(("TableName", "Key", "ConsistentRead", "ReturnConsumedCapacity", "ProjectionExpression",
                           "ExpressionAttributeNames")), ("TableName", "Key")),
    "Query": (frozenset(("TableName", "IndexName", "KeyConditionExpression", "ExpressionAttributeValues",
                         "ExpressionAttributeNames", "ProjectionExpression", "FilterExpression", "ConsistentRead",
                         "ScanIndexForward", "Limit", "ReturnConsumedCapacity", "Select")), ("TableName",)),
    # an item of S and N attributes only: the walk's whole cost for a put is its per-attribute structure checks
    "PutItem": (frozenset(("TableName", "Item", "ConditionExpression", "ExpressionAttributeNames",
                           "ExpressionAttributeValues", "ReturnConsumedCapacity")), ("TableName", "Item")),
}


def plain_request(allowed: frozenset[str], required: tuple[str, ...], body: dict) -> bool:
    if not allowed.issuperset(body):
        return False
    for k in required:
        if k not in body:
            return False
    for k, v in body.items():
        if not _plain_member(k, v):
            return False
    return True
