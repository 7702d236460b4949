"""The partition directory: an authenticated list of the partition tokens of one (table, index).

Why: a partition is found by its root row's key, so without a list a deleted or renamed root looks exactly
like an empty partition (GetItem "not found", a short Scan, both 200). DESIGN.md invariant 4 asks the store
to tell "absent" from "missing". The directory is itself an encrypted B+tree of sealed nodes whose keys are
the tokens (values empty), kept under its own row prefix::

    b"D" ‖ table id (16) ‖ index id (u32 BE) ‖ node id (u64 BE)

sealed by the same codec as the table's nodes, with ``aad = FORMAT_VERSION ‖ row key`` (so a directory
node binds table id + index id + node id, and cannot be confused with a partition node, whose rows start
with ``b"T"``). Its leaves hold contiguous token ranges: token-prefix pages, so concurrent writers that
create partitions in different parts of the token space touch different rows (no single hot row).

Rules:
- the directory root exists for every (table, index) from the moment it is created (an empty directory is
  an empty sealed leaf, never "no row"): a missing root is an integrity error, not "no partitions";
- a partition is listed iff its root row exists; the change is made in the same store transaction as the
  partition's creation (first item) or removal (last item), so a PutItem into an existing partition never
  touches the directory;
- readers consult it only when a partition root is not found (a listed token then means the partition
  vanished: ``IntegrityError``) and Scan walks it in step with the store's partitions (any difference is an
  ``IntegrityError``).

Not detectable here (as for tree nodes): replacing a directory node by an older version of itself.
The directory sees tokens and sealed blobs only, like the rest of storage (invariant 2).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from dynavault.errors import IntegrityError
from dynavault.storage.kv.base import KVReader, KVTransaction, delete_prefix
from dynavault.storage.sealed import TOKEN_SIZE, NodeCodec

if TYPE_CHECKING:
    from dynavault.storage.trees import EncryptedTrees

__all__ = ["DIR_PREFIX", "PartitionDirectory", "directory_prefix"]

DIR_PREFIX = b"D"
#: directory leaves stay small: a new partition reseals one leaf (~100 tokens at most), not a big page
DIR_LEAF_BYTES = 2048


def directory_prefix(table_id: bytes, index_id: int | None = None) -> bytes:
    """Row prefix of a table's directories (``index_id`` None) or of one index's directory."""
    if type(table_id) is not bytes or len(table_id) != 16:
        raise TypeError("table_id must be 16 bytes (UUID bytes)")
    if index_id is None:
        return DIR_PREFIX + table_id
    if type(index_id) is not int or not 0 <= index_id < 2**32:
        raise TypeError("index_id must be an int in [0, 2**32)")
    return DIR_PREFIX + table_id + index_id.to_bytes(4, "big")


def _missing() -> IntegrityError:
    return IntegrityError("partition directory missing")


class PartitionDirectory:
    """Directory operations over a B+tree engine configured for directories (keeps an empty root)."""

    def __init__(self, engine: EncryptedTrees) -> None:
        self._t = engine

    def __repr__(self) -> str:
        return "PartitionDirectory()"

    # -- the directory of a (table, index) as a whole ---------------------------------------------------
    def create(self, tx: KVTransaction, codec: NodeCodec, table_id: bytes, index_id: int) -> None:
        """Make the (empty) directory of a new table or index; a no-op if it exists already."""
        pfx = directory_prefix(table_id, index_id)
        if not self._t._root_exists(tx, pfx):
            self._t._put_empty_root(tx, codec, pfx)

    def exists(self, r: KVReader, table_id: bytes, index_id: int) -> bool:
        return self._t._root_exists(r, directory_prefix(table_id, index_id))

    @staticmethod
    def drop(tx: KVTransaction, table_id: bytes, index_id: int | None = None) -> None:
        delete_prefix(tx, directory_prefix(table_id, index_id))

    # -- membership ------------------------------------------------------------------------------------
    @staticmethod
    def _split(part_pfx: bytes) -> tuple[bytes, bytes]:
        """A partition's row prefix (b"T" ‖ table ‖ index ‖ token) -> (directory prefix, token bytes)."""
        return DIR_PREFIX + part_pfx[1:21], part_pfx[21 : 21 + TOKEN_SIZE]

    def listed(self, r: KVReader, codec: NodeCodec, part_pfx: bytes) -> bool:
        dpfx, token = self._split(part_pfx)
        found, value = self._t._lookup(r, codec, dpfx, token)
        if not found:
            raise _missing()
        return value is not None

    def add(self, tx: KVTransaction, codec: NodeCodec, part_pfx: bytes) -> None:
        """A partition got its first item (its root row is being written in ``tx``)."""
        dpfx, token = self._split(part_pfx)
        place = self._t._slot_at(tx, codec, dpfx, token)
        if place is None:
            raise _missing()
        if place.value is not None:
            # listed, yet its root was not in the store: the partition vanished
            raise IntegrityError("partition listed in the directory is missing from the store")
        place.put(b"")

    def remove(self, tx: KVTransaction, codec: NodeCodec, part_pfx: bytes) -> None:
        """A partition lost its last item (its root row is being deleted in ``tx``)."""
        dpfx, token = self._split(part_pfx)
        place = self._t._slot_at(tx, codec, dpfx, token)
        if place is None:
            raise _missing()
        if place.value is None:
            raise IntegrityError("partition in the store is not listed in the directory")
        place.delete()

    def tokens(
        self, r: KVReader, codec: NodeCodec, table_id: bytes, index_id: int, *, lo: bytes | None,
        lo_inclusive: bool, hi: bytes | None, reverse: bool,
    ) -> Iterator[bytes]:
        """Listed tokens (raw) between the bounds (``hi`` exclusive), in order; IntegrityError if the
        directory itself is missing."""
        dpfx = directory_prefix(table_id, index_id)
        for key, _ in self._t._range(r, codec, dpfx, lo, lo_inclusive, hi, False, reverse):
            yield key
