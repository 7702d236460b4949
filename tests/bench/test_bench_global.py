"""``dynavault bench --global``: replication latency and replicated PutItem throughput, against a given server
and on a pair of servers the bench starts itself (JSON shape and that every probed write was seen; never
timings)."""

from __future__ import annotations

import subprocess
import sys

import orjson

ARGS = ["--duration", "1", "--rate", "60", "--probe-every", "2", "--items", "30", "--connections", "2", "--json"]


def _bench(*extra: str) -> tuple[int, dict, str]:
    p = subprocess.run([sys.executable, "-m", "dynavault.cli", "bench", "--global", *ARGS, *extra],
                       capture_output=True, timeout=300)
    return p.returncode, orjson.loads(p.stdout) if p.stdout.strip() else {}, p.stderr.decode()


def _check_run(run: dict) -> None:
    lat = run["latency"]
    assert lat["writes"] > 0 and lat["write_errors"] == 0, lat
    assert lat["probes"] > 0 and lat["unseen"] == 0, lat
    assert 0 < lat["visible_p50_ms"] <= lat["visible_p99_ms"] <= lat["visible_max_ms"], lat
    for name in ("put_plain", "put_stream", "put_replicated"):
        w = run[name]
        assert w["ops"] > 0 and w["errors"] == 0, (name, w)
        # one round: a segment forwards, one backwards
        assert [s["status"] for s in w["segments"]] == ["ok", "ok"], (name, w)
    # a replicated segment lasts until the replica caught up
    assert all(s["drain_seconds"] > 0 for s in run["put_replicated"]["segments"])
    assert run["put_replicated"]["setup"]["replica_seconds"] > 0
    assert run["replicated_vs_plain_pct"] > 0 and run["replicated_vs_stream_pct"] > 0
    assert len(run["replicated_vs_plain_pct_segments"]) == 2


def test_bench_global_on_one_server(srv):
    rc, out, err = _bench("--endpoint", srv.endpoint)
    assert rc == 0, err
    assert [r["label"] for r in out["runs"]] == ["one server"]
    _check_run(out["runs"][0])
    # the bench cleans up after itself: its tables and their replicas are gone
    for region in ("us-east-1", "us-west-2"):
        names = srv.client("dynamodb", region=region).list_tables()["TableNames"]
        assert not [n for n in names if n.startswith("dvbench-")], (region, names)


def test_bench_global_starts_a_pair_of_servers_itself():
    rc, out, err = _bench("--setups", "two")
    assert rc == 0, err
    (run,) = out["runs"]
    assert run["label"] == "two servers" and run["writer"] != run["reader"]
    _check_run(run)
    # the bench started the servers: it reads their CPU per put
    for name in ("put_plain", "put_stream", "put_replicated"):
        assert run[name]["server_cpu_us_per_put"] >= run[name]["writer_cpu_us_per_put"] > 0, run[name]
