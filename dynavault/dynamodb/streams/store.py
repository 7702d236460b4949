"""Where a table's streams live in the table store, and how a stream record is sealed.

Rows, all under ``layout.STREAM_PREFIX`` ‖ table id (16 bytes):

    b"s" ‖ stream no (u32)                          stream descriptor   CatalogRecord (JSON)
    b"h" ‖ stream no (u32) ‖ shard no (u32)         shard descriptor    CatalogRecord (JSON)
    b"r" ‖ stream no (u32) ‖ shard no (u32) ‖ seq (u64)   record       Sealed

Descriptors hold only what DynamoDB shows in plaintext anyway (ARN, label, view type, key schema, shard ids,
sequence-number ranges, times). A record's body (keys and images) is sealed with the table's stream key;
the AAD binds table id, stream label, shard id and sequence number, so a record swapped, moved to another
position, shard, stream or table fails to open (``IntegrityError``). Sequence numbers are contiguous within
a stream, so a record deleted from the middle of a shard is noticed too (``check_run``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import orjson

from dynavault.errors import IntegrityError
from dynavault.storage.kv.base import KVReader, KVStore, KVTransaction, delete_prefix, prefix_end
from dynavault.storage.sealed import CatalogRecord, Sealed

from ..layout import STREAM_PREFIX

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_RECORD_AAD = b"dv-stream-record-1\x00"
#: sequence numbers are shown as SEQ_BASE + n: always 21 decimal digits (DynamoDB's are 21 or more, and the
#: model's minimum length is 21), so their text order is their numeric order
SEQ_BASE = 10**20


def sequence_number(seq: int) -> str:
    return str(SEQ_BASE + seq)


def parse_sequence_number(text: str) -> int | None:
    """The position a client's SequenceNumber names, or None when it is not one of ours."""
    if not (isinstance(text, str) and text.isascii() and text.isdigit() and len(text) == 21):
        return None
    n = int(text) - SEQ_BASE
    return n if n >= 1 else None


@dataclass
class StreamInfo:
    no: int
    label: str
    arn: str
    table: str
    view: str
    key_schema: list[dict]
    created: float
    disabled: float | None = None


@dataclass
class ShardInfo:
    stream_no: int
    no: int
    id: str
    created: float
    #: first sequence number of the shard (known when it opens: the stream's next one)
    start: int
    parent: str | None = None
    #: last sequence number, once closed
    end: int | None = None
    closed: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return self.end is None


def _base(table_id: bytes) -> bytes:
    return STREAM_PREFIX + table_id


def _stream_key(table_id: bytes, stream_no: int) -> bytes:
    return _base(table_id) + b"s" + _U32.pack(stream_no)


def _shard_prefix(table_id: bytes, stream_no: int) -> bytes:
    return _base(table_id) + b"h" + _U32.pack(stream_no)


def _shard_key(table_id: bytes, stream_no: int, shard_no: int) -> bytes:
    return _shard_prefix(table_id, stream_no) + _U32.pack(shard_no)


def _record_prefix(table_id: bytes, stream_no: int, shard_no: int) -> bytes:
    return _base(table_id) + b"r" + _U32.pack(stream_no) + _U32.pack(shard_no)


def record_aad(table_id: bytes, label: str, shard_id: str, seq: int) -> bytes:
    return _RECORD_AAD + table_id + label.encode() + b"\x00" + shard_id.encode() + b"\x00" + _U64.pack(seq)


def _load(raw: bytes, cls, where: str):
    try:
        return cls(**orjson.loads(raw))
    except Exception:  # any shape of damage in a descriptor row
        raise IntegrityError(f"a stream {where} descriptor is damaged") from None


class StreamStore:
    """Stream rows of every table in one key-value store (reads take a reader: a store or a transaction)."""

    def __init__(self, kv: KVStore) -> None:
        self.kv = kv
        #: table id -> a counter bumped by every write of a stream or shard descriptor (even one later rolled
        #: back): the writer's cached view of a table's open shard is only used while this is unchanged
        self._generations: dict[bytes, int] = {}

    def generation(self, table_id: bytes) -> int:
        return self._generations.get(table_id, 0)

    def _changed(self, table_id: bytes) -> None:
        self._generations[table_id] = self._generations.get(table_id, 0) + 1

    def __repr__(self) -> str:
        return "<StreamStore>"

    # -- streams ------------------------------------------------------------------------------------
    def streams(self, r: KVReader, table_id: bytes) -> list[StreamInfo]:
        start = _base(table_id) + b"s"
        return [_load(raw, StreamInfo, "stream") for _, raw in r.range(start, prefix_end(start))]

    def stream_by_label(self, r: KVReader, table_id: bytes, label: str) -> StreamInfo | None:
        return next((s for s in self.streams(r, table_id) if s.label == label), None)

    def put_stream(self, tx: KVTransaction, table_id: bytes, info: StreamInfo) -> None:
        self._changed(table_id)
        tx.put(_stream_key(table_id, info.no), CatalogRecord(orjson.dumps(asdict(info))))

    def delete_stream(self, tx: KVTransaction, table_id: bytes, stream_no: int) -> None:
        self._changed(table_id)
        for shard in self.shards(tx, table_id, stream_no):
            self.delete_shard(tx, table_id, shard)
        tx.delete(_stream_key(table_id, stream_no))

    # -- shards -------------------------------------------------------------------------------------
    def shards(self, r: KVReader, table_id: bytes, stream_no: int) -> list[ShardInfo]:
        start = _shard_prefix(table_id, stream_no)
        return [_load(raw, ShardInfo, "shard") for _, raw in r.range(start, prefix_end(start))]

    def shard(self, r: KVReader, table_id: bytes, stream_no: int, shard_no: int) -> ShardInfo | None:
        raw = r.get(_shard_key(table_id, stream_no, shard_no))
        return _load(raw, ShardInfo, "shard") if raw is not None else None

    def current_shard(self, r: KVReader, table_id: bytes, stream_no: int) -> ShardInfo | None:
        """The newest shard of a stream (the open one while the stream is enabled)."""
        start = _shard_prefix(table_id, stream_no)
        row = next(iter(r.range(start, prefix_end(start), reverse=True, limit=1)), None)
        return _load(row[1], ShardInfo, "shard") if row is not None else None

    def put_shard(self, tx: KVTransaction, table_id: bytes, shard: ShardInfo) -> None:
        self._changed(table_id)
        tx.put(_shard_key(table_id, shard.stream_no, shard.no), CatalogRecord(orjson.dumps(asdict(shard))))

    def delete_shard(self, tx: KVTransaction, table_id: bytes, shard: ShardInfo) -> None:
        self._changed(table_id)
        delete_prefix(tx, _record_prefix(table_id, shard.stream_no, shard.no))
        tx.delete(_shard_key(table_id, shard.stream_no, shard.no))

    # -- records ------------------------------------------------------------------------------------
    def last_seq(self, r: KVReader, table_id: bytes, shard: ShardInfo) -> int | None:
        start = _record_prefix(table_id, shard.stream_no, shard.no)
        row = next(iter(r.range(start, prefix_end(start), reverse=True, limit=1)), None)
        return _U64.unpack(row[0][len(start):])[0] if row is not None else None

    def put_record(self, tx: KVTransaction, table_id: bytes, shard: ShardInfo, seq: int, sealed: Sealed) -> None:
        tx.put(_record_prefix(table_id, shard.stream_no, shard.no) + _U64.pack(seq), sealed)

    def records(self, r: KVReader, table_id: bytes, shard: ShardInfo, from_seq: int,
                limit: int | None) -> Iterator[tuple[int, Sealed]]:
        """(sequence number, sealed body) of a shard from ``from_seq`` on, in order."""
        prefix = _record_prefix(table_id, shard.stream_no, shard.no)
        for key, raw in r.range(prefix + _U64.pack(from_seq), prefix_end(prefix), limit=limit):
            if len(key) != len(prefix) + 8:
                raise IntegrityError("a stream record row has a key of the wrong length")
            yield _U64.unpack(key[len(prefix):])[0], Sealed(raw)

    def drop_table(self, tx: KVTransaction, table_id: bytes) -> None:
        """Every stream row of a table (DeleteTable): its records go with its keys."""
        self._changed(table_id)
        delete_prefix(tx, _base(table_id))

    def has_rows(self, r: KVReader, table_id: bytes) -> bool:
        start = _base(table_id)
        return next(iter(r.range(start, prefix_end(start), limit=1)), None) is not None


def check_run(expected: int, seq: int) -> None:
    """Records of a shard are numbered without gaps: one missing from the store is an integrity error, not
    a change that silently never happened."""
    if seq != expected:
        raise IntegrityError(f"stream record {expected} is missing from its shard")
