"""Replication rows beside the items (all under ``REPLICATION_PREFIX``; no user data in plaintext):

    q ‖ table id (16) ‖ position (12)    -> AES-GCM(stream key of the table, {"h", "s", "n", "t", "r"})
    c ‖ table id (16) ‖ HMAC token (32)  -> AES-GCM(stream key of the table, [time, region(, 1: deleted)])
    t ‖ table id (16) ‖ time µs (8) ‖ HMAC token (32) -> empty: a tombstone (the clock of a deleted item)
    p ‖ origin table id (16) ‖ region    -> plaintext position: how far that region applied the queue

A queue row is one local change (the item's canonical key bytes, the new item or none, its clock time and
region); positions only grow
(microseconds, then a counter) and each row's AAD binds the table id, its position and the position before
it, so a row moved, replayed or removed from the middle fails to open. The clock row of an item is found by
an HMAC of its key under the table's token key (index id ``CLOCK_INDEX``, which no index uses), so the store
learns nothing of the key; its AAD binds the row's key. Checkpoints are positions, plaintext like the PITR
positions: the store sees when rows change anyway.

A deleted item keeps its clock (a tombstone), so a put it raced that arrives later loses to it. A ``t`` row
lists each tombstone by time, so the replication job can drop the tombstones older than what every other member
has confirmed (``prune_tombstones``) without opening every clock. A ``t`` row is a hint only: the clock row it
names is opened and must still be that tombstone before anything is deleted, so a forged or moved ``t`` row
can at most keep a tombstone, never drop a live clock.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

import orjson

from dynavault.errors import IntegrityError
from dynavault.storage.kv.base import distinct_segments, prefix_end
from dynavault.storage.sealed import CatalogRecord, Sealed

from ..layout import REPLICATION_PREFIX

if TYPE_CHECKING:
    from dynavault.sse.crypto import TableCrypto
    from dynavault.storage.kv.base import KVReader, KVTransaction

QUEUE = REPLICATION_PREFIX + b"q"
CLOCKS = REPLICATION_PREFIX + b"c"
CHECKPOINTS = REPLICATION_PREFIX + b"p"
TOMBSTONES = REPLICATION_PREFIX + b"t"
#: the token "index" of clock rows: far above any real index id
CLOCK_INDEX = 0xFFFFFFF0
_POS = struct.Struct(">QI")
_MICROS = struct.Struct(">Q")
_TOKEN = 32
_QUEUE_AAD = b"dv-replication-queue-1"
_CLOCK_AAD = b"dv-replication-clock-1"


def queue_prefix(table_id: bytes) -> bytes:
    return QUEUE + table_id


def last_position(r: KVReader, table_id: bytes) -> bytes | None:
    p = queue_prefix(table_id)
    for key, _ in r.range(p, prefix_end(p), reverse=True, limit=1):
        return bytes(key[len(p):])
    return None


def _next_position(last: bytes | None, now: float) -> bytes:
    t = int(round(now * 1_000_000))
    if last is not None:
        lt, ln = _POS.unpack(last)
        if t <= lt:
            return _POS.pack(lt, ln + 1)
    return _POS.pack(t, 0)


def _queue_aad(table_id: bytes, pos: bytes, prev: bytes | None) -> bytes:
    return _QUEUE_AAD + table_id + pos + (prev or b"")


def append(tx: KVTransaction, crypto: TableCrypto, table_id: bytes, body: dict, now: float) -> bytes:
    """One queue row after the table's last one; -> its position."""
    prev = last_position(tx, table_id)
    pos = _next_position(prev, now)
    tx.put(queue_prefix(table_id) + pos, crypto.stream.seal(_queue_aad(table_id, pos, prev), orjson.dumps(body)))
    return pos


def read_queue(r: KVReader, table_id: bytes, crypto: TableCrypto, after: bytes | None,
               limit: int) -> Iterator[tuple[bytes, dict]]:
    """(position, body) of up to ``limit`` rows after ``after`` (None: from the first), each checked to follow
    the one before (raises IntegrityError otherwise)."""
    p = queue_prefix(table_id)
    lo = p + after + b"\x00" if after is not None else p
    prev = after
    for key, raw in r.range(lo, prefix_end(p), limit=limit):
        pos = bytes(key[len(p):])
        yield pos, orjson.loads(crypto.stream.open(_queue_aad(table_id, pos, prev), Sealed(bytes(raw))))
        prev = pos


def next_position(r: KVReader, table_id: bytes, after: bytes | None) -> bytes | None:
    """The position of the first row after ``after`` (None: from the first), or None when there is none."""
    p = queue_prefix(table_id)
    for key, _ in r.range(p + after + b"\x00" if after is not None else p, prefix_end(p), limit=1):
        return bytes(key[len(p):])
    return None


def trim(tx: KVTransaction, table_id: bytes, upto: bytes) -> int:
    """Drop the rows every consumer has applied (positions <= ``upto``), but never the last row: it is the
    link the next row is chained to."""
    p = queue_prefix(table_id)
    last = last_position(tx, table_id)
    end = p + min(upto, last) if last is not None else p
    keys = [k for k, _ in tx.range(p, end, limit=2048)]  # strictly before min(upto, last)
    if last is not None and upto >= last:
        pass  # the last row stays
    elif tx.get(p + upto) is not None:
        keys.append(p + upto)
    for k in keys:
        tx.delete(k)
    return len(keys)


# -- clocks ---------------------------------------------------------------------------------------
def clock_key(crypto: TableCrypto, table_id: bytes, hkey: bytes, skey: bytes) -> bytes:
    token = crypto.token(CLOCK_INDEX, struct.pack(">I", len(hkey)) + hkey + skey)
    return CLOCKS + table_id + token.raw


def read_clock(r: KVReader, crypto: TableCrypto, key: bytes) -> tuple[float, str] | None:
    entry = read_clock_entry(r, crypto, key)
    return None if entry is None else (entry[0], entry[1])


def read_clock_entry(r: KVReader, crypto: TableCrypto, key: bytes) -> tuple[float, str, bool] | None:
    """(time, region, whether it is a tombstone) of a clock row, or None."""
    raw = r.get(key)
    if raw is None:
        return None
    t, region, *rest = orjson.loads(crypto.stream.open(_CLOCK_AAD + key, Sealed(bytes(raw))))
    return float(t), str(region), bool(rest and rest[0])


def position_time(pos: bytes) -> float:
    """The wall-clock time (seconds) a queue position was taken at."""
    return _POS.unpack(pos)[0] / 1_000_000


def _micros(t: float) -> int:
    return max(0, int(t * 1_000_000))


def write_clock(tx: KVTransaction, crypto: TableCrypto, key: bytes, t: float, region: str,
                deleted: bool = False) -> None:
    """The item's last-writer clock; ``deleted``: the write was a delete, and the clock a tombstone (listed by
    time for ``prune_tombstones``)."""
    tx.put(key, crypto.stream.seal(_CLOCK_AAD + key, orjson.dumps([t, region, 1] if deleted else [t, region])))
    if deleted:
        tid, token = key[len(CLOCKS):len(CLOCKS) + 16], key[len(CLOCKS) + 16:]
        tx.put(TOMBSTONES + tid + _MICROS.pack(_micros(t)) + token, CatalogRecord(b""))


def oldest_tombstone(r: KVReader, table_id: bytes) -> float | None:
    """The time of the table's oldest listed tombstone, or None."""
    p = TOMBSTONES + table_id
    for key, _ in r.range(p, prefix_end(p), limit=1):
        return _MICROS.unpack(key[len(p):len(p) + 8])[0] / 1_000_000
    return None


def prune_tombstones(tx: KVTransaction, crypto: TableCrypto, table_id: bytes, before: float,
                     limit: int = 1024) -> int:
    """Drop up to ``limit`` tombstones older than ``before`` (and their list rows); -> clocks dropped. A clock
    row rewritten since (the item put again, or deleted again later) is kept; only its stale list row goes."""
    p = TOMBSTONES + table_id
    dropped = 0
    for key, _ in list(tx.range(p, p + _MICROS.pack(_micros(before)), limit=limit)):
        key = bytes(key)
        t_us, token = key[len(p):len(p) + 8], key[len(p) + 8:]
        ckey = CLOCKS + table_id + token
        entry = read_clock_entry(tx, crypto, ckey) if len(token) == _TOKEN else None
        if entry is not None and entry[2] and _MICROS.pack(_micros(entry[0])) == t_us:
            tx.delete(ckey)
            dropped += 1
        tx.delete(key)
    return dropped


# -- checkpoints ----------------------------------------------------------------------------------
def _checkpoint_key(origin_id: bytes, region: str) -> bytes:
    return CHECKPOINTS + origin_id + region.encode()


def checkpoint(r: KVReader, origin_id: bytes, region: str) -> tuple[bool, bytes | None]:
    """(whether the row exists, the position applied; None: nothing applied yet)."""
    raw = r.get(_checkpoint_key(origin_id, region))
    if raw is None:
        return False, None
    raw = bytes(raw)
    return True, (raw or None)


def set_checkpoint(tx: KVTransaction, origin_id: bytes, region: str, pos: bytes | None) -> None:
    tx.put(_checkpoint_key(origin_id, region), CatalogRecord(pos or b""))


def drop_checkpoint(tx: KVTransaction, origin_id: bytes, region: str) -> None:
    tx.delete(_checkpoint_key(origin_id, region))


def drop_table(tx: KVTransaction, table_id: bytes) -> None:
    """Every replication row of a table being deleted: its queue, clocks and its queue's checkpoints."""
    for prefix in (QUEUE + table_id, CLOCKS + table_id, TOMBSTONES + table_id, CHECKPOINTS + table_id):
        while True:
            keys = [k for k, _ in tx.range(prefix, prefix_end(prefix), limit=2048)]
            if not keys:
                break
            for k in keys:
                tx.delete(k)


# -- offline checks (dynavault verify) ----------------------------------------------------------------------
def check_rows(r: KVReader, crypto: TableCrypto, table_id: bytes) -> tuple[int, list[tuple[str, str]]]:
    """Open every replication row of a table that can still matter: its queue after the lowest consumer
    checkpoint (each row chained to the one before it), every clock, and check the tombstone list and the
    checkpoints' shape; -> (blobs opened, [(problem, where)])."""
    problems: list[tuple[str, str]] = []
    opened = 0
    consumers: dict[str, bytes | None] = {}
    cp = CHECKPOINTS + table_id
    for key, raw in r.range(cp, prefix_end(cp)):
        region = bytes(key[len(cp):]).decode(errors="replace")
        pos = bytes(raw) or None
        if pos is not None and len(pos) != _POS.size:
            problems.append(("replication checkpoint is not a queue position", f"checkpoint {region}"))
            continue
        if not region.startswith("@"):  # "@region": this member's place in a peer's queue, not a consumer here
            consumers[region] = pos
    last = last_position(r, table_id)
    for region, pos in sorted(consumers.items()):
        if pos is not None and (last is None or pos > last):
            problems.append(("the replication queue ends before this consumer's checkpoint (rows removed)",
                             f"checkpoint {region}"))
    applied = [p for p in consumers.values() if p is not None and last is not None and p <= last]
    start = min(applied) if applied else None
    at = start
    try:
        for pos, _ in read_queue(r, table_id, crypto, start, 1 << 62):
            at = pos
            opened += 1
    except IntegrityError as exc:
        where = f"queue row after position {at.hex() if at else 'start'}"
        problems.append((f"replication queue row does not open or is out of its chain ({exc})", where))
    cl = CLOCKS + table_id
    for key, _ in r.range(cl, prefix_end(cl)):
        key = bytes(key)
        try:
            if len(key) != len(cl) + _TOKEN:
                raise IntegrityError("malformed key")
            read_clock_entry(r, crypto, key)
            opened += 1
        except (IntegrityError, ValueError) as exc:
            problems.append((f"replication clock does not open: damaged or moved ({exc})",
                             f"clock {key[len(cl):len(cl) + 6].hex()}…"))
    tp = TOMBSTONES + table_id
    for key, raw in r.range(tp, prefix_end(tp)):
        if len(key) != len(tp) + 8 + _TOKEN or bytes(raw):
            problems.append(("malformed tombstone list row", f"tombstone {bytes(key[len(tp):]).hex()[:28]}…"))
    return opened, problems


def table_ids(r: KVReader) -> set[bytes]:
    """Every table id that has replication rows."""
    return {tid for first in (QUEUE, CLOCKS, TOMBSTONES, CHECKPOINTS) for tid in distinct_segments(r, first, 16)}
