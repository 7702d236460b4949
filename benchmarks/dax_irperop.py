#!/usr/bin/env python
"""Instructions per request of the whole server process for GetItem over DAX (cache hit, and strongly
consistent: the engine) and over HTTP, under callgrind: the load-independent companion of dax_getitem.py.

    PYTHONHASHSEED=0 python benchmarks/dax_irperop.py [--tree DIR] [--requests 300]

As irperop.py: a server from ``--tree`` (default: this checkout) with a real credential makes the table and its
item, then runs again under ``valgrind --tool=callgrind``; per kind of request the counters are zeroed,
``--requests`` requests are sent one after another on one connection, the counters dumped, and the idle share
(the same wall time with no request) taken off.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import cbor2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dax_getitem import DaxConn  # noqa: E402
from irperop import Client, _start, measure_ir  # noqa: E402

from dynavault.dax import protocol as P  # noqa: E402

TABLE = "bench"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=100)
    args = ap.parse_args()
    tree = Path(args.tree).resolve()
    dax_port = _free_port()
    env = dict(os.environ, PYTHONHASHSEED="0", DYNAVAULT_DAX_PORT=str(dax_port))
    env.pop("AWS_PROFILE", None)
    tmp = Path(tempfile.mkdtemp(prefix="dax-irperop-"))
    data, key = tmp / "data", tmp / "keys" / "root.key"

    proc, port, out = _start(tree, data, key, [], env, 60)
    access = out.split("aws_access_key_id = ")[1].split()[0]
    secret = out.split("aws_secret_access_key = ")[1].split()[0]
    c = Client(port, access, secret)
    c.call("CreateTable", {"TableName": TABLE, "BillingMode": "PAY_PER_REQUEST",
                           "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                           "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]})
    while c.call("DescribeTable", {"TableName": TABLE})["Table"]["TableStatus"] != "ACTIVE":
        time.sleep(0.05)
    c.call("PutItem", {"TableName": TABLE, "Item": {"pk": {"S": "k1"}, "a": {"S": "x" * 100}, "n": {"N": "42"},
                                                    "m": {"M": {"z": {"L": [{"N": "1"}]}}}}})
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)

    out_file = tmp / "callgrind.out"
    wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"]
    proc, port, _ = _start(tree, data, key, wrap, env, 900)
    try:
        c = Client(port, access, secret)
        dax = DaxConn(dax_port, access, secret)
        hit = b"".join(cbor2.dumps(v) for v in (1, P.GET_ITEM, TABLE.encode(), b"k1", None))
        through = b"".join(cbor2.dumps(v) for v in (1, P.GET_ITEM, TABLE.encode(), b"k1",
                                                    {P.Param.CONSISTENT_READ: True}))
        runs = {"dax-get-hit": lambda: dax.call(hit), "dax-get-consistent": lambda: dax.call(through),
                "http-get": lambda: c.call("GetItem", {"TableName": TABLE, "Key": {"pk": {"S": "k1"}}})}
        for _ in range(args.warmup):
            for run in runs.values():
                run()
        results = {}
        for name, run in runs.items():
            total, wall = measure_ir(proc, out_file, lambda run=run: [run() for _ in range(args.requests)])
            pause = min(wall, 10.0)
            idle, idle_wall = measure_ir(proc, out_file, lambda pause=pause: time.sleep(pause))
            results[name] = (total - idle / idle_wall * wall) / args.requests
            print(f"{name}: {results[name]:,.0f} Ir/request ({total / args.requests:,.0f} before the idle share "
                  f"of {idle / idle_wall:,.0f} Ir/s over {wall:.1f} s)", flush=True)
        print(json.dumps(results))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)


if __name__ == "__main__":
    main()
