"""BatchGetItem and BatchWriteItem.

Validation is all-or-nothing, as in DynamoDB: an unknown table, a bad key, a duplicate key or an
oversized item rejects the whole request before anything is read or written. The writes of a
batch then go through the shared engine (:func:`transactions.run_writes`) as ONE store
transaction, so a crash never leaves half a batch behind.

A table whose KMS key is unusable: its requests are returned unprocessed (UnprocessedItems /
UnprocessedKeys, with exactly the request entries the client sent) while the other tables are
served, so a client's ordinary retry loop picks them up once the key is back. When *no* table of
the request can be served, the request fails with the first such table's KMS error, as DynamoDB
does when nothing of a batch can be processed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dynavault.caller import Caller
from dynavault.errors import AWSError, validation

from . import item_collections, legacy
from . import items as item_ops
from .expressions import ExpressionContext
from .expressions import project as project_item
from .keys import key_of_request
from .transactions import (
    MSG_CONFLICT,
    ActionRequest,
    ActionsFailed,
    WriteAction,
    bind_action,
    check_action,
    consumed,
    run_writes,
    units_by_table,
)
from .values import item_size

if TYPE_CHECKING:
    from .database import Database

MAX_GET_KEYS = 100
MAX_WRITES = 25
#: BatchGetItem stops adding items once the response would pass 16 MB
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MSG_DUPLICATES = "Provided list of item keys contains duplicates"
MSG_ONE_REQUEST = ("Supplied AttributeValue has more than one datatypes set, must contain exactly one of the "
                   "supported datatypes")


def _usable_cryptos(db: Database, caller: Caller, metas: list) -> tuple[dict, AWSError | None]:
    """Table keys of the tables whose key can be had now, and the first key error met (if any)."""
    cryptos: dict = {}
    first: AWSError | None = None
    for meta in metas:
        if meta.table_id in cryptos:
            continue
        try:
            cryptos[meta.table_id] = db.crypto(caller, meta)
        except AWSError as e:
            if first is None:
                first = e
    return cryptos, first


# -- BatchGetItem -------------------------------------------------------------------------------
def batch_get_item(db: Database, caller: Caller, p: dict) -> dict:
    request = p.get("RequestItems") or {}
    if not request:
        raise validation("BatchGetItem must have some requests set")
    if sum(len((ka or {}).get("Keys") or []) for ka in request.values()) > MAX_GET_KEYS:
        raise validation("Too many items requested for the BatchGetItem call")
    checked = []
    for name, ka in request.items():  # the request alone first: refused whether or not its tables exist
        ka = ka or {}
        legacy.check_no_mixing(ka, "BatchGetItem")
        if not ka.get("Keys"):
            raise validation(f"The list of keys in RequestItems for BatchGetItem is required: {name} has empty list")
        ctx = ExpressionContext(ka.get("ExpressionAttributeNames"), None, cache=db.expression_cache)
        proj = item_ops.parse_request_projection(ka, ctx)
        ctx.check_all_used()
        checked.append((name, ka, proj))
    tables = []
    for name, ka, proj in checked:
        meta = db.data_table(caller, name)
        keys = ka["Keys"]
        parsed = []
        seen: set = set()
        for key in keys:
            hkey, skey, _ = key_of_request(meta, key)
            if (hkey, skey) in seen:
                raise validation(MSG_DUPLICATES)
            seen.add((hkey, skey))
            parsed.append((hkey, skey, key))
        tables.append((name, ka, meta, proj, parsed))
    cryptos, key_error = _usable_cryptos(db, caller, [t[2] for t in tables])
    if not cryptos and key_error is not None:
        raise key_error
    responses: dict[str, list] = {}
    unprocessed: dict[str, dict] = {}
    units: dict[str, float] = {}
    metas = {}
    total = 0
    full = False
    tp = db.throughput if db.throughput.enabled else None
    refused: dict = {}  # tables whose read capacity left keys unprocessed
    # one read view for the whole batch: every item as of one committed state
    with db.items.read() as r:
        for name, ka, meta, proj, parsed in tables:
            metas[meta.table_id] = meta
            crypto = cryptos.get(meta.table_id)
            if crypto is None:
                unprocessed[name] = ka
                continue
            consistent = bool(ka.get("ConsistentRead"))
            out = responses.setdefault(name, [])
            left = []
            for hkey, skey, key in parsed:
                if full or (tp is not None and not tp.admit_read(meta, consistent, refused)):
                    left.append(key)
                    continue
                item = db.items.get(meta, crypto, hkey, skey, r)
                size = 0
                if item is not None:
                    size = item_size(item)
                    if total + size > MAX_RESPONSE_BYTES:
                        # this key and every one after it are left for the client's next call
                        full = True
                        left.append(key)
                        continue
                    total += size
                    out.append(project_item(proj, item) if proj is not None else item)
                units[meta.table_id] = units.get(meta.table_id, 0.0) + item_ops.read_units(size, consistent)
                if tp is not None:
                    tp.charge(meta, "read", item_ops.read_units(size, consistent))
            if left:
                unprocessed[name] = {**ka, "Keys": left}
    if tp is not None:
        tp.finish_batch(refused, bool(units))
    result: dict = {"Responses": responses, "UnprocessedKeys": unprocessed}
    cc = consumed(metas, units, p.get("ReturnConsumedCapacity"), write=False)
    if cc is not None:
        result["ConsumedCapacity"] = cc
    return result


# -- BatchWriteItem -----------------------------------------------------------------------------
def batch_write_item(db: Database, caller: Caller, p: dict) -> dict:
    request = p.get("RequestItems") or {}
    if not request:
        raise validation("BatchWriteItem cannot have a null or no requests set")
    if sum(len(reqs or []) for reqs in request.values()) > MAX_WRITES:
        raise validation("Too many items requested for the BatchWriteItem call")
    checked: list[tuple[str, list, list[ActionRequest]]] = []
    for name, reqs in request.items():  # the request alone first: refused whether or not its tables exist
        if not reqs:
            raise validation(f"The batch write request list for a table cannot be null or empty: {name}")
        requests = []
        for wr in reqs:
            put = (wr or {}).get("PutRequest")
            delete = (wr or {}).get("DeleteRequest")
            if (put is None) == (delete is None):
                raise validation(MSG_ONE_REQUEST)
            if put is not None:
                requests.append(check_action(db, "Put", {"TableName": name, "Item": put.get("Item")}))
            else:
                requests.append(check_action(db, "Delete", {"TableName": name, "Key": delete.get("Key")}))
        checked.append((name, reqs, requests))
    plan: list[tuple[str, list, list[WriteAction]]] = []
    for name, reqs, requests in checked:
        actions = []
        seen: set = set()
        for r in requests:
            a = bind_action(db, caller, r)
            if (a.hkey, a.skey) in seen:
                raise validation(MSG_DUPLICATES)
            seen.add((a.hkey, a.skey))
            actions.append(a)
        plan.append((name, reqs, actions))
    cryptos, key_error = _usable_cryptos(db, caller, [acts[0].meta for _, _, acts in plan])
    if not cryptos and key_error is not None:
        raise key_error
    todo = [a for _, _, acts in plan for a in acts if a.meta.table_id in cryptos]
    unprocessed = {name: reqs for name, reqs, acts in plan if acts[0].meta.table_id not in cryptos}
    if db.throughput.enabled:  # writes over the tables' capacity are left for the client's retry
        todo = db.throughput.admit_writes(plan, todo, unprocessed)
    try:
        run_writes(db, caller, todo, cause="BatchWriteItem", transactional=False, cryptos=cryptos)
    except ActionsFailed:
        # only an in-flight transaction holding one of the items makes a batch's writes fail
        raise AWSError("TransactionConflictException", MSG_CONFLICT) from None
    if db.throughput.enabled:
        db.throughput.settle_writes(todo)
    result: dict = {"UnprocessedItems": unprocessed}
    if p.get("ReturnItemCollectionMetrics") == "SIZE":
        result["ItemCollectionMetrics"] = item_collections.metrics_by_table(db.items, lambda m: cryptos[m.table_id],
                                                                            todo)
    metas, units = units_by_table(todo)
    cc = consumed(metas, units, p.get("ReturnConsumedCapacity"), write=True, actions=todo)
    if cc is not None:
        result["ConsumedCapacity"] = cc
    return result


HANDLERS = {
    "BatchGetItem": batch_get_item,
    "BatchWriteItem": batch_write_item,
}
