#!/usr/bin/env python
"""Backup and restore of a 10^5 x 1 KB table, and PutItem throughput while a backup runs.

    python benchmarks/backups.py [--items 100000] [--connections 8] [--work-dir DIR] [--json-out F]

Starts ``dynavault serve`` on loopback with an empty data dir, loads the items (BatchWriteItem, the bench
loader's item model), then measures in this order: PutItem for 6 s without a backup (ops/s and the longest
single PutItem); PutItem again while CreateBackup runs, from the call until DescribeBackup says AVAILABLE
(ops/s inside that window, longest PutItem inside it); the backup time with no load; RestoreTableFromBackup
until DescribeTable says ACTIVE. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # this checkout's dynavault
from compare import _start, _stop  # noqa: E402  (sibling script)

from dynavault.bench.client import Connection, Endpoint  # noqa: E402
from dynavault.bench.load import ItemModel, run_in_new_loop  # noqa: E402

TABLE = "backupbench"


async def _must(c: Connection, op: str, payload: dict) -> dict:
    resp = await c.call(op, payload)
    if resp.status != 200:
        raise RuntimeError(f"{op}: {resp.status} {resp.body[:300]!r}")
    return resp.json()


async def _load(ep: Endpoint, model: ItemModel, items: int, connections: int) -> float:
    c = Connection(ep)
    await _must(c, "CreateTable", {
        "TableName": TABLE, "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "sk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]})
    await c.close()
    todo = iter(range(items))
    t0 = time.perf_counter()

    async def loader() -> None:
        conn = Connection(ep)
        while True:
            batch = [{"PutRequest": {"Item": model.item(i)}} for i in itertools.islice(todo, 25)]
            if not batch:
                break
            while batch:
                out = await _must(conn, "BatchWriteItem", {"RequestItems": {TABLE: batch}})
                batch = (out.get("UnprocessedItems") or {}).get(TABLE) or []
        await conn.close()

    await asyncio.gather(*(loader() for _ in range(connections)))
    return time.perf_counter() - t0


async def _puts(ep: Endpoint, model: ItemModel, items: int, connections: int, stop: asyncio.Event,
                log: list[tuple[float, float]]) -> None:
    """PutItem (overwrites of random existing items) until ``stop``; log (finish time, latency) per call."""

    async def worker(seed: int) -> None:
        rnd = random.Random(seed)
        conn = Connection(ep)
        while not stop.is_set():
            item = model.item(rnd.randrange(items))
            t0 = time.perf_counter()
            resp = await conn.call("PutItem", {"TableName": TABLE, "Item": item})
            t1 = time.perf_counter()
            if resp.status != 200:
                raise RuntimeError(f"PutItem: {resp.status} {resp.body[:200]!r}")
            log.append((t1, t1 - t0))
        await conn.close()

    await asyncio.gather(*(worker(k) for k in range(connections)))


def _window(log: list[tuple[float, float]], lo: float, hi: float) -> dict:
    inside = [lat for t, lat in log if lo <= t <= hi]
    return {"ops": len(inside), "seconds": round(hi - lo, 3), "ops_per_s": round(len(inside) / (hi - lo), 1),
            "max_put_ms": round(max(inside) * 1000, 1) if inside else None,
            "p99_put_ms": round(sorted(inside)[int(len(inside) * 0.99)] * 1000, 1) if inside else None}


async def _backup(c: Connection, name: str, calls: list[float] | None = None) -> tuple[str, float]:
    t0 = time.perf_counter()
    arn = (await _must(c, "CreateBackup", {"TableName": TABLE, "BackupName": name}))["BackupDetails"]["BackupArn"]
    if calls is not None:
        calls.append(time.perf_counter() - t0)
    while True:
        d = await _must(c, "DescribeBackup", {"BackupArn": arn})
        if d["BackupDescription"]["BackupDetails"]["BackupStatus"] == "AVAILABLE":
            return arn, time.perf_counter() - t0
        await asyncio.sleep(0.02)


async def _measure(ep: Endpoint, items: int, connections: int) -> dict:
    model = ItemModel(items, 1024, "bk")
    out: dict = {"items": items, "item_size": 1024, "connections": connections}
    out["load_seconds"] = round(await _load(ep, model, items, connections), 1)
    c = Connection(ep)
    # PutItem alone
    log: list[tuple[float, float]] = []
    stop = asyncio.Event()
    task = asyncio.create_task(_puts(ep, model, items, connections, stop, log))
    await asyncio.sleep(1.0)
    lo = time.perf_counter()
    await asyncio.sleep(6.0)
    hi = time.perf_counter()
    stop.set()
    await task
    out["put_without_backup"] = _window(log, lo, hi)
    # PutItem while a backup runs
    log = []
    stop = asyncio.Event()
    task = asyncio.create_task(_puts(ep, model, items, connections, stop, log))
    await asyncio.sleep(1.0)
    lo = time.perf_counter()
    arn, secs = await _backup(c, "under-load")
    hi = time.perf_counter()
    await asyncio.sleep(0.5)
    stop.set()
    await task
    out["backup_seconds_under_put_load"] = round(secs, 2)
    out["put_during_backup"] = _window(log, lo, hi)
    out["put_during_backup_vs_without"] = round(out["put_during_backup"]["ops_per_s"]
                                                / out["put_without_backup"]["ops_per_s"], 3)
    # backup alone, then restore
    calls: list[float] = []
    _, secs = await _backup(c, "idle", calls)
    out["backup_seconds_idle"] = round(secs, 2)
    # the synchronous part of CreateBackup (key check, snapshot pinned, record written): what writes wait for
    out["create_backup_call_ms"] = round(calls[0] * 1000, 1)
    t0 = time.perf_counter()
    await _must(c, "RestoreTableFromBackup", {"TargetTableName": TABLE + "-restored", "BackupArn": arn})
    # the synchronous part: key check, the backup's rows against its manifest, CreateTable
    out["restore_call_seconds"] = round(time.perf_counter() - t0, 2)
    await _until_restored(c, TABLE + "-restored", t0, out)
    await c.close()
    return out


async def _until_restored(c: Connection, table: str, t0: float, out: dict) -> None:
    """Waits for the restored table to be ACTIVE; notes the seconds since ``t0`` and its item count."""
    while True:
        d = await _must(c, "DescribeTable", {"TableName": table})
        if d["Table"]["TableStatus"] == "ACTIVE":
            break
        await asyncio.sleep(0.1)
    out["restore_seconds"] = round(time.perf_counter() - t0, 2)
    out["restored_item_count"] = d["Table"]["ItemCount"]


def _report(work: Path, result: dict, words: tuple[str, ...], json_out: Path | None) -> int:
    """Adds the server log's lines naming any of ``words``, prints the result and writes it to ``json_out``."""
    log = (work / "dynavault.log").read_text(errors="replace")
    result["server_log"] = [line for line in log.splitlines() if any(w in line for w in words)]
    text = json.dumps(result, indent=2)
    print(text)
    if json_out:
        json_out.write_text(text)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--work-dir", type=Path, default=None)
    ap.add_argument("--json-out", type=Path, default=None)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dv-backups-", dir=a.work_dir))
    proc, url = _start("dynavault", work, None)
    try:
        result = run_in_new_loop(_measure(Endpoint(url), a.items, a.connections))
    finally:
        _stop(proc)
    return _report(work, result, ("backup", "restore"), a.json_out)


if __name__ == "__main__":
    sys.exit(main())
