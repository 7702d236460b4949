"""The stream writer: a change subscriber that appends one stream record per item change, sealed under the
table's stream key, inside the change's own store transaction (a change never commits without its record,
nor a record without its change).

What a record keeps is what the stream's view type shows (KEYS_ONLY keeps no image at all), so nothing
outside the view is ever stored. A change whose new item equals the old one writes no record: DynamoDB
Streams writes none for a PutItem or UpdateItem that changes no data.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import orjson

from ..values import item_size
from .control import StreamLimits, new_shard_id, roll_over
from .store import ShardInfo, StreamStore, record_aad

if TYPE_CHECKING:
    from dynavault.sse.crypto import TableCrypto
    from dynavault.storage.kv.base import KVTransaction

    from ..item_store import ItemChange

#: causes that are the service's own doing (shown as userIdentity on the record)
SERVICE_CAUSES = frozenset({"TTL"})


def record_body(change: ItemChange, view: str, now: float) -> dict:
    """The sealed part of a record: event, keys, the images the view type shows, and who did it. Its size
    (``record_size``) follows from what it holds, so it is worked out when the record is read, not on every
    write (records written before kept it as ``"s"``)."""
    body: dict = {"id": secrets.token_hex(16), "e": change.event, "t": now, "k": change.keys}
    if view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES") and change.new is not None:
        body["n"] = change.new
    if view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES") and change.old is not None:
        body["o"] = change.old
    if change.cause in SERVICE_CAUSES:
        body["db"] = True
    return body


def record_size(body: dict) -> int:
    """A record's SizeBytes: its keys and the images it keeps."""
    size = body.get("s")
    if size is None:
        size = item_size(body["k"])
        for image in ("n", "o"):
            if image in body:
                size += item_size(body[image])
        body["s"] = size
    return size


class _Tail:
    """Where a stream appends next: its open shard and next sequence number, as of a descriptor generation."""

    __slots__ = ("stream_no", "shard", "seq", "generation")

    def __init__(self, stream_no: int, shard: ShardInfo, seq: int, generation: int) -> None:
        self.stream_no, self.shard, self.seq, self.generation = stream_no, shard, seq, generation


class StreamWriter:
    """Appends records. The open shard and next sequence number of each table are remembered between writes
    (reading them costs two range reads and a descriptor parse per write): what a transaction appended is
    held apart (``_pending``, tied to that transaction) and becomes the remembered state only once it
    committed, so a rolled-back write never leaves a gap (nor a reused number); a changed descriptor
    (``StreamStore.generation``) sends the writer back to the store. The memory is per process, so it is used
    only while this process writes the store alone (``exclusive``); a worker among several reads the tail
    inside every write transaction (which the store serializes across processes)."""

    def __init__(self, store: StreamStore, limits: StreamLimits, clock: Callable[[], float] = time.time, *,
                 exclusive: bool = True) -> None:
        self.store = store
        self.exclusive = exclusive
        self.limits = limits
        self.clock = clock
        self._tails: dict[bytes, _Tail] = {}
        self._pending_tx: object | None = None
        self._pending: dict[bytes, _Tail] = {}

    def __repr__(self) -> str:
        return "<StreamWriter>"

    def _tail(self, tx: KVTransaction, tid: bytes, stream_no: int) -> _Tail:
        if self._pending_tx is not tx:
            # A new transaction while an earlier one's appends are still held back: that one rolled back (or
            # its commit was never reported), so what is remembered for its tables may be wrong either way.
            for stale in self._pending:
                self._tails.pop(stale, None)
            self._pending_tx, self._pending = tx, {}
        tail = self._pending.get(tid) or (self._tails.get(tid) if self.exclusive else None)
        if tail is not None and tail.stream_no == stream_no and tail.generation == self.store.generation(tid):
            return tail
        shard = self.store.current_shard(tx, tid, stream_no)
        if shard is None or not shard.is_open:  # an enabled stream always has its open shard
            shard = ShardInfo(stream_no=stream_no, no=shard.no + 1 if shard else 0,
                              id=new_shard_id(self.clock(), shard.id if shard else None), created=self.clock(),
                              start=(shard.end + 1) if shard and shard.end is not None else 1,
                              parent=shard.id if shard else None)
            self.store.put_shard(tx, tid, shard)
        last = self.store.last_seq(tx, tid, shard)
        return _Tail(stream_no, shard, shard.start if last is None else last + 1, self.store.generation(tid))

    def in_transaction(self, tx: KVTransaction, change: ItemChange, crypto: TableCrypto) -> None:
        meta = change.table
        st = meta.stream
        if not st or not st.get("spec") or change.old == change.new:
            return
        tid, now = meta.id_bytes, self.clock()
        tail = self._tail(tx, tid, int(st["no"]))
        shard, seq = tail.shard, tail.seq
        count = seq - shard.start
        if count and (count >= self.limits.shard_max_records or now - shard.created >= self.limits.shard_seconds):
            shard = roll_over(self.store, tx, tid, shard, seq - 1, now)
        body = orjson.dumps(record_body(change, st["view"], now))
        sealed = crypto.stream.seal(record_aad(tid, st["label"], shard.id, seq), body)
        self.store.put_record(tx, tid, shard, seq, sealed)
        self._pending[tid] = _Tail(tail.stream_no, shard, seq + 1, self.store.generation(tid))

    def committed(self, changes: Sequence[ItemChange]) -> None:
        self._tails.update(self._pending)
        self._pending_tx, self._pending = None, {}
