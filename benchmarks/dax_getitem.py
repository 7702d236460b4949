#!/usr/bin/env python
"""GetItem over DAX (cache hit, and strongly consistent: the engine) against GetItem over HTTP, on one server and
one item, with the server's CPU per request.

    python benchmarks/dax_getitem.py [--requests 4000] [--rounds 3]

Starts ``python -m dynavault.cli serve --dax-port`` from this tree on a fresh data dir, then per round sends
``--requests`` sequential requests of each kind from one connection (DAX: a bare protocol speaker, no client
library; HTTP: one pre-signed request replayed on a keep-alive connection) and reads the server's user+system CPU
from /proc around each run (Linux only). Prints the median of the rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

import cbor2
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dynavault.dax import protocol as P  # noqa: E402
from dynavault.dax.cbor_stream import StreamDecoder  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _authorize(key: str, secret: str, region: str = "us-east-1") -> bytes:
    now = datetime.now(UTC)
    amz, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    canonical = f"POST\n/\n\nhost:dax.amazonaws.com\nx-amz-date:{amz}\n\nhost;x-amz-date\n{hashlib.sha256(b'').hexdigest()}"
    to_sign = f"AWS4-HMAC-SHA256\n{amz}\n{day}/{region}/dax/aws4_request\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    k = hmac.digest(("AWS4" + secret).encode(), day.encode(), "sha256")
    for part in (region, "dax", "aws4_request"):
        k = hmac.digest(k, part.encode(), "sha256")
    sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    return b"".join(cbor2.dumps(v) for v in (1, P.AUTHORIZE_CONNECTION, key, sig, to_sign.encode(), None, None))


class DaxConn:
    def __init__(self, port: int, key: str, secret: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.dec = StreamDecoder()
        hello = b"".join(cbor2.dumps(v) for v in (P.MAGIC, 0, None, {"UserAgent": "bench"}, 0))
        self.sock.sendall(hello + _authorize(key, secret))

    def value(self):
        while (v := self.dec.next()) is StreamDecoder.NEED_MORE:
            self.dec.feed(self.sock.recv(65536))
        return v

    def call(self, request: bytes) -> None:
        self.sock.sendall(request)
        if self.value() != []:
            raise RuntimeError(f"DAX error: {self.value()}")
        self.value()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="dax-bench-")
    port, dax_port = _free_port(), _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dynavault.cli", "serve", "--port", str(port), "--dax-port",
                             str(dax_port), "--data-dir", f"{base}/data", "--root-key-file", f"{base}/root.key", "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    text = ""
    while "listening on http" not in text:
        text += proc.stdout.readline().decode()
    key = re.search(r"aws_access_key_id = (\S+)", text).group(1)
    secret = re.search(r"aws_secret_access_key = (\S+)", text).group(1)

    def signed(target: str, body: dict) -> tuple[bytes, dict]:
        data = json.dumps(body).encode()
        req = AWSRequest(method="POST", url=f"http://127.0.0.1:{port}/", data=data,
                         headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target})
        SigV4Auth(Credentials(key, secret), "dynamodb", "us-east-1").add_auth(req)
        return data, dict(req.headers.items())

    conn = http.client.HTTPConnection("127.0.0.1", port)

    def http_call(target: str, body: dict) -> None:
        data, headers = signed(target, body)
        conn.request("POST", "/", body=data, headers=headers)
        r = conn.getresponse()
        r.read()

    http_call("DynamoDB_20120810.CreateTable", {
        "TableName": "bench", "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]})
    http_call("DynamoDB_20120810.PutItem", {"TableName": "bench", "Item": {
        "pk": {"S": "k1"}, "a": {"S": "x" * 100}, "n": {"N": "42"}, "m": {"M": {"z": {"L": [{"N": "1"}]}}}}})
    get_body, get_headers = signed("DynamoDB_20120810.GetItem", {"TableName": "bench", "Key": {"pk": {"S": "k1"}}})

    def cpu() -> float:
        f = open(f"/proc/{proc.pid}/stat").read().split(")")[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    dax = DaxConn(dax_port, key, secret)
    hit = b"".join(cbor2.dumps(v) for v in (1, P.GET_ITEM, b"bench", b"k1", None))
    through = b"".join(cbor2.dumps(v) for v in (1, P.GET_ITEM, b"bench", b"k1", {P.Param.CONSISTENT_READ: True}))

    def http_get() -> None:
        conn.request("POST", "/", body=get_body, headers=get_headers)
        conn.getresponse().read()

    runs = {"DAX GetItem, cache hit": lambda: dax.call(hit),
            "DAX GetItem, strongly consistent (engine)": lambda: dax.call(through),
            "HTTP GetItem": http_get}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, call in runs.items():
            for _ in range(200):
                call()
            c0, t0 = cpu(), time.perf_counter()
            for _ in range(args.requests):
                call()
            c1, t1 = cpu(), time.perf_counter()
            results[name].append((args.requests / (t1 - t0), (c1 - c0) / args.requests * 1e6))
    proc.terminate()
    proc.wait()
    load = os.getloadavg()[0]
    print(f"{args.requests} sequential requests x {args.rounds} rounds, one connection each; load average {load:.1f}")
    for name, rows in results.items():
        rate = statistics.median(r[0] for r in rows)
        us = statistics.median(r[1] for r in rows)
        print(f"  {name:45s} {rate:8.0f} req/s   server CPU {us:6.1f} us/request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
