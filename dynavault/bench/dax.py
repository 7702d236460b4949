"""``dynavault bench --dax dax://host:port``: GetItem and Query over the DAX data plane (cache hit and miss) next to
the same operations over HTTP, on the bench's own table and server.

The bench speaks the DAX protocol itself, as it speaks HTTP itself: a CBOR stream with no length prefixes
(the opening, ``authorizeConnection`` with a SigV4 signature for service ``dax``, then one request in flight per
connection). The bench may not import the server's packages, so the few method ids and option keys it uses are
written here; they are the official clients' numbers and cannot change.

Workloads, in this order (each one's cache state is what the one before left):
- ``dax-get-miss``: eventually consistent GetItem of keys no DAX read has touched (each key once; it ends early
  when every key has been read), so every one misses, reads the table and fills the item cache;
- ``dax-get-hit``: the same reads again, every one answered from the item cache;
- ``dax-query-miss``: eventually consistent Query of a partition, each request with its own Limit (above the
  partition's size, so the answer is the same) and so its own query-cache entry: every one misses;
- ``dax-query-hit``: one request per partition, repeated: answered from the query cache;
- ``http-get`` / ``http-query``: the bench's ``get`` and ``query`` workloads over HTTP.
With ``--server-pid`` (a server on this machine) each workload reports the server's CPU per operation, from
/proc (the process and its direct children: its workers).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import os
import random
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import cbor2

from dynavault.bench.load import BenchConfig, Runner, percentile, run_in_new_loop

__all__ = ["DAX_WORKLOADS", "DaxConnection", "run_dax_bench", "server_cpu_seconds"]

_MAGIC = "J7yne5G"
_AUTHORIZE = 1489122155
_GET_ITEM = 263244906
_QUERY = -931250863
_CONSISTENT_READ = 2
_LIMIT = 13
_ITEM = 0
_COUNT = 8
#: the key-condition tree ``pk = :0`` (function 0 is "=", 18 a path, 17 a value placeholder)
_PK_EQUALS = [0, [18, "pk"], [17, 0]]
#: re-sign before the server's 15-minute window closes (the clients renew every few minutes)
_AUTH_SECONDS = 240.0

DAX_WORKLOADS = ("dax-get-miss", "dax-get-hit", "dax-query-miss", "dax-query-hit", "http-get", "http-query")


class DaxError(Exception):
    """The server answered a DAX request with an error."""


def _item_end(buf: bytes | bytearray, pos: int) -> int | None:
    """The offset just past the CBOR data item starting at ``pos``, or None when ``buf`` ends first."""
    stack = [1]  # items still to read at each open level (-1: until a break)
    n = len(buf)
    while stack:
        if pos >= n:
            return None
        ib = buf[pos]
        major, info = ib >> 5, ib & 0x1F
        pos += 1
        if ib == 0xFF:  # the break that ends an indefinite-length item
            stack.pop()
            _done(stack)
            continue
        if info < 24:
            arg = info
        elif info <= 27:
            size = 1 << (info - 24)
            if pos + size > n:
                return None
            arg = int.from_bytes(buf[pos:pos + size], "big")
            pos += size
        elif info == 31:
            arg = -1
        else:
            raise DaxError("malformed CBOR from the server")
        if major in (2, 3):
            if arg < 0:
                stack.append(-1)
                continue
            pos += arg
            if pos > n:
                return None
            _done(stack)
        elif major in (4, 5):
            count = -1 if arg < 0 else arg * (2 if major == 5 else 1)
            if count == 0:
                _done(stack)
            else:
                stack.append(count)
        elif major == 6:
            continue  # a tag: its item follows
        else:
            _done(stack)
    return pos


def _done(stack: list[int]) -> None:
    """One item finished at the innermost level; close the levels it completes."""
    while stack:
        if stack[-1] < 0:
            return
        stack[-1] -= 1
        if stack[-1] > 0:
            return
        stack.pop()


def authorization(access_key: str, secret_key: str, region: str, now: datetime | None = None) -> bytes:
    """An ``authorizeConnection`` request: SigV4 over ``POST /`` to dax.amazonaws.com with an empty payload."""
    now = now or datetime.now(UTC)
    amz, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    canonical = ("POST\n/\n\nhost:dax.amazonaws.com\nx-amz-date:" + amz + "\n\nhost;x-amz-date\n"
                 + hashlib.sha256(b"").hexdigest())
    to_sign = (f"AWS4-HMAC-SHA256\n{amz}\n{day}/{region}/dax/aws4_request\n"
               + hashlib.sha256(canonical.encode()).hexdigest())
    k = hmac.digest(("AWS4" + secret_key).encode(), day.encode(), "sha256")
    for part in (region, "dax", "aws4_request"):
        k = hmac.digest(k, part.encode(), "sha256")
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    return b"".join(cbor2.dumps(v) for v in (1, _AUTHORIZE, access_key, signature, to_sign.encode(), None,
                                             "dynavault-bench"))


class DaxConnection:
    """One DAX connection (``dax://`` only: the bench measures the server, not TLS)."""

    def __init__(self, url: str, access_key: str, secret_key: str, region: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "dax" or not parts.hostname:
            raise ValueError(f"only dax:// endpoints are supported, got {url!r}")
        self.host, self.port = parts.hostname, parts.port or 8111
        self._creds = (access_key, secret_key, region)
        self._r: asyncio.StreamReader | None = None
        self._w: asyncio.StreamWriter | None = None
        self._buf = bytearray()
        self._signed_at = 0.0

    def __repr__(self) -> str:  # never the secret
        return f"DaxConnection({self.host}:{self.port})"

    async def close(self) -> None:
        if self._w is not None:
            self._w.close()
            self._r = self._w = None

    async def _value(self):
        while True:
            end = _item_end(self._buf, 0) if self._buf else None
            if end is not None:
                value = cbor2.loads(bytes(self._buf[:end]))
                del self._buf[:end]
                return value
            data = await self._r.read(65536)
            if not data:
                raise ConnectionError("the DAX server closed the connection")
            self._buf += data

    async def call(self, request: bytes):
        """Send one request; its (single) result value, or DaxError."""
        head = b""
        if self._w is None:
            self._r, self._w = await asyncio.open_connection(self.host, self.port)
            head = b"".join(cbor2.dumps(v) for v in (_MAGIC, 0, None, {"UserAgent": "dynavault-bench"}, 0))
            self._signed_at = 0.0
        if time.monotonic() - self._signed_at > _AUTH_SECONDS:
            head += authorization(*self._creds)
            self._signed_at = time.monotonic()
        self._w.write(head + request)
        if await self._value() != []:
            message, detail = await self._value(), await self._value()
            raise DaxError(f"{detail[1] if isinstance(detail, list) and len(detail) > 1 else '?'}: {message}")
        return await self._value()


def get_request(table: str, key: dict, consistent: bool = False) -> bytes:
    """GetItem of the bench's (pk S, sk S) table: the key as the clients encode it (CBOR hash, raw range)."""
    key_bytes = cbor2.dumps(key["pk"]["S"]) + key["sk"]["S"].encode()
    return b"".join(cbor2.dumps(v) for v in (1, _GET_ITEM, table.encode(), key_bytes,
                                             {_CONSISTENT_READ: True} if consistent else None))


def query_request(table: str, pk: str, limit: int | None = None) -> bytes:
    condition = cbor2.dumps([1, _PK_EQUALS, [pk]])
    return b"".join(cbor2.dumps(v) for v in (1, _QUERY, table.encode(), condition,
                                             {_LIMIT: limit} if limit is not None else None))


def server_cpu_seconds(pid: int) -> float | None:
    """User+system CPU seconds of ``pid`` and its direct children (Linux /proc), or None."""
    tick = os.sysconf("SC_CLK_TCK")
    total, found = 0.0, False
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
            found = found or int(name) == pid
    return total if found else None


class _DaxRunner(Runner):
    def __init__(self, cfg: BenchConfig, dax_url: str, server_pid: int | None) -> None:
        super().__init__(cfg)
        self.dax_url = dax_url
        self.server_pid = server_pid
        self._limits = itertools.count(1_000_000)
        #: keys the miss workload had no time to read (read untimed before the hit workload)
        self._unread = iter(())

    def _connection(self) -> DaxConnection:
        return DaxConnection(self.dax_url, self.cfg.access_key, self.cfg.secret_key, self.cfg.region)

    def _ops(self, name: str):
        """A function from a Random to (request bytes, checker), or an iterator's (finite) next one."""
        model, table = self.model, self.table
        if name == "dax-get-miss":
            order = list(range(self.cfg.items))
            random.Random(self.run_id).shuffle(order)
            self._unread = iter(order)
            return lambda rnd: self._get(next(self._unread))
        if name == "dax-get-hit":
            return lambda rnd: self._get(rnd.randrange(self.cfg.items))
        if name in ("dax-query-miss", "dax-query-hit"):
            miss = name == "dax-query-miss"

            def query(rnd: random.Random):
                part = rnd.randrange(model.partitions)
                want = model.partition_count(part)
                request = query_request(table, model.pk(part), next(self._limits) if miss else None)
                return request, lambda body: body.get(_COUNT) == want
            return query
        raise ValueError(name)

    def _get(self, i: int):
        return get_request(self.table, self.model.key(i)), lambda body: _ITEM in body

    async def _warm(self, name: str) -> None:
        """Untimed: fill the cache the hit workload reads (every key, every partition's query)."""
        conn = self._connection()
        try:
            if name == "dax-get-hit":
                for i in self._unread:
                    await conn.call(self._get(i)[0])
            elif name == "dax-query-hit":
                for part in range(self.model.partitions):
                    await conn.call(query_request(self.table, self.model.pk(part)))
        finally:
            await conn.close()

    async def run_dax_workload(self, name: str) -> dict:
        await self._warm(name)
        make = self._ops(name)
        lat: list[int] = []
        errors: dict[str, int] = {}
        verified = failed = ops = 0
        stop_at = time.perf_counter() + self.cfg.duration

        async def worker(seed: int) -> None:
            nonlocal verified, failed, ops
            rnd = random.Random(seed)
            conn = self._connection()
            try:
                while time.perf_counter() < stop_at:
                    try:
                        request, check = make(rnd)
                    except StopIteration:
                        return
                    t0 = time.perf_counter_ns()
                    try:
                        body = await conn.call(request)
                    except (DaxError, OSError, ConnectionError) as e:
                        key = str(e).split(":", 1)[0] if isinstance(e, DaxError) else type(e).__name__
                        errors[key] = errors.get(key, 0) + 1
                        if not isinstance(e, DaxError):
                            await conn.close()
                        continue
                    lat.append(time.perf_counter_ns() - t0)
                    ops += 1
                    if ops % 16 == 1:
                        verified += 1
                        failed += not check(body)
            finally:
                await conn.close()

        cpu0 = server_cpu_seconds(self.server_pid) if self.server_pid else None
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(hash((self.run_id, name, k))) for k in range(self.cfg.connections)))
        elapsed = time.perf_counter() - t0
        cpu1 = server_cpu_seconds(self.server_pid) if self.server_pid else None
        lat.sort()
        return {"status": "ok", "ops": ops, "seconds": round(elapsed, 3),
                "ops_per_s": round(ops / elapsed, 1) if elapsed else 0.0,
                "p50_ms": round(percentile(lat, 0.5) * 1e-6, 3), "p90_ms": round(percentile(lat, 0.9) * 1e-6, 3),
                "p99_ms": round(percentile(lat, 0.99) * 1e-6, 3), "errors": sum(errors.values()),
                "error_types": errors, "verified": verified, "verify_failures": failed,
                "server_cpu_us_per_op": _per_op(cpu0, cpu1, ops)}

    async def run_http_workload(self, name: str) -> dict:
        cpu0 = server_cpu_seconds(self.server_pid) if self.server_pid else None
        out = await self.run_workload(name)
        cpu1 = server_cpu_seconds(self.server_pid) if self.server_pid else None
        out["server_cpu_us_per_op"] = _per_op(cpu0, cpu1, out.get("ops", 0))
        return out


def _per_op(before: float | None, after: float | None, ops: int) -> float | None:
    if before is None or after is None or not ops:
        return None
    return round((after - before) / ops * 1e6, 1)


async def _run(cfg: BenchConfig, dax_url: str, server_pid: int | None) -> dict:
    runner = _DaxRunner(cfg, dax_url, server_pid)
    result: dict = {"endpoint": cfg.endpoint, "dax": dax_url,
                    "config": {"connections": cfg.connections, "duration": cfg.duration, "items": cfg.items,
                               "item_size": cfg.item_size, "workloads": list(DAX_WORKLOADS)}}
    result["setup"] = await runner.setup()
    wl: dict = {}
    try:
        for name in DAX_WORKLOADS:
            if name.startswith("http-"):
                wl[name] = await runner.run_http_workload(name[5:])
            else:
                wl[name] = await runner.run_dax_workload(name)
        result["workloads"] = wl
    finally:
        await runner.teardown()
    checked = sum(w.get("verified", 0) for w in wl.values())
    failed = sum(w.get("verify_failures", 0) for w in wl.values())
    result["verification"] = {"checked": checked, "failed": failed, "ok": failed == 0}
    return result


def run_dax_bench(cfg: BenchConfig, dax_url: str, server_pid: int | None = None) -> dict:
    DaxConnection(dax_url, "", "", cfg.region)  # the URL's scheme checked before the table is made
    return run_in_new_loop(_run(cfg, dax_url, server_pid))


def format_dax_table(result: dict) -> str:
    lines = [f"endpoint {result['endpoint']}  dax {result['dax']}  table {result['setup']['table']}  "
             f"loaded {result['setup']['items']} items in {result['setup']['load_seconds']} s",
             "| workload | ops | ops/s | p50 ms | p99 ms | errors | verified | server CPU us/op |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, w in result["workloads"].items():
        if w.get("status") != "ok":
            lines.append(f"| {name} | unsupported | | | | | | |  {w.get('reason')}")
            continue
        cpu = w.get("server_cpu_us_per_op")
        lines.append(f"| {name} | {w['ops']} | {w['ops_per_s']:,.1f} | {w['p50_ms']:.3f} | {w['p99_ms']:.3f} | "
                     f"{w['errors']} | {w['verified'] - w['verify_failures']}/{w['verified']} | "
                     f"{'-' if cpu is None else f'{cpu:,.1f}'} |")
    v = result["verification"]
    lines.append(f"read-back verification: {v['checked']} checked, {v['failed']} failed -> "
                 f"{'OK' if v['ok'] else 'FAILED'}")
    return "\n".join(lines)
