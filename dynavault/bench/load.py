"""Table setup, the workloads, and read-back verification against any DynamoDB-compatible endpoint."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from dynavault.bench.client import BenchHTTPError, Connection, Endpoint, Response
from dynavault.bench.progress import Progress

__all__ = ["ALL_WORKLOADS", "BenchConfig", "run_bench", "ItemModel", "percentile"]

ALL_WORKLOADS = ("get", "put", "query", "scan", "mixed", "batch", "txn", "fullscan")
PARTITION_SIZE = 20  # items per partition key, so a Query returns 20 items
GSI_NAME = "gsi1"
GSI_GROUPS = 50
VERIFY_EVERY = 16  # verify one read in 16: correctness, kept off the timing path as much as possible
_UNSUPPORTED_TYPES = ("UnknownOperationException", "NotImplementedError", "UnsupportedOperation",
                      "InvalidAction", "HTTP 501", "HTTP 404")
_UNSUPPORTED_TEXT = re.compile(r"not (yet )?(implemented|supported)|unknown operation", re.I)


@dataclass
class BenchConfig:
    endpoint: str
    workloads: tuple[str, ...] = ("get", "put", "query")
    connections: int = 8
    duration: float = 10.0
    items: int = 2000
    item_size: int = 1024
    new_connection_per_request: bool = False
    kms_calls: bool = False
    keep_table: bool = False
    access_key: str = "benchkey"
    secret_key: str = "benchsecret"
    region: str = "us-east-1"
    #: give the table a NEW_AND_OLD_IMAGES stream and measure reading it back (bench/stream.py)
    stream: bool = False
    #: every put changes its item (a "w" attribute); a rewrite with identical content writes no stream record
    changing_puts: bool = False
    #: shown while loading and running (bench/progress.py); None shows nothing
    progress: Progress | None = None


class ItemModel:
    """Deterministic items: the bench can tell exactly what every key must read back as."""

    def __init__(self, items: int, item_size: int, run_id: str) -> None:
        self.items = items
        self.run_id = run_id
        # Attribute names + fixed attributes take ~60 bytes of DynamoDB item size; pad fills the rest.
        self.pad_len = max(1, item_size - 60)

    def key(self, i: int) -> dict:
        return {"pk": {"S": f"p{i // PARTITION_SIZE:07d}"}, "sk": {"S": f"s{i % PARTITION_SIZE:05d}"}}

    def pk(self, part: int) -> str:
        return f"p{part:07d}"

    @property
    def partitions(self) -> int:
        return (self.items + PARTITION_SIZE - 1) // PARTITION_SIZE

    def partition_count(self, part: int) -> int:
        return min(PARTITION_SIZE, self.items - part * PARTITION_SIZE)

    def pad(self, i: int) -> str:
        seed = hashlib.sha256(f"{self.run_id}:{i}".encode()).hexdigest()
        return (seed * (self.pad_len // 64 + 1))[: self.pad_len]

    def item(self, i: int) -> dict:
        it = self.key(i)
        it["gk"] = {"S": f"g{i % GSI_GROUPS:03d}"}
        it["n"] = {"N": str(i)}
        it["data"] = {"S": self.pad(i)}
        return it

    def check(self, got: dict | None) -> bool:
        """True if ``got`` is exactly the item its key says it must be."""
        if not got or "n" not in got or "N" not in got["n"]:
            return False
        try:
            i = int(got["n"]["N"])
        except ValueError:
            return False
        # "w" is what a changing put (BenchConfig.changing_puts) varies; everything else must match
        return 0 <= i < self.items and {k: v for k, v in got.items() if k != "w"} == self.item(i)


def percentile(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return 0.0
    idx = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[idx]


@dataclass
class _Stats:
    lat_ns: list[int] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    error_samples: dict[str, str] = field(default_factory=dict)
    verified: int = 0
    verify_failed: int = 0
    ops: int = 0


class _Unsupported(Exception):
    pass


def _is_unsupported(resp: Response) -> bool:
    if resp.status in (501, 404):
        return True
    et = resp.error_type()
    if any(u in et for u in _UNSUPPORTED_TYPES):
        return True
    if resp.status >= 400:
        try:
            msg = str(resp.json().get("message") or resp.json().get("Message") or "")
        except Exception:  # noqa: BLE001 - a non-JSON error body just is not a "not implemented" one
            msg = resp.body[:200].decode(errors="replace")
        return bool(_UNSUPPORTED_TEXT.search(msg))
    return False


class Runner:
    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg
        self.ep = Endpoint(cfg.endpoint, access_key=cfg.access_key, secret_key=cfg.secret_key, region=cfg.region)
        self.run_id = uuid.uuid4().hex[:8]
        self.table = f"dvbench-{self.run_id}"
        self.model = ItemModel(cfg.items, cfg.item_size, self.run_id)
        # fullscan: one cursor pages through the whole table (run it with --connections 1 for a true full scan)
        self._scan_cursor: dict | None = None
        self._scanned_items = 0
        self._full_passes = 0
        self.gsi = False
        self.progress = cfg.progress if cfg.progress is not None else Progress("quiet")
        self._loaded = 0  # items written by setup so far (what its progress shows)

    # -- setup ----------------------------------------------------------------------------------
    async def _must(self, conn: Connection, op: str, payload: dict) -> dict:
        resp = await conn.call(op, payload)
        if resp.status != 200:
            raise RuntimeError(f"{op} failed: {resp.status} {resp.body[:300]!r}")
        return resp.json()

    async def setup(self) -> dict:
        conn = Connection(self.ep)
        base = {
            "TableName": self.table,
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                     {"AttributeName": "sk", "AttributeType": "S"},
                                     {"AttributeName": "gk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if self.cfg.stream:
            from dynavault.bench.stream import STREAM_SPEC

            base["StreamSpecification"] = STREAM_SPEC
        with_gsi = dict(base, GlobalSecondaryIndexes=[{
            "IndexName": GSI_NAME,
            "KeySchema": [{"AttributeName": "gk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }])
        resp = await conn.call("CreateTable", with_gsi)
        gsi_note = ""
        if resp.status == 200:
            self.gsi = True
        else:
            # The endpoint refused the GSI: the table is still useful without it.
            gsi_note = f"{resp.error_type()}: {resp.json().get('message', '')}"[:200]
            base["AttributeDefinitions"] = base["AttributeDefinitions"][:2]
            await self._must(conn, "CreateTable", base)
        deadline = time.monotonic() + 60
        while True:
            d = await self._must(conn, "DescribeTable", {"TableName": self.table})
            t = d.get("Table", {})
            gsis = t.get("GlobalSecondaryIndexes") or []
            if t.get("TableStatus") == "ACTIVE" and all(g.get("IndexStatus", "ACTIVE") == "ACTIVE" for g in gsis):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("table did not become ACTIVE in 60 s")
            await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        next_i = iter(range(self.cfg.items))

        batch_ok = True  # until the peer says it has no BatchWriteItem

        async def put_each(c: Connection, batch: list[dict]) -> None:
            for put in batch:
                await self._must(c, "PutItem", {"TableName": self.table, "Item": put["PutRequest"]["Item"]})

        async def loader() -> None:
            # BatchWriteItem, 25 items a request (the API's maximum), so 10^6-item tables load in minutes.
            nonlocal batch_ok
            c = Connection(self.ep)
            try:
                while True:
                    batch = [{"PutRequest": {"Item": self.model.item(i)}} for i in itertools.islice(next_i, 25)]
                    if not batch:
                        return
                    size = len(batch)
                    for _attempt in range(50):
                        if not batch_ok:
                            await put_each(c, batch)
                            break
                        resp = await c.call("BatchWriteItem", {"RequestItems": {self.table: batch}})
                        if resp.status != 200 and _is_unsupported(resp):
                            batch_ok = False  # load with PutItem instead (this batch too, on the next turn)
                            continue
                        if resp.status != 200:
                            raise RuntimeError(f"BatchWriteItem failed: {resp.status} {resp.body[:300]!r}")
                        batch = (resp.json().get("UnprocessedItems") or {}).get(self.table) or []
                        if not batch:
                            break
                        await asyncio.sleep(0.05)
                    else:
                        raise RuntimeError("BatchWriteItem kept returning UnprocessedItems")
                    self._loaded += size
            finally:
                await c.close()

        async with self.progress.phase("loading", self.cfg.items, "items", lambda: self._loaded):
            await asyncio.gather(*(loader() for _ in range(max(1, self.cfg.connections))))
        await conn.close()
        secs = time.perf_counter() - t0
        return {"table": self.table, "gsi": self.gsi, "gsi_refused": gsi_note or None,
                "items": self.cfg.items, "load_seconds": round(secs, 3),
                "load_puts_per_s": round(self.cfg.items / secs, 1) if secs else None}

    async def teardown(self) -> None:
        if self.cfg.keep_table:
            return
        conn = Connection(self.ep)
        try:
            await conn.call("DeleteTable", {"TableName": self.table})
        except (OSError, BenchHTTPError):
            pass
        await conn.close()

    # -- one operation of each workload ---------------------------------------------------------
    # Each returns (op name, payload, checker); the checker gets the parsed response, returns True/False.
    def op_get(self, rnd: random.Random):
        i = rnd.randrange(self.cfg.items)
        return "GetItem", {"TableName": self.table, "Key": self.model.key(i)}, \
            lambda d, i=i: self.model.check(d.get("Item")) and d["Item"]["n"]["N"] == str(i)

    def op_put(self, rnd: random.Random):
        i = rnd.randrange(self.cfg.items)  # rewrite with identical content: reads stay verifiable
        item = self.model.item(i)
        if self.cfg.changing_puts or self.cfg.stream:
            item["w"] = {"N": str(rnd.getrandbits(32))}
        return "PutItem", {"TableName": self.table, "Item": item}, None

    def op_query(self, rnd: random.Random):
        part = rnd.randrange(self.model.partitions)
        want = self.model.partition_count(part)
        payload = {"TableName": self.table, "KeyConditionExpression": "pk = :p",
                   "ExpressionAttributeValues": {":p": {"S": self.model.pk(part)}}}

        def check(d: dict) -> bool:
            items = d.get("Items") or []
            sks = [it.get("sk", {}).get("S") for it in items]
            return (d.get("Count") == want == len(items) and sks == sorted(sks)
                    and all(self.model.check(it) for it in items))
        return "Query", payload, check

    def op_scan(self, rnd: random.Random):
        payload = {"TableName": self.table, "Limit": 100}
        start = rnd.randrange(self.cfg.items)
        payload["ExclusiveStartKey"] = self.model.key(start)

        def check(d: dict) -> bool:
            items = d.get("Items") or []
            return len(items) <= 100 and all(self.model.check(it) for it in items)
        return "Scan", payload, check

    def op_fullscan(self, rnd: random.Random):
        payload: dict = {"TableName": self.table}
        if self._scan_cursor is not None:
            payload["ExclusiveStartKey"] = self._scan_cursor
        return "Scan", payload, lambda d: all(self.model.check(it) for it in d.get("Items") or [])

    def _after_fullscan(self, d: dict) -> None:
        self._scanned_items += len(d.get("Items") or [])
        self._scan_cursor = d.get("LastEvaluatedKey")
        if self._scan_cursor is None:
            self._full_passes += 1

    def op_batch(self, rnd: random.Random):
        ids = rnd.sample(range(self.cfg.items), min(25, self.cfg.items))
        payload = {"RequestItems": {self.table: [{"PutRequest": {"Item": self.model.item(i)}} for i in ids]}}
        return "BatchWriteItem", payload, lambda d: not (d.get("UnprocessedItems") or {}).get(self.table)

    def op_txn(self, rnd: random.Random):
        ids = rnd.sample(range(self.cfg.items), min(4, self.cfg.items))
        payload = {"TransactItems": [{"Put": {"TableName": self.table, "Item": self.model.item(i)}} for i in ids]}
        return "TransactWriteItems", payload, None

    def op_mixed(self, rnd: random.Random):
        x = rnd.random()  # 70 % reads, 20 % writes, 10 % queries
        if x < 0.7:
            return self.op_get(rnd)
        if x < 0.9:
            return self.op_put(rnd)
        return self.op_query(rnd)

    # -- driving --------------------------------------------------------------------------------
    async def _probe(self, name: str) -> str | None:
        """One request of the workload's operation(s); returns why it is unsupported, or None."""
        rnd = random.Random(1)
        ops = [self.op_get, self.op_put, self.op_query] if name == "mixed" else [getattr(self, f"op_{name}")]
        conn = Connection(self.ep)
        try:
            for mk in ops:
                op, payload, _ = mk(rnd)
                resp = await conn.call(op, payload)
                if resp.status != 200 and _is_unsupported(resp):
                    msg = ""
                    try:
                        msg = str(resp.json().get("message", ""))[:120]
                    except Exception:  # noqa: BLE001 - non-JSON body
                        pass
                    return f"{op}: {resp.error_type()} {msg}".strip()
        finally:
            await conn.close()
        return None

    async def _kms_decrypts(self) -> float | None:
        try:
            resp = await Connection(self.ep).get("/metrics")
        except (OSError, BenchHTTPError, asyncio.IncompleteReadError):
            return None
        if resp.status != 200:
            return None
        total = 0.0
        seen = False
        for line in resp.body.decode(errors="replace").splitlines():
            if line.startswith("dynavault_kms_calls_total{") and 'operation="Decrypt"' in line:
                total += float(line.rsplit(" ", 1)[1])
                seen = True
        return total if seen else 0.0 if "dynavault_" in resp.body.decode(errors="replace") else None

    async def run_workload(self, name: str) -> dict:
        why = await self._probe(name)
        if why is not None:
            return {"status": "unsupported", "reason": why}
        mk = getattr(self, f"op_{name}")
        stats = _Stats()
        kms_before = await self._kms_decrypts() if self.cfg.kms_calls else None
        stop_at = time.perf_counter() + self.cfg.duration

        async def worker(seed: int) -> None:
            rnd = random.Random(seed)
            conn = Connection(self.ep, fresh=self.cfg.new_connection_per_request)
            lat = stats.lat_ns
            clock = time.perf_counter_ns
            n = 0
            try:
                while time.perf_counter() < stop_at:
                    op, payload, check = mk(rnd)
                    t0 = clock()
                    try:
                        resp = await conn.call(op, payload)
                    except (OSError, BenchHTTPError, asyncio.IncompleteReadError) as e:
                        stats.errors[type(e).__name__] += 1
                        await conn.close()
                        continue
                    lat.append(clock() - t0)
                    stats.ops += 1
                    n += 1
                    if resp.status != 200:
                        et = resp.error_type()
                        stats.errors[et] += 1
                        stats.error_samples.setdefault(et, resp.body[:200].decode(errors="replace"))
                    elif name == "fullscan":
                        data = resp.json()
                        self._after_fullscan(data)
                        if n % VERIFY_EVERY == 1:
                            stats.verified += 1
                            if not check(data):
                                stats.verify_failed += 1
                    elif check is not None and n % VERIFY_EVERY == 1:
                        stats.verified += 1
                        if not check(resp.json()):
                            stats.verify_failed += 1
            finally:
                await conn.close()

        t0 = time.perf_counter()
        duration = self.cfg.duration
        async with self.progress.phase(name, duration, "s", lambda: min(duration, time.perf_counter() - t0),
                                       extra=lambda: f"{stats.ops:,} ops, {sum(stats.errors.values())} errors"):
            await asyncio.gather(*(worker(hash((self.run_id, name, k))) for k in range(self.cfg.connections)))
        elapsed = time.perf_counter() - t0
        lat = sorted(stats.lat_ns)
        ms = 1e-6
        out = {
            "status": "ok",
            "operation": mk(random.Random(0))[0] if name != "mixed" else "GetItem/PutItem/Query 70/20/10",
            "ops": stats.ops,
            "seconds": round(elapsed, 3),
            "ops_per_s": round(stats.ops / elapsed, 1) if elapsed else 0.0,
            **({"items_per_s": round(self._scanned_items / elapsed, 1) if elapsed else 0.0,
                "full_passes": self._full_passes} if name == "fullscan" else {}),
            "p50_ms": round(percentile(lat, 0.50) * ms, 3),
            "p90_ms": round(percentile(lat, 0.90) * ms, 3),
            "p99_ms": round(percentile(lat, 0.99) * ms, 3),
            "errors": sum(stats.errors.values()),
            "error_types": dict(stats.errors),
            "error_samples": stats.error_samples,
            "verified": stats.verified,
            "verify_failures": stats.verify_failed,
        }
        if self.cfg.kms_calls:
            kms_after = await self._kms_decrypts()
            if kms_before is None or kms_after is None:
                out["kms_decrypt_calls"] = None
                out["kms_decrypt_per_s"] = None
            else:
                out["kms_decrypt_calls"] = kms_after - kms_before
                out["kms_decrypt_per_s"] = round((kms_after - kms_before) / elapsed, 2)
        return out


#: the name the benchmarks and tests knew it by
_Runner = Runner


async def _run(cfg: BenchConfig) -> dict:
    runner = Runner(cfg)
    result: dict = {
        "endpoint": cfg.endpoint,
        "config": {"connections": cfg.connections, "duration": cfg.duration, "items": cfg.items,
                   "item_size": cfg.item_size, "new_connection_per_request": cfg.new_connection_per_request,
                   "workloads": list(cfg.workloads)},
    }
    result["setup"] = await runner.setup()
    try:
        wl: dict = {}
        for name in cfg.workloads:
            wl[name] = await runner.run_workload(name)
        result["workloads"] = wl
        if cfg.stream:
            from dynavault.bench.stream import read_stream

            result["stream"] = await read_stream(runner.ep, runner.table)
    finally:
        await runner.teardown()
    checked = sum(w.get("verified", 0) for w in wl.values())
    failed = sum(w.get("verify_failures", 0) for w in wl.values())
    result["verification"] = {"checked": checked, "failed": failed, "ok": failed == 0}
    result["signing_key_derivations"] = runner.ep.signer.derivations
    return result


def run_bench(cfg: BenchConfig) -> dict:
    bad = [w for w in cfg.workloads if w not in ALL_WORKLOADS]
    if bad:
        raise ValueError(f"unknown workloads {bad}; choose from {','.join(ALL_WORKLOADS)}")
    return run_in_new_loop(_run(cfg))


def run_in_new_loop(coro):
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a server dependency, but stay usable without it
        return asyncio.run(coro)
    return uvloop.run(coro)
