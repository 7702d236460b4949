"""UpdateTable ``ReplicaUpdates`` (Create, Update, Delete), DeleteTable of a member, and the 2017.11.29 calls.

Texts and rules follow the "ack-api-quirks dynamodb" catalogue (probed on real DynamoDB, 2026-10), entries
DDB-TABLE-203/223/225/265 (error taxonomy), DDB-TABLE-305 (no stream prerequisite: a Create enables a
NEW_AND_OLD_IMAGES stream on a table without one and keeps any other), DDB-TABLE-309/313 (replica keys),
DDB-TABLE-320 (GlobalTableVersion and Replicas vanish with the last replica) and DDB-GLOBALTABLE-004 (the
legacy calls on a 2019.11.21 table).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dynavault.errors import AWSError, validation
from dynavault.sse.table_keys import AWS_MANAGED, CUSTOMER, OWNED

from ..describe import table_description
from ..sse_spec import parse_sse_specification
from ..streams import control as stream_control
from . import store
from .group import group_of, members, new_group, with_member, write_group

if TYPE_CHECKING:
    from dynavault.caller import Caller

    from ..catalog import TableMeta
    from ..database import Database

log = logging.getLogger("dynavault.replication")
_INVALID = "One or more parameter values were invalid: "
#: regions that take a 2019.11.21 replica (DynamoDB lists them in its refusal of any other)
REGIONS = (
    "af-south-1", "ap-east-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-south-2",
    "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-7",
    "ca-central-1", "ca-west-1", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2",
    "eu-west-1", "eu-west-2", "eu-west-3", "il-central-1", "me-central-1", "me-south-1", "mx-central-1",
    "sa-east-1", "us-east-1", "us-east-2", "us-west-1", "us-west-2",
)
_KMS_PREFIX = re.compile(r"^KMS (validation|key disabled|key access denied|internal) error: ")


def _in_use(name: str) -> AWSError:
    return AWSError("ResourceInUseException",
                    f"Attempt to change a resource which is still in use: Table: {name} is in the process of being "
                    "updated.")


def _already(name: str) -> AWSError:
    return validation(f"Failed to create a the new replica of table with name: \u2018{name}\u2019 because one or "
                      "more replicas already existed as tables.")


def _not_member(region: str) -> AWSError:
    return validation("Update global table operation failed because one or more replicas were not part of the "
                      f"global table. Please retry the request without these replicas: [{region}].")


def _sse_in_use(name: str) -> AWSError:
    return AWSError("ResourceInUseException", "Attempt to change a resource which is still in use: "
                    f"Server-Side Encryption is still being updated for table: {name}")


def _no_key_for_replica() -> AWSError:
    return validation(_INVALID + "KMSMasterKeyId must be specified for each replica.")


class GlobalTables:
    """What tables.py calls for replicas; the runtime builds it with the table operations it reuses."""

    def __init__(self, db: Database, *, create_table: Callable, delete_table: Callable) -> None:
        self.db = db
        self._create_table = create_table
        self._delete_table = delete_table
        #: members in other servers (remote.RemoteReplicas), when --replica-peer names any
        self.remote = None

    def __repr__(self) -> str:
        return "<GlobalTables>"

    # -- UpdateTable ----------------------------------------------------------------------------------
    @staticmethod
    def check_request(p: dict, changes: list[str]) -> None:
        """What the request alone shows (before the table is looked up)."""
        if [c for c in changes if c not in ("ReplicaUpdates", "AttributeDefinitions")]:
            raise validation("Requests that modify replicas or witnesses must not also modify other fields")
        actions = []
        for update in p["ReplicaUpdates"]:
            kinds = [k for k in ("Create", "Update", "Delete") if k in update]
            if not kinds:
                raise validation("There are no actions specified in the Replica Update Action of the request.")
            if len(kinds) > 1:
                raise validation("Update table operation with more than one type of replica actions not allowed.")
            body = update[kinds[0]]
            if kinds[0] == "Update" and set(body) <= {"RegionName"}:
                raise validation("There are no actions specified in the Replica Update Action of the request.")
            if kinds[0] != "Update":
                actions.append((kinds[0], body.get("RegionName")))
        if len(set(actions)) > 1:  # two identical Creates count once, as in DynamoDB
            raise validation("Update table operation with more than one create or delete replica actions not allowed")

    def update(self, caller: Caller, meta: TableMeta, p: dict) -> dict:
        db = self.db
        group = group_of(meta)
        if group and any(e.get("status") != "ACTIVE" for e in group["members"].values()):
            raise _in_use(meta.name)
        for update in p["ReplicaUpdates"]:
            kind = next(k for k in ("Create", "Update", "Delete") if k in update)
            body = update[kind]
            region = body.get("RegionName") or ""
            if region == caller.region:
                raise validation("Cannot add or delete the local region through ReplicaUpdates. Use CreateTable, "
                                 "DeleteTable, or UpdateTable as required.")
            if region not in REGIONS:
                raise validation(f"Region {region} is not supported. The latest version of global tables are only "
                                 f"supported in the following regions: [{', '.join(REGIONS)}].")
            remote = self.remote
            if kind == "Create" and remote is not None and region in remote.peers:
                remote.create(caller, meta, region, body, lambda body=body: self._params(meta, body, None))
                break
            if remote is not None and ((group or {}).get("members", {}).get(region) or {}).get("remote"):
                if kind == "Delete":
                    remote.delete(meta, region)
                    break
                self._check_update(meta, region, body)
                remote.update(meta, region, body)
                continue
            if remote is not None and remote.served and region not in remote.served and \
                    region not in remote.peers:
                raise validation(f"Region {region} is not served by this server and no --replica-peer serves it.")
            if kind == "Create":
                if remote is not None and any(e.get("remote") for e in (group or {"members": {}})["members"].values()):
                    # the servers of the other members would never hear of it: it would miss their writes
                    raise validation(f"Region {region} is served by this server: a global table with replicas in "
                                     "other servers takes new replicas only in regions another server serves.")
                self._create(caller, meta, region, body)
                break  # duplicates of the same Create were folded by check_request
            if kind == "Delete":
                self._delete(caller, meta, region)
                break
            self._update(caller, meta, region, body)
        current = db.catalog.get(caller.account, caller.region, meta.name) or meta
        return {"TableDescription": table_description(db.catalog, current)}

    def _replica_sse(self, rcaller: Caller, meta: TableMeta, key_id: str | None) -> dict | None:
        """The replica's SSESpecification: the group's key type, a key of the replica's own region."""
        mode = meta.sse.get("mode", OWNED)
        if mode == OWNED:
            if key_id is not None:  # an owned-key group takes no replica key (DDB-TABLE-313)
                raise _no_key_for_replica()
            return None
        if key_id is None:
            if mode == CUSTOMER:
                raise _no_key_for_replica()
            return {"Enabled": True, "SSEType": "KMS"}
        try:
            arn, kind = self.db.keys.resolve(rcaller, CUSTOMER, key_id)
        except AWSError as err:
            m = _KMS_PREFIX.match(err.message or "")
            if m is None:
                raise
            raise AWSError(err.code, f"KMS {m.group(1)} error for region {rcaller.region}: "
                           + err.message[m.end():], status=err.status) from None
        if kind != mode:
            raise validation(_INVALID + "All replica keys must either be Customer Managed CMK or AWS Managed CMK.")
        return {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": arn}

    def _params(self, meta: TableMeta, body: dict, sse: dict | None) -> dict:
        """CreateTable parameters of the replica: the same keys, indexes, billing and stream."""
        p: dict = {"TableName": meta.name, "KeySchema": meta.key_schema,
                   "AttributeDefinitions": meta.attribute_definitions, "BillingMode": meta.billing_mode,
                   "StreamSpecification": {"StreamEnabled": True,
                                           "StreamViewType": meta.stream["spec"]["StreamViewType"]}}
        provisioned = meta.billing_mode == "PROVISIONED"
        if provisioned:
            rcu = (body.get("ProvisionedThroughputOverride") or {}).get("ReadCapacityUnits", meta.read_capacity)
            p["ProvisionedThroughput"] = {"ReadCapacityUnits": rcu, "WriteCapacityUnits": meta.write_capacity}
        if meta.local_indexes:
            p["LocalSecondaryIndexes"] = [{k: d[k] for k in ("IndexName", "KeySchema", "Projection")}
                                          for d in meta.local_indexes]
        if meta.global_indexes:
            overrides = {g.get("IndexName"): g for g in body.get("GlobalSecondaryIndexes") or []}
            gsis = []
            for d in meta.global_indexes:
                g = {k: d[k] for k in ("IndexName", "KeySchema", "Projection")}
                if provisioned:
                    pt = d.get("ProvisionedThroughput") or {}
                    over = (overrides.get(d["IndexName"]) or {}).get("ProvisionedThroughputOverride") or {}
                    g["ProvisionedThroughput"] = {
                        "ReadCapacityUnits": over.get("ReadCapacityUnits", pt.get("ReadCapacityUnits", 1)),
                        "WriteCapacityUnits": pt.get("WriteCapacityUnits", 1)}
                gsis.append(g)
            p["GlobalSecondaryIndexes"] = gsis
        table_class = body.get("TableClassOverride") or meta.table_class
        if table_class:
            p["TableClass"] = table_class
        if sse is not None:
            p["SSESpecification"] = sse
        return p

    def _create(self, caller: Caller, meta: TableMeta, region: str, body: dict) -> None:
        db = self.db
        name = meta.name
        rcaller = dataclasses.replace(caller, region=region)
        group = group_of(meta) or new_group(meta)
        if region in group["members"] or db.catalog.get(caller.account, region, name) is not None or \
                db.table_states.deleting(db, caller.account, region, name) is not None:
            raise _already(name)
        sse = self._replica_sse(rcaller, meta, body.get("KMSMasterKeyId"))
        now = time.time()
        with db.catalog.lock:
            if not (meta.stream and meta.stream.get("spec")):
                # no stream prerequisite: DynamoDB turns one on itself (DDB-TABLE-305)
                with db.catalog.transaction() as tx:
                    stream_control.enable(db.streams, tx, meta, "NEW_AND_OLD_IMAGES", now)
                    db.catalog.put(tx, meta)
                db.catalog.remember(meta)
            self._create_table(db, rcaller, self._params(meta, body, sse), status="CREATING",
                               extra={"replica_source": meta.region})
            replica = db.catalog.get(caller.account, region, name)
            metas = members(db.catalog, meta) if group_of(meta) else [meta]
            entry = {"status": "CREATING", "source": meta.region, "since": now}
            if body.get("TableClassOverride"):
                entry["class_since"] = now
            group = with_member(group, region, entry)
            with db.catalog.transaction() as tx:
                # the new member reads every other member's queue from where it ends now; what is older
                # reaches it through the backfill
                for m in metas:
                    store.set_checkpoint(tx, m.id_bytes, region, store.last_position(tx, m.id_bytes))
                    store.set_checkpoint(tx, replica.id_bytes, m.region, None)
                write_group(db.catalog, tx, [*metas, replica], group)
            for m in [*metas, replica]:
                db.catalog.remember(m)
        log.info("replica of %s in %s: creating from %s", name, region, meta.region)

    def _check_update(self, meta: TableMeta, region: str, body: dict) -> None:
        group = group_of(meta)
        if not group or region not in group["members"]:
            raise _not_member(region)
        if "KMSMasterKeyId" in body:  # a replica's key changes by SSESpecification in its region (DDB-TABLE-309)
            raise _no_key_for_replica()
        if body.get("ProvisionedThroughputOverride") and meta.billing_mode == "PAY_PER_REQUEST":
            raise validation("Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is "
                             "PAY_PER_REQUEST")

    def _update(self, caller: Caller, meta: TableMeta, region: str, body: dict) -> None:
        self._check_update(meta, region, body)
        self.apply_update(meta, region, body)

    def apply_update(self, meta: TableMeta, region: str, body: dict) -> None:
        """A checked replica Update applied to the member in ``region`` (in this catalog; a member of another
        server applies it there, asked by the server that took the request)."""
        db = self.db
        with db.catalog.lock:
            group = group_of(db.catalog.get(meta.account, meta.region, meta.name) or meta)
            replica = db.catalog.get(meta.account, region, meta.name)
            if replica is None or not group or region not in group["members"]:
                raise _not_member(region)
            entry = dict(group["members"][region])
            if body.get("TableClassOverride"):
                replica.table_class = body["TableClassOverride"]
                entry["class_since"] = time.time()
            rcu = (body.get("ProvisionedThroughputOverride") or {}).get("ReadCapacityUnits")
            if rcu is not None:
                replica.read_capacity = int(rcu)
            metas = members(db.catalog, replica)
            with db.catalog.transaction() as tx:
                write_group(db.catalog, tx, metas, with_member(group, region, entry))
            for m in metas:
                db.catalog.remember(m)

    def _delete(self, caller: Caller, meta: TableMeta, region: str) -> None:
        db = self.db
        group = group_of(meta)
        if not group or region not in group["members"]:
            raise _not_member(region)
        rcaller = dataclasses.replace(caller, region=region)
        if db.catalog.get(caller.account, region, meta.name) is not None:
            self._delete_table(db, rcaller, {"TableName": meta.name})  # table_deleted updates the group
        else:
            self._forget_region(meta, region)

    # -- DeleteTable of a member ----------------------------------------------------------------------
    @staticmethod
    def check_delete(meta: TableMeta) -> None:
        """A member is not deleted while a replica of its group is being created (it may be the source)."""
        group = group_of(meta)
        if group and any(e.get("status") != "ACTIVE" for r, e in group["members"].items() if r != meta.region):
            raise _in_use(meta.name)

    def table_deleted(self, meta: TableMeta) -> None:
        """After DeleteTable removed ``meta``: its region leaves the group of the other members."""
        if group_of(meta) is not None:
            self._forget_region(meta, meta.region)

    def _forget_region(self, meta: TableMeta, region: str) -> None:
        db = self.db
        with db.catalog.lock:
            group = group_of(meta)
            rest = [m for m in members(db.catalog, meta) if m.region != region]
            if group is None or not rest:
                return
            group = with_member(group, region, None)
            with db.catalog.transaction() as tx:
                write_group(db.catalog, tx, rest, group)
                for m in rest:
                    store.drop_checkpoint(tx, m.id_bytes, region)
            for m in rest:
                db.catalog.remember(m)
        log.info("replica of %s in %s removed", meta.name, region)

    # -- SSE ----------------------------------------------------------------------------------------
    def update_sse(self, caller: Caller, meta: TableMeta, spec: dict | None) -> dict:
        """UpdateTable SSESpecification on a member. The encryption type is the group's: a change of type (to
        the AWS managed key, to the owned key) fans out to every replica, each to its own region's key, each
        UPDATING then ACTIVE; a customer key is regional and changes this region's replica only."""
        db = self.db
        mode, key_id = parse_sse_specification(spec)
        if key_id is not None:
            if meta.sse.get("mode", OWNED) != CUSTOMER:
                raise validation(_INVALID + "All replica keys must either be Customer Managed CMK or AWS Managed "
                                 "CMK.")
            return db.sse.update_sse(caller, meta, spec)
        others = [m for m in members(db.catalog, meta) if m is not meta]
        remote = self.remote
        for m in others:
            if m.sse_state.get("pending") or m.sse_state.get("phase"):
                raise _sse_in_use(m.name)
        if remote is not None and remote.in_update(meta):  # as that member last told
            raise _sse_in_use(meta.name)
        answer = db.sse.update_sse(caller, meta, spec)
        for m in others:
            try:
                db.sse.update_sse(dataclasses.replace(caller, region=m.region), m, spec)
            except AWSError as err:  # that replica keeps its key; the change stands where it was made
                log.warning("SSE change of %s did not reach its replica in %s: %s", meta.name, m.region, err.code)
        if remote is not None:
            remote.update_sse(caller, meta, spec)
        current = db.catalog.get(meta.account, meta.region, meta.name) or meta
        if len((group_of(current) or {"members": {}})["members"]) > 1:  # the answer shows the replicas UPDATING
            answer = {"TableDescription": {**answer["TableDescription"],
                                           **{k: v for k, v in table_description(db.catalog, current).items()
                                              if k == "Replicas"}}}
        return answer

    @staticmethod
    def refuse_stream_change(meta: TableMeta, spec: dict) -> None:
        """A member's stream carries replication: it stays on while the table has replicas (DDB-TABLE-221)."""
        if group_of(meta) is not None and not spec.get("StreamEnabled"):
            raise validation("Disabling Stream is not allowed for a Global Table replica")


# -- the 2017.11.29 calls, answered as DynamoDB answers them when every table is of the newer version ----------
def _global_not_found(name: str) -> AWSError:
    return AWSError("GlobalTableNotFoundException",
                    f"Global table not found: Global table with name: '{name}' does not exist.")


def list_global_tables(db: Database, caller: Caller, p: dict) -> dict:
    return {"GlobalTables": []}


def describe_global_table(db: Database, caller: Caller, p: dict) -> dict:
    raise _global_not_found(p["GlobalTableName"])


def describe_global_table_settings(db: Database, caller: Caller, p: dict) -> dict:
    raise AWSError("GlobalTableNotFoundException", f"Global table with name: '{p['GlobalTableName']}' does not exist.")


def update_global_table_settings(db: Database, caller: Caller, p: dict) -> dict:
    raise AWSError("GlobalTableNotFoundException", f"Global table with name: '{p['GlobalTableName']}' does not exist.")


def create_global_table(db: Database, caller: Caller, p: dict) -> dict:
    raise validation("version 2017.11.29 is not supported")


def update_global_table(db: Database, caller: Caller, p: dict) -> dict:
    updates = p.get("ReplicaUpdates") or []
    if not updates:
        raise validation("One or more parameter values were invalid")
    if any("Create" in u for u in updates):  # checked before the table is looked for
        raise validation("version 2017.11.29 is not supported")
    raise _global_not_found(p["GlobalTableName"])


HANDLERS = {
    "ListGlobalTables": list_global_tables,
    "DescribeGlobalTable": describe_global_table,
    "DescribeGlobalTableSettings": describe_global_table_settings,
    "UpdateGlobalTableSettings": update_global_table_settings,
    "CreateGlobalTable": create_global_table,
    "UpdateGlobalTable": update_global_table,
}

__all__ = ["AWS_MANAGED", "GlobalTables", "HANDLERS"]
