"""Tampering with the plaintext metadata rows and the console's session rows, on disk while the server is
stopped: export and import records, tables showing DELETING, the DAX control plane's records, injected
faults, transaction claims and console sessions.

Those rows may be plaintext (they hold no item data: the canary scan below proves it), so they cannot all be
authenticated; what a tampered one must never do is answer a 500, stop the server from starting, or grant
something: show one account another's resource, or sign a browser in. Each test tampers with a copy of one
data dir a real server wrote, starts a server on it and probes it."""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError

from dynavault.dynamodb import layout
from tests.canary import rows_of
from tests.console.helpers import create_credentials, sign_in
from tests.servers import ServerProcess

ACCOUNT, OTHER = "111111111111", "222222222222"
CANARY = "CANARY-" + uuid.uuid4().hex
BUCKET = "bkt"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/DAXServiceRoleForDynamoDBAccess"
#: the metadata rows under test, by their prefix
KINDS = {"export": layout.EXPORT_PREFIX, "import": layout.IMPORT_PREFIX, "deleting": layout.DELETING_PREFIX,
         "dax": layout.DAX_CONTROL_PREFIX, "fault": layout.FAULT_PREFIX, "claim": layout.CLAIM_PREFIX,
         "session": layout.SESSION_PREFIX}


def _settings(buckets: Path) -> dict:
    return {"bucket_dir": str(buckets), "delete_table_seconds": 3600, "pitr_day_seconds": 86.4}


def _wait(get, done, timeout: float = 30.0) -> dict:
    import time
    deadline = time.time() + timeout
    while True:
        d = get()
        if done(d) or time.time() > deadline:
            return d
        time.sleep(0.05)


def _table(ddb, name: str) -> None:
    ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict:
    """A data dir holding one row of every kind under test, written by a real server and stopped."""
    base = tmp_path_factory.mktemp("metadata")
    data, buckets = base / "data", base / "buckets"
    data.mkdir()
    (buckets / BUCKET / "seed").mkdir(parents=True)
    keys = {a: create_credentials(data, a) for a in (ACCOUNT, OTHER)}
    srv = ServerProcess(base, data_dir=data, **_settings(buckets))
    key = keys[ACCOUNT]
    ddb = srv.client("dynamodb", access_key=key.access_key_id, secret=key.secret)
    _table(ddb, "live")
    ddb.put_item(TableName="live", Item={"pk": {"S": "a"}, "v": {"S": CANARY}})
    ddb.update_continuous_backups(TableName="live", PointInTimeRecoverySpecification={
        "PointInTimeRecoveryEnabled": True})
    arn = ddb.describe_table(TableName="live")["Table"]["TableArn"]

    def start_export():
        try:
            return ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=BUCKET)["ExportDescription"]
        except ClientError:
            return None
    export = _wait(start_export, lambda d: d is not None)
    export = _wait(lambda: ddb.describe_export(ExportArn=export["ExportArn"])["ExportDescription"],
                   lambda d: d["ExportStatus"] != "IN_PROGRESS")
    (buckets / BUCKET / "seed" / "items.json").write_text(json.dumps({"Item": {"pk": {"S": "seeded"}}}) + "\n")
    imported = ddb.import_table(
        S3BucketSource={"S3Bucket": BUCKET, "S3KeyPrefix": "seed/"}, InputFormat="DYNAMODB_JSON",
        TableCreationParameters={"TableName": "imported", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                                 "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                                 "BillingMode": "PAY_PER_REQUEST"})["ImportTableDescription"]
    imported = _wait(lambda: ddb.describe_import(ImportArn=imported["ImportArn"])["ImportTableDescription"],
                     lambda d: d["ImportStatus"] != "IN_PROGRESS")
    _table(ddb, "gone")
    ddb.delete_table(TableName="gone")  # shows DELETING for an hour: a row of its own
    dax = srv.client("dax", access_key=key.access_key_id, secret=key.secret)
    dax.create_parameter_group(ParameterGroupName="pg", Description="d")
    http, _ = sign_in(srv.endpoint, key)
    srv.stop()
    db = data / "tables.db"
    con = sqlite3.connect(db)
    # rows no running server leaves behind (faults and sessions go at a start, claims with their
    # transaction): written as the server writes them, so a restart finds one of each
    con.execute("insert into kv (k, v) values (?, ?)", (layout.CLAIM_PREFIX + bytes(32),
                                                       json.dumps({"o": "dead/1", "exp": 4e9}).encode()))
    fault = {"fault_id": "f" * 32, "operation": "GetItem", "table": "live", "error": "InternalServerError",
             "probability": 1.0, "count": None, "latency_ms": 0, "kms_unavailable": False,
             "scope": [ACCOUNT, "us-east-1"], "injected": 0}
    con.execute("insert into kv (k, v) values (?, ?)", (layout.FAULT_PREFIX + b"f" * 32, json.dumps(fault).encode()))
    con.commit()
    con.close()
    return {"srv": srv, "keys": keys, "export": export, "import": imported, "cookie": http.cookies,
            "buckets": buckets}


def _tamper(db: Path, prefix: bytes, attack: str) -> int:
    """Tamper with every row under ``prefix``; -> how many rows there were."""
    rows = rows_of(db, prefix)
    con = sqlite3.connect(db)
    for k, v in rows:
        if attack == "garbage":
            con.execute("update kv set v = ? where k = ?", (b"\xff\x00 not json", k))
        elif attack == "wrong-shape":
            con.execute("update kv set v = ? where k = ?", (b'{"unexpected": [1, 2]}', k))
        elif attack == "truncated":
            con.execute("update kv set v = ? where k = ?", (v[:len(v) // 2], k))
        elif attack == "moved":  # to the other account's key (or, for keys naming no account, another key)
            moved = k.replace(ACCOUNT.encode(), OTHER.encode())
            if moved == k:
                moved = k[:-1] + bytes([k[-1] ^ 1])
            con.execute("delete from kv where k = ?", (k,))
            con.execute("insert or replace into kv (k, v) values (?, ?)", (moved, v))
        elif attack == "deleted":
            con.execute("delete from kv where k = ?", (k,))
    con.commit()
    con.close()
    return len(rows)


def _status(call, **kwargs) -> int:
    try:
        call(**kwargs)
        return 200
    except ClientError as err:
        return err.response["ResponseMetadata"]["HTTPStatusCode"]


def _probe(srv: ServerProcess, keys: dict, written: dict) -> dict[str, int]:
    """Every read and write that touches the rows under test, for both accounts: -> call -> HTTP status."""
    out: dict[str, int] = {}
    for account, key in keys.items():
        ddb = srv.client("dynamodb", access_key=key.access_key_id, secret=key.secret)
        dax = srv.client("dax", access_key=key.access_key_id, secret=key.secret)
        calls = {
            "ListTables": (ddb.list_tables, {}),
            "DescribeTable gone": (ddb.describe_table, {"TableName": "gone"}),
            "DescribeTable live": (ddb.describe_table, {"TableName": "live"}),
            "ListExports": (ddb.list_exports, {}),
            "DescribeExport": (ddb.describe_export, {"ExportArn": written["export"]["ExportArn"]}),
            "ListImports": (ddb.list_imports, {}),
            "DescribeImport": (ddb.describe_import, {"ImportArn": written["import"]["ImportArn"]}),
            "GetItem": (ddb.get_item, {"TableName": "live", "Key": {"pk": {"S": "a"}}}),
            "TransactWriteItems": (ddb.transact_write_items, {"TransactItems": [
                {"Put": {"TableName": "live", "Item": {"pk": {"S": "t"}}}}]}),
            "DescribeParameterGroups": (dax.describe_parameter_groups, {}),
            "DescribeEvents": (dax.describe_events, {}),
        }
        for name, (call, kwargs) in calls.items():
            out[f"{account} {name}"] = _status(call, **kwargs)
    page = requests.get(srv.endpoint + "/console/tables", cookies=written["cookie"], allow_redirects=False,
                        timeout=10)
    out["console with the old cookie"] = page.status_code
    return out


def _listed(srv: ServerProcess, key) -> dict[str, list[str]]:
    """What OTHER sees of ACCOUNT's resources (none of it is OTHER's)."""
    ddb = srv.client("dynamodb", access_key=key.access_key_id, secret=key.secret)
    dax = srv.client("dax", access_key=key.access_key_id, secret=key.secret)
    seen: dict[str, list[str]] = {
        "exports": [e["ExportArn"] for e in ddb.list_exports()["ExportSummaries"]],
        "imports": [i["ImportArn"] for i in ddb.list_imports()["ImportSummaryList"]],
        "tables": ddb.list_tables()["TableNames"],
        "dax": [g["ParameterGroupName"] for g in dax.describe_parameter_groups()["ParameterGroups"]
                if g["ParameterGroupName"] == "pg"],
    }
    return {k: v for k, v in seen.items() if v}


def _start(written: dict, tmp_path: Path, kinds: list[str], attack: str) -> ServerProcess:
    origin: ServerProcess = written["srv"]
    base = tmp_path / "copy"
    data = base / "data"
    shutil.copytree(origin.data_dir, data)
    for kind in kinds:
        assert _tamper(data / "tables.db", KINDS[kind], attack) >= 1, f"no {kind} row to tamper with"
    return ServerProcess(base, data_dir=data, root_key_file=origin.root_key_file,
                         **_settings(written["buckets"]))


def _check(srv: ServerProcess, written: dict, attack: str) -> None:
    statuses = _probe(srv, written["keys"], written)
    assert {k: v for k, v in statuses.items() if v >= 500} == {}
    # a tampered session row signs nobody in (the console sends the browser to its sign-in page)
    assert statuses["console with the old cookie"] in (302, 303)
    if attack == "moved":
        assert _listed(srv, written["keys"][OTHER]) == {}
    assert srv.proc.poll() is None


#: rows whose readers guard against tampering (the DAX control plane's are tested on their own below)
GUARDED = ["claim", "deleting", "export", "fault", "import", "session"]
ATTACKS = ["garbage", "wrong-shape", "truncated", "moved", "deleted"]


@pytest.mark.parametrize("attack", ATTACKS)
def test_tampered_metadata_rows(written, tmp_path, attack):
    """Every guarded kind of row tampered with at once (one server start per attack keeps this bounded)."""
    srv = _start(written, tmp_path, GUARDED, attack)
    try:
        _check(srv, written, attack)
    finally:
        srv.kill()


@pytest.mark.parametrize("attack", ATTACKS)
def test_tampered_dax_control_rows(written, tmp_path, attack):
    srv = _start(written, tmp_path, ["dax"], attack)
    try:
        _check(srv, written, attack)
    finally:
        srv.kill()


def test_metadata_rows_hold_no_item_data(written):
    """The canary written as an item value is in none of the plaintext rows under test."""
    db = Path(written["srv"].data_dir) / "tables.db"
    for kind, prefix in KINDS.items():
        for k, v in rows_of(db, prefix):
            assert CANARY.encode() not in k + v, f"{kind} row holds item data"
    assert any(rows_of(db, prefix) for prefix in KINDS.values())


def test_an_altered_export_description_deletes_no_other_object(written, tmp_path):
    """An export description altered to look interrupted, naming a file that is not its own: the restart fails
    the export and removes only files it could have written."""
    origin: ServerProcess = written["srv"]
    base = tmp_path / "copy"
    shutil.copytree(origin.data_dir, base / "data")
    buckets = base / "buckets"
    shutil.copytree(written["buckets"], buckets)
    db = base / "data" / "tables.db"
    (key, raw), = rows_of(db, layout.EXPORT_PREFIX)
    rec = json.loads(raw)
    rec.update(ExportStatus="IN_PROGRESS", files=["seed/items.json", "../../data/tables.db"])
    con = sqlite3.connect(db)
    con.execute("update kv set v = ? where k = ?", (json.dumps(rec).encode(), key))
    con.commit()
    con.close()
    srv = ServerProcess(base, data_dir=base / "data", root_key_file=origin.root_key_file,
                        **_settings(buckets))
    try:
        key_ = written["keys"][ACCOUNT]
        ddb = srv.client("dynamodb", access_key=key_.access_key_id, secret=key_.secret)
        d = ddb.describe_export(ExportArn=rec["ExportArn"])["ExportDescription"]
        assert d["ExportStatus"] == "FAILED"
        assert (buckets / BUCKET / "seed" / "items.json").exists()
    finally:
        srv.kill()


def test_session_rows_tampered_while_running(written, tmp_path):
    """A session row altered, moved under another cookie's key, or cut short while the server runs: the
    cookie signs nobody in, and signing in still works (no 500)."""
    origin: ServerProcess = written["srv"]
    base = tmp_path / "copy"
    shutil.copytree(origin.data_dir, base / "data")
    srv = ServerProcess(base, data_dir=base / "data", root_key_file=origin.root_key_file,
                        **_settings(written["buckets"]))
    db = base / "data" / "tables.db"
    key = written["keys"][ACCOUNT]

    def signed_in(http) -> bool:
        page = http.get(srv.endpoint + "/console/tables", allow_redirects=False, timeout=10)
        assert page.status_code < 500, page.text[-300:]
        return page.status_code == 200

    def write(k: bytes, v: bytes | None) -> None:
        con = sqlite3.connect(db)
        if v is None:
            con.execute("delete from kv where k = ?", (k,))
        else:
            con.execute("insert or replace into kv (k, v) values (?, ?)", (k, v))
        con.commit()
        con.close()

    try:
        alice, _ = sign_in(srv.endpoint, key)
        (a_key, a_row), = rows_of(db, layout.SESSION_PREFIX)
        flipped = bytearray(a_row)
        flipped[-1] ^= 1  # in the sealed state
        write(a_key, bytes(flipped))
        assert not signed_in(alice)
        header = bytearray(a_row)
        header[8] ^= 1  # the plaintext header (its end time): bound to the seal too
        write(a_key, bytes(header))
        assert not signed_in(alice)
        bob, _ = sign_in(srv.endpoint, key)
        (b_key, b_row), = [r for r in rows_of(db, layout.SESSION_PREFIX) if r[0] != a_key]
        write(a_key, b_row)  # bob's session under alice's cookie key
        assert not signed_in(alice) and signed_in(bob)
        write(layout.SESSION_PREFIX + b"\x01" * 32, b"short")  # too short to be a session
        carol, _ = sign_in(srv.endpoint, key)
        assert signed_in(carol) and signed_in(bob)
        write(b_key, None)
        assert not signed_in(bob)
    finally:
        srv.kill()
