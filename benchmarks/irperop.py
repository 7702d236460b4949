#!/usr/bin/env python
"""Instructions per request of the whole server process (HTTP layer included), under callgrind.

    PYTHONHASHSEED=0 python benchmarks/irperop.py [--tree DIR] [--ops get,put,query] [--requests 300]

A load-independent measure for before/after claims on a shared machine (wall-clock and CPU-time figures move
±30 % with the neighbours' load; instruction counts do not). The server is ``dynavault serve`` from ``--tree``
(default: this checkout) with a real credential, so every request's SigV4 signature is verified over its body.
The bench's table (one GSI, 1 KB items, 20 per partition) is created and loaded by a normal server run; then
the server is started again under ``valgrind --tool=callgrind`` (all threads: the group-commit fsync thread
too), warmed up with every operation, and for each operation the counters are zeroed (``callgrind_control
-z``), ``--requests`` signed requests are sent one after another on one keep-alive connection, and the
counters dumped; then the same for as long with no request, and that idle share (timers) is taken off:
Ir / requests is the figure.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dynavault.bench.load import GSI_NAME, ItemModel  # noqa: E402
from dynavault.bench.sigv4 import Signer  # noqa: E402

TABLE = "irbench"


def _start(tree: Path, data: Path, key: Path, wrap: list[str], env: dict, timeout: float):
    cmd = wrap + [sys.executable, "-m", "dynavault.cli", "serve", "--host", "127.0.0.1", "--port", "0",
                  "--data-dir", str(data), "--root-key-file", str(key), "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    lines = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            raise RuntimeError(f"server exited: {''.join(lines)}")
        lines.append(line)
        if line.startswith("dynavault listening on "):
            port = int(line.split(" on ", 1)[1].split()[0].rsplit(":", 1)[1])
            return proc, port, "".join(lines)
    proc.kill()
    raise RuntimeError("server not ready")


class Client:
    def __init__(self, port: int, key: str, secret: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.signer = Signer(key, secret, "us-east-1", f"127.0.0.1:{port}")
        self.buf = b""

    def call(self, op: str, payload: dict) -> dict:
        body = json.dumps(payload).encode()
        target = "DynamoDB_20120810." + op
        self.sock.sendall(b"POST / HTTP/1.1\r\n" + self.signer.headers(target, body) + b"\r\n" + body)
        while b"\r\n\r\n" not in self.buf:
            self.buf += self._recv()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        while len(self.buf) < length:
            self.buf += self._recv()
        data, self.buf = self.buf[:length], self.buf[length:]
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{op}: {head[:40]!r} {data[:300]!r}")
        return json.loads(data)

    def _recv(self) -> bytes:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise RuntimeError("connection closed")
        return chunk


def _ops(model: ItemModel, items: int):
    def get(rnd):
        return "GetItem", {"TableName": TABLE, "Key": model.key(rnd.randrange(items))}

    def put(rnd):
        return "PutItem", {"TableName": TABLE, "Item": model.item(rnd.randrange(items))}

    def query(rnd):
        return "Query", {"TableName": TABLE, "KeyConditionExpression": "pk = :p",
                         "ExpressionAttributeValues": {":p": {"S": model.pk(rnd.randrange(model.partitions))}}}
    return {"get": get, "put": put, "query": query}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--ops", default="get,put,query")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--items", type=int, default=200)
    args = ap.parse_args()
    tree = Path(args.tree).resolve()
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.pop("AWS_PROFILE", None)
    tmp = Path(tempfile.mkdtemp(prefix="irperop-"))
    data, key = tmp / "data", tmp / "keys" / "root.key"
    model = ItemModel(args.items, 1024, "irperop")
    ops = _ops(model, args.items)

    proc, port, out = _start(tree, data, key, [], env, 60)
    access = out.split("aws_access_key_id = ")[1].split()[0]
    secret = out.split("aws_secret_access_key = ")[1].split()[0]
    c = Client(port, access, secret)
    c.call("CreateTable", {
        "TableName": TABLE, "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gk")],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [{"IndexName": GSI_NAME, "Projection": {"ProjectionType": "KEYS_ONLY"},
                                    "KeySchema": [{"AttributeName": "gk", "KeyType": "HASH"},
                                                  {"AttributeName": "sk", "KeyType": "RANGE"}]}]})
    while c.call("DescribeTable", {"TableName": TABLE})["Table"]["TableStatus"] != "ACTIVE":
        time.sleep(0.05)
    for i in range(args.items):
        c.call("PutItem", {"TableName": TABLE, "Item": model.item(i)})
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)

    out_file = tmp / "callgrind.out"
    wrap = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"]
    proc, port, _ = _start(tree, data, key, wrap, env, 900)
    try:
        _run(proc, port, access, secret, args, ops, out_file)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)


def measure_ir(proc, out_file: Path, run) -> tuple[int, float]:
    """Ir of the callgrind-run ``proc`` between a zero and a dump around ``run()``, and its wall time."""
    subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
    t0 = time.monotonic()
    run()
    wall = time.monotonic() - t0
    before = set(glob.glob(f"{out_file}*"))
    subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
    total = 0
    for path in set(glob.glob(f"{out_file}*")) - before:
        m = re.search(r"^(?:summary|totals): (\d+)", Path(path).read_text(errors="replace"), re.M)
        total += int(m.group(1)) if m else 0
    return total, wall


def _run(proc, port: int, access: str, secret: str, args, ops, out_file: Path) -> None:
    c = Client(port, access, secret)
    rnd = random.Random(1)
    names = args.ops.split(",")
    for _ in range(args.warmup):
        for name in names:
            c.call(*ops[name](rnd))

    results = {}
    for name in names:
        make = ops[name]
        total, wall = measure_ir(proc, out_file, lambda make=make: [c.call(*make(rnd)) for _ in range(args.requests)])
        # What the server does with no request (its timers: uvicorn's tick, periodic jobs) runs per second of
        # wall time, and under callgrind on a loaded machine a request takes more wall time: that share,
        # measured right after with no request for as long (at most 10 s), is taken off.
        pause = min(wall, 10.0)
        idle, idle_wall = measure_ir(proc, out_file, lambda pause=pause: time.sleep(pause))
        net = total - idle / idle_wall * wall
        results[name] = net / args.requests
        print(f"{name}: {results[name]:,.0f} Ir/request ({total / args.requests:,.0f} before the idle share of "
              f"{idle / idle_wall:,.0f} Ir/s over {wall:.1f} s)", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
