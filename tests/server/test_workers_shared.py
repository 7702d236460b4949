"""--workers N: state that once lived in one worker and now lives in the store, seen by every worker.

Each test runs two real workers over one data dir; requests go out on new connections, so the kernel spreads
them over both (tests/server/test_workers.py checks the spread from the workers' CPU times).
"""

from __future__ import annotations

import threading

import pytest

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
