#!/usr/bin/env python
"""Instructions per request of the runtime's app driven in process (no socket, no HTTP parser), for a C-level
split of one operation under callgrind.

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=OUT/cg.out \\
        $(python -c 'import sys; print(sys.executable)') benchmarks/irinproc.py [--op PutItem] [--requests 200]
    callgrind_annotate --inclusive=yes --threshold=100 OUT/cg.out.1 | grep -E 'pysqlite_connection_execute |AesGcm'

Builds the real runtime on a fresh data dir with a real credential (SigV4 verified over every body), creates the
bench's table (one GSI) with ``--items`` items of 1 KB through ``benchmarks/stages.py``'s driver, warms up, then
zeroes callgrind's counters, sends ``--requests`` signed requests one after another (each write with its own
group-commit round) and dumps: ``OUT/cg.out.1``'s total over ``--requests`` is the figure. Run it from the tree
to measure (its ``dynavault`` is the one imported).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.stages import Driver  # noqa: E402
from dynavault.bench.load import GSI_NAME, ItemModel  # noqa: E402
from dynavault.bench.sigv4 import Signer  # noqa: E402
from dynavault.config import Settings  # noqa: E402
from dynavault.server.runtime import build_runtime  # noqa: E402


@contextlib.asynccontextmanager
async def loaded_app(table: str, items: int):
    """The real runtime on a fresh data dir, started, with the bench's table (one GSI) holding ``items`` 1 KB
    items; -> (runtime, stages.Driver signing as its credential, the bench's ItemModel)."""
    with tempfile.TemporaryDirectory(prefix=f"dv-{table}-") as tmp:
        settings = Settings(data_dir=str(Path(tmp) / "data"), root_key_file=str(Path(tmp) / "root.key"))
        with contextlib.redirect_stdout(sys.stderr):  # the "root credential created" notice
            rt = build_runtime(settings)
        await rt.start()
        try:
            cred = rt.credentials.all()[0]
            drv = Driver(rt.app, Signer(cred.access_key_id, cred.secret_access_key, "us-east-1", "127.0.0.1:8000"))
            model = ItemModel(items, 1024, table)

            async def must(op: str, payload: dict) -> None:
                scope, _, body = drv.request(op, payload)
                status, resp = await drv.call(scope, body)
                if status != 200:
                    raise RuntimeError(f"{op}: {status} {resp[:300]!r}")

            await must("CreateTable", {
                "TableName": table, "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gk")],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                "GlobalSecondaryIndexes": [{"IndexName": GSI_NAME, "Projection": {"ProjectionType": "KEYS_ONLY"},
                                            "KeySchema": [{"AttributeName": "gk", "KeyType": "HASH"},
                                                          {"AttributeName": "sk", "KeyType": "RANGE"}]}]})
            for start in range(0, items, 25):
                await must("BatchWriteItem", {"RequestItems": {table: [
                    {"PutRequest": {"Item": model.item(i)}} for i in range(start, min(items, start + 25))]}})
            yield rt, drv, model
        finally:
            await rt.stop()


async def _run(args) -> None:
    async with loaded_app("irinproc", args.items) as (_, drv, model):
        rnd = random.Random(7)

        def requests(n: int) -> list:
            out = []
            for _ in range(n):
                i = rnd.randrange(args.items)
                payload = ({"TableName": "irinproc", "Item": model.item(i)} if args.op == "PutItem"
                           else {"TableName": "irinproc", "Key": model.key(i)})
                out.append(drv.request(args.op, payload))
            return out

        for scope, _, body in requests(args.warmup):
            await drv.call(scope, body)
        todo = requests(args.requests)
        pid = str(os.getpid())
        subprocess.run(["callgrind_control", "-z", pid], check=False, capture_output=True)
        for scope, _, body in todo:
            await drv.call(scope, body)
        subprocess.run(["callgrind_control", "-d", pid], check=False, capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--op", default="PutItem", choices=("PutItem", "GetItem"))
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--items", type=int, default=200)
    import uvloop

    uvloop.run(_run(ap.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
