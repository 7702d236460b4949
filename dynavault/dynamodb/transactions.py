"""TransactWriteItems, TransactGetItems, and the multi-item write engine batches and PartiQL share.

A request that changes several items is one store transaction (``db.kv.transaction()``): every
base item, index entry, stream record and table statistic of the request commits together or not
at all. The engine works in three phases so nothing is written unless everything can be:

1. *prepare*: parse and validate each action (bad input is a plain ValidationException);
2. *keys*: fetch the table key of every table involved; one unusable key fails the whole request
   with that table's KMS error before any data is touched (fail closed);
3. *apply*: inside one store transaction, read every old item, evaluate every condition and
   compute every new item; if any action fails, raise with one reason per action (in request
   order) and the store rolls back; otherwise write everything and commit.

Concurrency. A store transaction holds the store's write lock from its first read to its commit, so two
transactions are always serialized: neither can see the other half-applied, and conditions read committed
state. On top of that a request *claims* the items it touches (:class:`ItemClaims` in this process, and with
several worker processes :class:`~.claims.StoreClaims` in the store); a transaction that finds one of its
items claimed by another in-flight transaction is cancelled with reason ``TransactionConflict`` instead of
waiting, as DynamoDB does.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING

from dynavault.caller import Caller
from dynavault.errors import AWSError, validation

from . import item_collections
from . import items as item_ops
from .catalog import TableMeta
from .claims import StoreClaims, claim_key, token_claim_key
from .expressions import (
    ExpressionContext,
    apply_update,
    evaluate,
    parse_condition,
    parse_projection,
    parse_update,
)
from .expressions import project as project_item
from .idempotency import IDEMPOTENCY_SECONDS, IdempotencyTokens, Replayed, TokenClaim
from .item_store import ItemChange
from .keys import KeySchemaMismatch, key_of_item, key_of_request
from .values import MSG_ITEM_SIZE, canonical_item, item_size, validate_item

if TYPE_CHECKING:
    from dynavault.storage.kv.base import KVStore

    from .database import Database

CANCELLED = "Transaction cancelled, please refer cancellation reasons for specific reasons"
MSG_CONDITION = "The conditional request failed"
MSG_DUPLICATE_TARGET = "Transaction request cannot include multiple operations on one item"
MSG_ONE_OF = "TransactItems can only contain one of Check, Put, Update or Delete"
MSG_EMPTY_ACTION = "Invalid Request: TransactWriteRequest should contain Delete or Put or Update request"
MSG_CONFLICT = "Transaction is ongoing for the item"
#: DynamoDB's text when a request's ClientRequestToken is in use by the same request still running
MSG_IN_PROGRESS = "Transaction from previous request is still in progress"
#: the items of one transaction (written or read) may not pass 4 MB in total. AWS's text for it is not in any
#: recorded answer found; this is the wording other DynamoDB emulators use for it.
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024
MSG_TOO_LARGE = ("Collection size of items exceeded, which can also be caused by the aggregate size of the "
                 "items in the transaction exceeding the 4MB limit")
#: an Update that grows its item past 400 KB inside a transaction: the cancellation reason's text
MSG_UPDATE_TOO_LARGE = "Item size to update has exceeded the maximum allowed size"
_KINDS = ("ConditionCheck", "Put", "Delete", "Update")


# -- the action model ---------------------------------------------------------------------------
@dataclass
class WriteAction:
    """One prepared write (or condition check) on one item; results are filled in by :func:`run_writes`."""

    kind: str  # "Put" | "Update" | "Delete" | "ConditionCheck"
    meta: TableMeta
    hkey: bytes
    skey: bytes
    key: dict
    item: dict | None = None  # Put: the canonical item
    plan: object | None = None  # Update: the parsed UpdatePlan
    cond: object | None = None
    return_on_failure: str = "NONE"
    #: PartiQL INSERT: fail with DuplicateItem when the item exists
    must_not_exist: bool = False
    #: PartiQL UPDATE: fail (condition) when the item does not exist
    must_exist: bool = False
    old: dict | None = field(default=None, repr=False)
    new: dict | None = field(default=None, repr=False)
    units: float = 0.0
    #: the part of ``units`` spent on each index ("gsi:name" / "lsi:name"), for ReturnConsumedCapacity INDEXES
    index_units: dict = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:  # keys and items are user data
        return f"WriteAction({self.kind}, table={self.meta.name})"

    @property
    def ident(self) -> tuple[str, bytes, bytes]:
        return (self.meta.table_id, self.hkey, self.skey)


class ActionsFailed(Exception):
    """Some actions failed in the apply phase; ``reasons`` has one entry per action, in order."""

    def __init__(self, reasons: list[dict]) -> None:
        super().__init__("actions failed")
        self.reasons = reasons

    def __repr__(self) -> str:
        return f"ActionsFailed({[r['Code'] for r in self.reasons]})"

    def first_failure(self) -> dict:
        return next(r for r in self.reasons if r["Code"] != "None")


def cancelled(reasons: list[dict]) -> AWSError:
    codes = ", ".join(r["Code"] for r in reasons)
    return AWSError("TransactionCanceledException", f"{CANCELLED} [{codes}]",
                    extra={"CancellationReasons": reasons})


def _return_on_failure(p: dict) -> str:
    rv = p.get("ReturnValuesOnConditionCheckFailure") or "NONE"
    if rv not in ("NONE", "ALL_OLD"):
        raise validation("Return values set to invalid value")
    return rv


@dataclass
class ActionRequest:
    """One write action as the request states it, checked without its table: the item's values, the
    expressions and the names and values they use. DynamoDB answers those before it looks any table up."""

    kind: str
    table: str
    body: dict
    item: dict | None = None
    plan: object | None = None
    cond: object | None = None
    return_on_failure: str = "NONE"

    def __repr__(self) -> str:  # the body holds user data
        return f"ActionRequest({self.kind}, table={self.table})"


def check_action(db: Database, kind: str, p: dict) -> ActionRequest:
    """The table-free checks of one Put / Update / Delete / ConditionCheck, in DynamoDB's order."""
    rv = _return_on_failure(p)
    ctx = ExpressionContext(p.get("ExpressionAttributeNames"), p.get("ExpressionAttributeValues"),
                            cache=db.expression_cache)
    item = plan = None
    if kind == "Put":
        item = p.get("Item") or {}
        validate_item(item)
        cond = item_ops.parse_request_condition(p, ctx, "PutItem")
    elif kind == "Update":
        plan = parse_update(p.get("UpdateExpression") or "", ctx)
        cond = item_ops.parse_request_condition(p, ctx, "UpdateItem")
    elif kind == "Delete":
        cond = item_ops.parse_request_condition(p, ctx, "DeleteItem")
    else:
        cond = parse_condition(p.get("ConditionExpression") or "", ctx)
    ctx.check_all_used()
    return ActionRequest(kind, p.get("TableName") or "", p, item=item, plan=plan, cond=cond, return_on_failure=rv)


def bind_action(db: Database, caller: Caller, r: ActionRequest) -> WriteAction:
    """The action on its table: the table looked up, the key checked against its schema."""
    meta = db.data_table(caller, r.table)
    if r.kind == "Put":
        hkey, skey, key = key_of_item(meta, r.item)
        return WriteAction("Put", meta, hkey, skey, key, item=canonical_item(r.item), cond=r.cond,
                           return_on_failure=r.return_on_failure)
    hkey, skey, key = key_of_request(meta, r.body.get("Key") or {})
    return WriteAction(r.kind, meta, hkey, skey, key, plan=r.plan, cond=r.cond,
                       return_on_failure=r.return_on_failure)


def prepare_put(db: Database, caller: Caller, p: dict) -> WriteAction:
    return bind_action(db, caller, check_action(db, "Put", p))


def prepare_delete(db: Database, caller: Caller, p: dict, kind: str = "Delete") -> WriteAction:
    return bind_action(db, caller, check_action(db, kind, p))


def prepare_check(db: Database, caller: Caller, p: dict) -> WriteAction:
    return bind_action(db, caller, check_action(db, "ConditionCheck", p))


def prepare_update(db: Database, caller: Caller, p: dict) -> WriteAction:
    return bind_action(db, caller, check_action(db, "Update", p))


# -- claims: items held by in-flight multi-item requests ----------------------------------------
class ItemClaims:
    """Which items in-flight transactions hold. ``claim`` is all-or-nothing and never blocks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple, int] = {}

    def claim(self, owner: int, idents: Iterable[tuple]) -> list[tuple]:
        """Claim every ident for ``owner``; -> the idents held by others (nothing claimed then)."""
        idents = list(idents)
        with self._lock:
            busy = [i for i in idents if self._held.get(i, owner) != owner]
            if not busy:
                for i in idents:
                    self._held[i] = owner
            return busy

    def release(self, owner: int, idents: Iterable[tuple]) -> None:
        with self._lock:
            for i in idents:
                if self._held.get(i) == owner:
                    del self._held[i]

    def held(self) -> int:
        return len(self._held)




# -- the engine ---------------------------------------------------------------------------------
def table_cryptos(db: Database, caller: Caller, metas: Iterable[TableMeta]) -> dict:
    """Table key of every table, in first-use order; the first unusable key raises its KMS error."""
    out: dict = {}
    for meta in metas:
        if meta.table_id not in out:
            out[meta.table_id] = db.crypto(caller, meta)
    return out


def _reason(code: str, message: str | None = None, item: dict | None = None) -> dict:
    r: dict = {"Code": code}
    if message is not None:
        r["Message"] = message
    if item is not None:
        r["Item"] = item
    return r


def run_writes(db: Database, caller: Caller, actions: list[WriteAction], *, cause: str,
               transactional: bool = True, cryptos: dict | None = None, token: TokenClaim | None = None) -> None:
    """Apply ``actions`` in ONE store transaction, all or nothing (raises ActionsFailed / AWSError).

    ``cause`` names the operation to the change's subscribers; ``transactional`` doubles the write units
    (DynamoDB charges two per transactional write); ``token``: a ClientRequestToken, checked and recorded in
    that same transaction (raises Replayed when an identical request already used it)."""
    state = db.transaction_state
    owner = state.new_owner()
    # A request with a ClientRequestToken claims the token too: the same request sent again while the first is
    # in flight (another worker, another thread) is told so, rather than conflicting with its own items.
    idents = [a.ident for a in actions] + ([("token", token.key)] if token is not None else [])
    busy = set(state.claims.claim(owner, idents))
    if busy:
        if token is not None and idents[-1] in busy:
            raise in_progress()
        raise ActionsFailed([_reason("TransactionConflict", MSG_CONFLICT) if a.ident in busy
                             else _reason("None") for a in actions])
    shared = state.shared
    held: list[bytes] = []  # claims this request committed in the store and still has to drop
    try:
        if cryptos is None:
            cryptos = table_cryptos(db, caller, (a.meta for a in actions))
        keys = [claim_key(cryptos[a.meta.table_id], a.hkey, a.skey) for a in actions] if shared else []
        if shared and transactional:
            if token is not None:
                keys.append(token_claim_key(token.key))
            _conflict(actions, shared.claim(owner, keys))
            held = keys
        with db.items.write() as w:
            if shared and not transactional:
                _conflict(actions, shared.held_by_others(w.tx, owner, keys))
            if token is not None:
                earlier = state.tokens.check(w.tx, token)
                if earlier is not None:
                    raise Replayed(earlier)
            reasons: list[dict] = []
            for a in actions:
                a.old = w.get(a.meta, cryptos[a.meta.table_id], a.hkey, a.skey)
                reasons.append(_evaluate(a))
            if any(r["Code"] != "None" for r in reasons):
                raise ActionsFailed(reasons)
            for a in actions:
                if a.kind == "ConditionCheck":
                    a.units = 1.0
                    continue
                new_size = item_size(a.new) if a.new is not None else 0
                old_size = item_size(a.old) if a.old is not None else 0
                index_units = w.apply(ItemChange(a.meta, a.old, a.new, cause), cryptos[a.meta.table_id],
                                      hkey=a.hkey, skey=a.skey, new_size=new_size, old_size=old_size)
                a.units = item_ops.write_units(new_size, old_size) + sum(index_units.values())
                a.index_units = dict(index_units)
                if transactional:
                    a.units *= 2
                    a.index_units = {k: 2 * u for k, u in index_units.items()}
            if token is not None:
                metas, units = units_by_table(actions)
                state.tokens.record(w.tx, token, [(t, metas[t].name, u) for t, u in units.items()],
                                    responses=len(actions))
            if held:
                # the claims go with the writes; one that lapsed and was taken meanwhile cancels them
                _conflict(actions, shared.settle(w.tx, owner, held))
                held = []
    finally:
        state.claims.release(owner, idents)
        if held:
            shared.release(owner, held)


def in_progress() -> AWSError:
    return AWSError("TransactionInProgressException", MSG_IN_PROGRESS)


def _conflict(actions: list[WriteAction], busy: list[int]) -> None:
    """Cancel with TransactionConflict at the ``busy`` positions (none: nothing to do); a position past the
    actions is the request's own ClientRequestToken, held by the same request in flight."""
    if any(i >= len(actions) for i in busy):
        raise in_progress()
    if busy:
        raise ActionsFailed([_reason("TransactionConflict", MSG_CONFLICT) if i in busy else _reason("None")
                             for i in range(len(actions))])


def _evaluate(a: WriteAction) -> dict:
    """Check one action against its old item and compute its new item; -> its cancellation reason."""
    old = a.old
    fail_item = old if (a.return_on_failure == "ALL_OLD" and old is not None) else None
    if a.must_not_exist and old is not None:
        return _reason("DuplicateItem", "Duplicate primary key exists in table")
    if a.must_exist and old is None:
        return _reason("ConditionalCheckFailed", MSG_CONDITION)
    try:
        if a.cond is not None and not evaluate(a.cond, old):
            return _reason("ConditionalCheckFailed", MSG_CONDITION, fail_item)
        if a.kind == "Put":
            a.new = a.item
        elif a.kind == "Update" and old is None and a.plan.only_removals:
            a.new = None
        elif a.kind == "Update":
            base = old if old is not None else dict(a.key)
            new = canonical_item(apply_update(a.plan, base, a.meta.key_names))
            validate_item(new)
            a.new = new
        else:
            a.new = None
    except AWSError as e:
        if e.code != "ValidationException":
            raise
        if a.kind == "Update" and e.message == MSG_ITEM_SIZE:
            return _reason("ValidationError", MSG_UPDATE_TOO_LARGE)  # DynamoDB's update wording
        return _reason("ValidationError", e.message)
    return _reason("None")


def consumed(metas: dict[str, TableMeta], units: dict[str, float], mode: str | None, *,
             write: bool, actions: list[WriteAction] | None = None) -> list[dict] | None:
    """ConsumedCapacity list (one entry per table, in first-use order) or None; with the write ``actions``,
    INDEXES shows the part each index took."""
    if not mode or mode == "NONE":
        return None
    per_index: dict[str, dict[str, float]] = {}
    for a in actions or ():
        mine = per_index.setdefault(a.meta.table_id, {})
        for label, u in a.index_units.items():
            mine[label] = mine.get(label, 0.0) + u
    out = []
    for table_id, u in units.items():
        cc = item_ops.capacity(metas[table_id], mode, u, write=write, index_units=per_index.get(table_id))
        if cc:
            out.append(cc)
    return out


class TransactionState:
    """What multi-item requests share beyond one request: claims on in-flight items, the owner ids that
    name those claims, and the ClientRequestToken window (in the store: ``idempotency.py``). One per store,
    made when the database is built (a module global would be shared by every store a process opens).

    ``claims`` are this process's (threads of one process); with several processes serving the store,
    ``shared`` holds the claims in the store too (``claims.py``), so a transaction racing one in another
    worker is refused with TransactionConflict as well, not merely ordered."""

    def __init__(self, kv: KVStore, *, token_ttl: float = IDEMPOTENCY_SECONDS, clock=time.time,
                 shared: StoreClaims | None = None) -> None:
        self.claims = ItemClaims()
        #: with several processes on the store: the claims every one of them sees (None: this process alone)
        self.shared = shared
        self.tokens = IdempotencyTokens(kv, token_ttl, clock)
        self._owner_ids = itertools.count(1)
        self._owner_lock = threading.Lock()

    def new_owner(self) -> int:
        with self._owner_lock:
            return next(self._owner_ids)


# -- operations ---------------------------------------------------------------------------------
def check_transact_item(db: Database, entry: dict) -> ActionRequest:
    present = [k for k in _KINDS if isinstance(entry, dict) and entry.get(k) is not None]
    if len(present) > 1:
        raise validation(MSG_ONE_OF)
    if not present:
        raise validation(MSG_EMPTY_ACTION)
    return check_action(db, present[0], entry[present[0]])


def prepare_transact_item(db: Database, caller: Caller, entry: dict) -> WriteAction:
    return bind_action(db, caller, check_transact_item(db, entry))


def check_distinct(actions: list[WriteAction]) -> None:
    seen: set = set()
    for a in actions:
        if a.ident in seen:
            raise validation(MSG_DUPLICATE_TARGET)
        seen.add(a.ident)


def _request_bytes(a: WriteAction) -> int:
    return item_size(a.item) if a.item is not None else item_size(a.key)


def bind_transaction(db: Database, caller: Caller, requests: list[ActionRequest]) -> list[WriteAction]:
    """Every action on its table, in DynamoDB's order: tables and key values (a missing table, an empty or
    oversized key value fail the request), then one target per item and the 4 MB total, then the keys that
    do not fit their table's schema, which cancel the transaction with a ValidationError in their slot."""
    bound: list[WriteAction | None] = []
    mismatched: dict[int, str] = {}
    for i, r in enumerate(requests):
        try:
            bound.append(bind_action(db, caller, r))
        except KeySchemaMismatch as e:
            bound.append(None)
            mismatched[i] = e.message or ""
    actions = [a for a in bound if a is not None]
    check_distinct(actions)
    if sum(_request_bytes(a) for a in actions) > MAX_TRANSACTION_BYTES:
        raise validation(MSG_TOO_LARGE)
    if mismatched:
        raise cancelled([_reason("ValidationError", mismatched[i]) if i in mismatched else _reason("None")
                         for i in range(len(bound))])
    return actions


def run_transaction(db: Database, caller: Caller, actions: list[WriteAction], cause: str,
                    token: TokenClaim | None = None) -> None:
    """All of the actions or none (TransactWriteItems, ExecuteTransaction): one target each, and any
    failed condition cancels the lot with the reasons in request order."""
    check_distinct(actions)
    try:
        run_writes(db, caller, actions, cause=cause, token=token)
    except ActionsFailed as failed:
        raise cancelled(failed.reasons) from None


def units_by_table(actions: list[WriteAction]) -> tuple[dict[str, TableMeta], dict[str, float]]:
    """The tables the actions wrote (first-use order) and the write units charged to each."""
    metas: dict[str, TableMeta] = {}
    units: dict[str, float] = {}
    for a in actions:
        metas[a.meta.table_id] = a.meta
        units[a.meta.table_id] = units.get(a.meta.table_id, 0.0) + a.units
    return metas, units


def transact_write_items(db: Database, caller: Caller, p: dict) -> dict:
    entries = p.get("TransactItems") or []
    token, earlier = db.transaction_state.tokens.begin(caller, "TransactWriteItems", p.get("ClientRequestToken"),
                                                       entries)
    if earlier is not None:
        return replay(earlier, p.get("ReturnConsumedCapacity"))
    requests = [check_transact_item(db, e) for e in entries]
    actions = bind_transaction(db, caller, requests)
    try:
        run_transaction(db, caller, actions, "TransactWriteItems", token)
    except Replayed as again:  # an identical request committed first (another worker, or a moment ago)
        return replay(again.entry, p.get("ReturnConsumedCapacity"))
    metas, units = units_by_table(actions)
    out: dict = {}
    cc = consumed(metas, units, p.get("ReturnConsumedCapacity"), write=True, actions=actions)
    if cc is not None:
        out["ConsumedCapacity"] = cc
    if p.get("ReturnItemCollectionMetrics") == "SIZE":
        out["ItemCollectionMetrics"] = item_collections.metrics_by_table(
            db.items, lambda m: db.crypto(caller, m), actions)
    return out


def replay(entry: dict, mode: str | None) -> dict:
    """The answer to a repeated token: nothing changes; DynamoDB then reports read units for the items it
    looked at."""
    out: dict = {}
    metas = {t: SimpleNamespace(name=name) for t, name, _ in entry["t"]}
    reads = {t: float(max(1, round(u / 2))) for t, _, u in entry["t"]}
    cc = consumed(metas, reads, mode, write=False)
    if cc is not None:
        out["ConsumedCapacity"] = cc
    return out


def transact_get_items(db: Database, caller: Caller, p: dict) -> dict:
    entries = p.get("TransactItems") or []
    bodies = []
    projections = []
    for e in entries:  # the request alone first: a bad one is refused whether or not its tables exist
        body = e.get("Get") if isinstance(e, dict) else None
        if body is None:
            raise validation("Invalid Request: TransactGetItem should contain a Get request")
        ctx = ExpressionContext(body.get("ExpressionAttributeNames"), None, cache=db.expression_cache)
        proj = parse_projection(body["ProjectionExpression"], ctx) if body.get("ProjectionExpression") else None
        ctx.check_all_used()
        bodies.append(body)
        projections.append(proj)
    gets: list = []
    mismatched: dict[int, str] = {}
    for i, (body, proj) in enumerate(zip(bodies, projections, strict=True)):
        meta = db.data_table(caller, body.get("TableName") or "")
        try:
            hkey, skey, _ = key_of_request(meta, body.get("Key") or {})
        except KeySchemaMismatch as e:
            mismatched[i] = e.message or ""
            gets.append(None)
            continue
        gets.append((meta, hkey, skey, proj))
    seen: set = set()
    for g in gets:
        if g is not None:
            ident = (g[0].table_id, g[1], g[2])
            if ident in seen:
                raise validation(MSG_DUPLICATE_TARGET)
            seen.add(ident)
    if mismatched:
        raise cancelled([_reason("ValidationError", mismatched[i]) if i in mismatched else _reason("None")
                         for i in range(len(gets))])
    cryptos = table_cryptos(db, caller, (g[0] for g in gets))
    state = db.transaction_state
    owner = state.new_owner()
    idents = [(m.table_id, h, s) for m, h, s, _ in gets]
    # Reads conflict with an in-flight write transaction on the same item, never with each other;
    # only check, don't hold, so concurrent readers don't cancel one another.
    busy = set(state.claims.claim(owner, idents))
    state.claims.release(owner, idents)
    if not busy and state.shared is not None:
        keys = [claim_key(cryptos[m.table_id], h, s) for m, h, s, _ in gets]
        busy = {idents[i] for i in state.shared.held_by_others(state.shared.kv, owner, keys)}
    if busy:
        raise cancelled([_reason("TransactionConflict", MSG_CONFLICT) if i in busy else _reason("None")
                         for i in idents])
    out = read_items(db, cryptos, [(m, h, s, None, proj) for m, h, s, proj in gets], p)
    if sum(item_size(r["Item"]) for r in out["Responses"] if "Item" in r) > MAX_TRANSACTION_BYTES:
        raise validation(MSG_TOO_LARGE)
    return out


def read_items(db: Database, cryptos: dict, gets: list, p: dict) -> dict:
    """The reads of one transaction (TransactGetItems, a read-only ExecuteTransaction) from one store
    snapshot. ``gets``: (meta, hash key bytes, sort key bytes, condition or None, projection or None);
    an item that is missing or fails its condition answers ``{}``."""
    responses = []
    units: dict[str, float] = {}
    metas = {}
    with db.items.read() as r:
        for meta, hkey, skey, cond, proj in gets:
            metas[meta.table_id] = meta
            item = db.items.get(meta, cryptos[meta.table_id], hkey, skey, r)
            size = item_size(item) if item is not None else 0
            units[meta.table_id] = units.get(meta.table_id, 0.0) + 2 * item_ops.read_units(size, True)
            if item is None or (cond is not None and not evaluate(cond, item)):
                responses.append({})
            else:
                responses.append({"Item": project_item(proj, item) if proj is not None else item})
    out: dict = {"Responses": responses}
    cc = consumed(metas, units, p.get("ReturnConsumedCapacity"), write=False)
    if cc is not None:
        out["ConsumedCapacity"] = cc
    return out

HANDLERS = {
    "TransactWriteItems": transact_write_items,
    "TransactGetItems": transact_get_items,
}
