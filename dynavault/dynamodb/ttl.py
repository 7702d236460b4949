"""Time to Live: UpdateTimeToLive / DescribeTimeToLive, and the sweeper that deletes expired items.

A table's TTL setting is catalog metadata (``TableMeta.extra["ttl"]``: enabled, attribute name, time of
the last change): like key schema and attribute definitions it names an attribute and holds no item data.

Where the answers come from (texts copied exactly):
- the public "ack-api-quirks dynamodb" catalogue, probed on real DynamoDB in 2026-10 (search-index id
  70339256057; DDB-TABLE-143/144/145/146/147, and id 70812507776 / 70802229299 for DDB-TABLE-115/118):
  ``TimeToLive is already enabled``, ``TimeToLive is already disabled``, ``TimeToLive is active on a
  different AttributeName: current AttributeName is X``, ``Time to live has been modified multiple times
  within a fixed interval`` (also quoted by aws/aws-cdk#13720), ``Requested resource not found: Table: X not
  found``, ``Cannot describe time to live while table is in S state: Current table state is S``. Content
  checks come before the cooldown check; a disabled table describes as ``{TimeToLiveStatus: DISABLED}``
  without AttributeName; the status is settled by the first Describe after an update (ENABLING and DISABLING
  were never observed at 1 s polling), so we answer ENABLED / DISABLED at once.
- botocore's model (``dynamodb/2012-08-10``): the request shape (Enabled and AttributeName required, the
  name 1-255 characters) is checked by the front end's shape validator before a handler runs.
- sse-spec.md §1.5: while the table's key is unusable UpdateTimeToLive fails with the KMS error naming the
  key; DescribeTimeToLive keeps working.

The sweeper (``TTLSweeper``) runs as one periodic job per store: each tick starts a pass unless the previous
one is still under way; the pass runs on the server's event loop in slices of one short transaction each,
between requests (a thread would compete with request handling for the interpreter). It walks every
TTL-enabled table in (partition, sort key) order in bounded batches: a read transaction finds the expired
items among the next 100, write transactions of at most 10 deletes remove them through the item-change
path (cause ``TTL``: indexes, sizes, statistics and subscribers in the same transaction), re-checking each
item inside it, since a write in between may have renewed it. No capacity is charged: no request is involved. Tables whose key is unusable are skipped and
swept again once the key is back (the key-lifecycle sweep returns them to ACTIVE).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Generator
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

import orjson

from dynavault.caller import Caller
from dynavault.errors import AWSError, validation

from .item_store import ItemChange
from .keys import key_of_item
from .sse_spec import NO_DATA_STATES, inaccessible_error

if TYPE_CHECKING:
    from dynavault.sse.crypto import TableCrypto

    from .catalog import TableMeta
    from .database import Database

log = logging.getLogger("dynavault.dynamodb.ttl")

#: the cause TTL deletes carry through the item-change path (streams show it as the service's identity)
CAUSE = "TTL"
#: DynamoDB's documented rule: an expiry more than five years in the past is not acted on
MAX_AGE_SECONDS = 5 * 365 * 86400
#: items examined per read transaction
BATCH = 100
#: items deleted per write transaction (each delete also writes its index entries): a few milliseconds
#: of holding the store
DELETE_BATCH = 10
#: the longest the sweeper runs on the event loop before letting waiting requests through (it stops after
#: the transaction that crosses it)
SLICE_SECONDS = 0.005
#: a long sweep of one table logs its progress this often
PROGRESS_SECONDS = 10.0


# -- the table's setting ----------------------------------------------------------------------------
def ttl_state(meta: TableMeta) -> dict:
    """{"enabled": bool, "attribute": str, "changed": epoch seconds}; empty when never configured."""
    state = meta.extra.get("ttl")
    return state if isinstance(state, dict) else {}


def ttl_attribute(meta: TableMeta) -> str | None:
    """The attribute expired items are found by, or None when TTL is not enabled."""
    state = ttl_state(meta)
    return state.get("attribute") if state.get("enabled") else None


def expired(value: object, now: float) -> bool:
    """Whether a TTL attribute value makes its item expired at ``now``: a Number of epoch seconds below the
    current time and not more than five years in the past (strings, sets, anything else: never)."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    number = value.get("N")
    if not isinstance(number, str):
        return False
    try:
        seconds = Decimal(number)
    except InvalidOperation:
        return False
    return Decimal(repr(now - MAX_AGE_SECONDS)) <= seconds < Decimal(repr(now))


# -- operations ---------------------------------------------------------------------------------------
def _table(db: Database, caller: Caller, name: str) -> TableMeta:
    meta = db.catalog.get(caller.account, caller.region, name)
    if meta is None:
        raise AWSError("ResourceNotFoundException", f"Requested resource not found: Table: {name} not found")
    return meta


def _null(member: str) -> AWSError:
    # what the front end's shape check answers; repeated here so a handler called directly stays safe
    return validation(f"1 validation error detected: Value null at 'timeToLiveSpecification.{member}' failed to "
                      "satisfy constraint: Member must not be null")


def update_time_to_live(db: Database, caller: Caller, p: dict) -> dict:
    spec = p.get("TimeToLiveSpecification")
    if not isinstance(spec, dict):
        raise validation("1 validation error detected: Value null at 'timeToLiveSpecification' failed to satisfy "
                         "constraint: Member must not be null")
    enabled, name = spec.get("Enabled"), spec.get("AttributeName")
    if not isinstance(name, str):
        raise _null("attributeName")
    if not isinstance(enabled, bool):
        raise _null("enabled")
    with db.catalog.lock:
        meta = _table(db, caller, p["TableName"])
        if meta.status in NO_DATA_STATES:
            raise inaccessible_error(meta)
        state = ttl_state(meta)
        current = state.get("attribute") if state.get("enabled") else None
        if current is not None and (enabled or name != current):
            if enabled and name == current:
                raise validation("TimeToLive is already enabled")
            raise validation(f"TimeToLive is active on a different AttributeName: current AttributeName is {current}")
        if current is None and not enabled:
            raise validation("TimeToLive is already disabled")
        now = db.clock()
        changed = state.get("changed")
        if isinstance(changed, (int, float)) and now - changed < db.settings.ttl_cooldown_seconds:
            raise validation("Time to live has been modified multiple times within a fixed interval")
        meta.extra["ttl"] = {"enabled": enabled, "attribute": name, "changed": now}
        db.catalog.save(meta)
    log.info("table %s: Time to Live %s on attribute %s", meta.name, "enabled" if enabled else "disabled", name)
    return {"TimeToLiveSpecification": {"Enabled": enabled, "AttributeName": name}}


def describe_time_to_live(db: Database, caller: Caller, p: dict) -> dict:
    meta = _table(db, caller, p["TableName"])
    if meta.status in ("CREATING", "DELETING"):
        raise validation(f"Cannot describe time to live while table is in {meta.status} state: Current table state "
                         f"is {meta.status}")
    attribute = ttl_attribute(meta)
    if attribute is None:
        return {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}}
    return {"TimeToLiveDescription": {"TimeToLiveStatus": "ENABLED", "AttributeName": attribute}}


HANDLERS = {
    "UpdateTimeToLive": update_time_to_live,
    "DescribeTimeToLive": describe_time_to_live,
}


# -- the sweeper --------------------------------------------------------------------------------------
class OffLoop:
    """Yielded by a pass step that must wait on a remote service (a table key from a remote KMS): the sweeper
    runs ``fn`` in a thread and sends its result (or throws its error) back into the pass, so the event loop
    keeps serving meanwhile."""

    __slots__ = ("fn",)

    def __init__(self, fn) -> None:
        self.fn = fn


class TTLSweeper:
    """Deletes expired items of every TTL-enabled table; owned by the runtime (one per store).

    A pass is a generator that stops after each store transaction. ``tick`` (the periodic job, on the
    server's event loop) runs steps for at most ``SLICE_SECONDS`` and schedules the rest behind the
    requests that arrived meanwhile, so a request waits for at most one short transaction, and the pass
    never competes with request handling for the interpreter from another thread."""

    def __init__(self, db: Database, *, batch: int = BATCH) -> None:
        self.db = db
        self.batch = batch
        self._stopped = False
        self._steps: Generator[OffLoop | None, object, None] | None = None
        self._handle: asyncio.Handle | None = None
        #: items deleted by the pass under way (logged per table, counted on /metrics by the change path)
        self.deleted = 0
        #: items read by the table sweep under way, and when it last reported progress
        self.scanned = 0
        self._reported = 0.0

    def __repr__(self) -> str:
        return f"<TTLSweeper {'running' if self._steps is not None else 'idle'}>"

    def tick(self) -> None:
        """The periodic job: start a pass unless one is still under way (it then goes on by itself)."""
        if self._stopped or self._steps is not None:
            return
        self.deleted = 0
        self._steps = self._pass()
        self._advance()

    def stop(self) -> None:
        """At shutdown, before the store closes: no step runs after this."""
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._steps is not None:
            self._steps.close()
            self._steps = None

    def _advance(self, value: object = None, error: BaseException | None = None) -> None:
        self._handle = None
        steps = self._steps
        if steps is None or self._stopped:
            return
        started = time.monotonic()
        deadline = started + SLICE_SECONDS
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the server's loop: finish the pass here
            _finish(steps, value, error)
            self._steps = None
            return
        try:
            while True:
                step = steps.throw(error) if error is not None else steps.send(value)
                value = error = None
                if isinstance(step, OffLoop):
                    loop.run_in_executor(None, step.fn).add_done_callback(self._resumed)
                    return
                if time.monotonic() >= deadline:
                    break
        except StopIteration:
            self._steps = None
            return
        # as long a pause as the slice took: the sweeper has at most half of the loop's time, and requests
        # that need several turns of the loop get them without a slice before each
        self._handle = loop.call_later(max(time.monotonic() - started, 0.001), self._advance)

    def _resumed(self, done) -> None:
        if done.cancelled() or self._stopped:
            return
        error = done.exception()
        self._advance(None if error is not None else done.result(), error)

    def sweep(self) -> int:
        """One whole pass at once (tools and tests); -> the number of items deleted."""
        self.deleted = 0
        _finish(self._pass(), None, None)
        return self.deleted

    def _pass(self) -> Generator[OffLoop | None, object, None]:
        # Quiet when there is nothing to do (a pass runs every ttl_sweep_seconds); a pass that deletes says
        # so per table, with how long it took, and a long one reports its progress.
        pass_started = time.monotonic()
        tables = 0
        for meta in self.db.catalog.all():
            if ttl_attribute(meta) is None:
                continue
            tables += 1
            before = self.deleted
            self.scanned = 0
            started = self._reported = time.monotonic()
            try:
                yield from self._sweep_table(meta)
            except Exception:  # noqa: BLE001 - one damaged table must not stop the others' expiry
                log.exception("table %s: TTL sweep failed", meta.name)
            if self.deleted > before:
                log.info("table %s: Time to Live deleted %d expired item(s) of %d scanned in %.2f s", meta.name,
                         self.deleted - before, self.scanned, time.monotonic() - started)
        if self.deleted:
            log.info("Time to Live sweep: %d table(s), %d expired item(s) deleted in %.2f s", tables, self.deleted,
                     time.monotonic() - pass_started)

    def _live(self, meta: TableMeta) -> tuple[TableMeta, str] | None:
        """The table as the catalog has it now, with its TTL attribute; None when it went away, TTL was
        disabled, or its key is unusable (sse-spec §1.5: no data is touched until the key is back)."""
        live = self.db.catalog.get(meta.account, meta.region, meta.name)
        if live is None or live.table_id != meta.table_id or live.status in NO_DATA_STATES:
            return None
        attribute = ttl_attribute(live)
        return (live, attribute) if attribute is not None else None

    def _sweep_table(self, meta: TableMeta) -> Generator[OffLoop | None, object, None]:
        db = self.db
        after = None
        while True:
            cur = self._live(meta)
            if cur is None:
                return
            live, attribute = cur
            try:
                # the database itself, through the table's grant; per batch, so never a key older than the
                # refresh interval (DESIGN.md invariant 3)
                who = db.keys.key_service(live.account, live.region, live.sse)
                if db.keys.blocking:  # a remote KMS: the key is fetched in a thread, the loop goes on
                    crypto = yield OffLoop(functools.partial(db.crypto, who, live))
                else:
                    crypto = db.crypto(who, live)
            except AWSError as err:
                log.warning("table %s: TTL sweep skipped, the table key is not usable (%s)", live.name, err.code)
                return
            now = db.clock()
            found, after, more = self._scan(live, crypto, attribute, after, now)
            if time.monotonic() - self._reported >= PROGRESS_SECONDS:
                self._reported = time.monotonic()
                log.info("table %s: Time to Live sweep in progress: %d item(s) scanned, %d deleted so far",
                         live.name, self.scanned, self.deleted)
            yield
            for start in range(0, len(found), DELETE_BATCH):
                if self._live(meta) is None:  # disabled or flagged meanwhile
                    return
                self.deleted += self._delete(live, crypto, attribute, found[start:start + DELETE_BATCH], now)
                yield
            if not more:
                return

    def _scan(self, meta: TableMeta, crypto: TableCrypto, attribute: str, after, now: float):
        """One batch of the walk: -> (expired items, resume point, whether more items may follow)."""
        found: list[dict] = []
        # the attribute's name as item JSON spells it, to skip parsing items without it (a name any JSON
        # encoder might escape is not pre-filtered)
        plain = attribute.isascii() and attribute.isprintable() and not set(attribute) & set('"\\/')
        needle = orjson.dumps(attribute) if plain else b""
        seen = 0
        with self.db.items.read() as r:
            for token, key, raw in self.db.items.walk(r, meta, crypto, after):
                seen += 1
                self.scanned += 1
                after = (token, key)
                if needle in raw:
                    item = orjson.loads(raw)
                    if expired(item.get(attribute), now):
                        found.append(item)
                if seen >= self.batch:
                    return found, after, True
        return found, after, False

    def _delete(self, meta: TableMeta, crypto: TableCrypto, attribute: str, found: list[dict], now: float) -> int:
        deleted = 0
        with self.db.items.write() as w:
            for item in found:
                hkey, skey, _ = key_of_item(meta, item)
                place = w.place(meta, crypto, hkey, skey)
                # re-checked in this transaction: a write since the scan may have renewed or removed it
                if place.old is None or not expired(place.old.get(attribute), now):
                    continue
                w.apply(ItemChange(meta, place.old, None, CAUSE), crypto, hkey=hkey, skey=skey, place=place)
                deleted += 1
        return deleted


def _finish(steps: Generator, value: object, error: BaseException | None) -> None:
    """Run a pass to its end here (no event loop): off-loop steps run inline."""
    try:
        while True:
            step = steps.throw(error) if error is not None else steps.send(value)
            value = error = None
            if isinstance(step, OffLoop):
                try:
                    value = step.fn()
                except Exception as exc:  # noqa: BLE001 - handed back to the pass, as from a thread
                    error = exc
    except StopIteration:
        return
