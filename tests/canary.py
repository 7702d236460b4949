"""The at-rest scan (DESIGN.md invariant 1): grep every byte under a directory for canary values."""

from __future__ import annotations

import base64
import gzip
import sqlite3
import zlib
from pathlib import Path

from dynavault.storage.kv.base import prefix_end


def encodings(value: str | bytes) -> list[bytes]:
    """The forms a leaked value could take on disk: raw, base64 (as on the wire), UTF-16."""
    raw = value.encode() if isinstance(value, str) else value
    forms = [raw, base64.b64encode(raw)]
    if isinstance(value, str):
        forms.append(value.encode("utf-16-le"))
    return forms


def scan(paths: list[Path], canaries: list[str | bytes]) -> list[tuple[str, str]]:
    """-> [(canary, file)] for every canary found in any file under ``paths``."""
    needles = [(c, form) for c in canaries for form in encodings(c)]
    hits: list[tuple[str, str]] = []
    files: list[Path] = []
    for p in paths:
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files.extend(f for f in p.rglob("*") if f.is_file())
    for f in files:
        data = f.read_bytes()
        if data[:2] == b"\x1f\x8b":  # a compressed file hides what it holds: scan its content too
            try:
                data += gzip.decompress(data)
            except (OSError, EOFError, zlib.error):
                pass
        for canary, form in needles:
            if form in data:
                hits.append((repr(canary), str(f)))
    return hits


def rows_under(store: Path, prefix: bytes) -> int:
    """How many rows of the table store (``tables.db``) start with ``prefix``: proves a scan covered a kind of
    row (history, backup data) rather than nothing.

    Bounded by ``prefix_end``: ``prefix + b"\\xff"`` leaves out the keys whose next byte is 0xff — under the
    history prefix, every row of a table whose id starts with that byte (1 table in 256)."""
    end = prefix_end(prefix)
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        if end is None:
            return con.execute("SELECT count(*) FROM kv WHERE k >= ?", (prefix,)).fetchone()[0]
        return con.execute("SELECT count(*) FROM kv WHERE k >= ? AND k < ?", (prefix, end)).fetchone()[0]
    finally:
        con.close()


def rows_of(store: Path, prefix: bytes) -> list[tuple[bytes, bytes]]:
    """The rows of the table store (``tables.db``) whose keys start with ``prefix``, in key order."""
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return [(bytes(k), bytes(v)) for k, v in con.execute(
            "SELECT k, v FROM kv WHERE k >= ? AND k < ? ORDER BY k", (prefix, prefix_end(prefix)))]
    finally:
        con.close()


def set_row(store: Path, key: bytes, value: bytes | None) -> None:
    """Write (or with ``None`` delete) one row of the table store behind the server's back: a tamper test's
    attack, committed at once."""
    con = sqlite3.connect(store)
    try:
        with con:
            if value is None:
                con.execute("DELETE FROM kv WHERE k = ?", (key,))
            else:
                con.execute("UPDATE kv SET v = ? WHERE k = ?", (value, key))
                if con.execute("SELECT changes()").fetchone()[0] == 0:
                    con.execute("INSERT INTO kv (k, v) VALUES (?, ?)", (key, value))
    finally:
        con.close()


def flip_bit(value: bytes) -> bytes:
    """``value`` with one bit of its middle byte flipped: a stored blob damaged the way a disk might."""
    b = bytearray(value)
    b[len(b) // 2] ^= 0x01
    return bytes(b)
