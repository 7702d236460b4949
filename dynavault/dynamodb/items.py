"""Item operations: PutItem, GetItem, DeleteItem, UpdateItem.

Each write is one store transaction: read the old item, check the condition, write the new item
(index entries and stream records join the same transaction through the service's hooks).
The table key is fetched from the per-connection cache before any data is touched (fail closed).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import orjson

from dynavault.caller import Caller
from dynavault.errors import AWSError, validation

from . import legacy
from .expressions import (
    ExpressionContext,
    apply_update,
    evaluate,
    parse_condition,
    parse_projection,
    parse_update,
    project,
    updated_attributes,
)
from .keys import key_of_item, key_of_request
from .values import canonical_item, item_size, validate_item

if TYPE_CHECKING:
    from dynavault.storage.sealed import Token
    from dynavault.storage.trees import Slot

    from .catalog import TableMeta
    from .service import DynamoDBService

_RETURN_VALUES = {
    "PutItem": ("NONE", "ALL_OLD"),
    "DeleteItem": ("NONE", "ALL_OLD"),
    "UpdateItem": ("NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"),
}


# -- request pieces shared by every item operation ----------------------------------------------
def parse_request_condition(p: dict, ctx: ExpressionContext, operation: str):
    if p.get("ConditionExpression") is not None:
        return parse_condition(p["ConditionExpression"], ctx, kind="ConditionExpression")
    if p.get("Expected"):
        return legacy.expected_to_condition(p["Expected"], p.get("ConditionalOperator"))
    if p.get("ConditionalOperator") is not None:
        raise validation("ConditionalOperator can only be used when Filter or Expected has two or more elements")
    return None


def parse_request_projection(p: dict, ctx: ExpressionContext):
    if p.get("ProjectionExpression") is not None:
        return parse_projection(p["ProjectionExpression"], ctx)
    if p.get("AttributesToGet"):
        return legacy.attributes_to_get_to_projection(p["AttributesToGet"])
    return None


def return_values(p: dict, operation: str) -> str:
    rv = p.get("ReturnValues") or "NONE"
    if rv not in _RETURN_VALUES[operation]:
        raise validation("Return values set to invalid value")
    return rv


def capacity(meta, mode: str | None, units: float, *, write: bool, index_units: dict | None = None) -> dict | None:
    if not mode or mode == "NONE":
        return None
    out: dict = {"TableName": meta.name, "CapacityUnits": units}
    out["WriteCapacityUnits" if write else "ReadCapacityUnits"] = units
    if mode == "INDEXES":
        out["Table"] = {"CapacityUnits": units - sum((index_units or {}).values())}
        for name, u in (index_units or {}).items():
            kind = "LocalSecondaryIndexes" if name.startswith("lsi:") else "GlobalSecondaryIndexes"
            out.setdefault(kind, {})[name.split(":", 1)[1]] = {"CapacityUnits": u}
    return out


def write_units(*sizes: int) -> float:
    return float(max(1, math.ceil(max(sizes) / 1024)))


def read_units(size: int, consistent: bool) -> float:
    units = max(1, math.ceil(size / 4096))
    return float(units) if consistent else units / 2


def write_response(meta, p: dict, attributes: dict | None, units: float, index_units: dict | None) -> dict:
    """The response of a single-item write: returned attributes and consumed capacity."""
    out: dict = {}
    if attributes:
        out["Attributes"] = attributes
    cc = capacity(meta, p.get("ReturnConsumedCapacity"), units + sum((index_units or {}).values()), write=True,
                  index_units=index_units)
    if cc:
        out["ConsumedCapacity"] = cc
    return out


def _condition_failed(old: dict | None, p: dict) -> AWSError:
    extra = None
    if p.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and old is not None:
        extra = {"Item": old}
    return AWSError("ConditionalCheckFailedException", "The conditional request failed", extra=extra)


def _checked_place(
    svc: DynamoDBService, tx, crypto, meta: TableMeta, token: Token, skey: bytes, cond, p: dict
) -> tuple[Slot, dict | None]:
    """The item's place in the base table (one descent) and its current value, once the request's
    condition holds on it; raises ConditionalCheckFailedException otherwise."""
    place = svc.trees.slot(tx, crypto.codec, meta.id_bytes, 0, token, skey)
    old = orjson.loads(place.value) if place.value is not None else None
    if cond is not None and not evaluate(cond, old):
        raise _condition_failed(old, p)
    return place, old


# -- operations ---------------------------------------------------------------------------------
def put_item(svc: DynamoDBService, caller: Caller, p: dict) -> dict:
    meta = svc.data_table(caller, p["TableName"])
    legacy.check_no_mixing(p, "PutItem")
    item = p.get("Item") or {}
    validate_item(item)
    hkey, skey, _ = key_of_item(meta, item)
    rv = return_values(p, "PutItem")
    ctx = ExpressionContext(p.get("ExpressionAttributeNames"), p.get("ExpressionAttributeValues"))
    cond = parse_request_condition(p, ctx, "PutItem")
    ctx.check_all_used()
    item = canonical_item(item)
    crypto = svc.crypto(caller, meta)
    token = crypto.token(0, hkey)
    new_raw = orjson.dumps(item)
    new_size = item_size(item)
    with svc.kv.transaction() as tx:
        place, old = _checked_place(svc, tx, crypto, meta, token, skey, cond, p)
        place.put(new_raw)
        old_size = item_size(old) if old is not None else 0
        index_units = svc.after_write(tx, caller, meta, crypto, old, item)
        stats = svc.catalog.add_stats(tx, meta.table_id, 0 if old is not None else 1, new_size - old_size)
    svc.catalog.commit_stats(meta.table_id, stats)
    return write_response(meta, p, old if rv == "ALL_OLD" else None, write_units(new_size, old_size), index_units)


def get_item(svc: DynamoDBService, caller: Caller, p: dict) -> dict:
    meta = svc.data_table(caller, p["TableName"])
    legacy.check_no_mixing(p, "GetItem")
    hkey, skey, _ = key_of_request(meta, p.get("Key") or {})
    ctx = ExpressionContext(p.get("ExpressionAttributeNames"), p.get("ExpressionAttributeValues"))
    proj = parse_request_projection(p, ctx)
    ctx.check_all_used()
    crypto = svc.crypto(caller, meta)
    with svc.kv.snapshot() as r:
        raw = svc.trees.get(r, crypto.codec, meta.id_bytes, 0, crypto.token(0, hkey), skey)
    out: dict = {}
    mode = p.get("ReturnConsumedCapacity")
    wants_units = bool(mode) and mode != "NONE"
    if raw is None:
        item = None
    elif proj is None and not wants_units:
        # The stored form is the item's canonical JSON: hand it to the response as is, no re-encoding.
        out["Item"] = orjson.Fragment(raw)
    else:
        item = orjson.loads(raw)
        out["Item"] = project(proj, item) if proj is not None else item
    if wants_units:
        size = item_size(item) if item is not None else 0
        out["ConsumedCapacity"] = capacity(meta, mode, read_units(size, bool(p.get("ConsistentRead"))), write=False)
    return out


def delete_item(svc: DynamoDBService, caller: Caller, p: dict) -> dict:
    meta = svc.data_table(caller, p["TableName"])
    legacy.check_no_mixing(p, "DeleteItem")
    hkey, skey, _ = key_of_request(meta, p.get("Key") or {})
    rv = return_values(p, "DeleteItem")
    ctx = ExpressionContext(p.get("ExpressionAttributeNames"), p.get("ExpressionAttributeValues"))
    cond = parse_request_condition(p, ctx, "DeleteItem")
    ctx.check_all_used()
    crypto = svc.crypto(caller, meta)
    token = crypto.token(0, hkey)
    stats = None
    with svc.kv.transaction() as tx:
        place, old = _checked_place(svc, tx, crypto, meta, token, skey, cond, p)
        index_units = None
        if old is not None:
            place.delete()
            index_units = svc.after_write(tx, caller, meta, crypto, old, None)
            stats = svc.catalog.add_stats(tx, meta.table_id, -1, -item_size(old))
    if stats is not None:
        svc.catalog.commit_stats(meta.table_id, stats)
    old_size = item_size(old) if old is not None else 0
    return write_response(meta, p, old if rv == "ALL_OLD" else None, write_units(old_size), index_units)


def update_item(svc: DynamoDBService, caller: Caller, p: dict) -> dict:
    meta = svc.data_table(caller, p["TableName"])
    legacy.check_no_mixing(p, "UpdateItem")
    key = p.get("Key") or {}
    hkey, skey, _ = key_of_request(meta, key)
    rv = return_values(p, "UpdateItem")
    ctx = ExpressionContext(p.get("ExpressionAttributeNames"), p.get("ExpressionAttributeValues"))
    if p.get("UpdateExpression") is not None:
        plan = parse_update(p["UpdateExpression"], ctx)
    elif p.get("AttributeUpdates") is not None:
        plan = legacy.attribute_updates_to_plan(p["AttributeUpdates"])
    else:
        plan = None
    cond = parse_request_condition(p, ctx, "UpdateItem")
    ctx.check_all_used()
    crypto = svc.crypto(caller, meta)
    token = crypto.token(0, hkey)
    with svc.kv.transaction() as tx:
        place, old = _checked_place(svc, tx, crypto, meta, token, skey, cond, p)
        base = old if old is not None else dict(key)
        new = apply_update(plan, base, meta.key_names) if plan is not None else dict(base)
        new = canonical_item(new)
        validate_item(new)
        new_size = item_size(new)
        place.put(orjson.dumps(new))
        old_size = item_size(old) if old is not None else 0
        index_units = svc.after_write(tx, caller, meta, crypto, old, new)
        stats = svc.catalog.add_stats(tx, meta.table_id, 0 if old is not None else 1, new_size - old_size)
    svc.catalog.commit_stats(meta.table_id, stats)
    attrs = None
    if rv == "ALL_OLD":
        attrs = old
    elif rv == "ALL_NEW":
        attrs = new
    elif rv in ("UPDATED_OLD", "UPDATED_NEW") and plan is not None:
        attrs = updated_attributes(plan, old, new, rv)
    return write_response(meta, p, attrs, write_units(new_size, old_size), index_units)


HANDLERS = {
    "PutItem": put_item,
    "GetItem": get_item,
    "DeleteItem": delete_item,
    "UpdateItem": update_item,
}
