"""``dynavault bench`` argument parsing and output (a table for people, ``--json`` for scripts)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import orjson

from dynavault.bench.load import ALL_WORKLOADS, BenchConfig
from dynavault.bench.progress import Progress

__all__ = ["add_bench_parser", "run", "format_table"]


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="load-test a DynamoDB-compatible endpoint (or the storage path)")
    p.add_argument("--endpoint", default=None, help="http://host:port of any DynamoDB-compatible server")
    p.add_argument("--workloads", default="get,put,query", help=f"comma list from {','.join(ALL_WORKLOADS)}")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per workload")
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--item-size", dest="item_size", type=int, default=1024, help="approximate bytes per item")
    p.add_argument("--new-connection-per-request", dest="new_connection_per_request", action="store_true")
    p.add_argument("--json", dest="json_out", action="store_true", help="print one JSON document")
    p.add_argument("--kms-calls", dest="kms_calls", action="store_true",
                   help="report KMS Decrypt calls/s caused by each workload (from the server's /metrics)")
    p.add_argument("--selftest", action="store_true", help="the load generator's own ceiling")
    p.add_argument("--storage", action="store_true", help="in-process storage path: AEAD vs identity codec")
    p.add_argument("--keep-table", dest="keep_table", action="store_true")
    p.add_argument("--stream", action="store_true",
                   help="the table gets a NEW_AND_OLD_IMAGES stream; then read it back (GetRecords throughput); "
                        "implies --changing-puts")
    p.add_argument("--changing-puts", dest="changing_puts", action="store_true",
                   help="each put changes its item (an identical rewrite writes no stream record)")
    p.add_argument("--dax", default=None, metavar="dax://HOST:PORT",
                   help="with --endpoint: GetItem and Query over this server's DAX data plane (cache hit and miss) "
                        "against the same over HTTP, on the same table")
    p.add_argument("--global", dest="global_tables", action="store_true",
                   help="global-table replication: write-to-visible latency in another region at --rate, and PutItem "
                        "on a replicated table against a plain one; without --endpoint it starts one server and a "
                        "pair itself")
    p.add_argument("--peer-endpoint", dest="peer_endpoint", default=None,
                   help="with --global --endpoint: the server of --replica-region (two servers)")
    p.add_argument("--replica-region", dest="replica_region", default="us-west-2")
    p.add_argument("--rate", type=float, default=1000.0, help="with --global: target writes/s")
    p.add_argument("--probe-every", dest="probe_every", type=int, default=10,
                   help="with --global: look for one write in N in the other region")
    p.add_argument("--setups", default="one,two", help="with --global and no --endpoint: one (server), two, or both")
    p.add_argument("--rounds", type=int, default=1,
                   help="with --global: PutItem segments of each table, plain, with a stream and replicated, "
                        "alternating forwards and backwards (2 per round; --duration is split between them)")
    p.add_argument("--server-pid", dest="server_pid", type=int, default=None,
                   help="a server on this machine: report its CPU per operation (Linux /proc; its workers too)")
    p.add_argument("--access-key", dest="access_key", default="benchkey")
    p.add_argument("--secret-key", dest="secret_key", default="benchsecret")
    p.add_argument("--region", dest="bench_region", default="us-east-1")
    p.set_defaults(run=run)
    return p


def _fmt(v) -> str:
    return "-" if v is None else f"{v:,.1f}" if isinstance(v, float) else str(v)


def format_table(result: dict) -> str:
    lines = [f"endpoint {result['endpoint']}  table {result['setup']['table']}  gsi {result['setup']['gsi']}  "
             f"loaded {result['setup']['items']} items in {result['setup']['load_seconds']} s",
             "| workload | ops/s | p50 ms | p90 ms | p99 ms | errors | verified | kms Decrypt/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, w in result["workloads"].items():
        if w["status"] != "ok":
            lines.append(f"| {name} | unsupported | | | | | | |  {w['reason']}")
            continue
        lines.append(f"| {name} | {_fmt(w['ops_per_s'])} | {w['p50_ms']:.2f} | {w['p90_ms']:.2f} | "
                     f"{w['p99_ms']:.2f} | {w['errors']} | {w['verified'] - w['verify_failures']}/{w['verified']}"
                     f" | {_fmt(w.get('kms_decrypt_per_s'))} |")
        for et, sample in w.get("error_samples", {}).items():
            lines.append(f"    error {et}: {sample}")
    v = result["verification"]
    verdict = "FAILED" if not v["ok"] else "OK" if v["checked"] else "nothing read back to verify"
    lines.append(f"read-back verification: {v['checked']} checked, {v['failed']} failed -> {verdict}")
    return "\n".join(lines)


def _config(args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(endpoint=args.endpoint or "", connections=args.connections, duration=args.duration,
                       items=args.items, item_size=args.item_size, access_key=args.access_key,
                       secret_key=args.secret_key, region=args.bench_region,
                       progress=Progress.for_terminal(quiet=args.json_out))


def _report(args: argparse.Namespace, measure: Callable[[], dict], fmt: Callable[[dict], str],
            ok: Callable[[dict], bool]) -> int:
    """Run one bench mode; print its table (or JSON with --json); 2 on a setup error, 1 when ``ok`` fails."""
    try:
        out = measure()
    except (ValueError, RuntimeError, OSError) as e:
        print(f"dynavault bench: {e}", file=sys.stderr)
        return 2
    if args.json_out:
        sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(fmt(out))
    return 0 if ok(out) else 1


def _run_dax(args: argparse.Namespace, out: dict) -> int:
    from dynavault.bench.dax import format_dax_table, run_dax_bench

    if not args.endpoint:
        print("dynavault bench: --dax needs --endpoint (the same server's HTTP API loads the table)", file=sys.stderr)
        return 2
    cfg = _config(args)
    return _report(args, lambda: {**out, **run_dax_bench(cfg, args.dax, args.server_pid)}, format_dax_table,
                   lambda o: o["verification"]["ok"])


def _run_global(args: argparse.Namespace) -> int:
    from dynavault.bench.replication import format_global, run_global_bench

    cfg = _config(args)
    setups = tuple(s.strip() for s in args.setups.split(",") if s.strip())
    return _report(args, lambda: run_global_bench(cfg, peer=args.peer_endpoint, replica_region=args.replica_region,
                                                  rate=args.rate, probe_every=max(1, args.probe_every),
                                                  setups=setups, rounds=max(1, args.rounds),
                                                  server_pids=(args.server_pid,) if args.server_pid else ()),
                   format_global, lambda o: all(r["latency"]["unseen"] == 0 for r in o["runs"]))


def run(args: argparse.Namespace) -> int:
    out: dict = {}
    if args.global_tables:
        return _run_global(args)
    if args.selftest:
        from dynavault.bench.selftest import selftest

        out["selftest"] = selftest(args.connections, min(args.duration, 3.0))
    if args.storage:
        from dynavault.bench.storage import storage_bench

        out["storage"] = storage_bench(args.items, args.item_size, seconds=min(args.duration, 2.0))
    rc = 0
    if args.dax:
        return _run_dax(args, out)
    if args.endpoint:
        from dynavault.bench.load import run_bench

        cfg = BenchConfig(
            endpoint=args.endpoint, workloads=tuple(w.strip() for w in args.workloads.split(",") if w.strip()),
            connections=args.connections, duration=args.duration, items=args.items, item_size=args.item_size,
            new_connection_per_request=args.new_connection_per_request, kms_calls=args.kms_calls,
            keep_table=args.keep_table, access_key=args.access_key, secret_key=args.secret_key,
            region=args.bench_region, stream=args.stream, changing_puts=args.changing_puts,
            progress=Progress.for_terminal(quiet=args.json_out),
        )
        try:
            out.update(run_bench(cfg))
        except (ValueError, RuntimeError, OSError) as e:
            print(f"dynavault bench: {e}", file=sys.stderr)
            return 2
        rc = 0 if out["verification"]["ok"] else 1
    elif not (args.selftest or args.storage):
        print("dynavault bench: give --endpoint URL, --selftest or --storage", file=sys.stderr)
        return 2
    if args.json_out:
        sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
        return rc
    if "selftest" in out:
        st = out["selftest"]
        print(f"selftest: signer {st['signatures_per_s']:,.0f} signatures/s; trivial endpoint "
              f"{st['trivial_endpoint']['ops_per_s']:,.0f} req/s (p50 {st['trivial_endpoint']['p50_ms']} ms, "
              f"p99 {st['trivial_endpoint']['p99_ms']} ms, client and server on one core)")
    if "storage" in out:
        s = out["storage"]
        print(f"storage ({s['items']} items x {s['item_size']} B, synchronous={s['synchronous']}):")
        for name in ("identity", "aead"):
            r = s[name]
            print(f"  {name:8s} get {r['get_per_s']:>10,.0f}/s  put {r['put_per_s']:>8,.0f}/s  "
                  f"{r['bytes_per_item']} B/item on disk")
        print(f"  encryption cost: get {s['encryption_cost_get_pct']} %, put {s['encryption_cost_put_pct']} %")
    if args.endpoint:
        print(format_table(out))
        if "stream" in out:
            s = out["stream"]
            print(f"stream: {s['records']} records in {s['shards']} shard(s) read in {s['seconds']} s: "
                  f"{_fmt(s['records_per_s'])} records/s, {s['mb_per_s']} MB/s, {s['get_records_calls']} GetRecords")
    return rc
