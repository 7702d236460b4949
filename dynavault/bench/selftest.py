"""The load generator's own ceiling: the signer alone, and full requests against a trivial local endpoint."""

from __future__ import annotations

import asyncio
import time

from dynavault.bench.client import Connection, Endpoint
from dynavault.bench.load import percentile
from dynavault.bench.sigv4 import Signer

__all__ = ["selftest"]

_REPLY = b'{"Item":{"pk":{"S":"p0000000"},"sk":{"S":"s00000"}}}'
_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: "
             + str(len(_REPLY)).encode() + b"\r\n\r\n" + _REPLY)


class _Trivial(asyncio.Protocol):
    """Answers every complete request with a fixed GetItem-shaped body; parses only Content-Length."""

    def connection_made(self, transport) -> None:
        self.t = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            i = head.find(b"content-length:")
            n = int(head[i + 15:].split(b"\r\n", 1)[0]) if i >= 0 else 0
            if len(self.buf) < end + 4 + n:
                return
            self.buf = self.buf[end + 4 + n:]
            self.t.write(_RESPONSE)


def _signer_rate(seconds: float) -> float:
    s = Signer("benchkey", "benchsecret", "us-east-1", "127.0.0.1:8000")
    body = b'{"TableName":"t","Key":{"pk":{"S":"p0000001"},"sk":{"S":"s00001"}}}'
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(200):
            s.headers("DynamoDB_20120810.GetItem", body)
        n += 200
    return n / seconds


async def _requests(connections: int, seconds: float) -> dict:
    server = await asyncio.get_running_loop().create_server(_Trivial, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ep = Endpoint(f"http://127.0.0.1:{port}")
    lat: list[int] = []
    stop = time.perf_counter() + seconds
    payload = {"TableName": "t", "Key": {"pk": {"S": "p0000001"}, "sk": {"S": "s00001"}}}

    async def worker() -> None:
        c = Connection(ep)
        clock = time.perf_counter_ns
        while time.perf_counter() < stop:
            t0 = clock()
            await c.call("GetItem", payload)
            lat.append(clock() - t0)
        await c.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    server.close()
    await server.wait_closed()
    lat.sort()
    return {"ops_per_s": round(len(lat) / elapsed, 1), "p50_ms": round(percentile(lat, 0.5) / 1e6, 3),
            "p99_ms": round(percentile(lat, 0.99) / 1e6, 3),
            "signing_key_derivations": ep.signer.derivations}


def selftest(connections: int = 8, seconds: float = 3.0) -> dict:
    from dynavault.bench.load import run_in_new_loop

    return {
        "signatures_per_s": round(_signer_rate(min(seconds, 2.0)), 1),
        # Client and trivial server share this process (one core): the true client ceiling is higher.
        "trivial_endpoint": run_in_new_loop(_requests(connections, seconds)),
    }
