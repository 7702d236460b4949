"""Secondary indexes: definitions and their validation, DescribeTable output, maintenance inside the base
write's transaction, and the online GSI backfill / delete.

Storage (DESIGN.md "Storage"): every index has its own index id (1, 2, ... never reused within a table) and
its own encrypted B+trees under the same table key. An item's entry lives in partition
``crypto.token(index_id, key tuple of the index partition key attributes)`` at tree key
``key tuple of the index sort key attributes ‖ base table primary key`` (keyorder encodings are
self-delimiting, so the concatenation still sorts by index sort key first, and items that share an index key
coexist). The value is the projected item. Items missing any index key attribute are not indexed (sparse).

Index definitions live in ``TableMeta.local_indexes`` / ``global_indexes`` as dicts with the request's
``IndexName``, ``KeySchema``, ``Projection`` (and ``ProvisionedThroughput``) plus our own ``IndexId``,
``IndexStatus`` and ``Backfilling``. GSI keys may have up to four HASH and four RANGE attributes (DynamoDB's
multi-attribute keys), compared element by element in KeySchema order.

Backfill of a GSI added by UpdateTable runs on a daemon thread in small batches, each its own store
transaction that reads base items and writes their entries (so a concurrent write can never be overwritten by
a stale entry: SQLite serializes the transactions). Live writes maintain CREATING indexes too, so when the
walk ends the index is complete and becomes ACTIVE. A server restart resumes unfinished backfills and deletes.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from dynavault.caller import Caller
from dynavault.errors import AWSError, validation

from .catalog import STATS_PREFIX
from .keyorder import encode_key_value
from .values import decode_binary, item_size

if TYPE_CHECKING:
    from .catalog import TableMeta
    from .service import DynamoDBService

log = logging.getLogger("dynavault.dynamodb.indexes")

_INVALID = "One or more parameter values were invalid: "
MAX_LSI = 5
MAX_GSI = 20
MAX_MULTI = 4
MAX_NON_KEY = 100
BACKFILL_BATCH = 200
#: DynamoDB's backfill is never instant; a short pause keeps UpdateTable's answer (CREATING) stable.
BACKFILL_START_DELAY = 0.3
_PROJECTIONS = ("ALL", "KEYS_ONLY", "INCLUDE")


@dataclass(frozen=True)
class IndexDef:
    """A parsed index definition (the catalog keeps the dict)."""

    name: str
    kind: str  # "lsi" | "gsi"
    index_id: int
    hash: tuple[tuple[str, str], ...]
    range: tuple[tuple[str, str], ...]
    projection: str
    non_key: frozenset[str]
    status: str
    backfilling: bool

    @property
    def key_names(self) -> list[str]:
        return [n for n, _ in self.hash] + [n for n, _ in self.range]

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"

    def projected_names(self, meta: TableMeta) -> set[str] | None:
        """Top-level attributes the index holds (None: all of them)."""
        if self.projection == "ALL":
            return None
        names = set(meta.key_names) | set(self.key_names)
        if self.projection == "INCLUDE":
            names |= self.non_key
        return names


def _parse(d: dict, kind: str, types: dict[str, str]) -> IndexDef:
    ks = d["KeySchema"]
    proj = d.get("Projection") or {}
    return IndexDef(
        name=d["IndexName"],
        kind=kind,
        index_id=int(d["IndexId"]),
        hash=tuple((k["AttributeName"], types[k["AttributeName"]]) for k in ks if k["KeyType"] == "HASH"),
        range=tuple((k["AttributeName"], types[k["AttributeName"]]) for k in ks if k["KeyType"] == "RANGE"),
        projection=proj.get("ProjectionType", "ALL"),
        non_key=frozenset(proj.get("NonKeyAttributes") or ()),
        status=d.get("IndexStatus", "ACTIVE"),
        backfilling=bool(d.get("Backfilling", False)),
    )


def index_defs(meta: TableMeta) -> list[IndexDef]:
    """All indexes of a table (LSIs first), parsed once per catalog state.

    The parsed list is kept on the table's own catalog entry (derived data, like its key names), not in a
    module-wide cache: it lives and dies with the store's catalog. The signature still guards it, as a
    definition list may be changed in place."""
    if not meta.local_indexes and not meta.global_indexes:
        return []
    sig = orjson.dumps([meta.local_indexes, meta.global_indexes, meta.attribute_definitions])
    cached = meta.parsed_indexes
    if cached is not None and cached[0] == sig:
        return cached[1]
    types = meta.attribute_types
    hit = [_parse(d, "lsi", types) for d in meta.local_indexes]
    hit += [_parse(d, "gsi", types) for d in meta.global_indexes]
    meta.parsed_indexes = (sig, hit)  # one tuple, swapped whole: a reader on another thread sees old or new
    return hit


def find_index(meta: TableMeta, name: str) -> IndexDef | None:
    for idx in index_defs(meta):
        if idx.name == name and idx.status != "DELETING":
            return idx
    return None


# -- validation -----------------------------------------------------------------------------------
def _check_projection(proj: dict | None, name: str) -> dict:
    proj = proj or {}
    ptype = proj.get("ProjectionType")
    if ptype not in _PROJECTIONS:
        raise validation(f"{_INVALID}Unknown ProjectionType: {ptype if ptype is not None else 'null'}")
    nka = proj.get("NonKeyAttributes")
    if ptype == "INCLUDE" and not nka:
        raise validation(f"{_INVALID}ProjectionType is INCLUDE, but NonKeyAttributes is not specified")
    if ptype != "INCLUDE" and nka is not None:
        raise validation(f"{_INVALID}ProjectionType is {ptype}, but NonKeyAttributes is specified")
    if nka is not None and len(set(nka)) != len(nka):
        raise validation(f"{_INVALID}Duplicate value in NonKeyAttributes for index: {name}")
    out = {"ProjectionType": ptype}
    if nka:
        out["NonKeyAttributes"] = list(nka)
    return out


def _check_key_schema(ks: list[dict], name: str, defined: dict[str, str], *, multi: bool) -> None:
    kinds = [k.get("KeyType") for k in ks]
    names = [k.get("AttributeName") for k in ks]
    if not ks or kinds[0] != "HASH":
        raise validation("Invalid KeySchema: The first KeySchemaElement is not a HASH key type")
    n_hash = kinds.count("HASH")
    n_range = kinds.count("RANGE")
    # HASH elements first, then RANGE elements: the order is the comparison order.
    if kinds != ["HASH"] * n_hash + ["RANGE"] * n_range:
        raise validation("Invalid KeySchema: The second KeySchemaElement is not a RANGE key type")
    if not multi and (n_hash > 1 or n_range > 1):
        raise validation(f"{_INVALID}Index KeySchema can have at most one HASH and one RANGE key for index: {name}")
    if n_hash > MAX_MULTI or n_range > MAX_MULTI:
        raise validation(f"{_INVALID}Index KeySchema can have at most {MAX_MULTI} HASH and {MAX_MULTI} RANGE "
                         f"key attributes for index: {name}")
    if len(set(names)) != len(names):
        raise validation("Both the Hash Key and the Range Key element in the KeySchema have the same name")
    missing = [n for n in names if n not in defined]
    if missing:
        raise validation(
            _INVALID + "Some index key attributes are not defined in AttributeDefinitions. "
            f"Keys: [{', '.join(names)}], AttributeDefinitions: [{', '.join(defined)}]"
        )


def _check_throughput(idx: dict, billing: str, name: str) -> dict | None:
    pt = idx.get("ProvisionedThroughput")
    if billing == "PAY_PER_REQUEST":
        if pt is not None:
            raise validation(f"{_INVALID}ProvisionedThroughput should not be specified for index: {name} when "
                             "BillingMode is PAY_PER_REQUEST")
        return None
    if pt is None:
        raise validation(f"{_INVALID}ProvisionedThroughput should not be null for index: {name}")
    return {"ReadCapacityUnits": int(pt.get("ReadCapacityUnits", 0)),
            "WriteCapacityUnits": int(pt.get("WriteCapacityUnits", 0))}


def _validate_gsi(idx: dict, defined: dict[str, str], billing: str) -> dict:
    name = idx.get("IndexName")
    _check_key_schema(idx.get("KeySchema") or [], name, defined, multi=True)
    out = {"IndexName": name, "KeySchema": idx["KeySchema"],
           "Projection": _check_projection(idx.get("Projection"), name)}
    pt = _check_throughput(idx, billing, name)
    if pt is not None:
        out["ProvisionedThroughput"] = pt
    return out


def prepare_indexes(p: dict, key_schema: list[dict], definitions: list[dict]) -> dict:
    """CreateTable: validate LocalSecondaryIndexes / GlobalSecondaryIndexes; the result goes to attach."""
    lsis = p.get("LocalSecondaryIndexes")
    gsis = p.get("GlobalSecondaryIndexes")
    defined = {d["AttributeName"]: d["AttributeType"] for d in definitions}
    hash_key = key_schema[0]["AttributeName"]
    range_key = key_schema[1]["AttributeName"] if len(key_schema) > 1 else None
    billing = p.get("BillingMode") or "PROVISIONED"
    if lsis is not None and not lsis:
        raise validation(f"{_INVALID}List of LocalSecondaryIndexes is empty")
    if gsis is not None and not gsis:
        raise validation(f"{_INVALID}List of GlobalSecondaryIndexes is empty")
    lsis, gsis = lsis or [], gsis or []
    if len(lsis) > MAX_LSI:
        raise validation(f"{_INVALID}Number of LocalSecondaryIndexes exceeds per-table limit of {MAX_LSI}")
    if len(gsis) > MAX_GSI:
        raise validation(f"{_INVALID}GlobalSecondaryIndex count exceeds the per-table limit of {MAX_GSI}")
    seen: set[str] = set()
    used = {k["AttributeName"] for k in key_schema}
    out_l, out_g = [], []
    for idx in lsis:
        name = idx.get("IndexName")
        ks = idx.get("KeySchema") or []
        _check_key_schema(ks, name, defined, multi=False)
        if range_key is None:
            raise validation(f"{_INVALID}Table KeySchema does not have a range key, which is required when "
                             "specifying a LocalSecondaryIndex")
        if ks[0]["AttributeName"] != hash_key:
            raise validation(f"{_INVALID}Index KeySchema does not have the same leading hash key as table KeySchema "
                             f"for index: {name}. index hash key: {ks[0]['AttributeName']}, table hash key: {hash_key}")
        if len(ks) != 2:
            raise validation(f"{_INVALID}Index KeySchema does not have a range key for index: {name}")
        if name in seen:
            raise validation(f"{_INVALID}Duplicate index name: {name}")
        seen.add(name)
        used.update(k["AttributeName"] for k in ks)
        out_l.append({"IndexName": name, "KeySchema": ks, "Projection": _check_projection(idx.get("Projection"), name)})
    for idx in gsis:
        name = idx.get("IndexName")
        out = _validate_gsi(idx, defined, billing)
        if name in seen:
            raise validation(f"{_INVALID}Duplicate index name: {name}")
        seen.add(name)
        used.update(k["AttributeName"] for k in out["KeySchema"])
        out_g.append(out)
    non_key = sum(len(i["Projection"].get("NonKeyAttributes", ())) for i in out_l + out_g)
    if non_key > MAX_NON_KEY:
        raise validation(f"{_INVALID}The sum of NonKeyAttributes across all secondary indexes exceeds the limit "
                         f"of {MAX_NON_KEY}")
    if set(defined) != used:
        raise validation(_INVALID + "Number of attributes in KeySchema does not exactly match number of attributes "
                         "defined in AttributeDefinitions")
    return {"lsi": out_l, "gsi": out_g}


def _global_index(meta: TableMeta, name: str | None) -> dict:
    d = next((g for g in meta.global_indexes if g["IndexName"] == name), None)
    if d is None:
        raise AWSError("ResourceNotFoundException", f"Requested resource not found: Index: {name} not found")
    return d


def _next_id(meta: TableMeta) -> int:
    nid = int(meta.extra.get("next_index_id", 1))
    meta.extra["next_index_id"] = nid + 1
    return nid


def attach_indexes(meta: TableMeta, indexes: dict) -> None:
    for d in indexes["lsi"]:
        meta.local_indexes.append({**d, "IndexId": _next_id(meta), "IndexStatus": "ACTIVE"})
    for d in indexes["gsi"]:
        meta.global_indexes.append({**d, "IndexId": _next_id(meta), "IndexStatus": "ACTIVE"})


# -- describe -------------------------------------------------------------------------------------
def _stats_id(meta: TableMeta, index_id: int) -> str:
    return f"{meta.table_id}#{index_id}"


def describe_indexes(svc: DynamoDBService, meta: TableMeta, desc: dict) -> None:
    creating = desc.get("TableStatus") == "CREATING"
    lsis, gsis = [], []
    for d in meta.local_indexes:
        count, size = svc.catalog.stats(_stats_id(meta, d["IndexId"]))
        lsis.append({"IndexName": d["IndexName"], "KeySchema": d["KeySchema"], "Projection": d["Projection"],
                     "IndexSizeBytes": size, "ItemCount": count, "IndexArn": f"{meta.arn}/index/{d['IndexName']}"})
    for d in meta.global_indexes:
        count, size = svc.catalog.stats(_stats_id(meta, d["IndexId"]))
        pt = d.get("ProvisionedThroughput") or {}
        g = {"IndexName": d["IndexName"], "KeySchema": d["KeySchema"], "Projection": d["Projection"],
             "IndexStatus": "CREATING" if creating else d.get("IndexStatus", "ACTIVE"),
             "ProvisionedThroughput": {"NumberOfDecreasesToday": 0,
                                       "ReadCapacityUnits": pt.get("ReadCapacityUnits", 0),
                                       "WriteCapacityUnits": pt.get("WriteCapacityUnits", 0)},
             "IndexSizeBytes": size, "ItemCount": count, "IndexArn": f"{meta.arn}/index/{d['IndexName']}"}
        if "Backfilling" in d:  # only indexes added by UpdateTable show it (DynamoDB's rule)
            g["Backfilling"] = d["Backfilling"]
        gsis.append(g)
    if lsis:
        desc["LocalSecondaryIndexes"] = lsis
    if gsis:
        desc["GlobalSecondaryIndexes"] = gsis


# -- entries --------------------------------------------------------------------------------------
def scalar(type_: str, value: dict) -> str | bytes:
    raw = value[type_]
    return decode_binary(raw) if type_ == "B" else raw


def encode_attr(type_: str, value: dict) -> bytes:
    return encode_key_value(type_, scalar(type_, value))


def base_key_bytes(meta: TableMeta, item: dict) -> bytes:
    """The base table primary key as a key tuple (the tie-breaker inside index trees)."""
    out = encode_attr(meta.hash_type, item[meta.hash_key])
    if meta.range_key:
        out += encode_attr(meta.range_type, item[meta.range_key])
    return out


def _key_parts(idx: IndexDef, item: dict, check: bool) -> tuple[bytes, bytes] | None:
    """(encoded partition tuple, encoded sort tuple), or None when the item is not in this (sparse) index."""
    parts = []
    for group in (idx.hash, idx.range):
        enc = b""
        for name, t in group:
            v = item.get(name)
            if v is None:
                return None
            actual = next(iter(v))
            if actual != t:
                if check:
                    raise validation(f"{_INVALID}Type mismatch for Index Key {name} Expected: {t} Actual: {actual} "
                                     f"IndexName: {idx.name}")
                return None
            if t in ("S", "B") and not v[t]:
                if check:
                    kind = "string" if t == "S" else "binary"
                    raise validation("One or more parameter values are not valid. A value specified for a secondary "
                                     "index key is not supported. The AttributeValue for a key attribute cannot "
                                     f"contain an empty {kind} value. IndexName: {idx.name}, IndexKey: {name}")
                return None
            enc += encode_attr(t, v)
        parts.append(enc)
    return parts[0], parts[1]


def project_entry(idx: IndexDef, meta: TableMeta, item: dict) -> dict:
    names = idx.projected_names(meta)
    if names is None:
        return item
    return {k: v for k, v in item.items() if k in names}


def entry_for(idx: IndexDef, meta: TableMeta, crypto, item: dict | None, *, check: bool = False):
    """(token, tree key, projected item) of an item's entry in one index, or None."""
    if item is None:
        return None
    parts = _key_parts(idx, item, check)
    if parts is None:
        return None
    token = crypto.token(idx.index_id, parts[0])
    return token, parts[1] + base_key_bytes(meta, item), project_entry(idx, meta, item)


def _write_units(size: int) -> float:
    return float(max(1, -(-size // 1024)))


def index_writer(svc: DynamoDBService, tx, meta: TableMeta, crypto, old: dict | None, new: dict | None) -> dict:
    """Bring every index in line with one base item change, inside the base write's transaction.

    Returns the write units per affected index ({"gsi:Name": units}); raises DynamoDB's validation error
    (rolling the whole write back) when the new item has an index key of the wrong type."""
    units: dict[str, float] = {}
    live = [idx for idx in index_defs(meta) if idx.status != "DELETING"]
    # Every new entry first (this validates the new item's index keys): the write must fail as a whole.
    news = [entry_for(idx, meta, crypto, new, check=True) for idx in live]
    for idx, n in zip(live, news, strict=True):
        o = entry_for(idx, meta, crypto, old)
        if o is None and n is None:
            continue
        d_count = d_bytes = 0
        u = 0.0
        new_raw = orjson.dumps(n[2]) if n is not None else None
        same_place = o is not None and n is not None and o[0] == n[0] and o[1] == n[1]
        if o is not None and not same_place:
            svc.trees.delete(tx, crypto.codec, meta.id_bytes, idx.index_id, o[0], o[1])
            d_count -= 1
            d_bytes -= item_size(o[2])
            u += _write_units(item_size(o[2]))
        if n is not None:
            if same_place and o[2] == n[2]:
                continue  # nothing the index holds changed: no index write
            svc.trees.put(tx, crypto.codec, meta.id_bytes, idx.index_id, n[0], n[1], new_raw)
            if same_place:
                d_bytes += item_size(n[2]) - item_size(o[2])
            else:
                d_count += 1
                d_bytes += item_size(n[2])
            u += _write_units(item_size(n[2]))
        _add_stats(svc, tx, meta, idx.index_id, d_count, d_bytes)
        units[idx.label] = u
    return units


def _add_stats(svc: DynamoDBService, tx, meta: TableMeta, index_id: int, d_count: int, d_bytes: int) -> None:
    if d_count or d_bytes:
        sid = _stats_id(meta, index_id)
        # Counts are approximate by contract (DynamoDB refreshes them every six hours), so memory follows
        # at once rather than after commit.
        svc.catalog.commit_stats(sid, svc.catalog.add_stats(tx, sid, d_count, d_bytes))


# -- UpdateTable: online create / delete / throughput ---------------------------------------------
def update_indexes(svc: DynamoDBService, caller: Caller, meta: TableMeta, p: dict) -> None:
    updates = p.get("GlobalSecondaryIndexUpdates") or []
    if any(d.get("IndexStatus") in ("CREATING", "DELETING") for d in meta.global_indexes) and any(
            "Create" in u or "Delete" in u for u in updates):
        raise AWSError("LimitExceededException", "Subscriber limit exceeded: Only 1 online index can be created or "
                       "deleted simultaneously per table")
    if sum(1 for u in updates if "Create" in u or "Delete" in u) > 1:
        raise AWSError("LimitExceededException", "Subscriber limit exceeded: Only 1 online index can be created or "
                       "deleted simultaneously per table")
    names = {d["IndexName"] for d in meta.local_indexes + meta.global_indexes}
    for u in updates:
        if "Create" in u:
            c = u["Create"]
            name = c.get("IndexName")
            if name in names:
                raise validation(f"{_INVALID}Index with name: {name} already exists")
            defined = {d["AttributeName"]: d["AttributeType"] for d in meta.attribute_definitions}
            for d in p.get("AttributeDefinitions") or []:
                old = defined.get(d["AttributeName"])
                if old is not None and old != d["AttributeType"]:
                    raise validation(f"{_INVALID}Cannot change the type of an existing attribute: "
                                     f"{d['AttributeName']}")
                defined[d["AttributeName"]] = d["AttributeType"]
            out = _validate_gsi(c, defined, meta.billing_mode)
            if len(meta.global_indexes) >= MAX_GSI:
                raise AWSError("LimitExceededException", f"Subscriber limit exceeded: GlobalSecondaryIndex count "
                               f"exceeds the per-table limit of {MAX_GSI}")
            used = {k["AttributeName"] for k in out["KeySchema"]}
            for d in p.get("AttributeDefinitions") or []:
                if d["AttributeName"] in used and d["AttributeName"] not in meta.attribute_types:
                    meta.attribute_definitions.append(d)
            meta._derive()
            index_id = _next_id(meta)
            # Writes reach a CREATING index at once, so its partition directory must exist before the
            # catalog names the index (an unused directory left by a crash in between is harmless).
            codec = svc.crypto(caller, meta).codec
            with svc.kv.transaction() as tx:
                svc.trees.create_directory(tx, codec, meta.id_bytes, index_id)
            meta.global_indexes.append({**out, "IndexId": index_id, "IndexStatus": "CREATING",
                                        "Backfilling": True})
            _start(svc, caller, meta, name, "create")
        elif "Delete" in u:
            name = u["Delete"].get("IndexName")
            d = _global_index(meta, name)
            d["IndexStatus"] = "DELETING"
            d.pop("Backfilling", None)
            _start(svc, caller, meta, name, "delete")
        elif "Update" in u:
            name = u["Update"].get("IndexName")
            d = _global_index(meta, name)
            pt = u["Update"].get("ProvisionedThroughput")
            if pt is not None:
                d["ProvisionedThroughput"] = {"ReadCapacityUnits": int(pt.get("ReadCapacityUnits", 0)),
                                              "WriteCapacityUnits": int(pt.get("WriteCapacityUnits", 0))}


def _start(svc: DynamoDBService, caller: Caller, meta: TableMeta, name: str, what: str) -> None:
    t = threading.Thread(target=_run_job, args=(svc, caller, meta, name, what), name=f"index-{what}",
                         daemon=True)
    t.start()


def _run_job(svc: DynamoDBService, caller: Caller, meta: TableMeta, name: str, what: str) -> None:
    time.sleep(BACKFILL_START_DELAY)
    try:
        if what == "create":
            backfill(svc, caller, meta, name)
        else:
            drop_index(svc, meta, name)
    except Exception:  # noqa: BLE001 - a background job must log, never die silently
        log.exception("index %s of table %s: %s failed", name, meta.name, what)


def _current(svc: DynamoDBService, meta: TableMeta, name: str) -> tuple[TableMeta, dict] | None:
    live = svc.catalog.get(meta.account, meta.region, meta.name)
    if live is None or live.table_id != meta.table_id:
        return None
    d = next((g for g in live.global_indexes if g["IndexName"] == name), None)
    return (live, d) if d is not None else None


def backfill(svc: DynamoDBService, caller: Caller, meta: TableMeta, name: str,
             batch: int = BACKFILL_BATCH) -> None:
    """Index every existing item into a CREATING GSI, then make it ACTIVE."""
    after = None  # (token, sort key) of the last base item indexed
    while True:
        cur = _current(svc, meta, name)
        if cur is None or cur[1].get("IndexStatus") != "CREATING":
            return  # deleted (or the table went away) meanwhile
        live, d = cur
        idx = next(i for i in index_defs(live) if i.name == name)
        crypto = svc.crypto(caller, live)  # per batch: never older than the key refresh interval
        done = 0
        with svc.kv.transaction() as tx:
            for token, key, raw in _walk(svc, tx, live, crypto.codec, after):
                item = orjson.loads(raw)
                e = entry_for(idx, live, crypto, item)
                if e is not None:
                    prev = svc.trees.put(tx, crypto.codec, live.id_bytes, idx.index_id, e[0], e[1],
                                         orjson.dumps(e[2]))
                    if prev is None:
                        _add_stats(svc, tx, live, idx.index_id, 1, item_size(e[2]))
                after = (token, key)
                done += 1
                if done >= batch:
                    break
        if done < batch:
            break
    with svc.catalog.lock:
        cur = _current(svc, meta, name)
        if cur is not None and cur[1].get("IndexStatus") == "CREATING":
            cur[1]["IndexStatus"] = "ACTIVE"
            cur[1]["Backfilling"] = False
            svc.catalog.save(cur[0])
    log.info("index %s of table %s: backfill done", name, meta.name)


def _walk(svc: DynamoDBService, tx, meta: TableMeta, codec, after):
    """Base items as (token, sort key, raw) in (token, sort key) order, strictly after ``after``."""
    first = None
    if after is not None:
        first, key = after
        yield from ((first, k, v) for k, v in svc.trees.range(tx, codec, meta.id_bytes, 0, first, lo=key,
                                                               lo_inclusive=False))
    for token in svc.trees.tokens(tx, codec, meta.id_bytes, 0, after=first):
        yield from ((token, k, v) for k, v in svc.trees.range(tx, codec, meta.id_bytes, 0, token))


def drop_index(svc: DynamoDBService, meta: TableMeta, name: str) -> None:
    cur = _current(svc, meta, name)
    if cur is None:
        return
    live, d = cur
    with svc.catalog.lock:
        with svc.kv.transaction() as tx:
            svc.trees.drop(tx, live.id_bytes, int(d["IndexId"]))
            tx.delete(STATS_PREFIX + _stats_id(live, int(d["IndexId"])).encode())
            live.global_indexes = [g for g in live.global_indexes if g["IndexName"] != name]
            svc.catalog.put(tx, live)
        svc.catalog.remember(live)
    log.info("index %s of table %s: deleted", name, meta.name)


def resume_jobs(svc: DynamoDBService) -> None:
    """After a restart: finish the backfills and deletes that were under way."""
    for meta in svc.catalog.all():
        for d in meta.global_indexes:
            status = d.get("IndexStatus")
            if status in ("CREATING", "DELETING"):
                # The account's root principal: the same identity key policies grant by default.
                caller = Caller(account=meta.account, region=meta.region,
                                principal_arn=f"arn:aws:iam::{meta.account}:root")
                _start(svc, caller, meta, d["IndexName"], "create" if status == "CREATING" else "delete")


def install(svc: DynamoDBService) -> None:
    """Plug indexes into the service's hooks."""
    svc.prepare_indexes = prepare_indexes
    svc.attach_indexes = attach_indexes
    svc.describe_indexes = lambda meta, desc: describe_indexes(svc, meta, desc)
    svc.update_indexes = lambda caller, meta, p: update_indexes(svc, caller, meta, p)
    svc.index_writer = lambda tx, meta, crypto, old, new: index_writer(svc, tx, meta, crypto, old, new)
    resume_jobs(svc)
