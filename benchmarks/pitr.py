#!/usr/bin/env python
"""Point-in-time recovery's cost: PutItem with PITR on vs off, history bytes per change, restore time.

    python benchmarks/pitr.py [--items 10000] [--connections 8] [--rounds 4] [--seconds 4] [--json-out F]

Starts ``dynavault serve`` on loopback with an empty data dir and loads two identical tables of ``--items``
1 KB items (the bench loader's item model); PITR is then enabled on one of them. PutItem (overwrites of random
existing items, each with a new value) then runs against the two tables in alternating windows of ``--seconds`` (off, on, off, on,
...; a neighbour's load on a shared machine hits both alike), measuring ops/s and the server's CPU per
PutItem (user + system, from /proc). Afterwards: the history's rows and sealed bytes per change (read from
the store file), against the item's size, and RestoreTableToPointInTime (latest restorable time) until
ACTIVE. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # this checkout's dynavault
from ab import cpu_seconds  # noqa: E402  (sibling script)
from backups import _load, _must, _report, _until_restored  # noqa: E402
from compare import _data_dir, _start, _stop  # noqa: E402

from dynavault.bench.client import Connection, Endpoint  # noqa: E402
from dynavault.bench.load import ItemModel, run_in_new_loop  # noqa: E402

OFF, ON = "backupbench", "pitrbench"  # backups._load creates the first; the second is copied from it
HISTORY = b"\x00\x00pitr\x00"


async def _puts(ep: Endpoint, table: str, model: ItemModel, items: int, connections: int, seconds: float,
                pgid: int) -> dict:
    stop = time.perf_counter() + seconds
    count = 0

    async def worker(seed: int) -> None:
        nonlocal count
        rnd = random.Random(seed)
        conn = Connection(ep)
        while time.perf_counter() < stop:
            # a new value each time: a PutItem that changes nothing writes no history (nor stream record)
            item = {**model.item(rnd.randrange(items)), "v": {"N": str(rnd.randrange(1 << 40))}}
            resp = await conn.call("PutItem", {"TableName": table, "Item": item})
            if resp.status != 200:
                raise RuntimeError(f"PutItem: {resp.status} {resp.body[:200]!r}")
            count += 1
        await conn.close()

    cpu0, t0 = cpu_seconds(pgid), time.perf_counter()
    await asyncio.gather(*(worker(random.randrange(1 << 30)) for _ in range(connections)))
    cpu, secs = cpu_seconds(pgid) - cpu0, time.perf_counter() - t0
    return {"ops_per_s": count / secs, "cpu_us_per_op": cpu / max(count, 1) * 1e6, "ops": count}


def _history(store: Path) -> tuple[int, int]:
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        rows, size = con.execute("SELECT count(*), coalesce(sum(length(v)), 0) FROM kv WHERE k >= ? AND k < ?",
                                 (HISTORY, HISTORY + b"\xff")).fetchone()
        keys = con.execute("SELECT coalesce(sum(length(k)), 0) FROM kv WHERE k >= ? AND k < ?",
                           (HISTORY, HISTORY + b"\xff")).fetchone()[0]
    finally:
        con.close()
    return rows, size + keys


async def _measure(ep: Endpoint, items: int, connections: int, rounds: int, seconds: float, pgid: int,
                   store: Path) -> dict:
    model = ItemModel(items, 1024, "pitr")
    out: dict = {"items": items, "item_size": 1024, "connections": connections, "rounds": rounds,
                 "window_seconds": seconds}
    await _load(ep, model, items, connections)
    c = Connection(ep)
    # the same items in a second table, loaded through PutItem's batch path too
    await _must(c, "CreateTable", {
        "TableName": ON, "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "sk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]})
    for start in range(0, items, 25):
        batch = [{"PutRequest": {"Item": model.item(i)}} for i in range(start, min(items, start + 25))]
        while batch:
            res = await _must(c, "BatchWriteItem", {"RequestItems": {ON: batch}})
            batch = (res.get("UnprocessedItems") or {}).get(ON) or []
    t0 = time.perf_counter()
    await _must(c, "UpdateContinuousBackups", {"TableName": ON, "PointInTimeRecoverySpecification": {
        "PointInTimeRecoveryEnabled": True}})
    out["enable_call_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    runs: dict[str, list[dict]] = {OFF: [], ON: []}
    await _puts(ep, OFF, model, items, connections, 1.0, pgid)  # warm-up
    for _ in range(rounds):
        for table in (OFF, ON):
            runs[table].append(await _puts(ep, table, model, items, connections, seconds, pgid))
    for table, label in ((OFF, "pitr_off"), (ON, "pitr_on")):
        out[label] = {"ops_per_s_median": round(statistics.median(r["ops_per_s"] for r in runs[table]), 1),
                      "cpu_us_per_put_median": round(statistics.median(r["cpu_us_per_op"] for r in runs[table])),
                      "ops_per_s_runs": [round(r["ops_per_s"]) for r in runs[table]]}
    out["pitr_put_throughput_ratio"] = round(out["pitr_on"]["ops_per_s_median"] / out["pitr_off"]["ops_per_s_median"],
                                             3)
    out["pitr_cpu_per_put_ratio"] = round(out["pitr_on"]["cpu_us_per_put_median"]
                                          / out["pitr_off"]["cpu_us_per_put_median"], 3)
    changes = sum(r["ops"] for r in runs[ON])
    rows, size = _history(store)
    out["history"] = {"changes": changes, "rows": rows, "bytes_keys_and_values": size,
                      "bytes_per_change": round(size / max(rows, 1), 1),
                      "bytes_per_million_changes_GB": round(size / max(rows, 1) * 1e6 / 1e9, 2)}
    d = await _must(c, "DescribeTable", {"TableName": ON})
    out["history"]["item_size_bytes"] = round(d["Table"]["TableSizeBytes"] / max(d["Table"]["ItemCount"], 1))
    out["history"]["per_change_vs_item"] = round(out["history"]["bytes_per_change"]
                                                 / out["history"]["item_size_bytes"], 3)
    t0 = time.perf_counter()
    await _must(c, "RestoreTableToPointInTime", {"SourceTableName": ON, "TargetTableName": ON + "-restored",
                                                 "UseLatestRestorableTime": True})
    out["restore_call_seconds"] = round(time.perf_counter() - t0, 2)  # replays (and checks) the history
    await _until_restored(c, ON + "-restored", t0, out)
    await c.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--work-dir", type=Path, default=None)
    ap.add_argument("--json-out", type=Path, default=None)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dv-pitr-", dir=a.work_dir))
    proc, url = _start("dynavault", work, None)
    try:
        result = run_in_new_loop(_measure(Endpoint(url), a.items, a.connections, a.rounds, a.seconds, proc.pid,
                                          _data_dir(work) / "tables.db"))
    finally:
        _stop(proc)
    return _report(work, result, ("point-in-time", "restore"), a.json_out)


if __name__ == "__main__":
    sys.exit(main())
