#!/usr/bin/env python
"""GetItem latency and disk use as the table grows: one fresh dynavault per size, same bench run each time.

    python benchmarks/scaling.py [--sizes 10000,100000,1000000] [--duration 10] [--work-dir DIR]

For each size: start ``dynavault serve`` on loopback with an empty data dir, let ``dynavault bench`` load the
items (BatchWriteItem, 8 connections) and run the ``get`` workload, stop the server (SQLite folds its WAL
into the database on close), then measure the data dir. Prints one Markdown row per size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import _start, _stop  # noqa: E402  (sibling script)

#: the store's files under compare._start's data dir (``dv-data-N`` for N workers; it was ``dv-data`` once, and
#: this script read 0 MB while it looked there)
_DB_FILES = "dv-data*/tables.db*"


def _bytes_under(path: Path, pattern: str) -> int:
    total = sum(f.stat().st_size for f in path.glob(pattern) if f.is_file())
    if not total:
        raise RuntimeError(f"no {pattern} under {path}: the data dir's name changed?")
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--duration", default="10")
    ap.add_argument("--connections", default="8")
    ap.add_argument("--item-size", default="1024")
    ap.add_argument("--work-dir", type=Path, default=None, help="where data dirs go (needs ~1.5 KB per item)")
    ap.add_argument("--json-out", type=Path, default=None)
    a = ap.parse_args()
    rows = []
    for n in (int(x) for x in a.sizes.split(",")):
        work = Path(tempfile.mkdtemp(prefix="dv-scaling-", dir=a.work_dir))
        try:
            proc, endpoint = _start("dynavault", work, None)
            try:
                cmd = [sys.executable, "-m", "dynavault.cli", "bench", "--endpoint", endpoint, "--json",
                       "--workloads", "get", "--duration", a.duration, "--items", str(n),
                       "--connections", a.connections, "--item-size", a.item_size, "--keep-table"]
                print(f"{n} items: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
                p = subprocess.run(cmd, capture_output=True, text=True)
                if not p.stdout.strip():
                    raise RuntimeError(p.stderr[-500:])
                r = json.loads(p.stdout)
                running = _bytes_under(work, _DB_FILES)
            finally:
                _stop(proc)
            stopped = _bytes_under(work, _DB_FILES)
            g = r["workloads"]["get"]
            rows.append({"items": n, "load_s": r["setup"]["load_seconds"],
                         "load_items_per_s": r["setup"]["load_puts_per_s"], "get_ops_per_s": g["ops_per_s"],
                         "p50_ms": g["p50_ms"], "p99_ms": g["p99_ms"], "disk_running": running,
                         "disk_stopped": stopped, "bytes_per_item": round(stopped / n, 1),
                         "verified": r.get("verification")})
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if a.json_out:
        a.json_out.write_text(json.dumps(rows, indent=2))
    print(f"\n{a.item_size}-byte items (one KEYS_ONLY GSI), {a.connections} connections, get for {a.duration} s\n")
    print("| items | load (items/s) | get ops/s | p50 ms | p99 ms | disk after stop | bytes/item | x item size |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for x in rows:
        print(f"| {x['items']:,} | {x['load_s']:,.1f} s ({x['load_items_per_s']:,.0f}) | {x['get_ops_per_s']:,.0f} | "
              f"{x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['disk_stopped'] / 1e6:,.1f} MB | "
              f"{x['bytes_per_item']:,.0f} | {x['bytes_per_item'] / int(a.item_size):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
