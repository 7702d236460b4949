"""Stream control: StreamSpecification on CreateTable and UpdateTable (DynamoDB's rules and texts), stream
status, and the background job that rolls shards over by age and trims what is past retention.

A table's latest stream is summarised in its catalog record (``TableMeta.stream``: the spec while enabled,
and the ARN, label and number, which linger after a disable as DynamoDB's LatestStreamArn does); every
stream, enabled or not, has its own descriptor row (``store.py``) and stays readable until its records
expire. Enabling after a disable makes a new stream (new ARN and label).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dynavault.errors import validation

from .store import ShardInfo, StreamInfo, StreamStore

if TYPE_CHECKING:
    from dynavault.config import Settings
    from dynavault.storage.kv.base import KVTransaction

    from ..catalog import Catalog, TableMeta

log = logging.getLogger("dynavault.dynamodb")

VIEW_TYPES = ("NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES", "KEYS_ONLY")
_INVALID = "One or more parameter values were invalid: "


@dataclass(frozen=True)
class StreamLimits:
    """The stream settings the writer, the API and the job share."""

    shard_seconds: float = 14400.0
    shard_max_records: int = 100_000
    retention_seconds: float = 86400.0
    status_seconds: float = 4.0
    iterator_seconds: float = 900.0

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamLimits:
        return cls(settings.stream_shard_seconds, settings.stream_shard_max_records,
                   settings.stream_retention_seconds, settings.stream_status_seconds,
                   settings.stream_iterator_seconds)


def _view_type(spec: dict) -> str | None:
    return spec.get("StreamViewType")


def check_create_spec(spec: dict | None) -> str | None:
    """CreateTable's StreamSpecification -> the view type of the stream to open, or None."""
    if spec is None:
        return None
    view = _view_type(spec)
    if spec.get("StreamEnabled"):
        if view is None:
            raise validation(_INVALID + "Table is being created with a stream enabled, UpdateViewType is required")
        return view
    if view is not None:
        raise validation(_INVALID + "Table is being created with a stream disabled, UpdateViewType should not "
                         "be specified")
    return None


def check_update_spec(meta: TableMeta, spec: dict) -> str | None:
    """UpdateTable's StreamSpecification -> the view type to enable, or None to disable. Raises DynamoDB's
    errors (checked before anything changes)."""
    view = _view_type(spec)
    enabled = bool(meta.stream and meta.stream.get("spec"))
    if spec.get("StreamEnabled"):
        if view is None:
            raise validation(_INVALID + "If stream is being enabled then UpdateViewType is required")
        if enabled:
            # also for another view type: a view type never changes in place (disable, then enable)
            raise validation(f"Table already has an enabled stream: TableName: {meta.name}")
        return view
    if view is not None:
        raise validation(_INVALID + "If stream is being disabled, then UpdateViewType must not be specified")
    if not enabled:
        raise validation(f"Table has no stream to disable: TableName: {meta.name}")
    return None


def _label(now: float, previous: str | None) -> str:
    ms = int(now * 1000)
    label = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}"
    if previous is not None and label <= previous:  # two streams within one millisecond: keep labels unique
        prev = datetime.strptime(previous, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
        return _label(prev.timestamp() + 0.001, None)
    return label


def new_shard_id(now: float, parent: str | None = None) -> str:
    """A DynamoDB-shaped shard id; a child's sorts after its parent's (ExclusiveStartShardId pages by id)."""
    ms = int(now * 1000)
    if parent is not None:
        ms = max(ms, int(parent.split("-")[1]) + 1)
    return f"shardId-{ms:020d}-{secrets.token_hex(4)}"


def enable(store: StreamStore, tx: KVTransaction, meta: TableMeta, view: str, now: float) -> StreamInfo:
    """Open a new stream (and its first shard) on ``meta``, in the caller's transaction."""
    previous = meta.stream or {}
    no = int(previous.get("no", 0)) + 1
    label = _label(now, previous.get("label"))
    info = StreamInfo(no=no, label=label, arn=f"{meta.arn}/stream/{label}", table=meta.name, view=view,
                      key_schema=meta.key_schema, created=now)
    store.put_stream(tx, meta.id_bytes, info)
    store.put_shard(tx, meta.id_bytes, ShardInfo(stream_no=no, no=0, id=new_shard_id(now), created=now, start=1))
    meta.stream = {"spec": {"StreamEnabled": True, "StreamViewType": view}, "arn": info.arn, "label": label,
                   "no": no, "view": view}
    return info


def disable(store: StreamStore, tx: KVTransaction, meta: TableMeta, now: float) -> None:
    """Close the latest stream: its open shard closes (an empty one is dropped: nothing to read in it)."""
    st = meta.stream or {}
    no = int(st["no"])
    info = next((s for s in store.streams(tx, meta.id_bytes) if s.no == no), None)
    if info is not None:
        info.disabled = now
        store.put_stream(tx, meta.id_bytes, info)
        shard = store.current_shard(tx, meta.id_bytes, no)
        if shard is not None and shard.is_open:
            _close(store, tx, meta.id_bytes, shard, now, reopen=False)
    meta.stream = {k: v for k, v in st.items() if k != "spec"}


def _close(store: StreamStore, tx: KVTransaction, table_id: bytes, shard: ShardInfo, now: float, *,
           reopen: bool, last: int | None = None) -> ShardInfo | None:
    """Close an open shard; with ``reopen`` open its child (-> the child)."""
    if last is None:
        last = store.last_seq(tx, table_id, shard)
    if last is None and not reopen:
        store.delete_shard(tx, table_id, shard)
        return None
    if last is None:
        return shard  # an empty shard has nothing to close over: it stays the open one
    shard.end, shard.closed = last, now
    store.put_shard(tx, table_id, shard)
    if not reopen:
        return None
    child = ShardInfo(stream_no=shard.stream_no, no=shard.no + 1, id=new_shard_id(now, shard.id), created=now,
                      start=last + 1, parent=shard.id)
    store.put_shard(tx, table_id, child)
    return child


def roll_over(store: StreamStore, tx: KVTransaction, table_id: bytes, shard: ShardInfo, last: int,
              now: float) -> ShardInfo:
    """Close a full or old shard and open its child (what the writer calls before appending)."""
    child = _close(store, tx, table_id, shard, now, reopen=True, last=last)
    assert child is not None
    return child


def stream_status(info: StreamInfo, limits: StreamLimits, now: float) -> str:
    if info.disabled is not None:
        return "DISABLING" if now - info.disabled < limits.status_seconds else "DISABLED"
    return "ENABLING" if now - info.created < limits.status_seconds else "ENABLED"


class StreamJobs:
    """The background job: close shards past their age, trim closed shards past retention, forget disabled
    streams with nothing left. Works on descriptors only (no key needed: trimming never opens a record),
    so it keeps running while a table's key is unusable, as DynamoDB's 24-hour expiry does."""

    def __init__(self, store: StreamStore, catalog: Catalog, limits: StreamLimits,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.catalog = catalog
        self.limits = limits
        self.clock = clock

    def __repr__(self) -> str:
        return "<StreamJobs>"

    def interval(self) -> float:
        return max(0.2, min(60.0, self.limits.shard_seconds / 4, self.limits.retention_seconds / 10))

    def run(self) -> None:
        now = self.clock()
        for meta in self.catalog.all():
            # a write transaction only for a table with something to do (the check reads descriptors only)
            if meta.stream is not None and self._table(self.store.kv, meta, now, dry=True):
                with self.store.kv.transaction() as tx:
                    self._table(tx, meta, now, dry=False)

    def _table(self, tx, meta: TableMeta, now: float, *, dry: bool) -> bool:
        """Close aged shards, trim expired ones, forget emptied disabled streams; ``dry``: only say whether
        there is anything to do."""
        tid, limits = meta.id_bytes, self.limits
        latest = (meta.stream or {}).get("no")
        work = False
        for info in self.store.streams(tx, tid):
            shards = self.store.shards(tx, tid, info.no)
            for shard in shards:
                if shard.is_open and info.disabled is None and now - shard.created >= limits.shard_seconds:
                    if dry:
                        work = work or self.store.last_seq(tx, tid, shard) is not None  # empty: nothing to close
                    else:
                        _close(self.store, tx, tid, shard, now, reopen=True)
                elif not shard.is_open and now - (shard.closed or now) >= limits.retention_seconds:
                    work = True
                    if not dry:
                        self.store.delete_shard(tx, tid, shard)
                        log.debug("table %s: stream %s: shard %s trimmed", meta.name, info.label, shard.id)
            if (info.disabled is not None and info.no != latest and now - info.disabled >= limits.retention_seconds
                    and not self.store.shards(tx, tid, info.no)):
                work = True
                if not dry:
                    self.store.delete_stream(tx, tid, info.no)
        return work
