"""--workers N: state that once lived in one worker and now lives in the store, seen by every worker.

Each test runs two real workers over one data dir; requests go out on new connections, so the kernel spreads
them over both (tests/server/test_workers.py checks the spread from the workers' CPU times).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from dynavault.storage.kv.base import prefix_end
from tests.server.test_workers import _call, _cpu, _ok, _table, _wait_workers, _workers
from tests.wire import signed_request


@pytest.fixture
def workers2(start_server):
    srv = start_server(allow_any_credentials=True, workers=2)
    _wait_workers(srv, 2)
    return srv


def test_a_transaction_racing_one_in_another_worker_is_refused_with_transaction_conflict(workers2):
    """Counter increments from six threads over both workers: some are refused with TransactionConflict (an
    item claimed by a transaction in flight in the other worker), and every one that succeeded is counted."""
    srv = workers2
    _table(srv, "hot")
    pids = _workers(srv)
    before = {p: _cpu(p) for p in pids}
    outcomes: list[str] = []
    seen_conflict = threading.Event()

    def bump() -> None:
        for _ in range(400):
            if seen_conflict.is_set():
                return
            status, out = _call(srv, "TransactWriteItems", {"TransactItems": [
                {"Update": {"TableName": "hot", "Key": {"pk": {"S": "n"}}, "UpdateExpression": "ADD c :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}}}},
                {"Put": {"TableName": "hot", "Item": {"pk": {"S": f"side-{threading.get_ident()}"}}}}]})
            if status == 200:
                outcomes.append("ok")
                continue
            assert out["__type"].endswith("TransactionCanceledException"), out
            codes = [r["Code"] for r in out["CancellationReasons"]]
            assert codes == ["TransactionConflict", "None"], codes
            outcomes.append("conflict")
            seen_conflict.set()

    threads = [threading.Thread(target=bump) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(_cpu(p) > before[p] for p in pids), "both workers must have served requests"
    assert "conflict" in outcomes, f"no TransactionConflict in {len(outcomes)} racing transactions"
    item = _ok(srv, "GetItem", {"TableName": "hot", "Key": {"pk": {"S": "n"}}, "ConsistentRead": True})["Item"]
    assert int(item["c"]["N"]) == outcomes.count("ok"), "an acknowledged increment was lost or a refused one applied"
    # nothing stays claimed: the item takes the next transaction and a TransactGetItems
    _ok(srv, "TransactWriteItems", {"TransactItems": [
        {"Update": {"TableName": "hot", "Key": {"pk": {"S": "n"}}, "UpdateExpression": "ADD c :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}}}}]})
    _ok(srv, "TransactGetItems", {"TransactItems": [{"Get": {"TableName": "hot", "Key": {"pk": {"S": "n"}}}}]})


def test_a_deleted_table_shows_deleting_in_every_worker_for_its_window(start_server):
    srv = start_server(allow_any_credentials=True, workers=2, delete_table_seconds=600)
    pids = _wait_workers(srv, 2)
    _table(srv, "going")
    before = {p: _cpu(p) for p in pids}
    assert _ok(srv, "DeleteTable", {"TableName": "going"})["TableDescription"]["TableStatus"] == "DELETING"
    for _ in range(20):  # each on a new connection: both workers answer some
        assert _ok(srv, "DescribeTable", {"TableName": "going"})["Table"]["TableStatus"] == "DELETING"
        assert "going" in _ok(srv, "ListTables", {})["TableNames"]
        status, out = _call(srv, "CreateTable", {
            "TableName": "going", "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]})
        assert status == 400 and out["__type"].endswith("ResourceInUseException"), out
    assert all(_cpu(p) > before[p] for p in pids), "both workers must have served requests"
    # and after a restart of the whole server
    srv.stop()
    srv.start()
    _wait_workers(srv, 2)
    assert _ok(srv, "DescribeTable", {"TableName": "going"})["Table"]["TableStatus"] == "DELETING"


def _admin(srv, op: str, body: dict) -> dict:
    r = signed_request(srv.endpoint, f"DynavaultAdmin.{op}", body)
    assert r.status == 200, r.body
    return r.json() if r.body else {}


def test_a_fault_put_through_one_worker_applies_in_every_worker_and_its_count_is_spent_once(workers2):
    srv = workers2
    _table(srv, "faulty")
    pids = _workers(srv)
    before = {p: _cpu(p) for p in pids}
    fault = _admin(srv, "PutFault", {"Operation": "GetItem", "TableName": "faulty",
                                     "Error": "ServiceUnavailable", "Count": 25})["FaultId"]
    for _ in range(10):  # every worker lists it
        assert [f["FaultId"] for f in _admin(srv, "ListFaults", {})["Faults"]] == [fault]
    statuses: list[int] = []

    def get() -> None:
        for _ in range(10):
            statuses.append(_call(srv, "GetItem", {"TableName": "faulty", "Key": {"pk": {"S": "a"}}})[0])

    threads = [threading.Thread(target=get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(_cpu(p) > before[p] for p in pids), "both workers must have served requests"
    assert sorted(statuses) == [200] * 55 + [503] * 25
    assert _admin(srv, "ListFaults", {})["Faults"] == []
    # a fault deleted through one worker stops in every one
    fault = _admin(srv, "PutFault", {"Operation": "PutItem", "Error": "InternalServerError"})["FaultId"]
    assert {_call(srv, "PutItem", {"TableName": "faulty", "Item": {"pk": {"S": "a"}}})[0] for _ in range(10)} == {500}
    _admin(srv, "DeleteFault", {"FaultId": fault})
    assert {_call(srv, "PutItem", {"TableName": "faulty", "Item": {"pk": {"S": "a"}}})[0] for _ in range(10)} == {200}


def test_a_console_session_is_served_by_every_worker(tmp_path):
    import requests

    from tests.console.helpers import csrf_of, sign_in, start_with_accounts

    srv, (key,) = start_with_accounts(tmp_path, ["444444444444"], workers=2)
    try:
        pids = _wait_workers(srv, 2)
        http, csrf = sign_in(srv.endpoint, key)
        cookie = http.cookies["dv_console"]
        before = {p: _cpu(p) for p in pids}

        def page(path: str = "/console/keys") -> requests.Response:  # a new connection each time
            return requests.get(srv.endpoint + path, cookies={"dv_console": cookie}, allow_redirects=False)

        for _ in range(20):
            answer = page()
            assert answer.status_code == 200 and csrf_of(answer.text) == csrf
        # a region switch made through one worker holds in every one
        assert requests.post(srv.endpoint + "/console/region", cookies={"dv_console": cookie}, allow_redirects=False,
                             data={"csrf": csrf, "region": "eu-west-3"}).status_code == 303
        for _ in range(20):
            assert "No keys in eu-west-3." in page().text
        assert all(_cpu(p) > before[p] for p in pids), "both workers must have served requests"
        # signing out through one worker ends the session in every one
        requests.post(srv.endpoint + "/console/logout", cookies={"dv_console": cookie}, data={"csrf": csrf})
        assert {page().status_code for _ in range(10)} == {303}
    finally:
        srv.kill()


def test_console_sessions_at_rest_hold_no_cookie_csrf_or_principal(tmp_path):
    from tests.canary import scan
    from tests.console.helpers import sign_in, start_with_accounts

    srv, (key,) = start_with_accounts(tmp_path, ["555555555555"], workers=2)
    try:
        _wait_workers(srv, 2)
        http, csrf = sign_in(srv.endpoint, key)
        cookie = http.cookies["dv_console"]
    finally:
        srv.stop()
    assert scan([srv.data_dir / "tables.db", srv.data_dir / "tables.db-wal"], [cookie, csrf, key.access_key_id]) == []


def _call_on_kept_connection(srv, target: str, body: dict) -> tuple[dict, int]:
    """One signed call on a connection left open -> (answer, the pid of the worker that served it), found as
    the process holding the server's end of that connection (/proc/net/tcp and /proc/PID/fd)."""
    import http.client
    import json as jsonlib
    from pathlib import Path
    from urllib.parse import urlparse

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    data = jsonlib.dumps(body).encode()
    request = AWSRequest("POST", srv.endpoint + "/", data=data, headers={
        "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": f"DynamoDB_20120810.{target}"})
    SigV4Auth(Credentials("testing", "testing"), "dynamodb", "us-east-1").add_auth(request)
    url = urlparse(srv.endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("POST", "/", body=data, headers=dict(request.headers))
        resp = conn.getresponse()
        answer = jsonlib.loads(resp.read())
        assert resp.status == 200, answer
        client_port = conn.sock.getsockname()[1]
        inodes = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.split(":")[1], 16) == url.port and int(remote.split(":")[1], 16) == client_port:
                inodes.add(fields[9])
        for pid in _workers(srv):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(fd) in {f"socket:[{i}]" for i in inodes}:
                        return answer, pid
                except OSError:
                    continue
        raise AssertionError("no worker holds the connection")
    finally:
        conn.close()


def _stored_doc(srv, name: str) -> dict:
    """A table's catalog row as the store holds it (plaintext metadata), read beside the running server."""
    import json as jsonlib
    import sqlite3

    from dynavault.dynamodb.layout import CATALOG_PREFIX

    db = sqlite3.connect(f"file:{srv.data_dir / 'tables.db'}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT k, v FROM kv WHERE k > ? AND k < ?", (CATALOG_PREFIX, prefix_end(CATALOG_PREFIX))).fetchall()
    finally:
        db.close()
    for key, raw in rows:
        if key.endswith(b"\x00" + name.encode()):
            return jsonlib.loads(raw)
    raise AssertionError(f"no table {name} in the store")


def _stored_table(srv, name: str) -> tuple[str, int]:
    """(status, items restored so far) of a table, as the store says."""
    doc = _stored_doc(srv, name)
    return doc["status"], int((doc["extra"].get("restore") or {}).get("done", 0))


def test_a_restore_whose_worker_dies_is_finished_by_another(workers2):
    srv = workers2
    _table(srv, "big")
    n = 8000
    for start in range(0, n, 25):
        _ok(srv, "BatchWriteItem", {"RequestItems": {"big": [
            {"PutRequest": {"Item": {"pk": {"S": f"k{i}"}, "v": {"S": "x" * 400}}}} for i in range(start, start + 25)]}})
    arn = _ok(srv, "CreateBackup", {"TableName": "big", "BackupName": "bulk"})["BackupDetails"]["BackupArn"]
    deadline = time.time() + 60
    while _ok(srv, "DescribeBackup", {"BackupArn": arn})["BackupDescription"]["BackupDetails"][
            "BackupStatus"] != "AVAILABLE":
        assert time.time() < deadline
        time.sleep(0.1)
    # the restore fills in the worker that answered it
    _, runner = _call_on_kept_connection(srv, "RestoreTableFromBackup", {"TargetTableName": "copy", "BackupArn": arn})
    os.kill(runner, signal.SIGKILL)
    status, progress = _stored_table(srv, "copy")
    if status == "ACTIVE":
        pytest.skip("the restore finished before it could be interrupted (machine too fast for 8,000 items)")
    assert progress < n
    deadline = time.time() + 60
    while _ok(srv, "DescribeTable", {"TableName": "copy"}, retry_cut=True)["Table"]["TableStatus"] != "ACTIVE":
        assert time.time() < deadline, "the restore was not resumed by another worker"
        time.sleep(0.3)
    count, start = 0, None
    while True:  # pages of 1 MB
        page = _ok(srv, "Scan", {"TableName": "copy", "Select": "COUNT", **({"ExclusiveStartKey": start} if start else {})})
        count += page["Count"]
        start = page.get("LastEvaluatedKey")
        if not start:
            break
    assert count == n
    assert _ok(srv, "DescribeTable", {"TableName": "copy"})["Table"]["ItemCount"] == n


def _stored_bases(srv, name: str) -> list[dict]:
    """The PITR base snapshots of a table, as the store lists them."""
    return (_stored_doc(srv, name)["extra"].get("pitr") or {}).get("bases") or []


def test_a_pitr_base_whose_copying_worker_dies_is_taken_again_by_another(workers2):
    srv = workers2
    _table(srv, "timeline")
    n = 8000
    for start in range(0, n, 25):
        _ok(srv, "BatchWriteItem", {"RequestItems": {"timeline": [
            {"PutRequest": {"Item": {"pk": {"S": f"k{i}"}, "v": {"S": "x" * 400}}}} for i in range(start, start + 25)]}})
    # the first base is copied by the worker that enabled PITR
    _, copier = _call_on_kept_connection(srv, "UpdateContinuousBackups", {
        "TableName": "timeline", "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}})
    os.kill(copier, signal.SIGKILL)
    bases = _stored_bases(srv, "timeline")
    if all(b["ok"] for b in bases):
        pytest.skip("the base was copied before it could be interrupted (machine too fast for 8,000 items)")
    dead = {b["id"] for b in bases}
    deadline = time.time() + 60
    while not any(b["ok"] and b["id"] not in dead for b in _stored_bases(srv, "timeline")):
        assert time.time() < deadline, f"no other worker took the base again: {_stored_bases(srv, 'timeline')}"
        time.sleep(0.3)
    _ok(srv, "PutItem", {"TableName": "timeline", "Item": {"pk": {"S": "after"}}}, retry_cut=True)
    # every worker restores from the new base (its catalog learnt of it) with the history after it
    for i in range(2):
        _ok(srv, "RestoreTableToPointInTime", {"SourceTableName": "timeline", "TargetTableName": f"back-{i}",
                                               "UseLatestRestorableTime": True})
    for i in range(2):
        deadline = time.time() + 60
        while (table := _ok(srv, "DescribeTable", {"TableName": f"back-{i}"})["Table"])["TableStatus"] != "ACTIVE":
            assert time.time() < deadline
            time.sleep(0.3)
        assert table["ItemCount"] == n + 1


def test_provisioned_throughput_is_one_budget_across_workers(start_server):
    """A table with 1 write unit per second and 10 s of burst: however the puts spread over the workers, no
    more are admitted than one bucket allows (its burst, plus a unit per second of the run, plus the last
    one that may leave it in debt)."""
    srv = start_server(allow_any_credentials=True, workers=2, enforce_throughput=True, throughput_burst_seconds=10)
    pids = _wait_workers(srv, 2)
    _ok(srv, "CreateTable", {
        "TableName": "metered", "BillingMode": "PROVISIONED",
        "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1},
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]})
    before = {p: _cpu(p) for p in pids}
    started = time.monotonic()
    statuses = [_call(srv, "PutItem", {"TableName": "metered", "Item": {"pk": {"S": f"k{i}"}}})
                for i in range(60)]
    elapsed = time.monotonic() - started
    assert all(_cpu(p) > before[p] for p in pids), "both workers must have served requests"
    admitted = sum(1 for status, _ in statuses if status == 200)
    refused = [out for status, out in statuses if status != 200]
    assert all(out["__type"].endswith("ProvisionedThroughputExceededException") for out in refused), refused
    assert 10 <= admitted <= 10 + elapsed * 1 + 1, (admitted, elapsed)


def test_a_get_racing_the_creation_of_its_partition_in_another_worker_is_never_an_integrity_error(workers2):
    # A GetItem's descent is several reads (root, nodes, and the partition directory when the root is
    # absent); outside one snapshot, a partition another worker creates between two of them looked vanished.
    import boto3
    from botocore.config import Config

    srv = workers2
    _table(srv, "racing")
    written: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()
    done = threading.Event()

    def client():
        return boto3.client("dynamodb", endpoint_url=srv.endpoint, region_name="us-east-1",
                            aws_access_key_id="AKIDRACE", aws_secret_access_key="x",
                            config=Config(retries={"max_attempts": 0}))

    def writer(w: int) -> None:
        c = client()
        try:
            for i in range(700):
                n = w * 1_000_000 + i
                c.put_item(TableName="racing", Item={"pk": {"S": f"p{n}"}, "pad": {"S": "x" * 300}})
                with lock:
                    written.append(n)
        except Exception as exc:  # surfaced below
            failures.append(repr(exc)[:200])

    def reader() -> None:
        c = client()
        while not done.is_set():
            with lock:
                n = written[-1] + 1 if written else 0
            try:  # the partition the writers are about to create
                c.get_item(TableName="racing", Key={"pk": {"S": f"p{n}"}})
            except Exception as exc:  # surfaced below
                failures.append(repr(exc)[:200])

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    readers = [threading.Thread(target=reader) for _ in range(4)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    for t in readers:
        t.join()
    assert failures == [], failures[:3]
    assert "IntegrityError" not in srv.log_text()
