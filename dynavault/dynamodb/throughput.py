"""Provisioned throughput enforcement (opt-in, ``enforce_throughput``): DynamoDB's token buckets.

Each provisioned table and GSI has a read and a write bucket, refilled every second at its provisioned rate and
holding up to ``throughput_burst_seconds`` (DynamoDB: 300) of unused capacity. A request is admitted while the
buckets it uses hold at least its smallest possible cost, and is charged the units it actually consumed once it
ran (the units reported as ConsumedCapacity, so eventually consistent reads cost half and transactional
operations double); a large item can leave a bucket in debt, which the refill pays back.

The provisioned rate is read from the table's metadata on every use, so an UpdateTable of the capacity takes
effect at once. The buckets are never in the store (they change on every request): one process keeps them in
its memory; with --workers they are slots of a small mapped file in the data dir (:class:`SharedBuckets`:
a digest of the table id and index, and two numbers), read and changed under an exclusive ``flock``, so the
workers together admit what one process would. A restart refills them.

On-demand tables and their GSIs are limited only by their OnDemandThroughput maximums (MaxReadRequestUnits,
MaxWriteRequestUnits; see ``on_demand.py``): a bucket refilled at that rate that holds one second of it (no
burst: DynamoDB answers requests over the maximum with quick throttles), refusing with DynamoDB's
ThrottlingException.

Every refusal carries DynamoDB's ThrottlingReasons: ``{"reason": <Table|Index><Read|Write><limit>, "resource":
<table or index ARN>}``, listed under ``ThrottlingReasons`` in a ProvisionedThroughputExceededException and
RequestLimitExceeded and under ``throttlingReasons`` in a ThrottlingException (the members of those shapes in
DynamoDB's service model, so SDKs parse them).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import pathlib
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dynavault.errors import AWSError
from dynavault.storage.signal import open_mapped

from . import on_demand
from .catalog import TableMeta
from .expressions.partiql import parse_statement

MSG_TABLE = ("The level of configured provisioned throughput for the table was exceeded. "
             "Consider increasing your provisioning level with the UpdateTable API.")
MSG_GSI = ("The level of configured provisioned throughput for one or more global secondary indexes of the table "
           "was exceeded. Consider increasing your provisioning level for the under-provisioned global secondary "
           "indexes with the UpdateTable API")

MSG_ON_DEMAND = "Throughput exceeds the maximum OnDemandThroughput configured on table or index"

#: the data operations whose ConsumedCapacity says what they cost; batches charge item by item themselves
SINGLE_READS = frozenset({"GetItem", "Query", "Scan", "TransactGetItems"})
SINGLE_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"})
METERED = SINGLE_READS | SINGLE_WRITES | {"ExecuteStatement"}
_TRANSACT = frozenset({"TransactGetItems", "TransactWriteItems"})


@dataclass
class _Bucket:
    tokens: float
    at: float


#: a shared slot: digest of (table id, index, kind), then tokens and the time they were counted at
_SLOT = struct.Struct("<16sdd")
#: slots in the shared file (2 MB would hold 64k; 4096 provisioned table/index buckets is plenty for a test server)
SHARED_SLOTS = 4096


class _SlotBucket:
    """A bucket that lives in a slot of the shared file (only used under its lock)."""

    __slots__ = ("_map", "_at")

    def __init__(self, shared_map: mmap.mmap, offset: int) -> None:
        self._map, self._at = shared_map, offset

    @property
    def tokens(self) -> float:
        return _SLOT.unpack_from(self._map, self._at)[1]

    @tokens.setter
    def tokens(self, value: float) -> None:
        struct.pack_into("<d", self._map, self._at + 16, value)

    @property
    def at(self) -> float:
        return _SLOT.unpack_from(self._map, self._at)[2]

    @at.setter
    def at(self, value: float) -> None:
        struct.pack_into("<d", self._map, self._at + 24, value)


class SharedBuckets:
    """Token buckets in a mapped file every worker serving the data dir opens; an open-addressed table of
    slots keyed by a digest (no table name or data). A full table leaves further buckets to each process."""

    def __init__(self, path: pathlib.Path, slots: int = SHARED_SLOTS, *, clear: bool = False) -> None:
        """``clear``: the first process of a start (a restart refills every bucket)."""
        self.path = path
        self.slots = slots
        self._fd, self._map = open_mapped(path, slots * _SLOT.size, clear=clear)

    def __repr__(self) -> str:
        return f"SharedBuckets({self.path})"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def find(self, key: tuple[str, str, str], burst: float, now: float) -> _SlotBucket | None:
        """The key's bucket (a new one holds ``burst``), or None when every slot is taken. Under ``locked``."""
        digest = hashlib.blake2b("\x00".join(key).encode(), digest_size=16).digest()
        start = int.from_bytes(digest[:8], "little") % self.slots
        for i in range(self.slots):
            offset = ((start + i) % self.slots) * _SLOT.size
            found = self._map[offset:offset + 16]
            if found == digest:
                return _SlotBucket(self._map, offset)
            if found == bytes(16):
                _SLOT.pack_into(self._map, offset, digest, burst, now)
                return _SlotBucket(self._map, offset)
        return None

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):
            self._map.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


#: the member a throttling error lists its reasons under (DynamoDB's service model spells them so)
REASONS_MEMBER = {"ProvisionedThroughputExceededException": "ThrottlingReasons",
                  "RequestLimitExceeded": "ThrottlingReasons", "ThrottlingException": "throttlingReasons"}
#: the limit part of a reason, per error
LIMIT = {"ProvisionedThroughputExceededException": "ProvisionedThroughputExceeded",
         "ThrottlingException": "MaxOnDemandThroughputExceeded", "RequestLimitExceeded": "AccountLimitExceeded"}


def reason(resource_arn: str, kind: str, limit: str) -> dict:
    """One ThrottlingReason: ``limit`` (e.g. ProvisionedThroughputExceeded) hit by a read or write of a table
    or index (an index ARN has ``/index/``)."""
    what = "Index" if "/index/" in resource_arn else "Table"
    return {"reason": f"{what}{'Read' if kind == 'read' else 'Write'}{limit}", "resource": resource_arn}


def with_reasons(code: str, reasons: list[dict]) -> dict | None:
    """The error body members that carry ``reasons`` for error ``code`` (None: it has none)."""
    member = REASONS_MEMBER.get(code)
    return {member: reasons} if member and reasons else None


def _limit_reason(meta: TableMeta, index: str | None, kind: str) -> dict:
    limit = "MaxOnDemandThroughputExceeded" if meta.billing_mode == "PAY_PER_REQUEST" else \
        "ProvisionedThroughputExceeded"
    return reason(meta.arn + (f"/index/{index}" if index else ""), kind, limit)


def throttled(index: str | None, meta: TableMeta, kind: str, more: list[dict] = ()) -> AWSError:
    """The refusal of a ``kind`` ("read" | "write") request over a table's or GSI's limit; ``more``: the
    reasons of the other tables and indexes a batch was refused for."""
    if meta.billing_mode == "PAY_PER_REQUEST":
        code, message = "ThrottlingException", MSG_ON_DEMAND
    else:
        code, message = "ProvisionedThroughputExceededException", MSG_GSI if index else MSG_TABLE
    return AWSError(code, message, extra=with_reasons(code, [_limit_reason(meta, index, kind), *more]))


def _index_maximums(meta: TableMeta, index: str) -> dict | None:
    d = next((g for g in meta.global_indexes if g.get("IndexName") == index), None)
    return d.get(on_demand.INDEX_MEMBER) if d is not None else None


class Throughput:
    """The token buckets of one process, keyed by (table id, index name or "", "read" | "write")."""

    def __init__(self, enabled: bool, burst_seconds: float = 300.0, *, metrics=None,
                 clock: Callable[[], float] = time.monotonic, shared: SharedBuckets | None = None) -> None:
        self.enabled = enabled
        self.burst_seconds = max(0.0, float(burst_seconds))
        self.metrics = metrics
        # CLOCK_MONOTONIC is one clock for every process of the machine: shared buckets may use it
        self.clock = clock
        self.shared = shared
        self._buckets: dict[tuple[str, str, str], _Bucket] = {}
        self._thread_lock = threading.Lock()

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with self._thread_lock:
            if self.shared is None:
                yield
                return
            with self.shared.locked():
                yield

    def __repr__(self) -> str:
        return f"<Throughput {'on' if self.enabled else 'off'} {len(self._buckets)} bucket(s)>"

    # -- provisioned rates ------------------------------------------------------------------------------
    @staticmethod
    def rate(meta: TableMeta, kind: str, index: str | None = None) -> float | None:
        """The provisioned units per second of a table or GSI, or None when nothing limits it."""
        if meta.billing_mode == "PAY_PER_REQUEST":
            maximums = meta.extra.get(on_demand.ON_DEMAND) if index is None else _index_maximums(meta, index)
            return on_demand.limit(maximums, kind)
        if index is None:
            units = meta.read_capacity if kind == "read" else meta.write_capacity
        else:
            d = next((g for g in meta.global_indexes if g.get("IndexName") == index), None)
            if d is None:
                return None  # an LSI shares its table's capacity
            pt = d.get("ProvisionedThroughput") or {}
            units = pt.get("ReadCapacityUnits" if kind == "read" else "WriteCapacityUnits", 0)
        return float(units) if units else None

    def _bucket(self, meta: TableMeta, kind: str, index: str | None, rate: float) -> _Bucket:
        """The bucket, refilled up to now (called under the lock)."""
        now = self.clock()
        key = (meta.table_id, index or "", kind)
        # an on-demand maximum has no burst capacity: one second of it
        burst = rate if meta.billing_mode == "PAY_PER_REQUEST" else max(rate, rate * self.burst_seconds)
        b = self.shared.find(key, burst, now) if self.shared is not None else None
        if b is None:
            b = self._buckets.get(key)
        if b is None:
            b = self._buckets[key] = _Bucket(burst, now)
            return b
        b.tokens = min(burst, b.tokens + (now - b.at) * rate)
        b.at = now
        return b

    # -- admission and charging -------------------------------------------------------------------------
    def has(self, meta: TableMeta, kind: str, need: float, index: str | None = None) -> bool:
        rate = self.rate(meta, kind, index)
        if rate is None:
            return True
        with self._lock():
            return self._bucket(meta, kind, index, rate).tokens >= need

    def take(self, meta: TableMeta, kind: str, units: float, index: str | None = None) -> bool:
        """Charge ``units`` if the bucket holds at least ``need`` (the batches' per-item admission)."""
        rate = self.rate(meta, kind, index)
        if rate is None:
            return True
        with self._lock():
            b = self._bucket(meta, kind, index, rate)
            if b.tokens < min(units, 1.0):
                return False
            b.tokens -= units
            return True

    def charge(self, meta: TableMeta, kind: str, units: float, index: str | None = None) -> None:
        rate = self.rate(meta, kind, index)
        if rate is None or not units:
            return
        with self._lock():
            self._bucket(meta, kind, index, rate).tokens -= units

    def count(self, meta: TableMeta, index: str | None = None) -> None:
        """One throttled request on /metrics."""
        counter = getattr(self.metrics, "throttled", None)
        if counter is not None:
            counter.labels(meta.name, index or "").inc()

    def gsis_full(self, meta: TableMeta, need: float) -> str | None:
        """The first GSI whose write bucket cannot take ``need`` units, or None."""
        for d in meta.global_indexes:
            if not self.has(meta, "write", need, d["IndexName"]):
                return d["IndexName"]
        return None

    def admit(self, operation: str, metas: list[TableMeta], params: dict) -> None:
        """Refuse, before anything runs, a request whose table or index buckets are spent.

        A write is refused while any GSI of its table is spent (DynamoDB refuses only the writes that would
        update that index; which ones will is known only once the old item is read)."""
        write = operation in SINGLE_WRITES
        kind = "write" if write else "read"
        need = 2.0 if operation in _TRANSACT else (1.0 if write or params.get("ConsistentRead") else 0.5)
        index = params.get("IndexName") if operation in ("Query", "Scan") else None
        for meta in metas:
            gsi = index if index and self.rate(meta, kind, index) is not None else None
            if not self.has(meta, kind, need, gsi):
                self.count(meta, gsi)
                raise throttled(gsi, meta, kind)
            full = self.gsis_full(meta, need) if write else None
            if full is not None:
                self.count(meta, full)
                raise throttled(full, meta, "write")

    def charge_consumed(self, metas: dict[str, TableMeta], consumed) -> None:
        """Charge what a request's ConsumedCapacity (mode INDEXES) reports, per table and GSI."""
        for entry in consumed if isinstance(consumed, list) else [consumed]:
            meta = metas.get(entry.get("TableName")) if isinstance(entry, dict) else None
            if meta is None:
                continue
            kind = "write" if "WriteCapacityUnits" in entry else "read"
            table = (entry.get("Table") or {}).get("CapacityUnits", 0.0)
            table += sum(v.get("CapacityUnits", 0.0) for v in (entry.get("LocalSecondaryIndexes") or {}).values())
            self.charge(meta, kind, table)
            for name, v in (entry.get("GlobalSecondaryIndexes") or {}).items():
                self.charge(meta, kind, v.get("CapacityUnits", 0.0), name)

    # -- batches: item by item ------------------------------------------------------------------------
    def admit_writes(self, plan: list[tuple[str, list, list]], todo: list, unprocessed: dict) -> list:
        """BatchWriteItem: the writes the buckets admit, in request order, each reserving one unit (its
        smallest cost; ``settle_writes`` charges the rest); the others go back to ``unprocessed`` as the
        caller sent them. Refused entirely -> ProvisionedThroughputExceededException."""
        wanted = {id(a) for a in todo}
        admitted: list = []
        refused: dict[tuple[str, str], tuple[TableMeta, str | None, str]] = {}
        for name, reqs, actions in plan:
            for req, a in zip(reqs, actions, strict=True):
                if id(a) not in wanted:
                    continue
                gsi = self.gsis_full(a.meta, 1.0)
                if gsi is None and self.take(a.meta, "write", 1.0):
                    admitted.append(a)
                    continue
                unprocessed.setdefault(name, []).append(req)
                refused[(a.meta.table_id, gsi or "")] = (a.meta, gsi, "write")
        self.finish_batch(refused, bool(admitted))
        return admitted

    def admit_read(self, meta: TableMeta, consistent: bool, refused: dict) -> bool:
        """BatchGetItem: whether the table can take one more key (charged after the read); a refusal is
        noted in ``refused`` for ``finish_batch``."""
        if self.has(meta, "read", 1.0 if consistent else 0.5):
            return True
        refused[(meta.table_id, "")] = (meta, None, "read")
        return False

    def finish_batch(self, refused: dict, any_admitted: bool) -> None:
        """Count a batch's throttled tables and indexes once each; nothing admitted at all is an error."""
        for meta, gsi, _ in refused.values():
            self.count(meta, gsi)
        if refused and not any_admitted:
            (meta, gsi, kind), *others = refused.values()
            raise throttled(gsi, meta, kind, [_limit_reason(m, g, k) for m, g, k in others])

    def settle_writes(self, actions: list) -> None:
        """Charge what admitted batch writes consumed beyond the unit each reserved."""
        for a in actions:
            gsis = {k[4:]: u for k, u in a.index_units.items() if k.startswith("gsi:")}
            self.charge(a.meta, "write", a.units - sum(gsis.values()) - 1.0)
            for name, u in gsis.items():
                self.charge(a.meta, "write", u, name)

def shape_consumed(result: dict, mode: str | None) -> None:
    """Turn the ConsumedCapacity computed in mode INDEXES back into what the caller asked for."""
    if "ConsumedCapacity" not in result:
        return
    if not mode or mode == "NONE":
        del result["ConsumedCapacity"]
    elif mode == "TOTAL":
        cc = result["ConsumedCapacity"]
        for entry in cc if isinstance(cc, list) else [cc]:
            for k in ("Table", "LocalSecondaryIndexes", "GlobalSecondaryIndexes"):
                entry.pop(k, None)


def _table_names(operation: str, params: dict) -> list[str]:
    if operation in ("TransactGetItems", "TransactWriteItems"):
        names = []
        for part in params.get("TransactItems") or ():
            for body in part.values() if isinstance(part, dict) else ():
                if isinstance(body, dict) and isinstance(body.get("TableName"), str):
                    names.append(body["TableName"])
        return names
    name = params.get("TableName")
    return [name] if isinstance(name, str) else []


def metered(db, operation: str, handler: Callable, caller, params: dict) -> dict:
    """Run a single-request data operation under its buckets: admitted before it runs (so a refused request
    changes nothing), charged what it consumed after (its ConsumedCapacity, asked for in mode INDEXES and
    then reshaped into what the caller asked for)."""
    names, op, view = _table_names(operation, params), operation, params
    if operation == "ExecuteStatement":  # a PartiQL statement is admitted as the operation it amounts to
        try:
            st = parse_statement(params.get("Statement") or "", params.get("Parameters"))
        except AWSError:
            return handler(db, caller, params)  # the handler gives the error
        names, op = [st.table], ("Query" if st.kind == "SELECT" else "PutItem")
        view = {"IndexName": st.index, "ConsistentRead": params.get("ConsistentRead")}
    metas: dict[str, TableMeta] = {}
    for name in names:
        meta = db.catalog.get(caller.account, caller.region, name)
        if meta is not None:  # a missing table is the handler's error to give
            metas[name] = meta
    tp: Throughput = db.throughput
    tp.admit(op, list(metas.values()), view)
    try:
        result = handler(db, caller, {**params, "ReturnConsumedCapacity": "INDEXES"})
    except AWSError as e:
        if e.code == "ConditionalCheckFailedException" and len(metas) == 1:
            tp.charge(next(iter(metas.values())), "write", 1.0)  # DynamoDB charges a failed condition's write
        raise
    if isinstance(result, dict) and "ConsumedCapacity" in result:
        tp.charge_consumed(metas, result["ConsumedCapacity"])
        shape_consumed(result, params.get("ReturnConsumedCapacity"))
    return result
