"""DAX data methods: their arguments -> DynamoDB request parameters, run by the engine's own operation
callables (the same validation, authorization, table-key checks, capacity and errors as over HTTP), and the
results -> DAX's response encodings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cbor2
import orjson

from dynavault.caller import Caller
from dynavault.errors import AWSError

from . import protocol as P
from .attributes import KeySchema, bad, decode_key, decode_values, encode_key, encode_values, from_av, to_av
from .cache import DaxCache
from .expressions import Placeholders, projection_paths, render
from .registry import MAX_LIST_BYTES, MAX_NAMES, AttributeLists, RegistryFull, list_bytes

#: (operation, caller, params) -> result: the engine's operation, shape validation included
Invoke = Callable[[str, Caller, dict], dict]
#: how long a table's key schema is reused before DescribeTable is asked again (a table deleted and made
#: again with another key schema is seen after this long)
SCHEMA_SECONDS = 2.0
_SCHEMA_ENTRIES = 4096


@dataclass(frozen=True)
class Raw:
    """Response bytes sent as they are (several CBOR values, or a cached answer)."""

    data: bytes


@dataclass
class Engine:
    invoke: Invoke
    registry: AttributeLists
    #: the item and query caches (cache.py); None: every read goes to the engine
    cache: DaxCache | None = None
    clock: Callable[[], float] = time.monotonic
    _schemas: dict = field(default_factory=dict)

    def key_schema(self, caller: Caller, table: str) -> KeySchema:
        key = (caller.account, caller.region, table)
        hit = self._schemas.get(key)
        now = self.clock()
        if hit is not None and now - hit[0] < SCHEMA_SECONDS:
            return hit[1]
        desc = self.invoke("DescribeTable", caller, {"TableName": table})["Table"]
        types = {d["AttributeName"]: d["AttributeType"] for d in desc["AttributeDefinitions"]}
        ordered = sorted(desc["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
        schema = [(k["AttributeName"], types[k["AttributeName"]]) for k in ordered]
        if len(self._schemas) >= _SCHEMA_ENTRIES:
            self._schemas.clear()
        self._schemas[key] = (now, schema)
        return schema


def text_arg(value, what: str) -> str:
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise bad(f"{what} is not UTF-8") from None
    if isinstance(value, str):
        return value
    raise bad(f"{what} must be a string")


def int_arg(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad(f"{what} must be an integer")
    return value


def options_arg(value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad("malformed request options")
    return value


def enum_arg(table: dict, value, what: str) -> str:
    try:
        return table[value]
    except (KeyError, TypeError):
        raise bad(f"unknown {what}") from None


class Request:
    """One data call: its caller, and the pieces of DynamoDB parameters it builds."""

    def __init__(self, engine: Engine, caller: Caller, port: int | None = None) -> None:
        self.engine = engine
        self.caller = caller
        #: the attribute-list registry's scope: ids are per account and region
        self.scope = f"{caller.account}/{caller.region}"
        #: the listener's port: the cluster it serves sets the cache's TTLs
        self.port = port
        self._lifetimes: tuple[float, float] | None = None

    def begin(self) -> None:
        """A new call on the connection: the cluster's TTLs are read again (a parameter group's change applies
        to the next call)."""
        self._lifetimes = None

    def lifetimes(self) -> tuple[float, float]:
        """(record TTL, query TTL) in seconds for this request's cache entries."""
        if self._lifetimes is None:
            self._lifetimes = self.engine.cache.lifetimes(self.port, self.caller)
        return self._lifetimes

    def call(self, operation: str, params: dict) -> dict:
        result = self.engine.invoke(operation, self.caller, params)
        # the engine hands stored items on as pre-serialised JSON (orjson.Fragment) for the HTTP response
        item = result.get("Item")
        if isinstance(item, orjson.Fragment):
            result["Item"] = orjson.loads(orjson.dumps(item))
        items = result.get("Items")
        if items and any(isinstance(i, orjson.Fragment) for i in items):
            result["Items"] = [orjson.loads(orjson.dumps(i)) if isinstance(i, orjson.Fragment) else i for i in items]
        return result

    # ---- arguments ---------------------------------------------------------------------------------------
    def item(self, key: dict, values) -> dict:
        list_id, vals = decode_values(values)
        names = self.engine.registry.names_for(self.scope, list_id)
        if names is None:
            raise bad(f"Unknown attribute list id {list_id}")
        if len(names) != len(vals):
            raise bad("The number of values does not match the attribute list")
        item = {n: to_av(v) for n, v in zip(names, vals, strict=True)}
        item.update(key)
        return item

    def common(self, params: dict, opts: dict, ph: Placeholders, *, write: bool) -> None:
        if P.Param.RETURN_CONSUMED_CAPACITY in opts:
            params["ReturnConsumedCapacity"] = enum_arg(P.RETURN_CONSUMED_CAPACITY,
                                                     opts[P.Param.RETURN_CONSUMED_CAPACITY], "ReturnConsumedCapacity")
        if write:
            if P.Param.RETURN_ITEM_COLLECTION_METRICS in opts:
                params["ReturnItemCollectionMetrics"] = enum_arg(
                    P.RETURN_ITEM_COLLECTION_METRICS, opts[P.Param.RETURN_ITEM_COLLECTION_METRICS],
                    "ReturnItemCollectionMetrics")
            if P.Param.RETURN_VALUES in opts:
                params["ReturnValues"] = enum_arg(P.RETURN_VALUES, opts[P.Param.RETURN_VALUES], "ReturnValues")
        for param, kind, name, prefix in ((P.Param.CONDITION, "Condition", "ConditionExpression", "c"),
                                          (P.Param.UPDATE, "Update", "UpdateExpression", "u"),
                                          (P.Param.FILTER, "Filter", "FilterExpression", "f"),
                                          (P.Param.PROJECTION, "Projection", "ProjectionExpression", "p")):
            if param in opts:
                params[name] = render(opts[param], kind, ph, prefix)

    # ---- results -----------------------------------------------------------------------------------------
    def stream_item(self, item: dict, schema: KeySchema) -> bytes:
        keys = {n for n, _ in schema}
        names = tuple(sorted(n for n in item if n not in keys))
        if len(names) > MAX_NAMES:
            raise bad("too many attributes")
        try:
            list_id = self.engine.registry.id_for(self.scope, names)
        except RegistryFull:
            raise AWSError("LimitExceededException", "Too many attribute lists registered for this account") from None
        return encode_values(list_id, list(names), item)

    def updated_item(self, item: dict) -> bytes:
        """UPDATED_OLD / UPDATED_NEW: a list id, then {position in the list: value}."""
        names = tuple(sorted(item))
        try:
            list_id = self.engine.registry.id_for(self.scope, names)
        except RegistryFull:
            raise AWSError("LimitExceededException", "Too many attribute lists registered for this account") from None
        return cbor2.dumps(list_id) + cbor2.dumps({i: from_av(item[n]) for i, n in enumerate(names)})


def consumed_capacity_bytes(cc: dict | None) -> bytes | None:
    """The single-table ConsumedCapacity encoding: name, units, table units, GSI units, LSI units."""
    if not cc:
        return None
    out = cbor2.dumps(cc["TableName"]) + cbor2.dumps(float(cc["CapacityUnits"]))
    out += cbor2.dumps(float(cc["Table"]["CapacityUnits"]) if "Table" in cc else None)
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        idx = cc.get(kind)
        out += cbor2.dumps({k: float(v["CapacityUnits"]) for k, v in idx.items()} if idx else None)
    return out


def consumed_capacity_map(cc: dict) -> dict:
    """The transactions' ConsumedCapacity encoding: a map keyed by field number."""
    out: dict = {4: cc["TableName"], 1: float(cc["CapacityUnits"])}
    for name, code in (("ReadCapacityUnits", 2), ("WriteCapacityUnits", 3)):
        if name in cc:
            out[code] = float(cc[name])
    if "Table" in cc:
        out[5] = {1: float(cc["Table"]["CapacityUnits"])}
    for name, code in (("GlobalSecondaryIndexes", 6), ("LocalSecondaryIndexes", 7)):
        if cc.get(name):
            out[code] = {k: {1: float(v["CapacityUnits"])} for k, v in cc[name].items()}
    return out


def collection_metrics_bytes(icm: dict | None) -> bytes | None:
    if not icm:
        return None
    (av,) = icm["ItemCollectionKey"].values()
    lo, hi = icm["SizeEstimateRangeGB"]
    return cbor2.dumps(from_av(av)) + cbor2.dumps(float(lo)) + cbor2.dumps(float(hi))


def _walk(item: dict, path: list, ranks: dict) -> dict | None:
    """The value at ``path`` in a projected item. A projection keeps only the list elements it names, closed
    up: element i of list L sits at the rank of i among the indexes of L the projection names."""
    av = {"M": item}
    prefix: tuple = ()
    for element in path:
        if isinstance(element, str):
            if "M" not in av or element not in av["M"]:
                return None
            av = av["M"][element]
        else:
            if "L" not in av:
                return None
            position = ranks.get(prefix, {}).get(element)
            if position is None or position >= len(av["L"]):
                return None
            av = av["L"][position]
        prefix += (element,)
    return av


def projector(encoded) -> Callable[[dict], dict]:
    """A function from a projected item (as the engine returns it) to DAX's {ordinal: value} map."""
    paths = projection_paths(encoded)
    indexes: dict[tuple, set] = {}
    for path in paths:
        for i, element in enumerate(path):
            if isinstance(element, int):
                indexes.setdefault(tuple(path[:i]), set()).add(element)
    ranks = {prefix: {v: r for r, v in enumerate(sorted(values))} for prefix, values in indexes.items()}

    def project(item: dict) -> dict:
        out = {}
        for ordinal, path in enumerate(paths):
            av = _walk(item, path, ranks)
            if av is not None:
                out[ordinal] = from_av(av)
        return out

    return project


# ---- methods ---------------------------------------------------------------------------------------------------

def define_key_schema(req: Request, table) -> dict:
    return {name: kind for name, kind in req.engine.key_schema(req.caller, text_arg(table, "TableName"))}


def define_attribute_list_id(req: Request, names) -> int:
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise bad("attribute names must be a list of strings")
    if len(names) > MAX_NAMES or list_bytes(tuple(names)) > MAX_LIST_BYTES:
        raise bad("Item size has exceeded the maximum allowed size")
    try:
        return req.engine.registry.id_for(req.scope, tuple(names))
    except RegistryFull:
        raise AWSError("LimitExceededException", "Too many attribute lists registered for this account") from None


def define_attribute_list(req: Request, list_id) -> list:
    names = req.engine.registry.names_for(req.scope, int_arg(list_id, "attributeListId"))
    if names is None:
        raise bad(f"Unknown attribute list id {list_id}")
    return list(names)


def _single_write_result(req: Request, result: dict, schema: KeySchema, return_values: str | None) -> dict:
    out: dict = {}
    attrs = result.get("Attributes")
    if attrs:
        if return_values in ("UPDATED_OLD", "UPDATED_NEW"):
            out[P.Result.ATTRIBUTES] = req.updated_item(attrs)
        else:
            out[P.Result.ATTRIBUTES] = req.stream_item(attrs, schema)
    cc = consumed_capacity_bytes(result.get("ConsumedCapacity"))
    if cc is not None:
        out[P.Result.CONSUMED_CAPACITY] = cc
    icm = collection_metrics_bytes(result.get("ItemCollectionMetrics"))
    if icm is not None:
        out[P.Result.ITEM_COLLECTION_METRICS] = icm
    return out


def cache_for(req: Request, opts: dict, *, consistent_param: bool = True) -> DaxCache | None:
    """The cache, for an eventually consistent read that asks for no consumed capacity (DAX passes strongly
    consistent reads through; capacity is reported by the engine's own reads)."""
    cache = req.engine.cache
    if cache is None or (consistent_param and opts.get(P.Param.CONSISTENT_READ)):
        return None
    if opts.get(P.Param.RETURN_CONSUMED_CAPACITY, 0) != 0:
        return None
    return cache


def get_item(req: Request, table, key, opts) -> Raw:
    table, opts = text_arg(table, "TableName"), options_arg(opts)
    schema = req.engine.key_schema(req.caller, table)
    key = decode_key(key, schema)
    cache = cache_for(req, opts) if P.Param.PROJECTION not in opts else None
    if cache is not None:
        # one entry per item whatever the client's spelling of the key (a number's trailing zeros, say)
        cache_key = encode_key(key, schema)
        hit = cache.get_item(req.caller, req.scope, table, cache_key, req.lifetimes()[0])
        if hit is not None:
            return Raw(hit)
    params = {"TableName": table, "Key": key}
    ph = Placeholders()
    req.common(params, opts, ph, write=False)
    if P.Param.CONSISTENT_READ in opts:
        params["ConsistentRead"] = bool(opts[P.Param.CONSISTENT_READ])
    params.update(ph.params())
    result = req.call("GetItem", params)
    out: dict = {}
    if "Item" in result:
        if P.Param.PROJECTION in opts:
            out[P.Result.ITEM] = projector(opts[P.Param.PROJECTION])(result["Item"])
        else:
            out[P.Result.ITEM] = req.stream_item(result["Item"], schema)
    cc = consumed_capacity_bytes(result.get("ConsumedCapacity"))
    if cc is not None:
        out[P.Result.CONSUMED_CAPACITY] = cc
    body = cbor2.dumps(out)
    if cache is not None:
        cache.put_item(req.caller, req.scope, table, cache_key, body, req.lifetimes()[0])
    return Raw(body)


def write_through(req: Request, table: str, schema: KeySchema, key: dict, item: dict | None, *,
                  drop: bool = False) -> None:
    """After a write through DAX: the item cache holds ``item`` for ``key`` (None: absent), or, with ``drop``,
    nothing (the new item is not known)."""
    cache = req.engine.cache
    if cache is None:
        return
    cache_key = encode_key(key, schema)
    if drop:
        cache.drop_items(req.scope, table, [cache_key])
        return
    body = cbor2.dumps({P.Result.ITEM: req.stream_item(item, schema)} if item is not None else {})
    cache.put_item(req.caller, req.scope, table, cache_key, body, req.lifetimes()[0])


def _single_write(req: Request, operation: str, table, key, opts, values=None) -> tuple[str, KeySchema, dict, dict, dict]:
    """Run one of PutItem / UpdateItem / DeleteItem from DAX arguments -> (table, schema, key, params, result)."""
    table, opts = text_arg(table, "TableName"), options_arg(opts)
    schema = req.engine.key_schema(req.caller, table)
    key = decode_key(key, schema)
    params = {"TableName": table, "Item": req.item(key, values)} if operation == "PutItem" \
        else {"TableName": table, "Key": key}
    ph = Placeholders()
    req.common(params, opts, ph, write=True)
    params.update(ph.params())
    return table, schema, key, params, req.call(operation, params)


def put_item(req: Request, table, key, values, opts) -> dict:
    table, schema, key, params, result = _single_write(req, "PutItem", table, key, opts, values)
    write_through(req, table, schema, key, params["Item"])
    return _single_write_result(req, result, schema, params.get("ReturnValues"))


def update_item(req: Request, table, key, opts) -> dict:
    table, schema, key, params, result = _single_write(req, "UpdateItem", table, key, opts)
    if params.get("ReturnValues") == "ALL_NEW" and result.get("Attributes"):
        write_through(req, table, schema, key, result["Attributes"])
    else:
        write_through(req, table, schema, key, None, drop=True)
    return _single_write_result(req, result, schema, params.get("ReturnValues"))


def delete_item(req: Request, table, key, opts) -> dict:
    table, schema, key, params, result = _single_write(req, "DeleteItem", table, key, opts)
    write_through(req, table, schema, key, None)
    return _single_write_result(req, result, schema, params.get("ReturnValues"))


def _compound_key(data) -> dict:
    from .cbor_stream import CborStreamError, loads_one

    if not isinstance(data, (bytes, bytearray)):
        raise bad("The provided starting key is invalid")
    try:
        value = loads_one(bytes(data))
    except CborStreamError:
        raise bad("The provided starting key is invalid") from None
    if not isinstance(value, dict):
        raise bad("The provided starting key is invalid")
    return to_av(value)["M"]


def _read_many(req: Request, operation: str, table, key_condition, opts) -> Raw:
    table, opts = text_arg(table, "TableName"), options_arg(opts)
    schema = req.engine.key_schema(req.caller, table)
    cache = cache_for(req, opts)
    if cache is not None:
        # the request as the client encoded it names the answer (an equal request spelled otherwise misses)
        cache_key = cache.query_key(P.QUERY if operation == "Query" else P.SCAN,
                                    cbor2.dumps([key_condition, sorted(opts.items())]))
        hit = cache.get_query(req.caller, req.scope, table, cache_key, req.lifetimes()[1])
        if hit is not None:
            return Raw(hit)
    params: dict = {"TableName": table}
    ph = Placeholders()
    if key_condition is not None:
        params["KeyConditionExpression"] = render(key_condition, "KeyCondition", ph, "k")
    req.common(params, opts, ph, write=False)
    index = None
    if P.Param.INDEX_NAME in opts:
        index = params["IndexName"] = text_arg(opts[P.Param.INDEX_NAME], "IndexName")
    if P.Param.SELECT in opts:
        params["Select"] = enum_arg(P.SELECT, opts[P.Param.SELECT], "Select")
    for param, name in ((P.Param.LIMIT, "Limit"), (P.Param.SEGMENT, "Segment"),
                        (P.Param.TOTAL_SEGMENTS, "TotalSegments")):
        if param in opts:
            params[name] = int_arg(opts[param], name)
    if P.Param.CONSISTENT_READ in opts:
        params["ConsistentRead"] = bool(opts[P.Param.CONSISTENT_READ])
    if P.Param.SCAN_INDEX_FORWARD in opts and operation == "Query":
        params["ScanIndexForward"] = bool(opts[P.Param.SCAN_INDEX_FORWARD])
    if P.Param.EXCLUSIVE_START_KEY in opts:
        start = opts[P.Param.EXCLUSIVE_START_KEY]
        params["ExclusiveStartKey"] = _compound_key(start) if index else decode_key(start, schema)
    params.update(ph.params())
    result = req.call(operation, params)
    out: dict = {}
    if "Items" in result:
        if P.Param.PROJECTION in opts:
            project = projector(opts[P.Param.PROJECTION])
            out[P.Result.ITEMS] = [project(item) for item in result["Items"]]
        else:
            out[P.Result.ITEMS] = [[encode_key(item, schema), req.stream_item(item, schema)]
                                   for item in result["Items"]]
    out[P.Result.COUNT] = result.get("Count", 0)
    out[P.Result.SCANNED_COUNT] = result.get("ScannedCount", 0)
    lek = result.get("LastEvaluatedKey")
    if lek:
        out[P.Result.LAST_EVALUATED_KEY] = (cbor2.dumps({k: from_av(v) for k, v in lek.items()}) if index
                                            else encode_key(lek, schema))
    cc = consumed_capacity_bytes(result.get("ConsumedCapacity"))
    if cc is not None:
        out[P.Result.CONSUMED_CAPACITY] = cc
    body = cbor2.dumps(out)
    if cache is not None:
        cache.put_query(req.caller, req.scope, table, cache_key, body, req.lifetimes()[1])
    return Raw(body)


def query(req: Request, table, key_condition, opts) -> Raw:
    return _read_many(req, "Query", table, key_condition, opts)


def scan(req: Request, table, opts) -> Raw:
    return _read_many(req, "Scan", table, None, opts)
