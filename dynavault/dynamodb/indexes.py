"""Secondary indexes: validation of their definitions, DescribeTable output, and the online GSI
backfill / delete. (What an index holds for an item is ``index_model.py``; the item store writes it.)

Storage (DESIGN.md "Storage"): every index has its own index id (1, 2, ... never reused within a table) and
its own encrypted B+trees under the same table key.

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
from typing import TYPE_CHECKING

import orjson

from dynavault.caller import Caller
from dynavault.errors import AWSError, validation

from . import on_demand
from .index_model import index_defs, stats_id
from .layout import STATS_PREFIX

if TYPE_CHECKING:
    from .catalog import TableMeta
    from .database import Database

log = logging.getLogger("dynavault.dynamodb.indexes")

_INVALID = "One or more parameter values were invalid: "
MAX_LSI = 5
MAX_GSI = 20
MAX_MULTI = 4
MAX_NON_KEY = 100
BACKFILL_BATCH = 200
#: DynamoDB's backfill is never instant; a short pause keeps UpdateTable's answer (CREATING) stable.
BACKFILL_START_DELAY = 0.3
#: a long backfill logs its progress this often
BACKFILL_REPORT_SECONDS = 10.0
_PROJECTIONS = ("ALL", "KEYS_ONLY", "INCLUDE")


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
    maximums = on_demand.merge(idx.get("OnDemandThroughput"), {}, billing, index=name)
    if maximums:
        out[on_demand.INDEX_MEMBER] = maximums
    return out


def _updated_throughput(meta: TableMeta, update: dict) -> tuple[dict, dict | None, dict | None]:
    """An Update action checked against the table's mode -> (index, its new ProvisionedThroughput or None,
    its new OnDemandThroughput maximums or None), nothing changed yet."""
    name = update.get("IndexName")
    d = _global_index(meta, name)
    pt = update.get("ProvisionedThroughput")
    if pt is not None and meta.billing_mode == "PAY_PER_REQUEST":
        raise validation(f"{_INVALID}The only Updates for index: {name} when TableThroughputMode is "
                         "PAY_PER_REQUEST can be to OnDemandThroughput, WarmThroughput")
    if pt is not None:
        pt = {"ReadCapacityUnits": int(pt.get("ReadCapacityUnits", 0)),
              "WriteCapacityUnits": int(pt.get("WriteCapacityUnits", 0))}
    maximums = None
    if "OnDemandThroughput" in update:
        maximums = on_demand.merge(update["OnDemandThroughput"], d.get(on_demand.INDEX_MEMBER) or {},
                                   meta.billing_mode, index=name, update=True)
    return d, pt, maximums


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


# -- UpdateTable: online create / delete / throughput ---------------------------------------------
def update_indexes(db: Database, caller: Caller, meta: TableMeta, p: dict) -> None:
    updates = p.get("GlobalSecondaryIndexUpdates") or []
    if any(d.get("IndexStatus") in ("CREATING", "DELETING") for d in meta.global_indexes) and any(
            "Create" in u or "Delete" in u for u in updates):
        raise AWSError("LimitExceededException", "Subscriber limit exceeded: Only 1 online index can be created or "
                       "deleted simultaneously per table")
    if sum(1 for u in updates if "Create" in u or "Delete" in u) > 1:
        raise AWSError("LimitExceededException", "Subscriber limit exceeded: Only 1 online index can be created or "
                       "deleted simultaneously per table")
    names = {d["IndexName"] for d in meta.local_indexes + meta.global_indexes}
    # throughput changes are all checked before any is made: a refusal leaves the cached table as it was
    throughput = [_updated_throughput(meta, u["Update"]) for u in updates if "Update" in u]
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
            codec = db.crypto(caller, meta).codec
            with db.items.write() as w:
                w.create_partitions(meta, codec, index_id)
            meta.global_indexes.append({**out, "IndexId": index_id, "IndexStatus": "CREATING",
                                        "Backfilling": True})
            _start(db, caller, meta, name, "create")
        elif "Delete" in u:
            name = u["Delete"].get("IndexName")
            d = _global_index(meta, name)
            d["IndexStatus"] = "DELETING"
            d.pop("Backfilling", None)
            _start(db, caller, meta, name, "delete")
    for d, pt, maximums in throughput:
        if pt is not None:
            d["ProvisionedThroughput"] = pt
        if maximums is not None:
            d.pop(on_demand.INDEX_MEMBER, None)
            if maximums:
                d[on_demand.INDEX_MEMBER] = maximums


def _start(db: Database, caller: Caller, meta: TableMeta, name: str, what: str) -> None:
    t = threading.Thread(target=_run_job, args=(db, caller, meta, name, what), name=f"index-{what}",
                         daemon=True)
    t.start()


def _lease(meta: TableMeta, name: str) -> str:
    return f"index:{meta.table_id}:{name}"


def _run_job(db: Database, caller: Caller, meta: TableMeta, name: str, what: str) -> None:
    time.sleep(BACKFILL_START_DELAY)
    lease = _lease(meta, name)
    # With several workers the job holds a lease while it runs: one worker does it, and if that worker dies
    # the lease expires and the store-wide job `resume_abandoned` starts it again elsewhere.
    if db.leases is not None and not db.leases.renew(lease):
        return
    try:
        if what == "create":
            backfill(db, caller, meta, name)
        else:
            drop_index(db, meta, name)
    except Exception:  # noqa: BLE001 - a background job must log, never die silently
        log.exception("index %s of table %s: %s failed", name, meta.name, what)
    finally:
        if db.leases is not None:
            db.leases.release_one(lease)


def _current(db: Database, meta: TableMeta, name: str) -> tuple[TableMeta, dict] | None:
    live = db.catalog.get(meta.account, meta.region, meta.name)
    if live is None or live.table_id != meta.table_id:
        return None
    d = next((g for g in live.global_indexes if g["IndexName"] == name), None)
    return (live, d) if d is not None else None


def backfill(db: Database, caller: Caller, meta: TableMeta, name: str,
             batch: int = BACKFILL_BATCH) -> None:
    """Index every existing item into a CREATING GSI, then make it ACTIVE."""
    after = None  # (token, sort key) of the last base item indexed
    started = last_report = time.monotonic()
    total, indexed = db.catalog.stats(meta.table_id)[0], 0
    log.info("index %s of table %s: backfill started (%d items in the table)", name, meta.name, total)
    while True:
        cur = _current(db, meta, name)
        if cur is None or cur[1].get("IndexStatus") != "CREATING":
            return  # deleted (or the table went away) meanwhile
        live, d = cur
        idx = next(i for i in index_defs(live) if i.name == name)
        crypto = db.crypto(caller, live)  # per batch: never older than the key refresh interval
        if db.leases is not None and not db.leases.renew(_lease(meta, name)):
            log.warning("index %s of table %s: backfill taken over by another worker", name, meta.name)
            return
        done = 0
        with db.items.write() as w:
            for token, key, raw in db.items.walk(w.tx, live, crypto, after):
                w.backfill_entry(live, crypto, idx, orjson.loads(raw))
                after = (token, key)
                done += 1
                if done >= batch:
                    break
        indexed += done
        if time.monotonic() - last_report >= BACKFILL_REPORT_SECONDS:
            last_report = time.monotonic()
            log.info("index %s of table %s: backfill %d / %d items (%.0f s)", name, meta.name, indexed, total,
                     last_report - started)
        if done < batch:
            break
    with db.catalog.lock:
        cur = _current(db, meta, name)
        if cur is not None and cur[1].get("IndexStatus") == "CREATING":
            cur[1]["IndexStatus"] = "ACTIVE"
            cur[1]["Backfilling"] = False
            db.catalog.save(cur[0])
    log.info("index %s of table %s: backfill done, %d items in %.2f s", name, meta.name, indexed,
             time.monotonic() - started)


def drop_index(db: Database, meta: TableMeta, name: str) -> None:
    cur = _current(db, meta, name)
    if cur is None:
        return
    live, d = cur
    with db.catalog.lock:
        with db.items.write() as w:
            w.drop(live, int(d["IndexId"]))
            w.tx.delete(STATS_PREFIX + stats_id(live, int(d["IndexId"])).encode())
            live.global_indexes = [g for g in live.global_indexes if g["IndexName"] != name]
            db.catalog.put(w.tx, live)
        db.catalog.remember(live)
    log.info("index %s of table %s: deleted", name, meta.name)


def resume_abandoned(db: Database) -> None:
    """With several workers (a store-wide periodic job): start again the backfills and deletes whose worker
    died — their lease expired; one whose lease is held (here or elsewhere) is running."""
    if db.leases is not None:
        resume_jobs(db, only_abandoned=True)


def resume_jobs(db: Database, *, only_abandoned: bool = False) -> None:
    """After a restart: finish the backfills and deletes that were under way."""
    for meta in db.catalog.all():
        for d in meta.global_indexes:
            status = d.get("IndexStatus")
            if only_abandoned and db.leases is not None and db.leases.taken(_lease(meta, d["IndexName"])):
                continue
            if status in ("CREATING", "DELETING"):
                # The account's root principal: the same identity key policies grant by default.
                caller = Caller(account=meta.account, region=meta.region,
                                principal_arn=f"arn:aws:iam::{meta.account}:root")
                _start(db, caller, meta, d["IndexName"], "create" if status == "CREATING" else "delete")
