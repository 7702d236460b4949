"""DAX's multi-item methods: BatchGetItem, BatchWriteItem, TransactWriteItems, TransactGetItems.

Their responses are several CBOR values in a row (BatchGetItem declares an array of two and sends a third value
after it, as DAX's servers do and the clients expect), so they return ``Raw`` bytes.
"""

from __future__ import annotations

import cbor2

from dynavault.errors import AWSError

from . import protocol as P
from .attributes import bad, decode_key, encode_key
from .expressions import Placeholders, render
from .operations import (
    Raw,
    Request,
    cache_for,
    collection_metrics_bytes,
    consumed_capacity_bytes,
    consumed_capacity_map,
    enum_arg,
    options_arg,
    projector,
    text_arg,
)

#: DynamoDB's own caps (100 keys per BatchGetItem, 25 writes, 100 transaction items) stop requests long
#: before these; they only bound what is looked at before the engine says so
_MAX_TABLES = 100
_MAX_ENTRIES = 1000


def _map(value, what: str) -> dict:
    if not isinstance(value, dict) or len(value) > _MAX_TABLES:
        raise bad(f"malformed {what}")
    return value


def _list(value, what: str, allow_none: bool = False) -> list | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, (list, tuple)) or len(value) > _MAX_ENTRIES:
        raise bad(f"malformed {what}")
    return list(value)


def _capacity_mode(req: Request, opts: dict, params: dict) -> None:
    req.common(params, {k: v for k, v in opts.items() if k in (P.Param.RETURN_CONSUMED_CAPACITY,
                                                                 P.Param.RETURN_ITEM_COLLECTION_METRICS)},
               Placeholders(), write=True)


def _drop_cached(req: Request, schemas: dict, written: list[tuple[str, dict]]) -> None:
    """Multi-item writes drop the keys they wrote from the item cache (the next read fills it again)."""
    if req.engine.cache is None:
        return
    for table, item in written:
        req.engine.cache.drop_items(req.scope, table, [encode_key(item, schemas[table])])


def batch_get_item(req: Request, tables, opts) -> Raw:
    """Eventually consistent keys of a table read without a projection are answered from the item cache, as
    DAX does; the misses (and every consistent or projected table) go to the engine in one BatchGetItem, and
    what it returns (items, and absent keys) fills the cache."""
    opts = options_arg(opts)
    request_items: dict = {}
    projectors = {}
    schemas = {}
    cache = cache_for(req, opts, consistent_param=False)
    cacheable: list[str] = []
    for name, spec in _map(tables, "RequestItems").items():
        table = text_arg(name, "TableName")
        spec = _list(spec, "RequestItems")
        if len(spec) != 3:
            raise bad("malformed RequestItems")
        consistent, projection, keys = spec
        schema = schemas[table] = req.engine.key_schema(req.caller, table)
        entry: dict = {"Keys": [decode_key(k, schema) for k in _list(keys, "Keys")]}
        if consistent:
            entry["ConsistentRead"] = True
        if projection is not None:
            ph = Placeholders()
            entry["ProjectionExpression"] = render(projection, "Projection", ph, "p")
            entry.update(ph.params())
            projectors[table] = projector(projection)
        elif not consistent:
            cacheable.append(table)
        request_items[table] = entry
    hits: dict[str, list] = {}
    if cache is not None and _plain_request(request_items, schemas):
        for table in cacheable:
            hits[table], request_items[table]["Keys"] = _cached(req, cache, table, schemas[table],
                                                                request_items[table]["Keys"])
            if not request_items[table]["Keys"]:
                del request_items[table]
    else:
        cacheable = []
    result: dict = {}
    if request_items or not hits:
        params: dict = {"RequestItems": request_items}
        _capacity_mode(req, opts, params)
        params.pop("ReturnItemCollectionMetrics", None)
        result = req.call("BatchGetItem", params)
    responses = {}
    for table, items in result.get("Responses", {}).items():
        if table in projectors:
            responses[table] = [projectors[table](item) for item in items]
        else:
            flat = []
            for item in items:
                flat.append(encode_key(item, schemas[table]))
                flat.append(req.stream_item(item, schemas[table]))
            responses[table] = flat
    unprocessed = {table: [encode_key(k, schemas[table]) for k in entry.get("Keys", [])]
                   for table, entry in result.get("UnprocessedKeys", {}).items()}
    for table in cacheable:
        if table in request_items:
            _fill(req, cache, table, request_items[table]["Keys"], responses.get(table, []),
                  set(unprocessed.get(table, [])))
        if hits[table]:
            responses.setdefault(table, []).extend(hits[table])
    capacity = [consumed_capacity_bytes(cc) for cc in result.get("ConsumedCapacity", [])]
    return Raw(cbor2.dumps([responses, unprocessed]) + cbor2.dumps([c for c in capacity if c is not None]))


def _plain_request(request_items: dict, schemas: dict) -> bool:
    """Whether the request is one the engine would accept as far as its keys go (DynamoDB's 100 keys, no key
    twice): a request it refuses must reach it to be refused, never be answered from the cache."""
    total = 0
    for table, entry in request_items.items():
        keys = entry["Keys"]
        if not keys:
            return False
        total += len(keys)
        if len({encode_key(k, schemas[table]) for k in keys}) != len(keys):
            return False
    return total <= 100


def _cached(req: Request, cache, table: str, schema, keys: list[dict]) -> tuple[list, list[dict]]:
    """(flat [key bytes, item values] of the keys the item cache holds an item for, the keys it has no entry
    for); a key cached as absent is answered by leaving it out, as DynamoDB leaves out a missing item."""
    ttl = req.lifetimes()[0]
    found: list = []
    missing = []
    for key in keys:
        cache_key = encode_key(key, schema)
        body = cache.get_item(req.caller, req.scope, table, cache_key, ttl)
        if body is None:
            missing.append(key)
            continue
        values = cbor2.loads(body).get(P.Result.ITEM)
        if values is not None:
            found += [cache_key, values]
    return found, missing


def _fill(req: Request, cache, table: str, asked: list[dict], flat: list, unprocessed: set[bytes]) -> None:
    """The item cache after the engine's answer: each item it returned, and "absent" for each key it looked
    up and did not return (a key left unprocessed was not looked up)."""
    ttl = req.lifetimes()[0]
    returned = {}
    for i in range(0, len(flat), 2):
        returned[flat[i]] = flat[i + 1]
    schema = req.engine.key_schema(req.caller, table)
    for key in asked:
        cache_key = encode_key(key, schema)
        if cache_key in unprocessed:
            continue
        values = returned.get(cache_key)
        body = cbor2.dumps({P.Result.ITEM: values} if values is not None else {})
        cache.put_item(req.caller, req.scope, table, cache_key, body, ttl)


def batch_write_item(req: Request, tables, opts) -> Raw:
    opts = options_arg(opts)
    request_items: dict = {}
    schemas = {}
    for name, entries in _map(tables, "RequestItems").items():
        table = text_arg(name, "TableName")
        entries = _list(entries, "RequestItems")
        if len(entries) % 2:
            raise bad("malformed RequestItems")
        schema = schemas[table] = req.engine.key_schema(req.caller, table)
        writes = []
        for i in range(0, len(entries), 2):
            key = decode_key(entries[i], schema)
            if entries[i + 1] is None:
                writes.append({"DeleteRequest": {"Key": key}})
            else:
                writes.append({"PutRequest": {"Item": req.item(key, entries[i + 1])}})
        request_items[table] = writes
    params: dict = {"RequestItems": request_items}
    _capacity_mode(req, opts, params)
    result = req.call("BatchWriteItem", params)
    _drop_cached(req, schemas, [(t, w.get("PutRequest", {}).get("Item") or w["DeleteRequest"]["Key"])
                                for t, ws in request_items.items() for w in ws])
    unprocessed: dict = {}
    for table, writes in result.get("UnprocessedItems", {}).items():
        flat = []
        for w in writes:
            if "PutRequest" in w:
                item = w["PutRequest"]["Item"]
                flat += [encode_key(item, schemas[table]), req.stream_item(item, schemas[table])]
            else:
                flat += [encode_key(w["DeleteRequest"]["Key"], schemas[table]), None]
        unprocessed[table] = flat
    capacity = [consumed_capacity_bytes(cc) for cc in result.get("ConsumedCapacity", [])]
    metrics = {table: [collection_metrics_bytes(m) for m in ms]
               for table, ms in result.get("ItemCollectionMetrics", {}).items()}
    return Raw(cbor2.dumps(unprocessed) + cbor2.dumps([c for c in capacity if c is not None])
               + cbor2.dumps(metrics))


def transact_write_items(req: Request, operations, tables, keys, values, return_values, on_failure, conditions,
                         updates, opts) -> Raw:
    opts = options_arg(opts)
    operations = _list(operations, "operations")
    n = len(operations)
    tables = _list(tables, "tableNames")
    keys = _list(keys, "keys")
    values = _list(values, "values", True) or [None] * n
    on_failure = _list(on_failure, "returnValuesOnConditionCheckFailure", True) or [None] * n
    conditions = _list(conditions, "conditionExpressions", True) or [None] * n
    updates = _list(updates, "updateExpressions", True) or [None] * n
    if not all(len(x) == n for x in (tables, keys, values, on_failure, conditions, updates)):
        raise bad("malformed TransactItems: the arrays differ in length")
    items = []
    schemas = {}
    for i in range(n):
        table = text_arg(tables[i], "TableName")
        schema = schemas[table] = schemas.get(table) or req.engine.key_schema(req.caller, table)
        key = decode_key(keys[i], schema)
        ph = Placeholders()
        op = operations[i]
        entry: dict = {"TableName": table}
        if op == P.TX_PUT:
            if values[i] is None:
                raise bad("malformed TransactItems: a Put without an item")
            kind, entry["Item"] = "Put", req.item(key, values[i])
        elif op in (P.TX_DELETE, P.TX_PARTIAL_UPDATE, P.TX_CHECK):
            kind = {P.TX_DELETE: "Delete", P.TX_PARTIAL_UPDATE: "Update", P.TX_CHECK: "ConditionCheck"}[op]
            entry["Key"] = key
        else:
            raise bad("malformed TransactItems: unknown operation")
        if conditions[i] is not None:
            entry["ConditionExpression"] = render(conditions[i], "Condition", ph, "c")
        if updates[i] is not None:
            entry["UpdateExpression"] = render(updates[i], "Update", ph, "u")
        if on_failure[i] == 2:
            entry["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        entry.update(ph.params())
        items.append({kind: entry})
    params: dict = {"TransactItems": items}
    _capacity_mode(req, opts, params)
    if P.Param.CLIENT_REQUEST_TOKEN in opts:
        params["ClientRequestToken"] = text_arg(opts[P.Param.CLIENT_REQUEST_TOKEN], "ClientRequestToken")
    try:
        result = req.call("TransactWriteItems", params)
        _drop_cached(req, schemas, [(e["TableName"], e.get("Item") or e["Key"])
                                    for i in items for e in i.values()])
    except AWSError as err:
        if err.code == "TransactionCanceledException" and err.extra:
            reasons = []
            for i, reason in enumerate(err.extra.get("CancellationReasons", [])):
                item = reason.get("Item")
                table = items[i][next(iter(items[i]))]["TableName"] if i < len(items) else None
                reasons += [reason.get("Code"), reason.get("Message"),
                            req.stream_item(item, schemas[table]) if item and table else None]
            err.extra = {"dax_cancellation_reasons": reasons}
        raise
    capacity = [consumed_capacity_map(cc) for cc in result.get("ConsumedCapacity", [])]
    metrics = {table: [collection_metrics_bytes(m) for m in ms]
               for table, ms in result.get("ItemCollectionMetrics", {}).items()}
    return Raw(cbor2.dumps([None, capacity, metrics]))


def transact_get_items(req: Request, tables, keys, projections, opts) -> Raw:
    opts = options_arg(opts)
    tables = _list(tables, "tableNames")
    keys = _list(keys, "keys")
    n = len(tables)
    projections = _list(projections, "projectionExpressions", True) or [None] * n
    if len(keys) != n or len(projections) != n:
        raise bad("malformed TransactItems: the arrays differ in length")
    items = []
    schemas = []
    projectors = []
    for i in range(n):
        table = text_arg(tables[i], "TableName")
        schema = req.engine.key_schema(req.caller, table)
        schemas.append(schema)
        entry: dict = {"TableName": table, "Key": decode_key(keys[i], schema)}
        if projections[i] is not None:
            ph = Placeholders()
            entry["ProjectionExpression"] = render(projections[i], "Projection", ph, "p")
            entry.update(ph.params())
            projectors.append(projector(projections[i]))
        else:
            projectors.append(None)
        items.append({"Get": entry})
    params: dict = {"TransactItems": items}
    if P.Param.RETURN_CONSUMED_CAPACITY in opts:
        params["ReturnConsumedCapacity"] = enum_arg(P.RETURN_CONSUMED_CAPACITY, opts[P.Param.RETURN_CONSUMED_CAPACITY],
                                                 "ReturnConsumedCapacity")
    result = req.call("TransactGetItems", params)
    out = []
    for i, response in enumerate(result.get("Responses", [])):
        item = response.get("Item")
        if item is None:
            out.append(None)
        elif projectors[i] is not None:
            out.append(projectors[i](item))
        else:
            out.append(req.stream_item(item, schemas[i]))
    capacity = [consumed_capacity_map(cc) for cc in result.get("ConsumedCapacity", [])]
    return Raw(cbor2.dumps([out, capacity]))
