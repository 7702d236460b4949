"""Issue 12 items 12 and 14: a full audit disk does not stop reads, audit retention, owner-only data dir.

Real servers only. A full disk is simulated as root can't escape it: the open audit segment is a symlink to
/dev/full, where every write fails with ENOSPC, exactly as on a full file system.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_table
from tests.wire import signed_request

KEY = {"pk": {"S": "k1"}}


def _metric(endpoint: str, name: str) -> float:
    text = urllib.request.urlopen(endpoint + "/metrics", timeout=10).read().decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _make_table(srv, name: str = "audited") -> None:
    ddb = srv.client("dynamodb")
    make_table(ddb, name)
    ddb.put_item(TableName=name, Item={**KEY, "v": {"S": "hello"}})


def _segments(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "audit").glob("*/*/events-*.jsonl"))


def _fill_audit_disk(data_dir: Path) -> list[Path]:
    """Make the segment each (account, region) log appends to next a file on a full disk."""
    newest: dict[Path, Path] = {}
    for seg in _segments(data_dir):
        newest[seg.parent] = seg
    for seg in newest.values():
        seg.unlink()
        seg.symlink_to("/dev/full")
    return list(newest.values())


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_audit_disk_keeps_reads_serving(start_server):
    srv = start_server(allow_any_credentials=True)
    _make_table(srv)
    srv.stop()
    full = _fill_audit_disk(srv.data_dir)
    assert full  # the KMS calls of CreateTable/PutItem made segments
    srv.start()

    # Each GetItem on a new connection needs a KMS Decrypt, whose audit event cannot be written.
    statuses = []
    for _ in range(100):
        resp = signed_request(srv.endpoint, "DynamoDB_20120810.GetItem", {"TableName": "audited", "Key": KEY})
        statuses.append(resp.status)
        if resp.status == 200:
            assert resp.json()["Item"]["v"] == {"S": "hello"}
    assert statuses == [200] * 100
    failures = _metric(srv.endpoint, "dynavault_audit_write_failures_total")
    assert failures >= 100
    # writes keep working too: the store is not on the full disk
    srv.client("dynamodb").put_item(TableName="audited", Item={"pk": {"S": "k2"}})
    # LookupEvents still answers (it must not read /dev/full's endless output)
    ct = srv.client("cloudtrail")
    ct.lookup_events(MaxResults=5)
    log = srv.log_text()
    # logged, but rate-limited: one report for 100+ dropped events
    assert log.count("audit trail: cannot append an event") == 1, log[-3000:]
    assert "No space left on device" in log


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_audit_trail_recovers_after_a_torn_line(start_server):
    """A failed append never leaves a half line glued to the next event: LookupEvents keeps working."""
    srv = start_server(allow_any_credentials=True)
    kms = srv.client("kms")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    srv.stop()
    (seg,) = [s for s in _segments(srv.data_dir) if "/000000000000/" in str(s)]
    with open(seg, "ab") as fh:
        fh.write(b'{"eventVersion":"1.08","eventTi')  # what a disk filling mid-write leaves
    srv.start()
    kms = srv.client("kms")
    kms.describe_key(KeyId=key)
    names = [e["EventName"] for e in srv.client("cloudtrail").lookup_events(MaxResults=50)["Events"]]
    assert names[:2] == ["DescribeKey", "CreateKey"]
    lines = seg.read_bytes().split(b"\n")
    assert json.loads(lines[-2])["eventName"] == "DescribeKey"


def test_audit_retention_deletes_old_segments(start_server):
    retention_days = 2.5 / 86400  # 2.5 s; the sweep then runs every second
    srv = start_server(allow_any_credentials=True, audit_rotate_bytes=1500,
                       audit_retention_days=f"{retention_days:.10f}")
    kms = srv.client("kms")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    for _ in range(6):
        kms.describe_key(KeyId=key)
    ct = srv.client("cloudtrail")
    old_ids = {e["EventId"] for e in ct.lookup_events(MaxResults=50)["Events"]}
    assert len(old_ids) == 7
    old_segments = set(_segments(srv.data_dir))
    assert len(old_segments) >= 3  # rotated at 1.5 KB

    time.sleep(3.0)  # every segment is now older than the retention
    kms.list_keys()  # one fresh event (ListKeys)
    deadline = time.time() + 10
    while time.time() < deadline and old_segments & set(_segments(srv.data_dir)):
        time.sleep(0.2)
    assert not old_segments & set(_segments(srv.data_dir)), "old audit segments were not deleted"
    events = ct.lookup_events(MaxResults=50)["Events"]
    assert [e["EventName"] for e in events] == ["ListKeys"]
    assert not old_ids & {e["EventId"] for e in events}
    assert "audit retention: deleted" in srv.log_text()


def test_bad_audit_retention_refuses_to_start(start_server):
    with pytest.raises(RuntimeError, match="audit_retention_days must be more than 0"):
        start_server(allow_any_credentials=True, audit_retention_days=0)


def _loose_entries(root: Path) -> list[str]:
    loose = []
    for directory, dirnames, filenames in os.walk(root):
        for path in [directory, *(os.path.join(directory, n) for n in dirnames + filenames)]:
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                continue
            if stat.S_IMODE(info.st_mode) & 0o077:
                loose.append(f"{oct(stat.S_IMODE(info.st_mode))} {path}")
    return loose


def test_data_dir_is_owner_only(start_server, tmp_path):
    # an existing data dir left world-readable by an older version is tightened at start
    data = tmp_path / "data"
    (data / "audit").mkdir(parents=True)
    os.chmod(data, 0o755)
    os.chmod(data / "audit", 0o755)
    stale = data / "audit" / "notes.txt"
    stale.write_text("x")
    os.chmod(stale, 0o644)
    old = os.umask(0o022)  # the server must not rely on the umask it inherits
    try:
        srv = start_server(allow_any_credentials=True, data_dir=data, audit_rotate_bytes=1500)
    finally:
        os.umask(old)
    assert "removed group/other permissions from 3 files and directories" in srv.log_text()
    _make_table(srv)
    kms = srv.client("kms")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    for _ in range(8):  # rotated segments too
        kms.describe_key(KeyId=key)
    ddb = srv.client("dynamodb")
    for i in range(20):
        ddb.put_item(TableName="audited", Item={"pk": {"S": f"i{i}"}})
    names = {p.name for p in data.rglob("*")}
    assert {"tables.db", "tables.db-wal", "tables.db-shm"} <= names, names
    assert len(_segments(data)) >= 3
    assert _loose_entries(data) == []
    srv.stop()
    assert _loose_entries(data) == []


def test_store_write_that_cannot_be_made_durable_changes_nothing(tmp_path):
    """A full disk under the store (a file-size limit, which binds root too): the write that cannot be
    committed answers 500 InternalServerError and leaves no trace; reads keep working."""
    from tests.servers import ServerProcess

    limit = 600_000

    class FileSizeLimited(ServerProcess):
        def command(self) -> list[str]:
            cmd = super().command()
            boot = (f"import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
                    "sys.argv = ['dynavault', *sys.argv[1:]]; runpy.run_module('dynavault.cli', run_name='__main__')")
            return [cmd[0], "-c", boot, *cmd[3:]]  # cmd[1:3] is "-m dynavault.cli"

    srv = FileSizeLimited(tmp_path / "limited", allow_any_credentials=True)
    try:
        ddb = srv.client("dynamodb")
        make_table(ddb, "filling")
        acknowledged = []
        failed = None
        for i in range(40):
            try:
                ddb.put_item(TableName="filling", Item={"pk": {"S": f"k{i}"}, "v": {"S": "x" * 50_000}})
            except ClientError as err:
                failed = (f"k{i}", err.response)
                break
            acknowledged.append(f"k{i}")
        assert failed is not None, "the store never filled up"
        key, response = failed
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 500
        assert response["Error"]["Code"] == "InternalServerError"
        assert "Item" not in ddb.get_item(TableName="filling", Key={"pk": {"S": key}})
        scanned = sorted(i["pk"]["S"] for i in ddb.scan(TableName="filling", ProjectionExpression="pk")["Items"])
        assert scanned == sorted(acknowledged)
        assert ddb.describe_table(TableName="filling")["Table"]["ItemCount"] == len(acknowledged)
        # The disk stays full: the same write is refused again, the same way, and leaves no trace.
        with pytest.raises(ClientError) as again:
            ddb.put_item(TableName="filling", Item={"pk": {"S": key}, "v": {"S": "x" * 50_000}})
        assert again.value.response["Error"]["Code"] == "InternalServerError"
        assert "Item" not in ddb.get_item(TableName="filling", Key={"pk": {"S": key}})
        # A small change may still fit in the room the refused one left in the WAL (SQLite reuses it): either
        # it is made, or refused without a trace. What the server says afterwards is what it acknowledged.
        try:
            make_table(ddb, "another")
            made = ["another"]
        except ClientError as err:
            assert err.response["Error"]["Code"] == "InternalServerError"
            made = []
        assert ddb.list_tables()["TableNames"] == sorted(["filling", *made])
    finally:
        srv.kill()
