"""A backup's data: the source table's sealed base-table rows, copied byte for byte at one instant.

Why a copy of the sealed rows and not re-sealed items: the rows stay under the data keys (node keys, token
key) the table had at that instant, which the backup record keeps wrapped by the table key of that instant
(DESIGN.md: "backups keep the wrapped table key and data keys they were made under"), so a later key switch
never touches a backup, nothing is decrypted to take one (an archival backup is taken while the key is
unusable), and a backup costs one sequential copy. The copy lives under
``BACKUP_DATA_PREFIX ‖ backup id ‖ original row key``; read through ``BackupReader`` the rows are the
table's trees again, so the ordinary tree code (and its AAD: table id, index id, token, node id) reads them.

A blob moved from another table fails its AAD; one swapped in from another backup of the same table
would not (same place, same keys), so every backup also keeps a manifest: the number of rows and a SHA-256
over them in key order, sealed (AES-GCM, AAD = backup id ‖ table id) under the table's stream data key. A
restore checks it before it creates anything.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import orjson

from dynavault.errors import IntegrityError
from dynavault.storage.directory import directory_prefix
from dynavault.storage.kv.base import KVStore, delete_prefix, prefix_end
from dynavault.storage.nodes import row_prefix
from dynavault.storage.sealed import Sealed

from ..item_store import BASE
from ..layout import BACKUP_DATA_PREFIX

if TYPE_CHECKING:
    from dynavault.sse.crypto import TableCrypto
    from dynavault.storage.kv.base import KVReader, KVTransaction

_LEN = struct.Struct(">I")
_MANIFEST_AAD = b"dv-backup-manifest-1"
#: rows per store transaction while copying: each holds the write lock for a moment only
COPY_BATCH = 64


def data_prefix(backup_id: str) -> bytes:
    return BACKUP_DATA_PREFIX + bytes.fromhex(backup_id)


class BackupReader:
    """A backup's rows under their original keys: what the tree code reads a backup through."""

    __slots__ = ("_r", "_p", "_end")

    def __init__(self, r: KVReader, prefix: bytes) -> None:
        self._r = r
        self._p = prefix
        self._end = prefix_end(prefix)

    def __repr__(self) -> str:
        return "BackupReader()"

    def get(self, key: bytes) -> bytes | None:
        return self._r.get(self._p + key)

    def range(self, lo: bytes, hi: bytes | None, *, reverse: bool = False,
              limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        n = len(self._p)
        end = self._p + hi if hi is not None else self._end
        return ((k[n:], v) for k, v in self._r.range(self._p + lo, end, reverse=reverse, limit=limit))


class Digest:
    """Rows in key order -> (count, bytes, SHA-256): what the manifest seals and a restore re-checks."""

    __slots__ = ("_h", "rows", "bytes")

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.rows = 0
        self.bytes = 0

    def add(self, key: bytes, value: bytes) -> None:
        h = self._h
        h.update(_LEN.pack(len(key)))
        h.update(key)
        h.update(_LEN.pack(len(value)))
        h.update(value)
        self.rows += 1
        self.bytes += len(value)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def source_rows(src: KVReader, table_id: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The base table's rows (partition directory, then partition nodes: key order, as 'D' < 'T')."""
    for pfx in (directory_prefix(table_id, BASE), row_prefix(table_id, BASE)):
        yield from src.range(pfx, prefix_end(pfx))


def copy_rows(src: KVReader, table_id: bytes, backup_id: str,
              write: Callable[[list[tuple[bytes, Sealed]]], None], batch: int = COPY_BATCH) -> Digest:
    """Copy the table's rows from ``src`` (a snapshot) into the backup, ``batch`` rows per ``write``."""
    dest = data_prefix(backup_id)
    digest = Digest()
    rows: list[tuple[bytes, Sealed]] = []
    for key, value in source_rows(src, table_id):
        value = bytes(value)
        digest.add(key, value)
        rows.append((dest + key, Sealed(value)))
        if len(rows) >= batch:
            write(rows)
            rows = []
    if rows:
        write(rows)
    return digest


def batch_writer(kv: KVStore, check: Callable[[], None]) -> Callable[[list], None]:
    """What a copy does with each batch of rows: ``check`` (raises when the server stops), one store
    transaction, then a sync. Under group commit a request's answer waits for an fsync of the WAL that covers
    everything written before it: syncing the copy's own batches keeps that fsync small (without it, PutItems
    during a 10^5-item backup waited up to ~2 s for one fsync of the whole copy)."""
    def write(rows: list) -> None:
        check()
        with kv.transaction() as tx:
            for key, value in rows:
                tx.put(key, value)
        kv.sync()

    return write


def check_rows(r: KVReader, backup_id: str) -> Digest:
    digest = Digest()
    for key, value in BackupReader(r, data_prefix(backup_id)).range(b"", None):
        digest.add(key, bytes(value))
    return digest


def drop_data(tx: KVTransaction, backup_id: str) -> None:
    delete_prefix(tx, data_prefix(backup_id))


# -- the manifest ---------------------------------------------------------------------------------------------
def _aad(backup_id: str, table_id: bytes) -> bytes:
    return _MANIFEST_AAD + bytes.fromhex(backup_id) + table_id


def seal_manifest(crypto: TableCrypto, backup_id: str, digest: Digest) -> str:
    body = orjson.dumps({"rows": digest.rows, "bytes": digest.bytes, "sha256": digest.hexdigest()})
    return base64.b64encode(crypto.stream.seal(_aad(backup_id, crypto.table_id), body).raw).decode()


def verify(r: KVReader, rec: dict, crypto: TableCrypto | None) -> None:
    """Raise IntegrityError unless the backup's rows are exactly the ones it was sealed with.

    An archival backup (taken while the key was unusable) has no sealed manifest, only the plain digest
    recorded beside it: it catches a damaged or lost row, not a deliberate swap with a matching record."""
    found = check_rows(r, rec["BackupId"])
    if rec.get("manifest") and crypto is not None:
        try:
            raw = base64.b64decode(rec["manifest"], validate=True)
        except ValueError:
            raise IntegrityError("backup manifest is damaged") from None
        want = orjson.loads(crypto.stream.open(_aad(rec["BackupId"], crypto.table_id), Sealed(raw)))
    else:
        want = rec.get("digest") or {}
    if (found.rows, found.hexdigest()) != (want.get("rows"), want.get("sha256")):
        raise IntegrityError("backup rows do not match the backup's manifest")
