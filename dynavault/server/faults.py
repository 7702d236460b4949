"""Fault injection for testing clients' retry and back-off code: errors, added latency, KMS outages.

A fault matches a DynamoDB (or Streams) operation and a table (``*`` for any) and is checked in the app's
dispatch after the request is authenticated and validated, before its handler runs: an injected error
changes nothing. ``KmsUnavailable`` faults are checked instead where the database calls the key service for
that table (sse/table_keys.py), so the table fails as it does when a real KMS is unreachable.

Faults put with ``DynavaultAdmin.PutFault`` apply to the caller's account and region; faults from
``--faults FILE`` apply to every account and region. Faults are rows in the table store (plaintext: operation
and table names, error names and numbers, as the catalog's metadata), so with ``--workers N`` a fault put
through one worker applies in all: each worker keeps a mirror that it reloads when the shared change counter
moves (one memory load per request), and a fault that fires is counted in its row in a store transaction,
so a ``Count`` is spent exactly once across the workers. The first process of a start clears the rows, so
faults last one server run, as they did when they lived in the process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from dynavault.caller import Caller
from dynavault.dynamodb import throughput
from dynavault.dynamodb.layout import FAULT_PREFIX
from dynavault.dynamodb.tables import named_tables
from dynavault.errors import AWSError, StartupError
from dynavault.storage.kv.base import KVStore, prefix_end
from dynavault.storage.sealed import CatalogRecord
from dynavault.storage.signal import Watch

log = logging.getLogger("dynavault.faults")

_DDB = "com.amazonaws.dynamodb.v20120810#"
#: the errors a fault can inject, as DynamoDB answers them: (__type prefix, HTTP status, message)
ERRORS: dict[str, tuple[str, int, str]] = {
    "InternalServerError": (_DDB, 500, "Internal server error"),
    "ServiceUnavailable": (_DDB, 503, "The service is currently unavailable or busy."),
    "ThrottlingException": ("com.amazon.coral.availability#", 400, "Rate of requests exceeds the allowed throughput."),
    "ProvisionedThroughputExceededException": (
        _DDB, 400, "The level of configured provisioned throughput for the table was exceeded. Consider increasing "
                   "your provisioning level with the UpdateTable API."),
    "TransactionConflictException": (_DDB, 400, "Transaction is ongoing for the item"),
    "RequestLimitExceeded": (
        _DDB, 400, "Throughput exceeds the current throughput limit for your account. Please contact AWS Support at "
                   "https://aws.amazon.com/support request a limit increase"),
}
#: the fronts whose operations faults apply to (never the admin front, KMS or CloudTrail)
FAULTY_FRONTS = frozenset({"dynamodb", "dynamodbstreams"})
MAX_FAULTS = 1000
MAX_LATENCY_MS = 60_000
_FIELDS = {"Operation", "TableName", "Error", "Probability", "Count", "LatencyMs", "KmsUnavailable"}
_OP_RE = re.compile(r"\*|[A-Za-z]{1,64}")
_TABLE_RE = re.compile(r"\*|[a-zA-Z0-9_.-]{1,255}")
_ARN_TABLE_RE = re.compile(r"arn:aws[a-z-]*:dynamodb:[^:]*:[0-9]*:table/([a-zA-Z0-9_.-]+)")


def _invalid(message: str) -> AWSError:
    return AWSError("ValidationException", message)


@dataclass
class Fault:
    fault_id: str
    operation: str
    table: str
    error: str | None
    probability: float | None
    count: int | None
    latency_ms: int
    kms_unavailable: bool
    #: (account, region) the fault applies to; None: every one (faults from --faults FILE)
    scope: tuple[str, str] | None
    injected: int = 0

    def describe(self) -> dict:
        out: dict = {"FaultId": self.fault_id, "Operation": self.operation, "TableName": self.table,
                     "Injected": self.injected}
        if self.error is not None:
            out["Error"] = self.error
        if self.probability is not None:
            out["Probability"] = self.probability
        if self.count is not None:
            out["Count"] = self.count  # what is left
        if self.latency_ms:
            out["LatencyMs"] = self.latency_ms
        if self.kms_unavailable:
            out["KmsUnavailable"] = True
        return out

    def record(self) -> CatalogRecord:
        return CatalogRecord(orjson.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_record(cls, raw: bytes) -> Fault:
        d = orjson.loads(raw)
        scope = d.pop("scope")
        return cls(**d, scope=tuple(scope) if scope is not None else None)


def parse_fault(body: object, scope: tuple[str, str] | None) -> Fault:
    """A PutFault body -> Fault; a body that is not one is a ValidationException saying why."""
    if not isinstance(body, dict):
        raise _invalid("A fault must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise _invalid(f"Unknown fault member(s): {', '.join(unknown)} (expected {', '.join(sorted(_FIELDS))})")
    op = body.get("Operation", "*")
    table = body.get("TableName", "*")
    if not isinstance(op, str) or not _OP_RE.fullmatch(op):
        raise _invalid("Operation must be an operation name (e.g. GetItem) or '*'")
    if not isinstance(table, str) or not _TABLE_RE.fullmatch(table):
        raise _invalid("TableName must be a table name or '*'")
    kms = body.get("KmsUnavailable", False)
    if not isinstance(kms, bool):
        raise _invalid("KmsUnavailable must be true or false")
    error = body.get("Error")
    if error is not None and error not in ERRORS:
        raise _invalid(f"Error must be one of {', '.join(ERRORS)}, not {str(error)[:64]!r}")
    latency = body.get("LatencyMs", 0)
    if isinstance(latency, bool) or not isinstance(latency, int) or not 0 <= latency <= MAX_LATENCY_MS:
        raise _invalid(f"LatencyMs must be a whole number from 0 to {MAX_LATENCY_MS}")
    if kms and (error is not None or latency):
        raise _invalid("KmsUnavailable cannot be combined with Error or LatencyMs")
    if kms and op != "*":
        raise _invalid("A KmsUnavailable fault applies to every use of the table's key: Operation must be '*'")
    if not kms and error is None and not latency:
        raise _invalid("A fault needs an Error, a LatencyMs or KmsUnavailable")
    probability = body.get("Probability")
    count = body.get("Count")
    if probability is not None and count is not None:
        raise _invalid("Give Probability or Count, not both")
    if probability is not None:
        if isinstance(probability, bool) or not isinstance(probability, int | float) or not 0 <= probability <= 1:
            raise _invalid("Probability must be a number from 0 to 1")
        probability = float(probability)
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10**9):
        raise _invalid("Count must be a whole number from 1 to 1000000000")
    if probability is None and count is None:
        probability = 1.0
    return Fault(uuid.uuid4().hex, op, table, error, probability, count, latency, kms, scope)


def _tables(params: dict) -> set[str]:
    """The table names a request names (TableName, batch and transaction parts, a stream's table)."""
    found = set(named_tables(params))
    found.update(v for v in (params.get("StreamArn"), params.get("ShardIterator")) if isinstance(v, str))
    return {m.group(1) if (m := _ARN_TABLE_RE.match(n)) else n for n in found}


@dataclass
class FaultRegistry:
    """The faults every process serving the store injects (owned by the runtime; ``attach`` gives it the store)."""

    #: called once per injected fault with (operation, error label)
    on_inject: Callable[[str, str], None] | None = None
    limit: int = MAX_FAULTS
    rng: random.Random = field(default_factory=random.Random)
    #: called with a KmsUnavailable fault another process put (its table keys cached here must go)
    on_kms_fault: Callable[[Fault], None] | None = None
    _faults: dict[str, Fault] = field(default_factory=dict)  # this process's mirror of the rows
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _kv: KVStore | None = None
    _watch: Watch | None = None

    def attach(self, kv: KVStore, watch: Watch, *, first: bool) -> None:
        """Keep the faults in ``kv``; ``first``: the first process of this start (it forgets the last run's)."""
        self._kv, self._watch = kv, watch
        if first:
            with kv.transaction() as tx:
                for k, _ in list(tx.range(FAULT_PREFIX, prefix_end(FAULT_PREFIX))):
                    tx.delete(k)
            watch.changed_here()
        self._reload()

    @property
    def active(self) -> bool:
        """Any fault at all (the request path tests this before anything else)."""
        if self._watch is not None and self._watch.stale():
            self._reload()
        return bool(self._faults)

    def _rows(self) -> list[Fault]:
        return [Fault.from_record(raw) for _, raw in self._kv.range(FAULT_PREFIX, prefix_end(FAULT_PREFIX))]

    def _reload(self) -> None:
        self._watch.seen()
        rows = {f.fault_id: f for f in self._rows()}
        with self._lock:
            new = [f for i, f in rows.items() if i not in self._faults]
            self._faults = rows
        for f in new:
            if f.kms_unavailable and self.on_kms_fault is not None:
                self.on_kms_fault(f)

    def put(self, body: object, scope: tuple[str, str] | None) -> Fault:
        fault = parse_fault(body, scope)
        if self._kv is None:
            with self._lock:
                if len(self._faults) >= self.limit:
                    raise _too_many(self.limit)
                self._faults[fault.fault_id] = fault
        else:
            with self._kv.transaction() as tx:
                if sum(1 for _ in tx.range(FAULT_PREFIX, prefix_end(FAULT_PREFIX))) >= self.limit:
                    raise _too_many(self.limit)
                tx.put(FAULT_PREFIX + fault.fault_id.encode(), fault.record())
            with self._lock:
                self._faults[fault.fault_id] = fault
            self._watch.changed_here()
        log.info("fault %s put: %s", fault.fault_id, json.dumps(fault.describe(), sort_keys=True))
        return fault

    def load_file(self, path: str) -> int:
        """``--faults FILE``: a JSON list of PutFault bodies, for every account and region."""
        try:
            doc = json.loads(Path(path).expanduser().read_text())
        except (OSError, ValueError) as exc:
            raise StartupError(f"--faults {path}: not a readable JSON file ({exc})") from None
        if not isinstance(doc, list):
            raise StartupError(f"--faults {path}: must hold a JSON list of faults")
        for i, body in enumerate(doc):
            try:
                self.put(body, None)
            except AWSError as err:
                raise StartupError(f"--faults {path} [{i}]: {err.message}") from None
        return len(doc)

    def list(self, scope: tuple[str, str]) -> list[dict]:
        if self._kv is not None:  # the rows: counts and injections as every worker spent them
            return [f.describe() for f in self._rows() if f.scope in (None, scope)]
        with self._lock:
            return [f.describe() for f in self._faults.values() if f.scope in (None, scope)]

    def delete(self, fault_id: str, scope: tuple[str, str]) -> None:
        if self._kv is not None:
            key = FAULT_PREFIX + fault_id.encode()
            with self._kv.transaction() as tx:
                raw = tx.get(key)
                if raw is None or Fault.from_record(raw).scope not in (None, scope):
                    raise _not_found(fault_id)
                tx.delete(key)
            self._watch.changed_here()
        with self._lock:
            fault = self._faults.get(fault_id)
            if self._kv is None and (fault is None or fault.scope not in (None, scope)):
                raise _not_found(fault_id)
            self._faults.pop(fault_id, None)

    def _fire(self, fault: Fault) -> bool:
        """Whether ``fault`` fires now (its count is spent when it does). Under the lock."""
        if fault.count is not None:
            fault.count -= 1
            if fault.count <= 0:
                self._faults.pop(fault.fault_id, None)
        elif fault.probability is not None and self.rng.random() >= fault.probability:
            return False
        fault.injected += 1
        return True

    def _fire_stored(self, candidates: list[Fault]) -> list[Fault]:
        """The candidates that fire now, each spent and counted in its row in one store transaction (another
        worker may have spent a Count's last use or deleted the fault meanwhile)."""
        fired, gone = [], False
        with self._kv.transaction() as tx:
            for c in candidates:
                if c.count is None and c.probability is not None and self.rng.random() >= c.probability:
                    continue
                key = FAULT_PREFIX + c.fault_id.encode()
                raw = tx.get(key)
                if raw is None:
                    gone = True
                    continue
                fault = Fault.from_record(raw)
                fault.injected += 1
                if fault.count is not None:
                    fault.count -= 1
                if fault.count is not None and fault.count <= 0:
                    tx.delete(key)
                    gone = True
                else:
                    tx.put(key, fault.record())
                fired.append(fault)
        if gone:
            with self._lock:
                for f in fired:
                    if f.count is not None and f.count <= 0:
                        self._faults.pop(f.fault_id, None)
            self._watch.changed_here()
        return fired

    def _match(self, scope: tuple[str, str], operation: str, tables: set[str], kms: bool) -> list[Fault]:
        fired = []
        with self._lock:
            for fault in list(self._faults.values()):
                if fault.kms_unavailable != kms or fault.scope not in (None, scope):
                    continue
                if fault.operation not in ("*", operation):
                    continue
                if fault.table != "*" and fault.table not in tables:
                    continue
                if self._kv is not None:
                    fired.append(fault)
                elif self._fire(fault):
                    fired.append(fault)
        if self._kv is not None and fired:
            return self._fire_stored(fired)
        return fired

    async def before(self, front: str, operation: str, caller: Caller, params: dict) -> None:
        """Before a handler runs: sleep for the matching latency faults, then raise the first matching error."""
        if front not in FAULTY_FRONTS:
            return
        fired = self._match((caller.account, caller.region), operation, _tables(params), False)
        if not fired:
            return
        delay = sum(f.latency_ms for f in fired)
        error = next((f.error for f in fired if f.error is not None), None)
        for f in fired:
            label = f.error or "Latency"
            log.warning("fault %s injected: %s on %s (account %s, region %s)", f.fault_id, label, operation,
                        caller.account, caller.region)
            if self.on_inject is not None:
                self.on_inject(operation, label)
        if delay:
            await asyncio.sleep(delay / 1000)
        if error is not None:
            prefix, status, message = ERRORS[error]
            raise AWSError(error, message, status, type_prefix=prefix,
                           extra=_throttling_reasons(error, operation, caller, params))

    def kms_unavailable(self, account: str, region: str, table: str, operation: str) -> bool:
        """Whether the key service is down for ``table`` now (checked where the table's key port is called)."""
        if not self.active:
            return False
        fired = self._match((account, region), "*", {table}, True)
        for f in fired:
            log.warning("fault %s injected: KmsUnavailable on %s for table %s (account %s, region %s)",
                        f.fault_id, operation, table, account, region)
            if self.on_inject is not None:
                self.on_inject(operation, "KmsUnavailable")
        return bool(fired)


#: item operations, by the capacity they use: an injected throttle names their tables as DynamoDB's would
_READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})


def _throttling_reasons(error: str, operation: str, caller: Caller, params: dict) -> dict | None:
    """The ThrottlingReasons an injected throttle carries: one per table the item operation names, with the
    limit that error stands for (ProvisionedThroughputExceeded, MaxOnDemandThroughputExceeded for a
    ThrottlingException, AccountLimitExceeded for RequestLimitExceeded). Control-plane calls have none."""
    limit = throughput.LIMIT.get(error)
    if limit is None or operation not in _READS | _WRITES:
        return None
    kind = "read" if operation in _READS else "write"
    arns = [n if n.startswith("arn:") else f"arn:aws:dynamodb:{caller.region}:{caller.account}:table/{n}"
            for n in named_tables(params)]
    return throughput.with_reasons(error, [throughput.reason(arn, kind, limit) for arn in arns])


def _too_many(limit: int) -> AWSError:
    return AWSError("LimitExceededException", f"Too many faults: at most {limit} (delete some)")


def _not_found(fault_id: str) -> AWSError:
    return AWSError("ResourceNotFoundException", f"Fault not found: {fault_id}")
