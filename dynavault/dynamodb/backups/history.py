"""Point-in-time history: every item change of a table with PITR on, kept for its recovery period.

A change subscriber (``HistoryWriter``) appends one row per change inside the change's own store
transaction, so a change never commits without its history row, nor a row without its change. A row is

    PITR_PREFIX ‖ table id (16) ‖ position (12: microseconds since the epoch, then a counter)
        -> AES-GCM(stream key of the table, body = {"n": new item} or {"k": key of a deleted item})

The position is plaintext on purpose: the store already sees when rows change, and it lets the pruning sweep
drop history older than the recovery period by key range, without any key (it runs while a key is disabled
too). Positions only grow per table (a clock that steps back reuses the last microsecond with a higher
counter), so key order is commit order. The AAD binds the table id, the row's position and the position of
the row before it, so a row moved, replayed elsewhere or removed from the middle of the chain fails to open
(an IntegrityError, never a wrong item). A restore reads from a base snapshot's position onwards (see
``pitr.py``); what it cannot see is rows cut off the end of the chain, which the catalog does not count.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import orjson

from dynavault.storage.kv.base import delete_prefix, prefix_end
from dynavault.storage.sealed import Sealed

from ..keys import key_of_item
from ..layout import PITR_PREFIX

if TYPE_CHECKING:
    from dynavault.sse.crypto import TableCrypto
    from dynavault.storage.kv.base import KVReader, KVTransaction

    from ..catalog import TableMeta
    from ..item_store import ItemChange

_POS = struct.Struct(">QI")
POS_LEN = _POS.size
_AAD = b"dv-pitr-history-1"


def enabled(meta: TableMeta) -> dict | None:
    """The table's PITR state while PITR is on, else None."""
    st = meta.extra.get("pitr")
    return st if st and st.get("on") else None


def table_prefix(table_id: bytes) -> bytes:
    return PITR_PREFIX + table_id


def position(t_us: int, n: int = 0) -> bytes:
    return _POS.pack(t_us, n)


def position_time(pos: bytes) -> float:
    return _POS.unpack(pos)[0] / 1_000_000


def micros(t: float) -> int:
    return int(round(t * 1_000_000))


def last_position(r: KVReader, table_id: bytes) -> bytes | None:
    p = table_prefix(table_id)
    for key, _ in r.range(p, prefix_end(p), reverse=True, limit=1):
        return bytes(key[len(p):])
    return None


def next_position(last: bytes | None, now: float) -> bytes:
    t = micros(now)
    if last is not None:
        lt, ln = _POS.unpack(last)
        if t <= lt:
            return _POS.pack(lt, ln + 1)
    return _POS.pack(t, 0)


def _aad(table_id: bytes, pos: bytes, prev: bytes | None) -> bytes:
    return _AAD + table_id + pos + (prev or b"")


def seal_row(crypto: TableCrypto, pos: bytes, prev: bytes | None, change: ItemChange) -> Sealed:
    body = {"n": change.new} if change.new is not None else {"k": change.keys}
    return crypto.stream.seal(_aad(crypto.table_id, pos, prev), orjson.dumps(body))


class HistoryWriter:
    """The change subscriber: one sealed row per change of a table whose PITR is on."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def __repr__(self) -> str:
        return "<HistoryWriter>"

    def in_transaction(self, tx: KVTransaction, change: ItemChange, crypto: TableCrypto) -> None:
        meta = change.table
        if enabled(meta) is None or change.old == change.new:
            return
        tid = meta.id_bytes
        # One reverse seek per change (the chain's last link); measured in the PITR note of the README.
        prev = last_position(tx, tid)
        pos = next_position(prev, self.clock())
        tx.put(table_prefix(tid) + pos, seal_row(crypto, pos, prev, change))

    def committed(self, changes: Sequence[ItemChange]) -> None:
        pass


def replay(r: KVReader, table_id: bytes, crypto: TableCrypto, after: bytes | None,
           until: float | None) -> Iterator[tuple[bytes, dict]]:
    """(position, body) of the rows after position ``after`` (None: from the first) up to time ``until``
    (inclusive; None: all), each opened and checked to follow the one before."""
    p = table_prefix(table_id)
    lo = p + after + b"\x00" if after is not None else p
    hi = p + _POS.pack(micros(until) + 1, 0) if until is not None else prefix_end(p)
    prev = after
    for key, raw in r.range(lo, hi):
        pos = bytes(key[len(p):])
        body = orjson.loads(crypto.stream.open(_aad(table_id, pos, prev), Sealed(bytes(raw))))
        yield pos, body
        prev = pos


def changes(r: KVReader, source: TableMeta, crypto: TableCrypto, after: bytes | None,
            until: float | None) -> dict[tuple[bytes, bytes], dict | None]:
    """Each item's last state in the history window: key -> new item, or None where it was deleted."""
    out: dict[tuple[bytes, bytes], dict | None] = {}
    for _, body in replay(r, source.id_bytes, crypto, after, until):
        new = body.get("n")
        hkey, skey, _ = key_of_item(source, new if new is not None else body["k"])
        out[(hkey, skey)] = new
    return out


def drop_before(tx: KVTransaction, table_id: bytes, pos: bytes) -> int:
    """Delete the table's history before position ``pos``; -> rows deleted. The row at ``pos`` stays: a base
    folds it in, but it is the link the next row is chained to (a write right after the pruning would
    otherwise chain to nothing, and a restore from that base would refuse the history as damaged)."""
    p = table_prefix(table_id)
    end = p + pos
    n = 0
    while True:
        keys = [k for k, _ in tx.range(p, end, limit=512)]
        if not keys:
            return n
        for k in keys:
            tx.delete(k)
        n += len(keys)


def drop_all(tx: KVTransaction, table_id: bytes) -> None:
    delete_prefix(tx, table_prefix(table_id))


def size(r: KVReader, table_id: bytes) -> tuple[int, int]:
    """(rows, bytes of sealed values) of a table's history."""
    p = table_prefix(table_id)
    rows = total = 0
    for _, v in r.range(p, prefix_end(p)):
        rows += 1
        total += len(v)
    return rows, total
