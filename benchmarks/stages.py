#!/usr/bin/env python
"""Where a GetItem and a PutItem spend the server's time, stage by stage, measured in process.

    python benchmarks/stages.py [--requests 20000] [--items 2000]

Builds the real runtime (build_runtime) on a fresh data dir, with a real credential so every request's SigV4
signature is verified, creates the bench's table (one GSI) and loads its items, then drives the ASGI app
directly with signed GetItem and PutItem requests, 8 at a time (the bench's items and keys). The stages
are timed by wrapping the functions that make them up, each timer counting its own time minus that of the
timers it calls (so stages add up to the app's total). What is not in here: the HTTP layer (httptools parse,
uvicorn's protocol and ASGI cycle objects, the socket writes and the event loop), which is the rest of the
server's CPU per operation measured under load (benchmarks/ab.py).

The app's CPU per request is the event loop thread's CPU time (``time.thread_time_ns``) over an untimed run in
ten batches, the least batch's (a busy neighbour on a shared machine only adds to it); the stages' shares come from a second run with the
timers (wall clock, cheap to read), the time spent waiting for the group-commit fsync left out, and are
applied to that CPU figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

from dynavault.bench.load import GSI_NAME, ItemModel  # noqa: E402
from dynavault.bench.sigv4 import Signer  # noqa: E402
from dynavault.config import Settings  # noqa: E402
from dynavault.server.connection import SCOPE_KEY  # noqa: E402
from dynavault.server.runtime import build_runtime  # noqa: E402

#: wall time of the one thread all this runs on (cheap to read: a CPU-time clock costs a syscall per read)
clock = time.perf_counter_ns
WAIT = "durability wait (group commit)"


class Timers:
    """Each timer's own time: its wall time less that of the timers it called (a stack per asyncio task, as
    requests run concurrently)."""

    def __init__(self) -> None:
        self.self_ns: Counter[str] = Counter()
        self._stacks: contextvars.ContextVar[list[int]] = contextvars.ContextVar("timer_stack")
        self.on = False

    def new_stack(self) -> list[int]:
        stack: list[int] = []
        self._stacks.set(stack)
        return stack

    def _enter(self) -> None:
        self._stacks.get().append(0)

    def _leave(self, name: str, dt: int) -> None:
        stack = self._stacks.get()
        child = stack.pop()
        self.self_ns[name] += dt - child
        if stack:
            stack[-1] += dt

    def wrap(self, name: str, fn):
        if asyncio.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def aw(*a, **k):
                if not self.on or self._stacks.get(None) is None:
                    return await fn(*a, **k)
                self._enter()
                t0 = clock()
                try:
                    return await fn(*a, **k)
                finally:
                    self._leave(name, clock() - t0)
            return aw

        @functools.wraps(fn)
        def w(*a, **k):
            if not self.on or self._stacks.get(None) is None:  # off, or another thread (a background job)
                return fn(*a, **k)
            self._enter()
            t0 = clock()
            try:
                return fn(*a, **k)
            finally:
                self._leave(name, clock() - t0)
        return w

    def wrap_cm(self, name: str, fn):
        """A context-manager factory whose enter and exit (BEGIN / COMMIT) count as ``name``."""
        timers = self

        @contextlib.contextmanager
        def cm(*a, **k):
            inner = fn(*a, **k)
            value = timers.wrap(name, inner.__enter__)()
            try:
                yield value
            except BaseException as e:
                if not timers.wrap(name, inner.__exit__)(type(e), e, e.__traceback__):
                    raise
            else:
                timers.wrap(name, inner.__exit__)(None, None, None)
        return cm


class _TimedConn:
    """Stands in for the store's sqlite3 connection: every statement counts as SQLite."""

    def __init__(self, conn, timers: Timers) -> None:
        self._conn = conn
        self.execute = timers.wrap("storage: SQLite statements", conn.execute)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def _patch(timers: Timers, runtime) -> None:
    import dynavault.dynamodb.items as items
    import dynavault.server.app as app_mod
    import dynavault.storage.nodes as nodes
    import dynavault.storage.trees as trees
    from dynavault.sse.crypto import NodeCipher, TableCrypto
    from dynavault.storage.kv.sqlite import SqliteKV, SqliteTransaction

    app = runtime.app
    db = runtime.components["dynamodb"]
    w = timers.wrap
    app.verifier.authenticate = w("SigV4: headers", app.verifier.authenticate)
    app.verifier.check_body = w("SigV4: signature", app.verifier.check_body)
    app._parse_json = w("JSON: parse request", app._parse_json)
    app._read_body = w("ASGI: receive body", app._read_body)
    app._respond = w("response: headers, crc32, ASGI send", app._respond)
    app._request_id = w("request id", app._request_id)
    if app.durability is not None:
        app.durability.settle = w(WAIT, app.durability.settle)
    if app.observe is not None:
        app.observe = w("metrics", app.observe)

    class _Orjson:
        loads = staticmethod(orjson.loads)
        dumps = staticmethod(w("JSON: dump response", orjson.dumps))
        JSONDecodeError = orjson.JSONDecodeError
    app_mod.orjson = _Orjson  # type: ignore[assignment]

    for target, route in list(app.routes._routes.items()):
        front = route.front
        if front.validate is not None:
            front = dataclasses.replace(front, validate=w("shape validation", front.validate))
        app.routes._routes[target] = dataclasses.replace(route, front=front,
                                                         handler=w("handler: other", route.handler))
    db.data_table = w("table lookup (catalog)", db.data_table)
    db.crypto = w("table key cache", db.crypto)
    from dynavault.dynamodb.item_store import ItemWriter
    ItemWriter._index = w("put: index entries", ItemWriter._index)
    for sub in db.items.subscribers:
        # (a subscriber that takes the writer has ``in_writer`` instead of ``in_transaction``)
        for hook in ("in_transaction", "in_writer", "committed"):
            if hasattr(sub, hook):
                setattr(sub, hook, w("put: change subscribers", getattr(sub, hook)))
    if hasattr(db.items, "_hooks"):  # the hooks ItemStore looked up once: the wrapped ones
        db.items._hooks = tuple((sub.in_writer, True) if hasattr(sub, "in_writer") else (sub.in_transaction, False)
                                for sub in db.items.subscribers)
    import dynavault.dynamodb.item_store as item_store
    item_store.seal_item = w("put: item envelope", item_store.seal_item)
    item_store.open_item = w("put: old item decode", item_store.open_item)
    if hasattr(ItemWriter, "_current"):
        ItemWriter._current = w("put: table definition check (in the transaction)", ItemWriter._current)
    for name in ("key_of_request", "key_of_item"):
        setattr(items, name, w("key: parse + encode", getattr(items, name)))
    for name in ("validate_item", "canonical_item", "item_size"):
        setattr(items, name, w("put: item validate/canonical/size", getattr(items, name)))
    TableCrypto.token = w("key: partition token (HMAC)", TableCrypto.token)
    NodeCipher.open = w("decrypt (AES-GCM open)", NodeCipher.open)
    NodeCipher.seal = w("encrypt (AES-GCM seal)", NodeCipher.seal)
    for name in ("leaf_lookup", "inner_child", "token_leaf_has", "decode_node"):
        setattr(trees, name, w("node decode", getattr(trees, name)))
    nodes.Leaf.encode = w("node encode", nodes.Leaf.encode)
    try:
        from dynavault.storage.node_cache import NodeCache
        NodeCache.get = w("node cache", NodeCache.get)
        NodeCache.put = w("node cache", NodeCache.put)
    except ImportError:  # a tree from before the node cache
        pass
    import dynavault.dynamodb.query as query
    query.Page.add = w("query: page add (per item)", query.Page.add)
    if hasattr(query.Page, "take"):  # the per-item loop (the tree walk's own generator steps run inside it)
        query.Page.take = w("query: page add (per item)", query.Page.take)
    query._key_parts = w("query: key condition parse", query._key_parts)
    trees.EncryptedTrees.get = w("tree walk", trees.EncryptedTrees.get)
    if hasattr(trees.EncryptedTrees, "get_in_one_read"):  # a GetItem's one-statement read
        trees.EncryptedTrees.get_in_one_read = w("tree walk", trees.EncryptedTrees.get_in_one_read)
    trees.EncryptedTrees.slot = w("tree walk", trees.EncryptedTrees.slot)
    trees.Slot.put = w("tree walk", trees.Slot.put)
    SqliteKV.get = w("storage: kv get", SqliteKV.get)
    SqliteTransaction.put = w("storage: kv put", SqliteTransaction.put)
    SqliteKV.transaction = timers.wrap_cm("storage: begin/commit", SqliteKV.transaction)
    # every pooled connection (and any opened later) counts its statements as SQLite
    kv = db.items.kv
    kv._idle[:] = [_TimedConn(c, timers) for c in kv._idle]
    connect = kv._connect
    kv._connect = lambda: _TimedConn(connect(), timers)


class Driver:
    def __init__(self, app, signer: Signer, conn_id: int = 1) -> None:
        self.app = app
        self.signer = signer
        self.conn_id = conn_id

    def request(self, op: str, payload: dict) -> tuple[dict, list[tuple[bytes, bytes]], bytes]:
        body = orjson.dumps(payload)
        head = self.signer.headers("DynamoDB_20120810." + op, body)
        headers = []
        for line in head.decode().split("\r\n"):
            if line:
                name, _, value = line.partition(": ")
                headers.append((name.lower().encode(), value.encode()))
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "",
                 "headers": headers, "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
                 SCOPE_KEY: self.conn_id}
        return scope, headers, body

    async def call(self, scope: dict, body: bytes) -> tuple[int, bytes]:
        out: list = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            out.append(message)

        await self.app(scope, receive, send)
        return out[0]["status"], out[1]["body"]

    async def must(self, op: str, payload: dict) -> dict:
        """One signed request through the app; its answer, or RuntimeError on anything but 200."""
        scope, _, body = self.request(op, payload)
        status, resp = await self.call(scope, body)
        if status != 200:
            raise RuntimeError(f"{op}: {status} {resp[:300]!r}")
        return orjson.loads(resp)


async def _run(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="dv-stages-") as tmp:
        settings = Settings(data_dir=str(Path(tmp) / "data"), root_key_file=str(Path(tmp) / "root.key"))
        with contextlib.redirect_stdout(sys.stderr):  # the "root credential created" notice
            runtime = build_runtime(settings)
        await runtime.start()
        try:
            cred = runtime.credentials.all()[0]
            signer = Signer(cred.access_key_id, cred.secret_access_key, "us-east-1", "127.0.0.1:8000")
            drv = Driver(runtime.app, signer)
            model = ItemModel(args.items, 1024, "stages")
            table = "stages"

            must = drv.must

            await must("CreateTable", {
                "TableName": table, "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gk")],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                "GlobalSecondaryIndexes": [{"IndexName": GSI_NAME, "Projection": {"ProjectionType": "KEYS_ONLY"},
                                            "KeySchema": [{"AttributeName": "gk", "KeyType": "HASH"},
                                                          {"AttributeName": "sk", "KeyType": "RANGE"}]}]})
            for start in range(0, args.items, 25):
                await must("BatchWriteItem", {"RequestItems": {table: [
                    {"PutRequest": {"Item": model.item(i)}} for i in range(start, min(args.items, start + 25))]}})

            rnd = random.Random(7)
            results = {}
            timers = Timers()

            def make(op: str) -> list[tuple[dict, bytes]]:
                reqs = []
                for _ in range(args.requests):
                    i = rnd.randrange(args.items)
                    if op == "GetItem":
                        payload = {"TableName": table, "Key": model.key(i)}
                    elif op == "Query":  # a whole partition: the bench's 20 items
                        payload = {"TableName": table, "KeyConditionExpression": "pk = :p",
                                   "ExpressionAttributeValues": {":p": {"S": model.pk(i % model.partitions)}}}
                    else:
                        payload = {"TableName": table, "Item": model.item(i)}
                    scope, _, body = drv.request(op, payload)
                    reqs.append((scope, body))
                return reqs

            async def drive(reqs: list[tuple[dict, bytes]], timed: bool) -> None:
                # ``--concurrency`` requests in flight, as from that many keep-alive connections: writes then
                # share group-commit fsyncs as they do under load
                it = iter(reqs)

                async def worker() -> None:
                    stack = timers.new_stack()
                    for scope, body in it:
                        if not timed:
                            await drv.call(scope, body)
                            continue
                        stack.append(0)
                        t1 = clock()
                        status, resp = await drv.call(scope, body)
                        dt = clock() - t1
                        timers.self_ns["request plumbing (app, outside the stages)"] += dt - stack.pop()
                        if status != 200:
                            raise RuntimeError(f"{status} {resp[:300]!r}")

                await asyncio.gather(*(worker() for _ in range(args.concurrency)))

            for op in args.ops.split(","):
                reqs = make(op)
                await drive(make(op)[: args.warmup], False)
                # untimed: CPU of this thread (the fsync thread's is apart) and wall time, in ten batches; the
                # least CPU of a batch is the figure (a busy neighbour only ever adds to it), the median is shown
                cpu, wall = [], []
                step = max(1, len(reqs) // 10)
                for at in range(0, len(reqs), step):
                    batch = reqs[at : at + step]
                    t0, c0 = clock(), time.thread_time_ns()
                    await drive(batch, False)
                    cpu.append((time.thread_time_ns() - c0) / len(batch) / 1000)
                    wall.append((clock() - t0) / len(batch) / 1000)
                results[op] = {"app_cpu_us": min(cpu), "app_cpu_median_us": statistics.median(cpu),
                               "app_wall_us": statistics.median(wall)}
            if args.profile:
                import cProfile
                import pstats
                for op in args.ops.split(","):
                    reqs = make(op)
                    prof = cProfile.Profile()
                    prof.enable()
                    await drive(reqs, False)
                    prof.disable()
                    print(f"\n== cProfile {op} ({len(reqs)} requests), by own time", file=sys.stderr)
                    pstats.Stats(prof, stream=sys.stderr).sort_stats(os.environ.get("STAGES_SORT", "tottime")).print_stats(args.profile)
            if args.no_timers:
                return results
            _patch(timers, runtime)
            for op in args.ops.split(","):
                reqs = make(op)
                timers.self_ns.clear()
                timers.on = True
                t0 = clock()
                await drive(reqs, True)
                wall = (clock() - t0) / len(reqs) / 1000
                timers.on = False
                n = len(reqs)
                results[op]["stages_us"] = {k: round(v / n / 1000, 2) for k, v in timers.self_ns.most_common()}
                results[op]["timed_total_us"] = round(wall, 2)
            return results
        finally:
            await runtime.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2000)
    ap.add_argument("--ops", default="GetItem,PutItem", help="any of GetItem, PutItem, Query (20 items)")
    ap.add_argument("--no-timers", action="store_true",
                    help="only the untimed run (for instruction counts: run twice under valgrind --tool=callgrind "
                         "with two --requests and divide the difference)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also run each operation under cProfile and print its N top functions by own time")
    args = ap.parse_args()
    import uvloop

    results = uvloop.run(_run(args))
    if args.json:
        print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
        return 0
    for op, r in results.items():
        if "stages_us" not in r:
            print(f"{op}: {r['app_cpu_us']:.1f} µs CPU per request")
            continue
        stages = dict(r["stages_us"])
        wait = stages.pop(WAIT, 0.0)
        busy = sum(stages.values())
        print(f"\n{op}: {r['app_cpu_us']:.1f} µs CPU per request in the app (least of ten untimed batches; median "
              f"{r['app_cpu_median_us']:.1f} µs, wall "
              f"{r['app_wall_us']:.1f} µs per request, with timers {r['timed_total_us']:.1f} µs; requests spent "
              f"{wait:.1f} µs each waiting for the group-commit fsync)\n\n| stage | share | ≈ µs CPU |\n|---|---:|---:|")
        for k, v in stages.items():
            print(f"| {k} | {100 * v / busy:.1f} % | {r['app_cpu_us'] * v / busy:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
