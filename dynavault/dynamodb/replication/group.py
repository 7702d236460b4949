"""The replication group of a global table, as each member's catalog record keeps it, and as DescribeTable
shows it.

``meta.extra["replication"] = {"version": "2019.11.21", "members": {region: {"status", "source", "since"}}}``
is the same on every member; it is only ever replaced whole (``write_group``), never changed in place.
A member's ``status`` is CREATING (being filled from ``source``) or ACTIVE; what DescribeTable shows also
follows the member table itself (its key unusable: INACCESSIBLE_ENCRYPTION_CREDENTIALS; a key switch in
flight: UPDATING).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dynavault.storage.kv.base import KVTransaction

    from ..catalog import Catalog, TableMeta

VERSION = "2019.11.21"
#: the cause of every replicated write (what the replica's stream and metrics show)
CAUSE = "replication"
INACCESSIBLE = "INACCESSIBLE_ENCRYPTION_CREDENTIALS"


def group_of(meta: TableMeta) -> dict | None:
    return meta.extra.get("replication")


def member_regions(meta: TableMeta) -> list[str]:
    group = group_of(meta)
    return sorted(group["members"]) if group else []


def members(catalog: Catalog, meta: TableMeta) -> list[TableMeta]:
    """Every member table there is now (this one included), in region order."""
    out = []
    for region in member_regions(meta):
        m = meta if region == meta.region else catalog.get(meta.account, region, meta.name)
        if m is not None:
            out.append(m)
    return out


def new_group(meta: TableMeta) -> dict:
    return {"version": VERSION, "members": {meta.region: {"status": "ACTIVE", "since": meta.created}}}


def with_member(group: dict, region: str, entry: dict | None) -> dict:
    """A copy of ``group`` with ``region``'s entry set (None: removed)."""
    members_ = {r: dict(e) for r, e in group["members"].items() if r != region}
    if entry is not None:
        members_[region] = dict(entry)
    return {**group, "members": members_}


def write_group(catalog: Catalog, tx: KVTransaction, metas: list[TableMeta], group: dict | None) -> None:
    """Give every one of ``metas`` the group (None, or a group of one member: the table is regional again);
    the caller calls ``catalog.remember`` for each once ``tx`` committed."""
    alone = group is None or len(group["members"]) < 2
    for m in metas:
        extra = {k: v for k, v in m.extra.items() if k != "replication"}
        if not alone:
            extra["replication"] = {**group, "members": {r: dict(e) for r, e in group["members"].items()}}
        m.extra = extra
        catalog.put(tx, m)


def replica_status(entry: dict, member: TableMeta | None) -> str:
    if member is None:
        return "DELETING"
    if entry.get("status") != "ACTIVE":
        return entry.get("status", "CREATING")
    if member.status == INACCESSIBLE:
        return INACCESSIBLE
    if member.sse_state.get("phase"):
        return "UPDATING"
    return "ACTIVE"


def _replica(region: str, entry: dict, member: TableMeta | None) -> dict:
    out: dict = {"RegionName": region, "ReplicaStatus": replica_status(entry, member)}
    if member is None:
        return out
    if member.sse.get("mode", "OWNED") != "OWNED" and member.sse.get("key_arn"):
        out["KMSMasterKeyId"] = member.sse["key_arn"]  # always the full key ARN of that region's key
    since = member.sse_state.get("inaccessible_since")
    if member.status == INACCESSIBLE and since is not None:
        out["ReplicaInaccessibleDateTime"] = float(since)
    if member.global_indexes:
        out["GlobalSecondaryIndexes"] = [{"IndexName": g["IndexName"]} for g in member.global_indexes]
    if member.table_class:  # the default STANDARD is omitted until set explicitly, as in DynamoDB
        out["ReplicaTableClassSummary"] = {"TableClass": member.table_class,
                                           "LastUpdateDateTime": float(entry.get("class_since", member.created))}
    return out


def own_state(meta: TableMeta) -> dict:
    """What this member tells the servers of the other members about itself (its status as DescribeTable
    shows it, its key ARN, when its key became unusable, its table class); they show it as its replica."""
    entry = (group_of(meta) or {}).get("members", {}).get(meta.region) or {}
    state: dict = {"status": replica_status(entry, meta)}
    if meta.sse.get("mode", "OWNED") != "OWNED" and meta.sse.get("key_arn"):
        state["key_arn"] = meta.sse["key_arn"]
    since = meta.sse_state.get("inaccessible_since")
    if meta.status == INACCESSIBLE and since is not None:
        state["inaccessible_since"] = float(since)
    if meta.table_class:
        state["table_class"] = meta.table_class
        state["class_since"] = float(entry.get("class_since", meta.created))
    if meta.global_indexes:
        state["indexes"] = [g["IndexName"] for g in meta.global_indexes]
    return state


def _remote_replica(region: str, entry: dict) -> dict:
    """A member served by another server (``--replica-peer``): what this server last learnt of it (``state``:
    what that server last told about it; ``peer_error``: the last exchange with it failed)."""
    error = entry.get("peer_error") or {}
    state = entry.get("state") or {}
    status = error.get("status") or (state.get("status") if entry.get("status") == "ACTIVE" else None)
    out: dict = {"RegionName": region, "ReplicaStatus": status or entry.get("status", "CREATING")}
    if error.get("description"):
        out["ReplicaStatusDescription"] = error["description"]
    key_arn = state.get("key_arn", entry.get("key_arn")) if state else entry.get("key_arn")
    if key_arn:
        out["KMSMasterKeyId"] = key_arn
    if out["ReplicaStatus"] == INACCESSIBLE and state.get("inaccessible_since") is not None:
        out["ReplicaInaccessibleDateTime"] = float(state["inaccessible_since"])
    if state.get("indexes"):
        out["GlobalSecondaryIndexes"] = [{"IndexName": n} for n in state["indexes"]]
    if state.get("table_class"):
        out["ReplicaTableClassSummary"] = {"TableClass": state["table_class"],
                                           "LastUpdateDateTime": float(state.get("class_since", 0.0))}
    return out


def describe_into(catalog: Catalog, meta: TableMeta, desc: dict) -> None:
    """DescribeTable's ``GlobalTableVersion`` and ``Replicas``: every other member, as seen from this region
    (the table's own region is not listed, as DynamoDB's "Determining the version" page shows)."""
    group = group_of(meta)
    if not group:
        return
    desc["GlobalTableVersion"] = group.get("version", VERSION)
    replicas = []
    for region in sorted(group["members"]):
        if region == meta.region:
            continue
        entry = group["members"][region]
        if entry.get("remote"):
            replicas.append(_remote_replica(region, entry))
            continue
        member = catalog.get(meta.account, region, meta.name)
        replicas.append(_replica(region, entry, member))
    desc["Replicas"] = replicas


def now() -> float:
    return time.time()
