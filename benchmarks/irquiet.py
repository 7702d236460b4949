#!/usr/bin/env python
"""Instructions per PutItem, GetItem and 20-item Query of the runtime's app driven in process, under callgrind,
with the runtime's periodic jobs stopped: figures that move little from run to run, for before/after claims of
small cuts on a loaded machine.

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=OUT/cg.out \\
        $(python -c 'import sys; print(sys.executable)') benchmarks/irquiet.py [--ops PutItem,GetItem,Query]
    python benchmarks/irquiet.py --report OUT/cg.out.*

Like ``irinproc.py`` (the bench's table with one GSI, ``--items`` items of 1 KB, SigV4 verified over every body),
plus: each operation draws its keys from a generator of its own (the same keys whichever operations run), and
the periodic jobs (sweeps, timers) are cancelled before the measured requests, so no timer work is counted.
The group-commit fsync thread is counted (all threads). One dump per operation (``OUT/cg.out.N``, its trigger
names the operation). ``--report`` prints per request the total and the part outside ``sqlite3_step``:
SQLite's own share moves by ~10k instructions a PutItem from run to run (when WAL checkpoints land), the rest
by a few thousand (heap layout: glibc's realloc). Run it from the tree to measure (its ``dynavault`` is the one
imported).

``--node-cache-bytes N`` bounds the opened-node cache's leaves (``NodeCache.max_bytes``) to N bytes once the
table is loaded: with ``--items 1000`` (~1.1 MB of leaves) and N = 262144, most GetItems open a leaf the cache
does not hold, as at 10^6 items with the default bound (what ``scaling.py`` measures at wall-clock scale).
``--node-cache-shape-bytes 4096`` as well: nor its root (a partition read for the first time, as in most of a
10-second run at 10^6 items).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

OPS = ("PutItem", "GetItem", "Query")


async def _run(args) -> None:
    from benchmarks.irinproc import loaded_app

    async with loaded_app("irquiet", args.items) as (rt, drv, model):
        rnds = {op: random.Random(n) for n, op in enumerate(OPS)}
        if args.node_cache_bytes is not None:
            cache = rt.components["dynamodb"].items.trees.node_cache
            cache.clear()
            cache.max_bytes = args.node_cache_bytes
            if args.node_cache_shape_bytes is not None and hasattr(cache, "shape_bytes"):
                cache.shape_bytes = args.node_cache_shape_bytes

        def payload(op: str) -> dict:
            i = rnds[op].randrange(args.items)
            if op == "PutItem":
                return {"TableName": "irquiet", "Item": model.item(i)}
            if op == "GetItem":
                return {"TableName": "irquiet", "Key": model.key(i)}
            return {"TableName": "irquiet", "KeyConditionExpression": "pk = :p",
                    "ExpressionAttributeValues": {":p": model.key(i)["pk"]}, "Limit": 20}

        ops = args.ops.split(",")
        for op in ops:
            for _ in range(args.warmup):
                await drv.call(*drv.request(op, payload(op))[::2])
        for task in rt._tasks:  # the periodic jobs: no timer work in the measured requests
            task.cancel()
        await asyncio.sleep(0.2)
        pid = str(os.getpid())
        for op in ops:
            todo = [drv.request(op, payload(op)) for _ in range(args.requests)]
            subprocess.run(["callgrind_control", "-z", pid], check=False, capture_output=True)
            for scope, _, body in todo:
                await drv.call(scope, body)
            subprocess.run(["callgrind_control", "-d", op, pid], check=False, capture_output=True)


def _report(files: list[str], requests: int) -> None:
    for f in files:
        trigger = re.search(r"Trigger: dump (\S+)", Path(f).read_text(errors="replace"))
        if trigger is None:
            continue  # the dump at exit, or not a dump of this script
        text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", f], check=True,
                              capture_output=True, text=True).stdout
        total = int(re.search(r"^\s*([\d,]+) .*PROGRAM TOTALS", text, re.M).group(1).replace(",", ""))
        m = re.search(r"^\s*([\d,]+) .*:sqlite3_step ", text, re.M)
        step = int(m.group(1).replace(",", "")) if m else 0
        print(f"{trigger.group(1)}: {total // requests:,} Ir/request ({(total - step) // requests:,} outside sqlite3_step)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", default=",".join(OPS))
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--items", type=int, default=400)
    ap.add_argument("--node-cache-bytes", type=int, default=None, help="bound of the node cache's leaves")
    ap.add_argument("--node-cache-shape-bytes", type=int, default=None,
                    help="with --node-cache-bytes: bound of the cache's inner nodes (where the cache has one)")
    ap.add_argument("--report", nargs="+", metavar="CALLGRIND_FILE", help="print the figures of these dumps")
    args = ap.parse_args()
    if args.report:
        _report(args.report, args.requests)
        return 0
    import uvloop

    uvloop.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
