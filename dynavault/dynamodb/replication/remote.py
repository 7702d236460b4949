"""Global-table members in other servers (``--replica-peer``): the signed internal operations a peer calls
(``DynavaultReplication.*``), the remote replica Create, and the puller that keeps local members in step.

Each server *pulls*: for every local member and every member region served by a peer, it asks that peer for
the rows of its queue after a checkpoint kept here (``checkpoint(local table id, "@" + region)``), and applies
them through the same path as the local applier (``Replicator._apply_one``: last writer wins, the checkpoint
moved in the same store transaction). A pull also tells the peer how far this server got, which the peer
keeps as its consumer checkpoint (``checkpoint(its table id, this region)``) so it trims its queue only below
what was applied here. Items travel as DynamoDB JSON with their clock and canonical key bytes, opened by the
origin server with its own keys: no sealed blob of one server ever reaches another.

Every pull also carries the state of the member it comes from (status as DescribeTable shows it, key ARN,
inaccessible since, table class), and every answer the other's: kept as ``state`` in the remote member's
entry, it is what DescribeTable here shows of that replica. A member whose server answers that its table is
gone (deleted there, or out of the group after its key stayed unusable) leaves the group here too.
Changes made on one server for a member of another are asked of that server: ``AddMember`` (a new member
announced to every other server before it is created), ``RemoveMember``, ``UpdateReplica``,
``DeleteReplica``, ``UpdateReplicaSSE``.

A remote member's entry in the group record carries ``remote: True`` (its table is not in this catalog) and,
when the last exchange with its server failed, ``peer_error`` (what DescribeTable shows as its status).
"""

from __future__ import annotations

import logging
import time
import types
from typing import TYPE_CHECKING

import orjson

from dynavault.errors import AWSError, validation
from dynavault.storage.sealed import PartitionToken

from ..keys import key_of_item
from ..streams import control as stream_control
from . import store
from .group import INACCESSIBLE, group_of, members, new_group, own_state, with_member, write_group
from .peers import NOT_AUTHORIZED, PeerError, Peers

if TYPE_CHECKING:
    from dynavault.caller import Caller

    from ..catalog import TableMeta
    from ..database import Database
    from .applier import Replicator

log = logging.getLogger("dynavault.replication")
BATCH = 256
#: seconds between two pulls from each peer (an idle pull is one small signed request)
PULL_INTERVAL = 0.05
#: a local member's checkpoint in the queue of the member of another server in ``region``
PULL_PREFIX = "@"


def _hex(b: bytes | None) -> str | None:
    return None if b is None else b.hex()


def _unhex(s) -> bytes | None:
    if s is None:
        return None
    if not isinstance(s, str) or len(s) > 256:
        raise validation("bad position")
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise validation("bad position") from None


_STATUSES = frozenset({"CREATING", "ACTIVE", "UPDATING", "DELETING", INACCESSIBLE})


def _clean_state(state) -> dict | None:
    """A peer's account of its own member, every field checked (it is shown in DescribeTable here)."""
    if state is None:
        return None
    if not isinstance(state, dict) or state.get("status") not in _STATUSES or len(state) > 8:
        raise validation("State takes status, key_arn, inaccessible_since, table_class, class_since")
    out: dict = {"status": state["status"]}
    for k in ("key_arn", "table_class"):
        v = state.get(k)
        if v is not None:
            if not isinstance(v, str) or len(v) > 2048:
                raise validation(f"State {k} must be a string")
            out[k] = v
    names = state.get("indexes")
    if names is not None:
        if not isinstance(names, list) or len(names) > 25 or \
                not all(isinstance(n, str) and 0 < len(n) <= 255 for n in names):
            raise validation("State indexes must be index names")
        out["indexes"] = list(names)
    for k in ("inaccessible_since", "class_since"):
        v = state.get(k)
        if v is not None:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < 1e11:
                raise validation(f"State {k} must be a time")
            out[k] = float(v)
    return out


class RemoteReplicas:
    def __init__(self, db: Database, peers: Peers, replicator: Replicator, *, served: frozenset[str]) -> None:
        self.db = db
        self.peers = peers
        self.replicator = replicator
        #: the regions this server serves (empty: every region)
        self.served = served
        #: local table id -> backfill cursor of a remote-sourced replica being filled
        self._backfill: dict[str, list | None] = {}
        #: (table id, region) -> monotonic time before which that peer is not asked again
        self._waiting: dict[tuple[str, str], tuple[float, float]] = {}

    def __repr__(self) -> str:
        return f"<RemoteReplicas {self.peers!r}>"

    # -- the group record -------------------------------------------------------------------------------
    def _set_entry(self, meta: TableMeta, region: str, change) -> None:
        """Replace ``region``'s entry in the group of ``meta`` (and every local member) by ``change(entry)``."""
        db = self.db
        with db.catalog.lock:
            current = db.catalog.get(meta.account, meta.region, meta.name)
            group = group_of(current) if current is not None else None
            if group is None or region not in group["members"]:
                return
            entry = change(dict(group["members"][region]))
            if entry == group["members"][region]:
                return
            metas = members(db.catalog, current)
            with db.catalog.transaction() as tx:
                write_group(db.catalog, tx, metas, with_member(group, region, entry))
            for m in metas:
                db.catalog.remember(m)

    def _peer_failed(self, meta: TableMeta, err: PeerError) -> None:
        status = NOT_AUTHORIZED if err.not_authorized else None
        note = {"status": status, "description": err.describe()}

        def change(entry: dict) -> dict:
            return {**entry, "peer_error": note}
        self._set_entry(meta, err.region, change)

    def _peer_ok(self, meta: TableMeta, region: str) -> None:
        entry = (group_of(meta) or {}).get("members", {}).get(region) or {}
        if "peer_error" in entry or "unconfirmed" in entry:
            self._set_entry(meta, region, lambda e: {k: v for k, v in e.items()
                                                     if k not in ("peer_error", "unconfirmed")})

    def unconfirm_creates(self) -> None:
        """At start, before any request: a member this server was creating in another server (``create``) may
        never have reached it (the server stopped before asking, or before undoing a refused Create). Each is
        marked ``unconfirmed``: the first answer of its server confirms it, or says its table is not there, and
        then the Create is undone as ``create`` would have (``run_once``). No Create is under way now, so a
        table missing there is not one being made."""
        for meta in self.db.catalog.all():
            group = group_of(meta)
            for region, entry in sorted((group or {}).get("members", {}).items()):
                if entry.get("remote") and entry.get("status") == "CREATING" and "source" not in entry:
                    self._set_entry(meta, region, lambda e: {**e, "unconfirmed": True})

    # -- UpdateTable ReplicaUpdates Create for a region a peer serves -----------------------------------------
    def create(self, caller: Caller, meta: TableMeta, region: str, body: dict, params_of) -> None:
        """``params_of()``: the replica's CreateTable parameters, once the table has its stream (without
        SSESpecification: the peer resolves the key in its own region). Runs in a thread (it waits on peers)."""
        db = self.db
        group = group_of(meta) or new_group(meta)
        if region in group["members"]:
            raise validation(f"Failed to create a the new replica of table with name: \u2018{meta.name}\u2019 "
                             "because one or more replicas already existed as tables.")
        others = self._remote_regions(group)
        for r in others:
            if r not in self.peers:
                raise validation(f"The replica in region {r} is served by another server and no --replica-peer "
                                 "names it.")
        now = time.time()
        with db.catalog.lock:
            if not (meta.stream and meta.stream.get("spec")):
                with db.catalog.transaction() as tx:
                    stream_control.enable(db.streams, tx, meta, "NEW_AND_OLD_IMAGES", now)
                    db.catalog.put(tx, meta)
                db.catalog.remember(meta)
            metas = members(db.catalog, meta) if group_of(meta) else [meta]
            starts = {}
            with db.catalog.transaction() as tx:
                # committed before the peer is asked: from now on every local change is queued, and the peer
                # reads each local queue from where it ends now (what is older reaches it by the backfill)
                for m in metas:
                    pos = store.last_position(tx, m.id_bytes)
                    starts[m.region] = _hex(pos)
                    store.set_checkpoint(tx, m.id_bytes, region, pos)
                    store.set_checkpoint(tx, m.id_bytes, PULL_PREFIX + region, None)
                group = with_member(group, region, {"status": "CREATING", "remote": True, "since": now})
                write_group(db.catalog, tx, metas, group)
            for m in metas:
                db.catalog.remember(m)
        told: list[str] = []
        try:
            # the servers of the other members learn of the new one first: each keeps, for it, every row of
            # its queue that the source has not acknowledged yet (what it acknowledged is in the backfill)
            for r in others:
                answer = self.peers.call(r, "AddMember", {"TableName": meta.name, "Region": region,
                                                          "Source": meta.region})
                told.append(r)
                for member_region, pos in (answer.get("Starts") or {}).items():
                    starts[member_region] = pos
            answer = self.peers.call(region, "CreateReplica", {
                "TableName": meta.name, "Source": meta.region, "Table": params_of(), "SSE": {
                    "mode": meta.sse.get("mode", "OWNED"), "KMSMasterKeyId": body.get("KMSMasterKeyId")},
                "Starts": starts, "Members": sorted(group["members"])})
        except PeerError as err:
            self.forget(meta, region, quiet=True)
            self._tell_removed(meta, region, told)
            raise err.as_aws() from None
        arn = answer.get("KMSMasterKeyId")
        if arn:
            self._set_entry(meta, region, lambda e: {**e, "key_arn": arn})
        log.info("replica of %s in %s (another server): creating from %s", meta.name, region, meta.region)

    @staticmethod
    def _remote_regions(group: dict, but: str | None = None) -> list[str]:
        return sorted(r for r, e in group["members"].items() if e.get("remote") and r != but)

    def _tell_removed(self, meta: TableMeta, region: str, regions: list[str]) -> None:
        """Best effort: a server not reached now finds out at its next pull (the member's table is gone)."""
        for r in regions:
            try:
                self.peers.call(r, "RemoveMember", {"TableName": meta.name, "Region": region})
            except PeerError as err:
                log.warning("the server of %s was not told that %s left %s: %s", r, region, meta.name,
                            err.describe())

    # -- UpdateTable ReplicaUpdates Update / Delete, SSE changes, for a member a peer serves ------------------
    def _ask(self, region: str, operation: str, params: dict) -> dict:
        try:
            return self.peers.call(region, operation, params)
        except PeerError as err:
            raise err.as_aws() from None

    def update(self, meta: TableMeta, region: str, body: dict) -> None:
        answer = self._ask(region, "UpdateReplica", {"TableName": meta.name, "Update": body})
        self._learn(meta, region, answer)

    def delete(self, meta: TableMeta, region: str) -> None:
        try:
            self.peers.call(region, "DeleteReplica", {"TableName": meta.name})
        except PeerError as err:
            if err.code != "ResourceNotFoundException":  # gone already: only this group still names it
                raise err.as_aws() from None
        self.forget(meta, region)
        self._tell_removed(meta, region, self._remote_regions(group_of(meta) or {"members": {}}, region))

    def in_update(self, meta: TableMeta) -> TableMeta | None:
        """A member in another server still switching keys (as it last said), if any."""
        for region, entry in (group_of(meta) or {"members": {}})["members"].items():
            if entry.get("remote") and (entry.get("state") or {}).get("status") == "UPDATING":
                return region
        return None

    def update_sse(self, caller: Caller, meta: TableMeta, spec: dict | None) -> None:
        """The group's encryption type fans out to the members of other servers too, each to a key of its own
        region; one that refuses keeps its key (logged), as a local replica does."""
        for region in self._remote_regions(group_of(meta) or {"members": {}}):
            try:
                answer = self.peers.call(region, "UpdateReplicaSSE", {"TableName": meta.name,
                                                                      "SSESpecification": spec})
            except PeerError as err:
                log.warning("SSE change of %s did not reach its replica in %s: %s", meta.name, region, err.code)
                continue
            self._learn(meta, region, answer)

    def forget(self, meta: TableMeta, region: str, *, quiet: bool = False) -> None:
        """``region`` leaves the group of the local members (its checkpoints here go with it); ``quiet``: a
        Create being undone, not a member leaving."""
        db = self.db
        with db.catalog.lock:
            current = db.catalog.get(meta.account, meta.region, meta.name)
            group = group_of(current) if current is not None else None
            if group is None or region not in group["members"]:
                return
            metas = members(db.catalog, current)
            with db.catalog.transaction() as tx:
                write_group(db.catalog, tx, metas, with_member(group, region, None))
                for m in metas:
                    store.drop_checkpoint(tx, m.id_bytes, region)
                    store.drop_checkpoint(tx, m.id_bytes, PULL_PREFIX + region)
            for m in metas:
                db.catalog.remember(m)
        if not quiet:
            log.info("replica of %s in %s (another server) removed from its group", meta.name, region)

    def _learn(self, meta: TableMeta, region: str, answer: dict) -> None:
        """What a peer's answer says of its member: its group status and the state it shows."""
        state = answer.get("State")
        status = answer.get("Status")
        if not isinstance(state, dict):
            return

        def change(entry: dict) -> dict:
            out = {**entry, "state": state}
            if status in ("CREATING", "ACTIVE"):
                out["status"] = status
            return out
        self._set_entry(meta, region, change)

    # -- the internal operations a peer calls (signed; the caller's region is the one served here) ----------
    def operations(self) -> dict:
        return {"CreateReplica": self.op_create, "Backfill": self.op_backfill, "Pull": self.op_pull,
                "AddMember": self.op_add_member, "RemoveMember": self.op_remove_member,
                "UpdateReplica": self.op_update, "DeleteReplica": self.op_delete,
                "UpdateReplicaSSE": self.op_update_sse}

    def _member(self, caller: Caller, p: dict) -> TableMeta:
        name = p.get("TableName")
        meta = self.db.catalog.get(caller.account, caller.region, name) if isinstance(name, str) else None
        if meta is None or group_of(meta) is None:
            raise AWSError("ResourceNotFoundException", f"Requested resource not found: Table: {name} not found")
        return meta

    def _crypto(self, meta: TableMeta):
        return self.db.crypto(self.db.keys.key_service(meta.account, meta.region, meta.sse), meta)

    def op_create(self, caller: Caller, p: dict) -> dict:
        db = self.db
        source, region = p.get("Source"), caller.region
        names = p.get("Members") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or \
                not isinstance(p.get("Starts") or {}, dict):
            raise validation("CreateReplica takes TableName, Source, Members, Table")
        if not isinstance(source, str) or source not in names or region not in names or \
                not isinstance(p.get("Table"), dict):
            raise validation("CreateReplica takes TableName, Source, Members, Table")
        sse = p.get("SSE") or {}
        spec = db.replication._replica_sse(caller, types.SimpleNamespace(sse={"mode": sse.get("mode", "OWNED")}),
                                           sse.get("KMSMasterKeyId"))
        params = {**p["Table"], "TableName": p["TableName"]}
        if spec is not None:
            params["SSESpecification"] = spec
        now = time.time()
        with db.catalog.lock:
            db.replication._create_table(db, caller, params, status="CREATING", extra={"replica_source": source})
            replica = db.catalog.get(caller.account, region, p["TableName"])
            group = {"version": "2019.11.21", "members": {
                r: ({"status": "CREATING", "source": source, "since": now} if r == region else
                    {"status": "ACTIVE", "remote": True, "since": now}) for r in names}}
            starts = p.get("Starts") or {}
            with db.catalog.transaction() as tx:
                for r in names:
                    if r == region:
                        continue
                    store.set_checkpoint(tx, replica.id_bytes, PULL_PREFIX + r, _unhex(starts.get(r)))
                    store.set_checkpoint(tx, replica.id_bytes, r, None)
                write_group(db.catalog, tx, [replica], group)
            db.catalog.remember(replica)
        log.info("replica of %s in %s: creating from %s (another server)", replica.name, region, source)
        return {"KMSMasterKeyId": replica.sse.get("key_arn") if replica.sse.get("mode", "OWNED") != "OWNED"
                else None}

    def op_add_member(self, caller: Caller, p: dict) -> dict:
        """Another server creates a replica in ``Region`` from its member in ``Source``: the local members keep,
        for the new one, every queue row ``Source`` has not acknowledged (what it has is in the backfill)."""
        db = self.db
        meta = self._member(caller, p)
        region, source = p.get("Region"), p.get("Source")
        group = group_of(meta)
        if not isinstance(region, str) or not isinstance(source, str) or \
                not (group["members"].get(source) or {}).get("remote"):
            raise validation("AddMember takes TableName, Region, Source (a member of another server)")
        if region not in self.peers:  # this server could not exchange with it
            raise validation(f"Region {region} is not served by this server and no --replica-peer serves it.")
        if region in group["members"]:
            raise validation(f"{region} is a replica of {meta.name} already")
        starts = {}
        with db.catalog.lock:
            metas = members(db.catalog, meta)
            with db.catalog.transaction() as tx:
                for m in metas:
                    _, pos = store.checkpoint(tx, m.id_bytes, source)
                    starts[m.region] = _hex(pos)
                    store.set_checkpoint(tx, m.id_bytes, region, pos)
                    store.set_checkpoint(tx, m.id_bytes, PULL_PREFIX + region, None)
                write_group(db.catalog, tx, metas, with_member(group, region, {
                    "status": "CREATING", "remote": True, "source": source, "since": time.time()}))
            for m in metas:
                db.catalog.remember(m)
        return {"Starts": starts}

    def op_remove_member(self, caller: Caller, p: dict) -> dict:
        meta = self._member(caller, p)
        region = p.get("Region")
        if not isinstance(region, str):
            raise validation("RemoveMember takes TableName, Region")
        entry = group_of(meta)["members"].get(region)
        if entry is not None and entry.get("remote"):  # a member served here leaves only by its own table
            self.forget(meta, region)
        return {}

    def op_update(self, caller: Caller, p: dict) -> dict:
        """ReplicaUpdates Update, checked by the server that took it, applied here to the member served here."""
        meta = self._member(caller, p)
        body = p.get("Update")
        rcu = ((body.get("ProvisionedThroughputOverride") if isinstance(body, dict) else None) or {})
        if not isinstance(body, dict) or body.get("TableClassOverride") not in (
                None, "STANDARD", "STANDARD_INFREQUENT_ACCESS") or not isinstance(rcu, dict) or \
                not isinstance(rcu.get("ReadCapacityUnits", 1), int) or isinstance(rcu.get("ReadCapacityUnits"), bool) \
                or not 1 <= rcu.get("ReadCapacityUnits", 1) <= 10**12:
            raise validation("UpdateReplica takes TableName, Update (as checked by the server that took it)")
        self.db.replication.apply_update(meta, meta.region, body)
        return self._own(caller, meta.name)

    def op_delete(self, caller: Caller, p: dict) -> dict:
        meta = self._member(caller, p)
        self.db.replication._delete_table(self.db, caller, {"TableName": meta.name})
        return {}

    def op_update_sse(self, caller: Caller, p: dict) -> dict:
        meta = self._member(caller, p)
        spec = p.get("SSESpecification")
        # what the server that took the UpdateTable validated: the same shapes, checked again here
        if spec is not None and not (
                isinstance(spec, dict) and set(spec) <= {"Enabled", "SSEType", "KMSMasterKeyId"}
                and isinstance(spec.get("Enabled", False), bool) and spec.get("SSEType", "KMS") in ("AES256", "KMS")
                and isinstance(spec.get("KMSMasterKeyId", ""), str)):
            raise validation("UpdateReplicaSSE takes TableName, SSESpecification")
        self.db.sse.update_sse(caller, meta, spec)
        return self._own(caller, meta.name)

    def _own(self, caller: Caller, name: str) -> dict:
        meta = self.db.catalog.get(caller.account, caller.region, name)
        group = group_of(meta) if meta is not None else None
        if group is None:
            return {}
        return {"Status": group["members"][meta.region].get("status"), "State": own_state(meta)}

    def op_backfill(self, caller: Caller, p: dict) -> dict:
        """A page of the member's items, each with its clock, after the cursor ``After``."""
        db = self.db
        meta = self._member(caller, p)
        crypto = self._crypto(meta)
        after = p.get("After")
        cursor = None
        if after is not None:
            if not (isinstance(after, list) and len(after) == 2):
                raise validation("bad cursor")
            cursor = (PartitionToken(_unhex(after[0])), _unhex(after[1]))
        out = []
        with db.items.read() as r:
            for token, key, raw in db.items.walk(r, meta, crypto, cursor):
                item = orjson.loads(raw)
                hkey, skey, _ = key_of_item(meta, item)
                clock = store.read_clock(r, crypto, store.clock_key(crypto, meta.id_bytes, hkey, skey))
                out.append({"Item": item, "Key": [hkey.hex(), skey.hex()],
                            "Clock": list(clock or (0.0, meta.region))})
                cursor = (token, key)
                if len(out) >= BATCH:
                    break
        more = len(out) >= BATCH
        return {"Items": out, "After": [cursor[0].raw.hex(), cursor[1].hex()] if more and cursor else None}

    def op_pull(self, caller: Caller, p: dict) -> dict:
        """Rows of the member's queue after ``After`` (which the consumer has applied: kept as its checkpoint,
        so the queue is trimmed below it). Each side tells the other its own state (``State``): how DescribeTable
        shows a member of another server. A member whose key is unusable (or a consumer whose key is, which
        asks ``StateOnly``) exchanges states only: replication to and from it waits at its checkpoints."""
        db = self.db
        meta = self._member(caller, p)
        consumer = p.get("Consumer")
        entry = group_of(meta)["members"].get(consumer) if isinstance(consumer, str) else None
        if entry is None or not entry.get("remote"):
            raise validation(f"{consumer} is not a replica of {meta.name} in another server")
        after = _unhex(p.get("After"))
        limit = p.get("Limit") or BATCH
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise validation("Limit must be a number")
        limit = min(BATCH, max(1, limit))
        state = _clean_state(p.get("State"))
        exists, acked = store.checkpoint(db.items.kv, meta.id_bytes, consumer)
        if after is not None and (not exists or acked is None or after > acked):
            with db.items.kv.transaction() as tx:
                store.set_checkpoint(tx, meta.id_bytes, consumer, after)
        status = p.get("Status")
        if status not in ("CREATING", "ACTIVE"):
            status = entry.get("status")
        if status != entry.get("status") or (state is not None and state != entry.get("state")):
            self._set_entry(meta, consumer, lambda e: {**e, "status": status,
                                                       **({"state": state} if state is not None else {})})
        rows = []
        crypto = None if p.get("StateOnly") is True else self.replicator._crypto(meta)
        if crypto is not None:
            with db.items.read() as r:
                rows = list(store.read_queue(r, meta.id_bytes, crypto, after, limit))
        return {"Rows": [{"Position": pos.hex(), "Key": [b["h"], b["s"]], "Item": b.get("n"),
                          "Clock": [b["t"], b["r"]]} for pos, b in rows], "More": len(rows) == limit,
                **self._own(caller, meta.name)}

    # -- the puller (a background job, in a thread: it waits on the network) ---------------------------------
    def run_once(self) -> None:
        for meta in self.db.catalog.all():
            group = group_of(meta)
            if group is None or (self.served and meta.region not in self.served):
                continue
            for region, entry in sorted(group["members"].items()):
                if not entry.get("remote") or region not in self.peers:
                    continue
                key = (meta.table_id, region)
                wait = self._waiting.get(key)
                if wait is not None and time.monotonic() < wait[0]:
                    continue
                try:
                    self._exchange(meta, region)
                except PeerError as err:
                    if err.code == "ResourceNotFoundException" and entry.get("status") == "CREATING" and \
                            entry.get("unconfirmed"):
                        log.warning("replica of %s in %s was being created when this server stopped and its "
                                    "server has no such table: the Create is undone", meta.name, region)
                        self.forget(meta, region, quiet=True)
                        self._tell_removed(meta, region, [r for r in self._remote_regions(group, region)
                                                          if r in self.peers])
                        self._waiting.pop(key, None)
                        continue
                    if err.code == "ResourceNotFoundException" and entry.get("status") == "ACTIVE":
                        # its table was deleted there, or left the group (its key unusable too long)
                        log.warning("replica of %s in %s is gone from its server", meta.name, region)
                        self.forget(meta, region)
                        self._waiting.pop(key, None)
                        continue
                    if err.code == "ResourceNotFoundException":
                        # being created there (this server asks before the peer has made the table): no error
                        # to show, asked again shortly
                        self._waiting[key] = (time.monotonic() + 0.2, 0.2)
                        continue
                    delay = 0.5 if wait is None else min(10.0, wait[1] * 2)
                    self._waiting[key] = (time.monotonic() + delay, delay)
                    if wait is None:
                        log.warning("replication of %s between %s and %s paused: %s", meta.name, meta.region,
                                    region, err.describe())
                    self._peer_failed(meta, err)
                else:
                    if wait is not None:
                        log.info("replication of %s between %s and %s resumed", meta.name, meta.region, region)
                    self._waiting.pop(key, None)
                    self._peer_ok(meta, region)

    def _exchange(self, meta: TableMeta, region: str) -> None:
        crypto = self.replicator._crypto(meta)
        own = group_of(meta)["members"][meta.region]
        if crypto is not None and own.get("status") == "CREATING" and own.get("source") == region:
            if self._fill(meta, region, crypto):
                self.replicator._activate(meta)
                meta = self.db.catalog.get(meta.account, meta.region, meta.name) or meta
                own = group_of(meta)["members"][meta.region]
        # a member being filled, or whose key is unusable, only tells its state (replication waits)
        rows_wanted = crypto is not None and own.get("status") == "ACTIVE"
        db = self.db
        ck = PULL_PREFIX + region
        deadline = time.monotonic() + 0.5
        learnt = False
        while True:
            _, after = store.checkpoint(db.items.kv, meta.id_bytes, ck)
            answer = self.peers.call(region, "Pull", {"TableName": meta.name, "Consumer": meta.region,
                                                      "After": _hex(after), "Limit": BATCH,
                                                      "Status": own.get("status"), "State": own_state(meta),
                                                      "StateOnly": not rows_wanted})
            if not learnt:
                self._learn(meta, region, answer)
                learnt = True
            rows = answer.get("Rows") or []
            if not rows or not rows_wanted:
                return
            now = time.time()
            with db.items.write() as w:
                for row in rows:
                    h, s = row["Key"]
                    t, r = row["Clock"]
                    self.replicator._apply_one(w, meta, crypto, row.get("Item"), bytes.fromhex(h), bytes.fromhex(s),
                                               (float(t), str(r)))
                store.set_checkpoint(w.tx, meta.id_bytes, ck, bytes.fromhex(rows[-1]["Position"]))
            metrics = self.replicator.metrics
            if metrics is not None:
                hist = metrics.replication_latency.labels(region, meta.region)
                for row in rows:
                    hist.observe(max(0.0, now - float(row["Clock"][0])))
            if not answer.get("More") or time.monotonic() > deadline:
                return

    def _fill(self, meta: TableMeta, region: str, crypto) -> bool:
        """Pages of the source member's items into this CREATING replica; -> whether it is complete."""
        db = self.db
        after = self._backfill.get(meta.table_id)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            answer = self.peers.call(region, "Backfill", {"TableName": meta.name, "After": after})
            page = answer.get("Items") or []
            if page:
                with db.items.write() as w:
                    for row in page:
                        h, s = row["Key"]
                        t, r = row["Clock"]
                        self.replicator._apply_one(w, meta, crypto, row["Item"], bytes.fromhex(h), bytes.fromhex(s),
                                                   (float(t), str(r)))
            after = answer.get("After")
            if after is None:
                self._backfill.pop(meta.table_id, None)
                return True
            self._backfill[meta.table_id] = after
        return False
