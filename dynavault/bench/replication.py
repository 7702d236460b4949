"""``dynavault bench --global``: global-table replication under load.

Two phases per setup (one server serving both regions; two servers, one region each), one after the other,
so neither takes CPU from the other:

- **PutItem throughput**, replicated against plain. Three tables are set up first, the same way (the bench's
  items and index, loaded with BatchWriteItem): a plain table; a plain table with a NEW_AND_OLD_IMAGES stream
  (which every member of a global table must have: the gap between it and the replicated one is what
  replication itself costs); and a table with a replica in the other region (and server), ACTIVE before any
  measurement. Then the bench's ``put`` workload (changing puts, closed loop: as fast as the connections go,
  no pacing) runs on them in alternating segments, ``plain, stream, replicated, replicated, stream, plain`` per
  ``rounds``, ``duration / (2 * rounds)`` seconds each, so a drift in the machine's load (other jobs on a
  shared machine) weighs on every table alike. Nothing reads the other region meanwhile, except once at the
  end of every replicated segment: a marker item is put and the segment lasts until the other region shows
  it (queues are applied in order, so by then every write of the segment is there): a backlog left in a
  queue is counted against the replicated table rather than slowing the next segment. ops/s per table are
  its puts over its segments' seconds; ``replicated_vs_plain_pct`` is the target's ratio, the per-segment-pair
  ratios show the noise. When the bench started the servers (or got ``server_pids``), the servers' CPU per
  put (their processes and workers, from /proc) is reported too: a figure the machine's load moves less.
- **write-to-visible latency**, separately, on a fresh replicated table: writers put new items in one region
  at a target rate (open loop: a write is sent at its scheduled time, or at once when the writers are behind,
  so the rate reached is reported; with 8 connections a server slower than 8 ms a put cannot reach 1,000/s),
  and for one write in ``probe_every`` a probe polls GetItem (ConsistentRead, every 5 ms) in the other region
  until the item is there. These polls are extra load on the same machine (in one server, on the same
  server). Latency is from the moment the write was sent (its own PutItem included) to the first read that
  saw it; ``from_ack`` is from the write's response instead.

Without ``--endpoint`` the bench starts the servers itself (``python -m dynavault.cli serve`` in a temporary
directory, with a root key file, ``--regions`` and ``--replica-peer`` for the pair) and stops them after. The
bench does not import the server's packages: it talks to them over HTTP as any client does.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from dynavault.bench.client import BenchHTTPError, Connection, Endpoint
from dynavault.bench.dax import server_cpu_seconds
from dynavault.bench.load import BenchConfig, Runner, percentile, run_in_new_loop

__all__ = ["GlobalConfig", "run_global_bench", "format_global"]

#: seconds between two polls of a probe
POLL = 0.005
#: a write not visible after this long counts as unseen
VISIBLE_TIMEOUT = 30.0


@dataclass
class GlobalConfig:
    base: BenchConfig
    #: where writes go (region ``base.region``) and where they are looked for (``replica_region``); the same
    #: URL for one server
    writer: str = ""
    reader: str = ""
    replica_region: str = "us-west-2"
    rate: float = 1000.0
    probe_every: int = 10
    label: str = ""
    #: the throughput phase's rounds: each a segment of every table forwards, then backwards
    rounds: int = 1


# -- servers the bench starts itself -------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, base: Path, port: int, extra: list[str]) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.log = open(base / "server.log", "ab")
        cmd = [sys.executable, "-m", "dynavault.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--data-dir", str(base / "data"), "--root-key-file", str(base / "root.key"),
               "--allow-any-credentials", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log)
        self.endpoint = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()  # type: ignore[union-attr]
            if not line:
                break
            if line.startswith("dynavault listening on "):
                self.endpoint = line.split(" on ", 1)[1].split()[0]
                return
        self.stop()
        raise RuntimeError(f"the server did not start; see {base / 'server.log'}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _start_pair(base: Path, regions: tuple[str, str], access_key: str, secret_key: str) -> list[_Server]:
    ports = (_free_port(), _free_port())
    base.mkdir(parents=True, exist_ok=True)
    servers: list[_Server] = []
    try:
        for me in (0, 1):
            other = 1 - me
            peers = base / f"peers-{me}.json"
            peers.write_text(json.dumps({regions[other]: {"aws_access_key_id": access_key,
                                                          "aws_secret_access_key": secret_key}}))
            os.chmod(peers, 0o600)
            servers.append(_Server(base / f"server-{me}", ports[me], [
                "--regions", regions[me], "--replica-peer", f"{regions[other]}=http://127.0.0.1:{ports[other]}",
                "--replica-peer-credentials", str(peers)]))
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return servers


# -- the measurements --------------------------------------------------------------------------------------
async def _must(conn: Connection, op: str, payload: dict) -> dict:
    resp = await conn.call(op, payload)
    if resp.status != 200:
        raise RuntimeError(f"{op} failed: {resp.status} {resp.body[:300]!r}")
    return resp.json()


async def _add_replica(ep: Endpoint, table: str, region: str, timeout: float = 300.0) -> float:
    """Add a replica and wait until it is ACTIVE; -> seconds it took (the backfill included)."""
    conn = Connection(ep)
    t0 = time.perf_counter()
    try:
        await _must(conn, "UpdateTable", {"TableName": table, "ReplicaUpdates": [{"Create": {"RegionName": region}}]})
        while True:
            t = (await _must(conn, "DescribeTable", {"TableName": table}))["Table"]
            replicas = t.get("Replicas") or []
            if replicas and all(r.get("ReplicaStatus") == "ACTIVE" for r in replicas):
                return round(time.perf_counter() - t0, 3)
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"the replica in {region} is not ACTIVE after {timeout:.0f} s: {replicas}")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def _drop_replica(ep: Endpoint, table: str, region: str, timeout: float = 60.0) -> None:
    conn = Connection(ep)
    try:
        await conn.call("UpdateTable", {"TableName": table, "ReplicaUpdates": [{"Delete": {"RegionName": region}}]})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # a table being updated cannot be deleted yet
            resp = await conn.call("DescribeTable", {"TableName": table})
            t = resp.json().get("Table", {}) if resp.status == 200 else {}
            if t.get("TableStatus") == "ACTIVE" and not t.get("Replicas"):
                break
            await asyncio.sleep(0.1)
        await conn.call("DeleteTable", {"TableName": table})
    except (OSError, BenchHTTPError):
        pass
    finally:
        await conn.close()


def _ms(lat: list[float], q: float) -> float:
    return round(percentile(lat, q) * 1000, 1)


async def _latency(cfg: GlobalConfig, writer: Endpoint, reader: Endpoint) -> dict:
    b = cfg.base
    table = f"dvbench-global-{uuid.uuid4().hex[:8]}"
    conn = Connection(writer)
    await _must(conn, "CreateTable", {
        "TableName": table, "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]})
    while (await _must(conn, "DescribeTable", {"TableName": table}))["Table"]["TableStatus"] != "ACTIVE":
        await asyncio.sleep(0.05)
    await conn.close()
    await _add_replica(writer, table, cfg.replica_region)
    pad = "x" * max(1, b.item_size - 40)
    seen: list[float] = []
    from_ack: list[float] = []
    put_lat: list[float] = []
    counts = {"writes": 0, "write_errors": 0, "probes": 0, "unseen": 0}
    pool: list[Connection] = []
    probes: set[asyncio.Task] = set()

    async def probe(key: str, sent: float, acked: float) -> None:
        c = pool.pop() if pool else Connection(reader)
        payload = {"TableName": table, "Key": {"pk": {"S": key}}, "ConsistentRead": True}
        try:
            while True:
                try:
                    resp = await c.call("GetItem", payload)
                except (OSError, BenchHTTPError, asyncio.IncompleteReadError):
                    await c.close()
                    resp = None
                now = time.perf_counter()
                if resp is not None and resp.status == 200 and b'"Item"' in resp.body:
                    seen.append(now - sent)
                    from_ack.append(now - acked)
                    return
                if now - sent > VISIBLE_TIMEOUT:
                    counts["unseen"] += 1
                    return
                await asyncio.sleep(POLL)
        finally:
            pool.append(c)

    start = time.perf_counter() + 0.1
    stop_at = start + b.duration
    per_conn = b.connections / cfg.rate  # seconds between two writes of one connection

    async def write_loop(k: int) -> None:
        c = Connection(writer)
        n = k
        due = start + per_conn * k / b.connections
        try:
            while True:
                now = time.perf_counter()
                if due >= stop_at or now >= stop_at:
                    return
                if due > now:
                    await asyncio.sleep(due - now)
                due += per_conn
                key = f"w{n:09d}"
                n += b.connections
                sent = time.perf_counter()
                try:
                    resp = await c.call("PutItem", {"TableName": table, "Item": {"pk": {"S": key}, "d": {"S": pad}}})
                except (OSError, BenchHTTPError, asyncio.IncompleteReadError):
                    counts["write_errors"] += 1
                    await c.close()
                    continue
                acked = time.perf_counter()
                if resp.status != 200:
                    counts["write_errors"] += 1
                    continue
                counts["writes"] += 1
                put_lat.append(acked - sent)
                if (n // b.connections) % cfg.probe_every == 0:
                    counts["probes"] += 1
                    task = asyncio.get_running_loop().create_task(probe(key, sent, acked))
                    probes.add(task)
                    task.add_done_callback(probes.discard)
        finally:
            await c.close()

    await asyncio.gather(*(write_loop(k) for k in range(b.connections)))
    elapsed = time.perf_counter() - start
    while probes:
        await asyncio.gather(*list(probes))
    for c in pool:
        await c.close()
    await _drop_replica(writer, table, cfg.replica_region)
    seen.sort()
    from_ack.sort()
    put_lat.sort()
    return {"table": table, "target_writes_per_s": cfg.rate, "seconds": round(elapsed, 2), **counts,
            "writes_per_s": round(counts["writes"] / elapsed, 1),
            "put_p50_ms": _ms(put_lat, 0.5), "put_p99_ms": _ms(put_lat, 0.99),
            "visible_p50_ms": _ms(seen, 0.5), "visible_p90_ms": _ms(seen, 0.9), "visible_p99_ms": _ms(seen, 0.99),
            "visible_max_ms": _ms(seen, 1.0), "from_ack_p50_ms": _ms(from_ack, 0.5),
            "from_ack_p99_ms": _ms(from_ack, 0.99)}


#: the throughput phase's tables, all set up (same items, same index) before any is measured: a plain table, a
#: plain table with a NEW_AND_OLD_IMAGES stream (which every member of a global table has: the reference that
#: isolates what replication itself costs), and a table with a replica in the other region
KINDS = ("plain", "stream", "replicated")


async def _drain(cfg: GlobalConfig, writer: Endpoint, reader: Endpoint, table: str, n: int) -> float:
    """Put a marker item in the writer's region and wait until the reader's region has it; -> seconds. Every
    queue is applied in order, so once the marker is there every write before it is too."""
    wc, rc = Connection(writer), Connection(reader)
    key = {"pk": {"S": f"drain-{n}"}, "sk": {"S": "0"}}
    t0 = time.perf_counter()
    try:
        await _must(wc, "PutItem", {"TableName": table, "Item": key})
        while True:
            got = await _must(rc, "GetItem", {"TableName": table, "Key": key, "ConsistentRead": True})
            if "Item" in got:
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > VISIBLE_TIMEOUT:
                raise RuntimeError(f"the replica of {table} did not catch up in {VISIBLE_TIMEOUT:.0f} s")
            await asyncio.sleep(POLL)
    finally:
        await wc.close()
        await rc.close()


def _cpu(pids: tuple[int, ...]) -> list[float] | None:
    """CPU seconds so far of each server (its workers included), or None if one cannot be read."""
    out = [server_cpu_seconds(pid) for pid in pids]
    return None if not out or None in out else out  # type: ignore[return-value]


async def _throughput(cfg: GlobalConfig, writer: Endpoint, reader: Endpoint, pids: tuple[int, ...]) -> dict:
    """PutItem throughput of the three ``KINDS``, in ``2 * cfg.rounds`` alternating segments (plain, stream,
    replicated, then replicated, stream, plain, ...), each ``duration / (2 * rounds)`` seconds; a replicated
    segment lasts until the replica has caught up (``_drain``), so a backlog left in a queue is not free."""
    b = cfg.base
    segments = 2 * max(1, cfg.rounds)
    seg_cfg = replace(b, endpoint=cfg.writer, workloads=("put",), changing_puts=True, duration=b.duration / segments,
                      keep_table=False)
    runners = {kind: Runner(replace(seg_cfg, stream=kind == "stream")) for kind in KINDS}
    out: dict = {kind: {"segments": []} for kind in KINDS}
    made: list[str] = []
    try:
        for kind, runner in runners.items():
            out[kind]["setup"] = await runner.setup()
            made.append(kind)
            if kind == "replicated":
                out[kind]["setup"]["replica_seconds"] = await _add_replica(writer, runner.table, cfg.replica_region)
        drains = 0
        for seg in range(segments):
            for kind in (KINDS if seg % 2 == 0 else KINDS[::-1]):
                cpu0 = _cpu(pids)
                res = await runners[kind].run_workload("put")
                if res.get("status") != "ok":
                    raise RuntimeError(f"the put workload on the {kind} table: {res}")
                if kind == "replicated":
                    drains += 1
                    res["drain_seconds"] = round(await _drain(cfg, writer, reader, runners[kind].table, drains), 3)
                    res["seconds"] = round(res["seconds"] + res["drain_seconds"], 3)
                cpu1 = _cpu(pids)
                if cpu0 is not None and cpu1 is not None:
                    res["server_cpu_seconds"] = [round(b - a, 3) for a, b in zip(cpu0, cpu1, strict=True)]
                out[kind]["segments"].append(res)
    finally:
        for kind in reversed(made):
            if kind == "replicated":
                await _drop_replica(writer, runners[kind].table, cfg.replica_region)
            else:
                await runners[kind].teardown()
    for kind in KINDS:
        segs = out[kind]["segments"]
        ops, secs = sum(s["ops"] for s in segs), sum(s["seconds"] for s in segs)
        out[kind].update(ops=ops, seconds=round(secs, 3), ops_per_s=round(ops / secs, 1) if secs else 0.0,
                         p50_ms=sorted(s["p50_ms"] for s in segs)[len(segs) // 2],
                         p99_ms=max(s["p99_ms"] for s in segs),
                         errors=sum(s["errors"] for s in segs))
        if all("server_cpu_seconds" in s for s in segs) and ops:
            # every server's CPU (the writer's and, for a pair, the other region's), then the writer's alone
            out[kind]["server_cpu_us_per_put"] = round(1e6 * sum(sum(s["server_cpu_seconds"]) for s in segs) / ops, 1)
            out[kind]["writer_cpu_us_per_put"] = round(1e6 * sum(s["server_cpu_seconds"][0] for s in segs) / ops, 1)
    return out


def _pct(a: float | None, b: float | None) -> float | None:
    return round(100 * a / b, 1) if a and b else None


async def _run(cfg: GlobalConfig, pids: tuple[int, ...] = ()) -> dict:
    b = cfg.base
    writer = Endpoint(cfg.writer, access_key=b.access_key, secret_key=b.secret_key, region=b.region)
    reader = Endpoint(cfg.reader, access_key=b.access_key, secret_key=b.secret_key, region=cfg.replica_region)
    out: dict = {"label": cfg.label, "writer": cfg.writer, "reader": cfg.reader, "regions": [b.region, cfg.replica_region],
                 "config": {"connections": b.connections, "duration": b.duration, "items": b.items,
                            "item_size": b.item_size, "rate": cfg.rate, "probe_every": cfg.probe_every,
                            "rounds": cfg.rounds}}
    tp = await _throughput(cfg, writer, reader, pids)
    out["put_plain"], out["put_stream"], out["put_replicated"] = tp["plain"], tp["stream"], tp["replicated"]
    out["replicated_vs_plain_pct"] = _pct(tp["replicated"]["ops_per_s"], tp["plain"]["ops_per_s"])
    out["replicated_vs_stream_pct"] = _pct(tp["replicated"]["ops_per_s"], tp["stream"]["ops_per_s"])
    # the same from each pair of neighbouring segments: how much the ratio moved while the machine's load did
    out["replicated_vs_plain_pct_segments"] = [
        _pct(r["ops_per_s"], p["ops_per_s"])
        for r, p in zip(tp["replicated"]["segments"], tp["plain"]["segments"], strict=True)]
    cpu_p, cpu_r = tp["plain"].get("server_cpu_us_per_put"), tp["replicated"].get("server_cpu_us_per_put")
    out["server_cpu_plain_vs_replicated_pct"] = _pct(cpu_p, cpu_r)
    out["writer_cpu_plain_vs_replicated_pct"] = _pct(tp["plain"].get("writer_cpu_us_per_put"),
                                                      tp["replicated"].get("writer_cpu_us_per_put"))
    out["latency"] = await _latency(cfg, writer, reader)
    return out


def run_global_bench(base: BenchConfig, *, peer: str | None = None, replica_region: str = "us-west-2",
                     rate: float = 1000.0, probe_every: int = 10, setups: tuple[str, ...] = ("one", "two"),
                     server_args: tuple[str, ...] = (), rounds: int = 1, server_pids: tuple[int, ...] = ()) -> dict:
    """With ``base.endpoint``: that server (and ``peer``, the other region's server, if given; ``server_pids``:
    their processes, for the CPU per put). Without: the bench starts one server for ``one`` and a pair for
    ``two``, and reads their CPU itself."""
    results: list[dict] = []
    if base.endpoint:
        cfg = GlobalConfig(base, base.endpoint, peer or base.endpoint, replica_region, rate, probe_every,
                           "two servers" if peer else "one server", rounds)
        results.append(run_in_new_loop(_run(cfg, server_pids)))
        return {"runs": results}
    with tempfile.TemporaryDirectory(prefix="dvbench-global-") as tmp:
        for setup in setups:
            if setup == "one":
                servers = [_Server(Path(tmp) / "one", _free_port(), list(server_args))]
                writer_url = reader_url = servers[0].endpoint
            elif setup == "two":
                servers = _start_pair(Path(tmp) / "two", (base.region, replica_region), base.access_key,
                                      base.secret_key)
                writer_url, reader_url = servers[0].endpoint, servers[1].endpoint
            else:
                raise ValueError(f"unknown setup {setup!r}: one or two")
            try:
                cfg = GlobalConfig(replace(base, endpoint=writer_url), writer_url, reader_url, replica_region,
                                   rate, probe_every, "one server" if setup == "one" else "two servers", rounds)
                results.append(run_in_new_loop(_run(cfg, tuple(s.proc.pid for s in servers))))
            finally:
                for s in servers:
                    s.stop()
    return {"runs": results}


def _num(v: float | None, unit: str = "") -> str:
    return "–" if v is None else f"{v:,.1f}{unit}"


def format_global(result: dict) -> str:
    lines = ["PutItem throughput (alternating segments; a replicated segment lasts until its replica caught up):", "",
             "| setup | plain put/s | with stream put/s | replicated put/s | replicated/plain | replicated/stream | "
             "per segment pair | server CPU µs/put plain / stream / replicated | writer server's alone |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in result["runs"]:
        p, st, rp = r["put_plain"], r["put_stream"], r["put_replicated"]
        pairs = ", ".join(_num(x, " %") for x in r["replicated_vs_plain_pct_segments"])
        cpu = " / ".join(_num(x.get("server_cpu_us_per_put")) for x in (p, st, rp))
        writer = " / ".join(_num(x.get("writer_cpu_us_per_put")) for x in (p, st, rp))
        lines.append(f"| {r['label']} | {p['ops_per_s']:,.1f} | {st['ops_per_s']:,.1f} | {rp['ops_per_s']:,.1f} | "
                     f"{_num(r['replicated_vs_plain_pct'], ' %')} | {_num(r['replicated_vs_stream_pct'], ' %')} | "
                     f"{pairs} | {cpu} | {writer} |")
    lines += ["", "Write-to-visible latency (paced writes, one in N probed in the other region):", "",
              "| setup | target w/s | reached w/s | PutItem p50/p99 ms | visible p50 ms | p90 | p99 | max | "
              "from ack p50/p99 ms | unseen |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["runs"]:
        lat = r["latency"]
        lines.append(
            f"| {r['label']} | {lat['target_writes_per_s']:,.0f} | {lat['writes_per_s']:,.1f} | "
            f"{lat['put_p50_ms']} / {lat['put_p99_ms']} | {lat['visible_p50_ms']} | {lat['visible_p90_ms']} | "
            f"{lat['visible_p99_ms']} | {lat['visible_max_ms']} | {lat['from_ack_p50_ms']} / {lat['from_ack_p99_ms']} | "
            f"{lat['unseen']}/{lat['probes']} |")
    return "\n".join(lines)
