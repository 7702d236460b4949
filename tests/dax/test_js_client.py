"""The official DAX JavaScript client (@amazon-dax-sdk/client-dax 3.1.0, on node) against a real server: the
same protocol implementation answers it (every data method, projections, a failing condition, a cancelled
transaction with its reasons' items, a wrong secret), over dax:// and over daxs:// trusting the server's CA
through NODE_EXTRA_CA_CERTS."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.dax.daxclient import VENV

CLIENT = "@amazon-dax-sdk/client-dax@3.1.0"
JS_DIR = VENV.parent / "dax-js"

SCRIPT = r"""
import { Dax } from '@amazon-dax-sdk/client-dax';
const [endpoint, key, secret, T] = process.argv.slice(2);
const client = new Dax({endpoints: [endpoint], region: 'us-east-1',
                        credentials: {accessKeyId: key, secretAccessKey: secret}});
const out = {};
const K = {pk: {S: 'a'}, sk: {N: '1.5'}};
try {
  await client.putItem({TableName: T, Item: {...K, v: {S: 'x'}, n: {N: '12'}, ss: {SS: ['p', 'q']},
                                              b: {B: Buffer.from([0, 255])}, m: {M: {z: {L: [{N: '1'}, {NULL: true}]}}}}});
  out.get = (await client.getItem({TableName: T, Key: K, ConsistentRead: true})).Item;
  out.proj = (await client.getItem({TableName: T, Key: K, ProjectionExpression: 'm.z[1], v'})).Item;
  out.upd = (await client.updateItem({TableName: T, Key: K, UpdateExpression: 'SET n = n + :one',
                                      ExpressionAttributeValues: {':one': {N: '1'}}, ReturnValues: 'UPDATED_NEW'})).Attributes;
  const q = await client.query({TableName: T, KeyConditionExpression: 'pk = :p', ExpressionAttributeValues: {':p': {S: 'a'}}});
  out.query = [q.Count, q.Items.map(i => i.sk.N)];
  try { await client.putItem({TableName: T, Item: K, ConditionExpression: 'attribute_not_exists(pk)'}); }
  catch (e) { out.cond = e.code; }
  await client.batchWriteItem({RequestItems: {[T]: [{PutRequest: {Item: {pk: {S: 'b'}, sk: {N: '2'}, w: {BOOL: true}}}}]}});
  out.bget = (await client.batchGetItem({RequestItems: {[T]: {Keys: [{pk: {S: 'b'}, sk: {N: '2'}}]}}})).Responses[T];
  await client.transactWriteItems({TransactItems: [{Put: {TableName: T, Item: {pk: {S: 'c'}, sk: {N: '3'}, t: {S: 'tx'}}}}]});
  try {
    await client.transactWriteItems({TransactItems: [{ConditionCheck: {TableName: T, Key: {pk: {S: 'c'}, sk: {N: '3'}},
      ConditionExpression: 't = :n', ExpressionAttributeValues: {':n': {S: 'no'}}, ReturnValuesOnConditionCheckFailure: 'ALL_OLD'}}]});
  } catch (e) { out.cancel = [e.code, e.cancellationReasons]; }
  out.tg = (await client.transactGetItems({TransactItems: [{Get: {TableName: T, Key: {pk: {S: 'c'}, sk: {N: '3'}}}}]})).Responses;
} catch (e) { out.error = String(e.stack || e); }
console.log('RESULTS ' + JSON.stringify(out, (k, v) => v instanceof Uint8Array ? Array.from(v) : v));
process.exit(0);
"""


@pytest.fixture(scope="session")
def dax_js() -> Path:
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("node/npm not installed")
    JS_DIR.mkdir(parents=True, exist_ok=True)
    with open(JS_DIR.parent / "dax-js.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (JS_DIR / "node_modules" / "@amazon-dax-sdk" / "client-dax").exists():
            done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(JS_DIR), CLIENT],
                                  capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                pytest.skip(f"{CLIENT} could not be installed: {done.stderr[-500:]}")
    (JS_DIR / "run.mjs").write_text(SCRIPT)
    return JS_DIR


def _run(js: Path, endpoint: str, key: str, secret: str, table: str, extra_env: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "NODE_EXTRA_CA"))} | (extra_env or {})
    done = subprocess.run(["node", str(js / "run.mjs"), endpoint, key, secret, table], capture_output=True,
                          text=True, timeout=120, cwd=js, env=env)
    for line in done.stdout.splitlines():
        if line.startswith("RESULTS "):
            return json.loads(line[8:])
    raise AssertionError(f"node client failed ({done.returncode}): {done.stderr[-3000:]}")


def _check_every_method(out: dict) -> None:
    assert "error" not in out, out.get("error")
    binary = out["get"]["b"]["B"]
    assert out["get"]["v"] == {"S": "x"} and (binary.get("data") if isinstance(binary, dict) else binary) == [0, 255]
    assert sorted(out["get"]["ss"]["SS"]) == ["p", "q"]
    assert out["proj"] == {"m": {"M": {"z": {"L": [{"NULL": True}]}}}, "v": {"S": "x"}}
    assert out["upd"] == {"n": {"N": "13"}}
    assert out["query"] == [1, ["1.5"]]
    assert out["cond"] == "ConditionalCheckFailedException"
    assert out["bget"] == [{"pk": {"S": "b"}, "sk": {"N": "2"}, "w": {"BOOL": True}}]
    code, reasons = out["cancel"]
    assert code == "TransactionCanceledException"
    assert reasons[0]["Code"] == "ConditionalCheckFailed" and reasons[0]["Item"]["t"] == {"S": "tx"}
    assert out["tg"] == [{"Item": {"pk": {"S": "c"}, "sk": {"N": "3"}, "t": {"S": "tx"}}}]


def test_the_javascript_client_runs_every_method(dax, dax_js, unique_name):
    from tests.conftest import make_table

    make_table(dax.http(), unique_name, range_type="N")
    _check_every_method(_run(dax_js, dax.dax_endpoint, dax.key, dax.secret, unique_name))


def test_the_javascript_client_runs_every_method_over_daxs(server_factory, dax_js, unique_name):
    from tests.conftest import make_table
    from tests.dax.conftest import dax_server
    from tests.dax.daxclient import free_port

    tls_port = free_port()
    srv = server_factory(group="dax-tls-js", dax_port=free_port(), dax_tls_port=tls_port)
    dax = dax_server(srv)
    ca = Path(srv.data_dir) / "dax-tls" / "ca.pem"
    make_table(dax.http(), unique_name, range_type="N")
    endpoint = f"daxs://127.0.0.1:{tls_port}"
    _check_every_method(_run(dax_js, endpoint, dax.key, dax.secret, unique_name,
                             {"NODE_EXTRA_CA_CERTS": str(ca)}))
    # node trusts the server's certificate only through the CA it was given (the client swallows the TLS
    # error of its discovery call and reports that no node would serve it)
    refused = _run(dax_js, endpoint, dax.key, dax.secret, unique_name)
    assert any(s in refused.get("error", "") for s in ("NoRouteException", "certificate")), refused


def test_the_javascript_client_is_refused_a_wrong_secret(dax, dax_js, unique_name):
    from tests.conftest import make_table

    http = dax.http()
    make_table(http, unique_name, range_type="N")
    out = _run(dax_js, dax.dax_endpoint, dax.key, "not-the-secret", unique_name)
    # the JS client swallows its discovery call's auth error and reports that no node would serve it
    assert any(s in out.get("error", "") for s in ("UnrecognizedClientException", "NoRouteException")), out
    assert http.scan(TableName=unique_name)["Count"] == 0
