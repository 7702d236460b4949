"""Key store: SQLite under <data_dir>/kms. Holds key metadata, aliases, grants and *sealed* key material only.

Written on control-plane changes (create, state change, alias, grant, rotation), never on Encrypt/Decrypt.
``secure_delete`` overwrites freed pages, so a deleted key's sealed material does not linger in the file.
"""

from __future__ import annotations

import os
import pathlib
import sqlite3
import threading
from collections.abc import Callable, Iterator

import orjson

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (key_id TEXT PRIMARY KEY, doc BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS materials (
    key_id TEXT NOT NULL, material_index INTEGER NOT NULL, sealed BLOB NOT NULL,
    PRIMARY KEY (key_id, material_index));
CREATE TABLE IF NOT EXISTS aliases (
    account TEXT NOT NULL, region TEXT NOT NULL, name TEXT NOT NULL, doc BLOB NOT NULL,
    PRIMARY KEY (account, region, name));
CREATE TABLE IF NOT EXISTS grants (grant_id TEXT PRIMARY KEY, key_id TEXT NOT NULL, doc BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS deleted_keys (key_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS root_check (id INTEGER PRIMARY KEY CHECK (id = 1), sealed BLOB NOT NULL);
"""


class KeyStore:
    def __init__(self, directory: pathlib.Path | None, *, readonly: bool = False,
                 on_commit: Callable[[], None] | None = None) -> None:
        """``directory`` None: the store lives in this process's memory only (``--in-memory``)."""
        self._lock = threading.Lock()
        #: told after every committed write (other processes' key rings reload: storage.signal)
        self.on_commit = on_commit
        if directory is None:
            self.path = None
            self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            self._db.executescript(_SCHEMA)
            return
        directory = pathlib.Path(directory)
        self.path = directory / "keys.sqlite3"
        if readonly:  # `dynavault verify`: never creates or changes anything
            self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA query_only=1")
            return
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA journal_mode=DELETE")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, statements: list[tuple[str, tuple]]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if self.on_commit is not None:
            self.on_commit()

    # -- keys and material ---------------------------------------------------------------------------------

    def put_key(self, key_id: str, doc: dict, material: tuple[int, bytes] | None = None) -> None:
        ops = [("INSERT OR REPLACE INTO keys (key_id, doc) VALUES (?, ?)", (key_id, orjson.dumps(doc)))]
        if material is not None:
            ops.append(("INSERT INTO materials (key_id, material_index, sealed) VALUES (?, ?, ?)",
                        (key_id, material[0], material[1])))
        self._write(ops)

    def delete_key(self, key_id: str) -> None:
        self._write([
            ("DELETE FROM keys WHERE key_id = ?", (key_id,)),
            ("DELETE FROM materials WHERE key_id = ?", (key_id,)),
            ("DELETE FROM grants WHERE key_id = ?", (key_id,)),
            # a tombstone (id only) tells "this key was deleted" apart from a corrupted blob
            ("INSERT OR IGNORE INTO deleted_keys (key_id) VALUES (?)", (key_id,)),
        ])
        with self._lock:
            self._db.execute("VACUUM")  # drop the freed pages entirely: crypto-shredding

    def keys(self) -> Iterator[dict]:
        with self._lock:
            rows = self._db.execute("SELECT doc FROM keys").fetchall()
        for (doc,) in rows:
            yield orjson.loads(doc)

    def deleted_keys(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT key_id FROM deleted_keys")}

    def sealed_material(self, key_id: str, index: int) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT sealed FROM materials WHERE key_id = ? AND material_index = ?",
                                   (key_id, index)).fetchone()
        return row[0] if row else None

    # -- the root of trust's check value (kms/trust.py) ---------------------------------------------------

    def root_check(self) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT sealed FROM root_check WHERE id = 1").fetchone()
        return bytes(row[0]) if row else None

    def put_root_check(self, sealed: bytes) -> None:
        # OR IGNORE: two processes starting at once keep the first value (both were proven by the same root)
        self._write([("INSERT OR IGNORE INTO root_check (id, sealed) VALUES (1, ?)", (sealed,))])

    # -- aliases -------------------------------------------------------------------------------------------

    def put_alias(self, account: str, region: str, name: str, doc: dict) -> None:
        self._write([("INSERT OR REPLACE INTO aliases (account, region, name, doc) VALUES (?, ?, ?, ?)",
                      (account, region, name, orjson.dumps(doc)))])

    def delete_alias(self, account: str, region: str, name: str) -> None:
        self._write([("DELETE FROM aliases WHERE account = ? AND region = ? AND name = ?",
                      (account, region, name))])

    def aliases(self) -> Iterator[tuple[str, str, str, dict]]:
        with self._lock:
            rows = self._db.execute("SELECT account, region, name, doc FROM aliases").fetchall()
        for account, region, name, doc in rows:
            yield account, region, name, orjson.loads(doc)

    # -- grants --------------------------------------------------------------------------------------------

    def put_grant(self, grant_id: str, key_id: str, doc: dict) -> None:
        self._write([("INSERT OR REPLACE INTO grants (grant_id, key_id, doc) VALUES (?, ?, ?)",
                      (grant_id, key_id, orjson.dumps(doc)))])

    def delete_grant(self, grant_id: str) -> None:
        self._write([("DELETE FROM grants WHERE grant_id = ?", (grant_id,))])

    def grants(self) -> Iterator[tuple[str, dict]]:
        with self._lock:
            rows = self._db.execute("SELECT key_id, doc FROM grants").fetchall()
        for key_id, doc in rows:
            yield key_id, orjson.loads(doc)
