"""Item operations: PutItem, GetItem, DeleteItem, UpdateItem.

Each write is one store transaction of the item store: find the item's place and old value, check the
condition, then apply the change (the item store writes index entries and hands it to subscribers).
The table key is fetched from the per-connection cache before any data is touched (fail closed).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import orjson

from dynavault.caller import Caller
from dynavault.errors import AWSError, validation

from . import item_collections, legacy
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
from .item_store import ItemChange
from .keys import key_of_item, key_of_request
from .values import canonical_item, item_size, validate_item

if TYPE_CHECKING:
    from .catalog import TableMeta
    from .database import Database
    from .item_store import ItemWriter, Place

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


def write_response(meta, p: dict, attributes: dict | None, units: float, index_units: dict | None,
                   collection: dict | None = None) -> dict:
    """The response of a single-item write: returned attributes, consumed capacity and, asked for with
    ReturnItemCollectionMetrics SIZE on a table with LSIs, the item collection's size estimate."""
    out: dict = {}
    if attributes:
        out["Attributes"] = attributes
    if collection is not None:
        out["ItemCollectionMetrics"] = collection
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


def _collection(w: ItemWriter, meta: TableMeta, crypto, hkey: bytes, key: dict, p: dict) -> dict | None:
    """ItemCollectionMetrics, read in the write's own transaction (the size this write left)."""
    if p.get("ReturnItemCollectionMetrics") != "SIZE":
        return None
    return item_collections.metrics(w.tx, meta, crypto, hkey, key)


def _checked_place(w: ItemWriter, crypto, meta: TableMeta, hkey: bytes, skey: bytes, cond, p: dict) -> Place:
    """The item's place in the base table (one descent) with its current value, once the request's
    condition holds on it; raises ConditionalCheckFailedException otherwise."""
    place = w.place(meta, crypto, hkey, skey)
    if cond is not None and not evaluate(cond, place.old):
        raise _condition_failed(place.old, p)
    return place


# -- operations ---------------------------------------------------------------------------------
#: PutItem members that need no expression or legacy-parameter checks (as ``_PLAIN_GET`` for GetItem): with
#: only these, check_no_mixing and the expression context have nothing to refuse and there is no condition
_PLAIN_PUT = frozenset(("TableName", "Item", "ReturnValues", "ReturnConsumedCapacity", "ReturnItemCollectionMetrics"))


def put_item(db: Database, caller: Caller, p: dict) -> dict:
    # The request is validated as a whole before the table is looked up: a bad request to a missing table
    # is a ValidationException, as in DynamoDB; only checks that need the key schema come after.
    plain = _PLAIN_PUT.issuperset(p)
    if not plain:
        legacy.check_no_mixing(p, "PutItem")
    item = p.get("Item") or {}
    new_size = validate_item(item)  # the canonical item's size too: canonical numbers keep their digits
    rv = return_values(p, "PutItem")
    cond = None
    if not plain:
        ctx = ExpressionContext(p.get("ExpressionAttributeNames"), p.get("ExpressionAttributeValues"),
                                cache=db.expression_cache)
        cond = parse_request_condition(p, ctx, "PutItem")
        ctx.check_all_used()
    meta = db.data_table(caller, p["TableName"])
    hkey, skey, _ = key_of_item(meta, item)
    item = canonical_item(item)
    crypto = db.crypto(caller, meta)
    with db.items.write() as w:
        place = _checked_place(w, crypto, meta, hkey, skey, cond, p)
        old = place.old
        index_units = w.apply(ItemChange(meta, old, item, "PutItem"), crypto, hkey=hkey, skey=skey, place=place,
                              new_size=new_size)
        collection = _collection(w, meta, crypto, hkey, item, p)
    old_size = place.old_size
    return write_response(meta, p, old if rv == "ALL_OLD" else None, write_units(new_size, old_size), index_units,
                          collection)


#: GetItem members that need no expression or legacy-parameter checks: a request of only these has nothing
#: for check_no_mixing, the expression context or the projection to look at
_PLAIN_GET = frozenset(("TableName", "Key", "ConsistentRead", "ReturnConsumedCapacity"))


def get_item(db: Database, caller: Caller, p: dict) -> dict:
    if _PLAIN_GET.issuperset(p):
        proj = None
    else:
        legacy.check_no_mixing(p, "GetItem")
        ctx = ExpressionContext(p.get("ExpressionAttributeNames"), p.get("ExpressionAttributeValues"),
                                cache=db.expression_cache)
        proj = parse_request_projection(p, ctx)
        ctx.check_all_used()
    meta = db.data_table(caller, p["TableName"])
    hkey, skey, _ = key_of_request(meta, p.get("Key") or {})
    crypto = db.crypto(caller, meta)
    raw = db.items.get_json(meta, crypto, hkey, skey)
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


def delete_item(db: Database, caller: Caller, p: dict) -> dict:
    legacy.check_no_mixing(p, "DeleteItem")
    rv = return_values(p, "DeleteItem")
    ctx = ExpressionContext(p.get("ExpressionAttributeNames"), p.get("ExpressionAttributeValues"),
                            cache=db.expression_cache)
    cond = parse_request_condition(p, ctx, "DeleteItem")
    ctx.check_all_used()
    meta = db.data_table(caller, p["TableName"])
    hkey, skey, _ = key_of_request(meta, p.get("Key") or {})
    crypto = db.crypto(caller, meta)
    with db.items.write() as w:
        place = _checked_place(w, crypto, meta, hkey, skey, cond, p)
        old = place.old
        index_units = w.apply(ItemChange(meta, old, None, "DeleteItem"), crypto, hkey=hkey, skey=skey, place=place)
        collection = _collection(w, meta, crypto, hkey, p.get("Key") or {}, p)
    old_size = place.old_size
    return write_response(meta, p, old if rv == "ALL_OLD" else None, write_units(old_size), index_units,
                          collection)


def update_item(db: Database, caller: Caller, p: dict) -> dict:
    legacy.check_no_mixing(p, "UpdateItem")
    key = p.get("Key") or {}
    rv = return_values(p, "UpdateItem")
    ctx = ExpressionContext(p.get("ExpressionAttributeNames"), p.get("ExpressionAttributeValues"),
                            cache=db.expression_cache)
    if p.get("UpdateExpression") is not None:
        plan = parse_update(p["UpdateExpression"], ctx)
    elif p.get("AttributeUpdates") is not None:
        plan = legacy.attribute_updates_to_plan(p["AttributeUpdates"])
    else:
        plan = None
    cond = parse_request_condition(p, ctx, "UpdateItem")
    ctx.check_all_used()
    meta = db.data_table(caller, p["TableName"])
    hkey, skey, _ = key_of_request(meta, key)
    crypto = db.crypto(caller, meta)
    with db.items.write() as w:
        place = _checked_place(w, crypto, meta, hkey, skey, cond, p)
        old = place.old
        new_size = 0
        if old is None and plan is not None and plan.only_removals:
            new = None
            index_units: dict = {}
        else:
            base = old if old is not None else dict(key)
            new = apply_update(plan, base, meta.key_names) if plan is not None else dict(base)
            new = canonical_item(new)
            new_size = validate_item(new)
            index_units = w.apply(ItemChange(meta, old, new, "UpdateItem"), crypto, hkey=hkey, skey=skey,
                                  place=place, new_size=new_size)
        collection = _collection(w, meta, crypto, hkey, key, p)
    old_size = place.old_size
    attrs = None
    if rv == "ALL_OLD":
        attrs = old
    elif rv == "ALL_NEW":
        attrs = new
    elif rv in ("UPDATED_OLD", "UPDATED_NEW") and plan is not None and new is not None:
        attrs = updated_attributes(plan, old, new, rv)
    return write_response(meta, p, attrs, write_units(new_size, old_size), index_units, collection)


HANDLERS = {
    "PutItem": put_item,
    "GetItem": get_item,
    "DeleteItem": delete_item,
    "UpdateItem": update_item,
}
