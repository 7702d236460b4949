"""``dynavault bench`` against a real server: JSON shape and read-back verification (never timings)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import orjson

from dynavault.bench.client import Connection, Endpoint
from dynavault.bench.load import ItemModel
from dynavault.bench.sigv4 import Signer


def _bench(endpoint: str, *extra: str) -> tuple[int, dict, str]:
    cmd = [sys.executable, "-m", "dynavault.cli", "bench", "--endpoint", endpoint, "--duration", "1",
           "--items", "50", "--connections", "4", "--json", *extra]
    p = subprocess.run(cmd, capture_output=True, timeout=120)
    return p.returncode, orjson.loads(p.stdout) if p.stdout.strip() else {}, p.stderr.decode()


def test_bench_json_shape_and_verification(srv):
    rc, out, err = _bench(srv.endpoint, "--workloads", "get,query,put,txn", "--kms-calls")
    assert rc == 0, err
    assert out["setup"]["items"] == 50 and out["setup"]["table"].startswith("dvbench-")
    wl = out["workloads"]
    assert list(wl) == ["get", "query", "put", "txn"]
    for name in ("get", "query", "put"):
        w = wl[name]
        assert w["status"] == "ok", (name, w)
        assert w["ops"] > 0 and w["errors"] == 0, (name, w)
        assert 0 < w["p50_ms"] <= w["p90_ms"] <= w["p99_ms"]
        assert w["kms_decrypt_calls"] is not None and w["kms_decrypt_calls"] >= 0
    assert wl["txn"]["status"] in ("ok", "unsupported")
    assert wl["get"]["verified"] > 0 and wl["query"]["verified"] > 0
    v = out["verification"]
    assert v["ok"] and v["failed"] == 0 and v["checked"] == wl["get"]["verified"] + wl["query"]["verified"]
    # The signing key is derived once per day, not per request.
    assert 1 <= out["signing_key_derivations"] <= 2
    # The bench cleans up after itself.
    names = srv.client("dynamodb").list_tables()["TableNames"]
    assert out["setup"]["table"] not in names


def test_verification_catches_wrong_items(srv):
    """The checker the bench applies to reads rejects a changed item: verification can fail."""
    model = ItemModel(50, 1024, "abcd1234")
    ddb = srv.client("dynamodb")
    ddb.create_table(TableName="vtab", BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}])
    ddb.put_item(TableName="vtab", Item=model.item(7))
    wrong = model.item(8)
    wrong.update(model.key(9))
    ddb.put_item(TableName="vtab", Item=wrong)

    async def fetch(i: int) -> dict:
        c = Connection(Endpoint(srv.endpoint))
        try:
            r = await c.call("GetItem", {"TableName": "vtab", "Key": model.key(i)})
        finally:
            await c.close()
        assert r.status == 200
        return r.json().get("Item")

    good, bad = asyncio.run(fetch(7)), asyncio.run(fetch(9))
    assert model.check(good)
    assert not model.check(bad) or bad["n"]["N"] != "9"
    tampered = dict(good, data={"S": good["data"]["S"][:-1] + "!"})
    assert not model.check(tampered)


def test_signer_is_accepted_and_rejected_by_secret(start_server):
    """Our SigV4 matches the server's verifier: a known key with the right secret works, a wrong one fails."""
    srv = start_server()
    out = subprocess.run([sys.executable, "-m", "dynavault.cli", "credentials", "create",
                          "--data-dir", str(srv.data_dir)], capture_output=True, check=True, text=True).stdout
    kv = dict(line.split(" = ", 1) for line in out.strip().splitlines())
    srv.restart()  # pick up the new credential

    async def list_tables(secret: str) -> int:
        ep = Endpoint(srv.endpoint, access_key=kv["aws_access_key_id"], secret_key=secret)
        c = Connection(ep)
        try:
            return (await c.call("ListTables", {})).status
        finally:
            await c.close()

    assert asyncio.run(list_tables(kv["aws_secret_access_key"])) == 200
    assert asyncio.run(list_tables(kv["aws_secret_access_key"] + "x")) == 400
    assert "secret" not in repr(Signer("AK", "secret", "us-east-1", "h"))


def test_unknown_workload_name_is_a_usage_error(srv):
    rc, out, err = _bench(srv.endpoint, "--workloads", "get,nosuch")
    assert rc == 2 and "unknown workloads" in err


class _TableOnlyPeer(asyncio.Protocol):
    """A peer that knows only CreateTable/DescribeTable/PutItem/DeleteItem-free setup; Scan is unknown to it."""

    def connection_made(self, transport) -> None:
        self.t, self.buf = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, rest = self.buf.split(b"\r\n\r\n", 1)
            hdrs = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
            n = int(hdrs.get(b"Content-Length", b"0"))
            if len(rest) < n:
                return
            self.buf = rest[n:]
            op = hdrs.get(b"X-Amz-Target", b"").rsplit(b".", 1)[-1]
            status, body = 200, b"{}"
            if op == b"DescribeTable":
                body = b'{"Table":{"TableStatus":"ACTIVE"}}'
            elif op not in (b"CreateTable", b"PutItem", b"DeleteTable"):
                status = 400
                body = b'{"__type":"com.amazonaws.dynamodb.v20120810#UnknownOperationException"}'
            self.t.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))


def test_unsupported_workload_is_reported_per_workload():
    from dynavault.bench.load import BenchConfig, _Runner

    async def main() -> dict:
        server = await asyncio.get_running_loop().create_server(_TableOnlyPeer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        cfg = BenchConfig(endpoint=f"http://127.0.0.1:{port}", workloads=("scan", "put"), duration=0.2, items=10)
        r = _Runner(cfg)
        await r.setup()
        out = {w: await r.run_workload(w) for w in cfg.workloads}
        server.close()
        return out

    out = asyncio.run(main())
    assert out["scan"]["status"] == "unsupported" and "UnknownOperationException" in out["scan"]["reason"]
    assert out["put"]["status"] == "ok" and out["put"]["ops"] > 0 and out["put"]["errors"] == 0


def test_selftest_and_storage_run(tmp_path):
    p = subprocess.run([sys.executable, "-m", "dynavault.cli", "bench", "--selftest", "--storage", "--duration",
                        "0.3", "--items", "60", "--json"], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    out = orjson.loads(p.stdout)
    assert out["selftest"]["signatures_per_s"] > 0
    assert out["selftest"]["trivial_endpoint"]["ops_per_s"] > 0
    s = out["storage"]
    for name in ("identity", "aead"):
        assert s[name]["get_per_s"] > 0 and s[name]["put_per_s"] > 0 and s[name]["bytes_on_disk"] > 0
    assert "encryption_cost_get_pct" in s


def test_fullscan_pages_through_the_whole_table(srv):
    rc, out, err = _bench(srv.endpoint, "--workloads", "fullscan", "--connections", "1")
    assert rc == 0, err
    w = out["workloads"]["fullscan"]
    assert w["status"] == "ok" and w["errors"] == 0, w
    assert w["full_passes"] >= 1
    # every pass reads all 50 items: items/s is at least passes × 50 over the run
    assert w["items_per_s"] * w["seconds"] >= 0.99 * 50 * w["full_passes"]  # (both figures are rounded)
    assert out["verification"]["ok"]


def test_stream_option_reads_back_every_change(start_server):
    srv = start_server(allow_any_credentials=True, stream_status_seconds=0)
    rc, out, err = _bench(srv.endpoint, "--workloads", "put,get", "--stream")
    assert rc == 0, err
    s = out["stream"]
    # the load's inserts plus one record per put (every put changes its item), all read back; a put in
    # flight when the workload's clock ran out is done but not counted (at most one per connection)
    puts = out["workloads"]["put"]["ops"]
    assert 50 + puts <= s["records"] <= 50 + puts + 4
    assert s["get_records_calls"] >= 1 and s["records_per_s"] > 0 and "/stream/" in s["stream_arn"]
    assert out["verification"]["ok"] and out["workloads"]["get"]["verified"] > 0


def test_bench_dax_compares_dax_and_http_on_one_server(server_factory):
    from tests.dax.daxclient import free_port

    server = server_factory(group="bench-dax", allow_any_credentials=True, dax_port=free_port())
    dax = f"dax://127.0.0.1:{server.settings['dax_port']}"
    rc, out, err = _bench(server.endpoint, "--dax", dax, "--server-pid", str(server.proc.pid))
    assert rc == 0, err
    wl = out["workloads"]
    assert list(wl) == ["dax-get-miss", "dax-get-hit", "dax-query-miss", "dax-query-hit", "http-get", "http-query"]
    for name, w in wl.items():
        assert w["status"] == "ok" and w["ops"] > 0 and w["errors"] == 0, (name, w)
        assert w["verified"] > 0 and w["verify_failures"] == 0, (name, w)
        assert 0 < w["p50_ms"] <= w["p99_ms"], (name, w)
        assert w["server_cpu_us_per_op"] is not None and w["server_cpu_us_per_op"] >= 0, (name, w)
    # the miss workload reads each of the 50 keys once at most
    assert wl["dax-get-miss"]["ops"] <= 50
    assert out["verification"]["ok"]
    assert out["setup"]["table"] not in server.client("dynamodb").list_tables()["TableNames"]
    # the table over the same output as people read it
    p = subprocess.run([sys.executable, "-m", "dynavault.cli", "bench", "--endpoint", server.endpoint, "--dax", dax,
                        "--duration", "0.3", "--items", "20", "--connections", "2"], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert "| dax-get-hit |" in p.stdout.decode() and "server CPU us/op" in p.stdout.decode()
