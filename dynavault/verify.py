"""``dynavault verify``: prove, offline and read-only, what a data directory holds.

Opens the table store and the KMS key store in SQLite's read-only mode (nothing is created or written, not
even a root key), unwraps every table's keys the way the server does (KMS ciphertext -> table key -> data
keys, through ``sse`` and ``kms`` code; locally with the root key file, or through ``--kms-endpoint``),
opens every sealed node of every partition and partition directory, checks each tree's shape (links,
ordering, depth), the directories against the partitions in the store, every item count against the
catalog, and scans every file under the data dir for each ``--canary`` in raw, base64 (3 alignments) and
hex (both cases). Exit status: 0 nothing wrong, 1 problems found, 2 could not run.
"""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from dynavault.config import Settings
from dynavault.dynamodb.catalog import STORE_FORMAT, TableMeta
from dynavault.dynamodb.layout import CATALOG_PREFIX, FORMAT_KEY, STATS_PREFIX, STREAM_PREFIX
from dynavault.dynamodb.replication import store as replication_store
from dynavault.dynamodb.streams.store import StreamStore, check_run, record_aad
from dynavault.errors import AWSError, IntegrityError, StartupError
from dynavault.offline import OfflineKms, OfflineStore
from dynavault.sse.key_port import KeyPortError
from dynavault.storage.directory import DIR_PREFIX
from dynavault.storage.kv.base import distinct_segments, prefix_end
from dynavault.storage.kv.sqlite import SqliteKV
from dynavault.storage.sealed import TOKEN_SIZE, PartitionToken
from dynavault.storage.trees import ROW_PREFIX, EncryptedTrees

_CHUNK = 1 << 20


@dataclass
class Report:
    data_dir: str
    tables: list[dict] = field(default_factory=list)
    blobs_checked: int = 0
    files_scanned: int = 0
    canaries: int = 0
    problems: list[dict] = field(default_factory=list)

    def problem(self, what: str, where: str) -> None:
        self.problems.append({"what": what, "where": where})

    def doc(self) -> dict:
        return {"data_dir": self.data_dir, "ok": not self.problems, "tables": self.tables,
                "blobs_checked": self.blobs_checked, "files_scanned": self.files_scanned,
                "canaries": self.canaries, "problems": self.problems}

    def text(self) -> str:
        out = [f"dynavault verify: {self.data_dir}", f"tables: {len(self.tables)}"]
        for t in self.tables:
            out.append(f"  {t['region']} {t['account']} {t['name']} (id {t['table_id']}): key {t['key_type']} "
                       f"{t['key_arn']}; items {t['items']} (catalog {t['catalog_items']}), "
                       f"partitions {t['partitions']}, indexes {len(t['indexes'])}, "
                       f"stream records {t.get('stream_records', 0)}")
        out.append(f"blobs checked: {self.blobs_checked}")
        out.append(f"files scanned: {self.files_scanned} for {self.canaries} canar{'y' if self.canaries == 1 else 'ies'}")
        out.append(f"problems: {len(self.problems)}")
        out += [f"  PROBLEM {p['where']}: {p['what']}" for p in self.problems]
        out.append("OK" if not self.problems else "NOT OK")
        return "\n".join(out)


# -- the store ----------------------------------------------------------------------------------------------
def _catalog(store: OfflineStore, report: Report) -> list[TableMeta]:
    kv = store.kv
    tables = []
    for key, raw in store.catalog():
        try:
            tables.append(TableMeta.from_record(raw))
        except Exception:  # any damage: reported, the rest is still checked
            report.problem("catalog record does not parse", key[len(CATALOG_PREFIX):].decode(errors="replace"))
    fmt = kv.get(FORMAT_KEY)
    if fmt != STORE_FORMAT:
        report.problem("store format record missing or unknown (a store without partition directories? "
                       "`dynavault upgrade` adds them)", "tables.db")
    return tables


def _stats(kv: SqliteKV) -> dict[str, int]:
    out = {}
    for key, raw in kv.range(STATS_PREFIX, prefix_end(STATS_PREFIX)):
        try:
            out[key[len(STATS_PREFIX):].decode()] = int.from_bytes(raw[:8], "big", signed=True)
        except UnicodeDecodeError:
            continue
    return out


def _node_ids(kv: SqliteKV, prefix: bytes) -> dict[bytes, set[int]]:
    """Node ids in the store under ``prefix`` (b"T"/b"D" ‖ table ‖ index), grouped by the bytes between the
    prefix and the node id (the token for partitions, b"" for a directory)."""
    out: dict[bytes, set[int]] = {}
    for k, _ in kv.range(prefix, prefix_end(prefix)):
        rest = k[len(prefix):]
        out.setdefault(rest[:-8], set()).add(int.from_bytes(rest[-8:], "big"))
    return out


def _check_index(kv: SqliteKV, trees: EncryptedTrees, codec, meta: TableMeta, index_id: int, label: str,
                 report: Report) -> tuple[int, int]:
    """-> (entries, partitions) of one (table, index); problems go to the report."""
    tid = meta.id_bytes
    idx = index_id.to_bytes(4, "big")
    where = f"table {meta.name} {label}"
    listed: list[bytes] = []
    dir_rows = _node_ids(kv, DIR_PREFIX + tid + idx).get(b"", set())
    try:
        listed, dir_seen = trees.check_directory(kv, codec, tid, index_id)
        report.blobs_checked += len(dir_seen)
        if dir_rows - dir_seen:
            report.problem(f"{len(dir_rows - dir_seen)} partition directory node(s) linked from nowhere", where)
    except IntegrityError as exc:
        report.problem(f"partition directory: {exc}", where)
    stored = _node_ids(kv, ROW_PREFIX + tid + idx)
    entries = 0
    for raw, nodes in stored.items():
        part = f"{where} partition {raw[:6].hex()}…"
        if len(raw) != TOKEN_SIZE:
            report.problem("a row key of the wrong length", part)
            continue
        try:
            n, seen = trees.check_partition(kv, codec, tid, index_id, PartitionToken(raw))
        except IntegrityError as exc:
            report.problem(str(exc), part)
            continue
        report.blobs_checked += len(seen)
        entries += n
        if nodes - seen:
            report.problem(f"{len(nodes - seen)} node(s) linked from nowhere", part)
    listed_set = set(listed)
    for raw in sorted(listed_set - stored.keys()):
        report.problem("partition listed in the directory is missing from the store", f"{where} partition "
                       f"{raw[:6].hex()}…")
    for raw in sorted(stored.keys() - listed_set):
        if len(raw) == TOKEN_SIZE:
            report.problem("partition in the store is not listed in the directory", f"{where} partition "
                           f"{raw[:6].hex()}…")
    return entries, len(stored)


def _check_table(store: OfflineStore, meta: TableMeta, stats: dict[str, int], report: Report) -> None:
    kv, trees, kms = store.kv, store.trees, store.kms
    sse = meta.sse
    entry = {"name": meta.name, "account": meta.account, "region": meta.region, "table_id": meta.table_id,
             "status": meta.status, "key_type": sse.get("mode", "?"), "key_arn": sse.get("key_arn", "?"),
             "items": None, "catalog_items": stats.get(meta.table_id, 0), "partitions": None, "indexes": []}
    if isinstance(kms, OfflineKms) and sse.get("key_arn"):
        entry["key_state"] = kms.key_state(sse["key_arn"])
    report.tables.append(entry)
    where = f"table {meta.name}"
    try:
        crypto = store.crypto(meta)
        codec = crypto.codec
    except (AWSError, KeyPortError) as err:
        report.problem(f"the table key cannot be opened ({err.code}: {err.message}); its data is unchecked", where)
        return
    except (IntegrityError, KeyError, ValueError, TypeError) as exc:
        report.problem(f"the wrapped data keys do not open ({exc or type(exc).__name__})", where)
        return
    report.blobs_checked += 1 + len(sse["data_keys"].get("node", {})) + 2  # table key, node/token/stream keys
    items, parts = _check_index(kv, trees, codec, meta, 0, "base table", report)
    entry["items"], entry["partitions"] = items, parts
    if items != entry["catalog_items"]:
        report.problem(f"{items} items in the store, the catalog counts {entry['catalog_items']}", where)
    for d in meta.local_indexes + meta.global_indexes:
        index_id = int(d["IndexId"])
        n, p = _check_index(kv, trees, codec, meta, index_id, f"index {d['IndexName']}", report)
        counted = stats.get(f"{meta.table_id}#{index_id}", 0)
        entry["indexes"].append({"name": d["IndexName"], "index_id": index_id, "items": n, "catalog_items": counted,
                                 "partitions": p})
        if n != counted and d.get("IndexStatus") == "ACTIVE":
            report.problem(f"{n} entries in the store, the catalog counts {counted}", f"{where} index {d['IndexName']}")
    entry["stream_records"] = _check_streams(kv, crypto, meta, report)
    opened, problems = replication_store.check_rows(kv, crypto, meta.id_bytes)
    report.blobs_checked += opened
    for what, at in problems:
        report.problem(what, f"{where} replication {at}")


def _check_streams(kv: SqliteKV, crypto, meta: TableMeta, report: Report) -> int:
    """Open every stream record of the table (bound to its table, stream, shard and sequence number) and check
    each shard's records are numbered without gaps; -> records checked."""
    streams = StreamStore(kv)
    n = 0
    try:
        for info in streams.streams(kv, meta.id_bytes):
            for shard in streams.shards(kv, meta.id_bytes, info.no):
                where = f"table {meta.name} stream {info.label} shard {shard.id}"
                expected = shard.start
                try:
                    for seq, sealed in streams.records(kv, meta.id_bytes, shard, shard.start, None):
                        check_run(expected, seq)
                        crypto.stream.open(record_aad(meta.id_bytes, info.label, shard.id, seq), sealed)
                        expected, n = seq + 1, n + 1
                    if shard.end is not None and expected <= shard.end:
                        check_run(expected, -1)
                except IntegrityError as exc:
                    report.problem(f"stream record: {exc}", where)
    except IntegrityError as exc:
        report.problem(str(exc), f"table {meta.name} streams")
    report.blobs_checked += n
    return n


def _orphans(kv: SqliteKV, tables: list[TableMeta], report: Report) -> None:
    """Tree or directory rows of a table id the catalog does not have (a table moved in from elsewhere)."""
    known = {m.id_bytes for m in tables}
    for first in (ROW_PREFIX, DIR_PREFIX, STREAM_PREFIX):
        for tid in distinct_segments(kv, first, 16):
            if tid not in known:
                label = str(uuid.UUID(bytes=tid)) if len(tid) == 16 else tid.hex()
                report.problem("rows of a table the catalog does not list", f"table id {label}")
    for tid in sorted(replication_store.table_ids(kv) - known):
        label = str(uuid.UUID(bytes=tid)) if len(tid) == 16 else tid.hex()
        report.problem("replication rows of a table the catalog does not list", f"table id {label}")


# -- canaries -----------------------------------------------------------------------------------------------
def canary_forms(text: str) -> dict[str, bytes]:
    """The byte strings a canary could appear as: raw UTF-8, hex (lower, upper), and base64 at each of the
    three alignments (only the characters that depend on the canary's bytes alone)."""
    raw = text.encode()
    forms = {"raw": raw, "hex": raw.hex().encode(), "HEX": raw.hex().upper().encode()}
    n = len(raw)
    for k in range(3):
        enc = base64.b64encode(b"\x00" * k + raw)
        start = -(-8 * k // 6)
        end = (8 * (k + n)) // 6
        forms[f"base64+{k}"] = enc[start:end]
    return forms


def _scan_files(root: Path, canaries: list[str], report: Report) -> None:
    needles = [(c, kind, form) for c in canaries for kind, form in canary_forms(c).items()]
    keep = max((len(f) for _, _, f in needles), default=1) - 1
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            report.files_scanned += 1
            found: set[tuple[str, str]] = set()
            try:
                with open(path, "rb") as fh:
                    tail = b""
                    while True:
                        chunk = fh.read(_CHUNK)
                        if not chunk:
                            break
                        window = tail + chunk
                        for c, kind, form in needles:
                            if form and form in window:
                                found.add((c, kind))
                        tail = window[-keep:] if keep else b""
            except OSError as exc:
                report.problem(f"cannot be read ({exc.strerror})", str(path))
                continue
            for c, kind in sorted(found):
                report.problem(f"canary {c!r} found ({kind})", str(path))


# -- the command --------------------------------------------------------------------------------------------
def run(settings: Settings, canaries: list[str]) -> Report:
    for c in canaries:
        if len(c.encode()) < 6:
            raise StartupError(f"canary {c!r} is shorter than 6 bytes: too short to tell from chance matches")
    store = OfflineStore(settings, readonly=True)
    report = Report(str(store.data), canaries=len(canaries))
    try:
        tables = _catalog(store, report)
        stats = _stats(store.kv)
        for meta in sorted(tables, key=lambda m: (m.account, m.region, m.name)):
            _check_table(store, meta, stats, report)
        _orphans(store.kv, tables, report)
    finally:
        store.close()
    _scan_files(store.data, canaries, report)
    return report


def main(settings: Settings, canaries: list[str], as_json: bool) -> int:
    report = run(settings, canaries)
    print(orjson.dumps(report.doc(), option=orjson.OPT_INDENT_2).decode() if as_json else report.text())
    return 0 if not report.problems else 1
