#!/usr/bin/env python
"""Instructions per changing PutItem of the runtime's app driven in process, on three tables set up alike: a plain
table, one with a NEW_AND_OLD_IMAGES stream, and one with a same-server replica in us-west-2 (in one process the
replica is written in the origin's transaction: replication/fold.py). The gap between the last two is what
replication itself costs a write; between the first two, what the stream every member must have costs. A fourth
figure, ``queued``, is the replicated table with the fold off: what the origin's write costs when the replica is
written elsewhere (a member in another server gets a queue row instead; with the jobs cancelled nothing here
applies it, so this is the origin's share only); ``job`` is the other share: the replication job then applying
those rows to the replica, a batch of up to 256 to a transaction (per queued put, with ``--requests``).

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=OUT/cg.out \\
        $(python -c 'import sys; print(sys.executable)') benchmarks/irglobal.py [--requests 100]
    python benchmarks/irquiet.py --report OUT/cg.out.* --requests 100

    python benchmarks/irglobal.py --cpu [--rounds 4 --requests 400]    # CPU seconds per put, no valgrind

Like ``irquiet.py``: the bench's items (1 KB, one GSI; ``--items``), SigV4 verified over every body, every put
changes its item (an identical rewrite writes nothing to replicate), the periodic jobs (the replication job
included: the fold needs none) cancelled before the measured requests; one dump per table (its trigger names
it: ``plain``, ``stream``, ``replicated``, ``queued``, ``job``). ``--cpu`` instead times ``--rounds`` alternating segments
of each with the process's CPU clock (the fsync thread included), jobs running (so ``queued`` there includes
the replication job's applying whatever it applied meanwhile). Run it from the tree to measure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.irinproc import loaded_app  # noqa: E402
from dynavault.bench.load import GSI_NAME  # noqa: E402
from dynavault.dynamodb.replication import store as replication_store  # noqa: E402

TABLES = {"plain": "irglobal", "stream": "irglobal-stream", "replicated": "irglobal-repl",
          "queued": "irglobal-repl"}


async def _run(args) -> None:
    async with loaded_app(TABLES["plain"], args.items) as (rt, drv, model):
        db = rt.components["dynamodb"]
        # the fold writes a replica only while its table key is cached (it never calls KMS in a transaction);
        # callgrind's slowdown outlasts the 300 s refresh, and the jobs that would refresh it are stopped
        db.keys.refresh_seconds = 1e9
        must = drv.must

        schema = {"BillingMode": "PAY_PER_REQUEST",
                  "AttributeDefinitions": [{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gk")],
                  "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                  "GlobalSecondaryIndexes": [{"IndexName": GSI_NAME, "Projection": {"ProjectionType": "KEYS_ONLY"},
                                              "KeySchema": [{"AttributeName": "gk", "KeyType": "HASH"},
                                                            {"AttributeName": "sk", "KeyType": "RANGE"}]}]}
        stream = {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}}
        for kind, extra in (("stream", stream), ("replicated", {})):
            await must("CreateTable", dict(schema, TableName=TABLES[kind], **extra))
            for start in range(0, args.items, 25):
                await must("BatchWriteItem", {"RequestItems": {TABLES[kind]: [
                    {"PutRequest": {"Item": model.item(i)}} for i in range(start, min(args.items, start + 25))]}})
        await must("UpdateTable", {"TableName": TABLES["replicated"],
                                   "ReplicaUpdates": [{"Create": {"RegionName": "us-west-2"}}]})
        while not all(r.get("ReplicaStatus") == "ACTIVE" for r in
                      (await must("DescribeTable", {"TableName": TABLES["replicated"]}))["Table"].get("Replicas") or [{}]):
            await asyncio.sleep(0.1)
        rnd = random.Random(7)

        def requests(kind: str, n: int) -> list:
            out = []
            for _ in range(n):
                item = model.item(rnd.randrange(args.items))
                item["w"] = {"N": str(rnd.getrandbits(32))}
                out.append(drv.request("PutItem", {"TableName": TABLES[kind], "Item": item}))
            return out

        async def send(todo: list) -> None:
            for scope, _, body in todo:
                status, resp = await drv.call(scope, body)
                if status != 200:
                    raise RuntimeError(f"PutItem: {status} {resp[:300]!r}")

        writer = next(s for s in db.items.subscribers if hasattr(s, "fold"))
        fold = writer.fold
        origin = next(m for m in db.catalog.all() if m.name == TABLES["replicated"] and m.region == "us-east-1")

        async def send_as(kind: str, todo: list) -> None:
            # "queued": the replicated table with the fold off, as for a member in another server (or with
            # workers): the origin writes a queue row instead of the replica
            writer.fold = None if kind == "queued" else fold
            with db.items.read() as r:
                before = replication_store.last_position(r, origin.id_bytes)
            try:
                await send(todo)
            finally:
                writer.fold = fold
            with db.items.read() as r:
                queued = replication_store.last_position(r, origin.id_bytes) != before
            if queued != (kind == "queued"):
                raise RuntimeError(f"{kind}: the writes were {'' if queued else 'not '}queued")

        for kind in TABLES:
            await send_as(kind, requests(kind, args.warmup))
        if args.cpu:
            cpu = dict.fromkeys(TABLES, 0.0)
            for r in range(args.rounds):
                for kind in (list(TABLES) if r % 2 == 0 else list(TABLES)[::-1]):
                    todo = requests(kind, args.requests)
                    t0 = time.process_time()
                    await send_as(kind, todo)
                    cpu[kind] += time.process_time() - t0
            n = args.rounds * args.requests
            for kind in TABLES:
                print(f"{kind}: {cpu[kind] / n * 1e6:,.0f} µs CPU/put, {100 * cpu['plain'] / cpu[kind]:.1f} % of plain's "
                      f"rate, {100 * cpu['stream'] / cpu[kind]:.1f} % of stream's")
            return
        for task in rt._tasks:  # the periodic jobs: no timer work in the measured requests
            task.cancel()
        await asyncio.sleep(0.2)
        pid = str(os.getpid())
        replicator = db.replicator
        replicator.run_once(budget=60.0)  # the warm-up's queue rows
        for kind in TABLES:
            todo = requests(kind, args.requests)
            subprocess.run(["callgrind_control", "-z", pid], check=False, capture_output=True)
            await send_as(kind, todo)
            subprocess.run(["callgrind_control", "-d", kind, pid], check=False, capture_output=True)
        # the other half of "queued": the replication job applying its rows to the replica (batched)
        subprocess.run(["callgrind_control", "-z", pid], check=False, capture_output=True)
        replicator.run_once(budget=60.0)
        subprocess.run(["callgrind_control", "-d", "job", pid], check=False, capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--cpu", action="store_true")
    ap.add_argument("--rounds", type=int, default=4)
    import uvloop

    uvloop.run(_run(ap.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
