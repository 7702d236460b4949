"""`dynavault serve --kms-endpoint` against `dynavault kms serve` in its own process."""

from __future__ import annotations

import json
import threading
import time

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_table

ACCOUNT = "123456789012"


@pytest.fixture
def pair(start_server):
    kms_srv = start_server("kms", kms_only=True, allow_any_credentials=True, trusted_service_keys="db-service")
    db = start_server("db", allow_any_credentials=True, kms_endpoint=kms_srv.endpoint,
                      kms_access_key_id="db-service", kms_secret_access_key="unused", key_refresh_seconds=2)
    return kms_srv, db


def test_tables_under_a_remote_kms(pair):
    kms_srv, db = pair
    kms = kms_srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key(Description="remote")["KeyMetadata"]
    ddb = db.client("dynamodb", access_key=ACCOUNT)
    # the database process serves no KMS of its own
    with pytest.raises(ClientError) as err:
        db.client("kms", access_key=ACCOUNT).list_keys()
    assert err.value.response["Error"]["Code"] == "UnknownOperationException"
    desc = make_table(ddb, "remote-cmk", sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key["KeyId"]})
    assert desc["SSEDescription"]["KMSMasterKeyArn"] == key["Arn"]
    make_table(ddb, "remote-owned")
    for table in ("remote-cmk", "remote-owned"):
        ddb.put_item(TableName=table, Item={"pk": {"S": "a"}, "v": {"S": table}})
        assert ddb.get_item(TableName=table, Key={"pk": {"S": "a"}})["Item"]["v"]["S"] == table
    # the remote KMS audited the database's calls in the user's account, on the user's behalf
    events = [json.loads(e["CloudTrailEvent"]) for e in
              kms_srv.client("cloudtrail", access_key=ACCOUNT).lookup_events(MaxResults=50)["Events"]]
    grant = next(e for e in events if e["eventName"] == "CreateGrant")
    assert grant["userIdentity"]["invokedBy"] == "dynamodb.amazonaws.com"
    assert grant["userIdentity"]["accountId"] == ACCOUNT
    assert any(e["eventName"] == "GenerateDataKey" and e["userIdentity"]["type"] == "AWSService" for e in events)
    assert not any("remote-owned" in json.dumps(e) for e in events)
    assert kms.list_grants(KeyId=key["KeyId"])["Grants"][0]["GranteePrincipal"] == "dynamodb.us-east-1.amazonaws.com"


def test_on_behalf_header_is_ignored_from_untrusted_keys(pair):
    from tests.wire import signed_request

    kms_srv, _ = pair
    victim = kms_srv.client("kms", access_key="210987654321").create_key()["KeyMetadata"]
    header = json.dumps({"account": "210987654321", "principal": "arn:aws:iam::210987654321:root"})
    resp = signed_request(kms_srv.endpoint, "TrentService.DescribeKey", {"KeyId": victim["KeyId"]},
                          service="kms", access_key="999988887777", content_type="application/x-amz-json-1.1",
                          extra_headers={"x-dynavault-on-behalf-of": header})
    assert resp.status == 400
    assert resp.json()["__type"] == "NotFoundException"


def test_kms_outage_fails_closed_and_recovers(pair):
    kms_srv, db = pair
    kms = kms_srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    ddb = db.client("dynamodb", access_key=ACCOUNT)
    make_table(ddb, "outage", sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key["Arn"]})
    ddb.put_item(TableName="outage", Item={"pk": {"S": "a"}, "v": {"N": "1"}})
    filled = time.monotonic()  # the connection's table-key entry was filled before this
    kms_srv.kill()
    # cached table key: still served
    assert ddb.get_item(TableName="outage", Key={"pk": {"S": "a"}})["Item"]["v"] == {"N": "1"}
    time.sleep(max(0.0, filled + 2.2 - time.monotonic()))  # past key_refresh_seconds=2: the entry is stale
    started = time.monotonic()
    with pytest.raises(ClientError) as err:
        ddb.get_item(TableName="outage", Key={"pk": {"S": "a"}})
    assert time.monotonic() - started < 10, "a KMS outage must fail in bounded time"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert err.value.response["Error"]["Message"].startswith("KMS unavailable error")
    with pytest.raises(ClientError):  # writes fail closed too, and change nothing
        ddb.put_item(TableName="outage", Item={"pk": {"S": "a"}, "v": {"N": "2"}})
    kms_srv.start()
    assert ddb.get_item(TableName="outage", Key={"pk": {"S": "a"}})["Item"]["v"] == {"N": "1"}


def test_kms_killed_under_load(pair):
    """Several connections reading while the KMS dies: every request succeeds or fails closed, none hangs."""
    import concurrent.futures

    kms_srv, db = pair
    key = kms_srv.client("kms", access_key=ACCOUNT).create_key()["KeyMetadata"]
    setup = db.client("dynamodb", access_key=ACCOUNT)
    make_table(setup, "load", sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key["Arn"]})
    for i in range(20):
        setup.put_item(TableName="load", Item={"pk": {"S": f"k{i}"}, "v": {"N": str(i)}})

    warm = threading.Barrier(5)

    def reader(worker: int, seconds: float) -> tuple[int, int, float]:
        client = db.client("dynamodb", access_key=ACCOUNT)
        # One read before the kill, so each connection holds a cached table key (building four boto3
        # clients alone can take longer than any fixed delay on a loaded machine).
        client.get_item(TableName="load", Key={"pk": {"S": "k0"}})
        warm.wait(timeout=60)
        ok = failed = 0
        slowest = 0.0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            i = (ok + failed + worker) % 20
            t0 = time.monotonic()
            try:
                item = client.get_item(TableName="load", Key={"pk": {"S": f"k{i}"}})["Item"]
                assert item["v"] == {"N": str(i)}
                ok += 1
            except ClientError as err:
                assert err.response["Error"]["Message"].startswith("KMS unavailable error"), err.response
                failed += 1
            slowest = max(slowest, time.monotonic() - t0)
        return ok, failed, slowest

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(reader, w, 5.0) for w in range(4)]
        warm.wait(timeout=60)
        time.sleep(0.3)
        kms_srv.kill()
        results = [f.result(timeout=60) for f in futures]
    assert all(ok > 0 for ok, _, _ in results), results  # cached keys served after the kill
    assert sum(failed for _, failed, _ in results) > 0, results  # then failed closed once refresh was due
    assert max(slow for _, _, slow in results) < 10, results
    kms_srv.start()
    assert setup.get_item(TableName="load", Key={"pk": {"S": "k3"}})["Item"]["v"] == {"N": "3"}


def _misses(db) -> float:
    import urllib.request

    with urllib.request.urlopen(db.endpoint + "/metrics", timeout=1.0) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith('dynavault_key_cache_total{result="miss"}'):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_slow_kms_stalls_only_the_requests_that_wait_for_it(start_server):
    """A key-cache miss waits on the remote KMS in a thread: the event loop goes on serving the requests whose
    keys are cached (and /metrics). The KMS process is stopped (SIGSTOP): it accepts connections, answers none."""
    import os
    import signal

    kms_srv = start_server("kms", kms_only=True, allow_any_credentials=True, trusted_service_keys="db-service")
    db = start_server("db", allow_any_credentials=True, kms_endpoint=kms_srv.endpoint,
                      kms_access_key_id="db-service", kms_secret_access_key="unused", key_refresh_seconds=300)
    warm = db.client("dynamodb", access_key=ACCOUNT)  # one keep-alive connection: its keys stay cached
    for table in ("warm", "cold"):
        make_table(warm, table)
    key = {"pk": {"S": "a"}}
    warm.put_item(TableName="warm", Item=key)
    assert "Item" in warm.get_item(TableName="warm", Key=key)
    before = _misses(db)
    outcome: dict[str, str] = {}

    def cold() -> None:
        client = db.client("dynamodb", access_key=ACCOUNT)  # a new connection: a cache miss
        try:
            client.get_item(TableName="cold", Key=key)
            outcome["cold"] = "ok"
        except ClientError as err:
            outcome["cold"] = err.response["Error"]["Code"]

    os.kill(kms_srv.proc.pid, signal.SIGSTOP)
    try:
        waiting = threading.Thread(target=cold)
        waiting.start()
        deadline = time.time() + 10
        while _misses(db) <= before:  # /metrics answers while the cold request waits on KMS
            assert time.time() < deadline, "the cold request never reached the key service"
            time.sleep(0.05)
        for _ in range(20):
            assert "Item" in warm.get_item(TableName="warm", Key=key)
        assert waiting.is_alive(), "the cached table was served while the other request waited on KMS"
    finally:
        os.kill(kms_srv.proc.pid, signal.SIGCONT)
    waiting.join(60)
    assert outcome.get("cold") in ("ok", "KMSInternalException", "InternalServerError", "KMSUnavailableException",
                                   "DependencyTimeoutException"), outcome
    assert "Item" in warm.get_item(TableName="warm", Key=key)


def test_a_stopped_kms_does_not_stall_the_ttl_sweep_loop(start_server):
    """The TTL sweeper fetches a table key from a remote KMS in a thread: with the KMS stopped, /metrics (and
    any request that needs no key) keeps answering while the sweep waits."""
    import os
    import signal

    kms_srv = start_server("kms", kms_only=True, allow_any_credentials=True, trusted_service_keys="db-service")
    db = start_server("db", allow_any_credentials=True, kms_endpoint=kms_srv.endpoint,
                      kms_access_key_id="db-service", kms_secret_access_key="unused", key_refresh_seconds=1,
                      ttl_sweep_seconds=0.2, ttl_cooldown_seconds=0)
    ddb = db.client("dynamodb", access_key=ACCOUNT)
    make_table(ddb, "expiring")
    ddb.update_time_to_live(TableName="expiring", TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"})
    ddb.put_item(TableName="expiring", Item={"pk": {"S": "a"}, "exp": {"N": str(int(time.time()) + 3600)}})
    time.sleep(1.5)  # the sweeper has run and its cached key is past its refresh time
    os.kill(kms_srv.proc.pid, signal.SIGSTOP)
    try:
        deadline = time.time() + 5
        while time.time() < deadline:  # every probe answers within 1 s although each key fetch waits ~6 s
            _misses(db)
            time.sleep(0.1)
    finally:
        os.kill(kms_srv.proc.pid, signal.SIGCONT)
    assert "Item" in ddb.get_item(TableName="expiring", Key={"pk": {"S": "a"}})
