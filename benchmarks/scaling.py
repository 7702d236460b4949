#!/usr/bin/env python
"""GetItem latency and disk use as the table grows: one fresh dynavault per size, same bench run each time.

    python benchmarks/scaling.py [--sizes 10000,100000,1000000] [--duration 10] [--rounds 1] [--work-dir DIR]

For each size: start ``dynavault serve`` on loopback with an empty data dir, let the ``dynavault bench`` load
generator (in this process, as in ``compare.py``) load the items (BatchWriteItem, 8 connections) and run the
``get`` workload ``--rounds`` times back to back on the same table, stop the server (SQLite folds its WAL into
the database on close), then measure the data dir. Prints one Markdown row per size and round, with the
server's CPU per GetItem (user and system, from /proc). The first round starts right after the load, with the
node cache holding what the load left and the store's pages not yet mapped into the server; later rounds show
the steady state.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ab import cpu_times  # noqa: E402  (sibling scripts)
from compare import _start, _stop  # noqa: E402

from dynavault.bench import load  # noqa: E402

#: the store's files under compare._start's data dir (``dv-data-N`` for N workers; it was ``dv-data`` once, and
#: this script read 0 MB while it looked there)
_DB_FILES = "dv-data*/tables.db*"


def _bytes_under(path: Path, pattern: str) -> int:
    total = sum(f.stat().st_size for f in path.glob(pattern) if f.is_file())
    if not total:
        raise RuntimeError(f"no {pattern} under {path}: the data dir's name changed?")
    return total


def _measure(endpoint: str, pgid: int, n: int, a: argparse.Namespace) -> tuple[dict, list[dict]]:
    """Load ``n`` items, then run the get workload ``a.rounds`` times: (setup, one result per round)."""
    cfg = load.BenchConfig(endpoint=endpoint, workloads=("get",), duration=float(a.duration), items=n,
                           connections=int(a.connections), item_size=int(a.item_size), keep_table=True)
    runner = load._Runner(cfg)

    async def go() -> tuple[dict, list[dict]]:
        setup = await runner.setup()
        rounds = []
        for _ in range(a.rounds):
            u0, s0 = cpu_times(pgid)
            out = await runner.run_workload("get")
            u1, s1 = cpu_times(pgid)
            if out.get("status") != "ok" or not out.get("ops"):
                raise RuntimeError(f"get workload: {out}")
            out["user_us_per_op"] = round((u1 - u0) / out["ops"] * 1e6, 1)
            out["sys_us_per_op"] = round((s1 - s0) / out["ops"] * 1e6, 1)
            rounds.append(out)
        return setup, rounds

    return load.run_in_new_loop(go())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--duration", default="10")
    ap.add_argument("--connections", default="8")
    ap.add_argument("--item-size", default="1024")
    ap.add_argument("--rounds", type=int, default=1, help="get runs back to back on the loaded table")
    ap.add_argument("--work-dir", type=Path, default=None, help="where data dirs go (needs ~1.5 KB per item)")
    ap.add_argument("--json-out", type=Path, default=None)
    a = ap.parse_args()
    rows = []
    for n in (int(x) for x in a.sizes.split(",")):
        work = Path(tempfile.mkdtemp(prefix="dv-scaling-", dir=a.work_dir))
        try:
            proc, endpoint = _start("dynavault", work, None)
            try:
                print(f"{n} items: {endpoint}, {a.rounds} get round(s) of {a.duration} s", file=sys.stderr, flush=True)
                setup, rounds = _measure(endpoint, proc.pid, n, a)
                running = _bytes_under(work, _DB_FILES)
            finally:
                _stop(proc)
            stopped = _bytes_under(work, _DB_FILES)
            for i, g in enumerate(rounds, 1):
                rows.append({"items": n, "round": i, "load_s": setup["load_seconds"],
                             "load_items_per_s": setup["load_puts_per_s"], "get_ops_per_s": g["ops_per_s"],
                             "p50_ms": g["p50_ms"], "p99_ms": g["p99_ms"], "user_us_per_op": g["user_us_per_op"],
                             "sys_us_per_op": g["sys_us_per_op"], "disk_running": running,
                             "disk_stopped": stopped, "bytes_per_item": round(stopped / n, 1),
                             "verified": g.get("verified"), "verify_failures": g.get("verify_failures")})
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if a.json_out:
        a.json_out.write_text(json.dumps(rows, indent=2))
    print(f"\n{a.item_size}-byte items (one KEYS_ONLY GSI), {a.connections} connections, get for {a.duration} s\n")
    print("| items | load (items/s) | round | get ops/s | p50 ms | p99 ms | server CPU µs/get (user + sys) "
          "| disk after stop | bytes/item | x item size |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for x in rows:
        print(f"| {x['items']:,} | {x['load_s']:,.1f} s ({x['load_items_per_s']:,.0f}) | {x['round']} | "
              f"{x['get_ops_per_s']:,.0f} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | "
              f"{x['user_us_per_op']:.0f} + {x['sys_us_per_op']:.0f} | {x['disk_stopped'] / 1e6:,.1f} MB | "
              f"{x['bytes_per_item']:,.0f} | {x['bytes_per_item'] / int(a.item_size):.2f} |")
        if x["verify_failures"]:
            print(f"  ^ {x['verify_failures']} reads did not match what was written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
