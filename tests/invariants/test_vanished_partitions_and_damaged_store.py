"""Issue 12 items 11 and 18: a vanished or renamed partition is an integrity error (500), never "not found"
or a short Scan; a damaged store makes the server refuse to start with one line, never a traceback.

Every test changes tables.db of a stopped real server with sqlite3, then starts a server on it again: most of
them on their own copy of one data dir a real server wrote (``written``)."""

from __future__ import annotations

import random
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_table
from tests.servers import ServerProcess

N = 24


def _make_table(ddb, name: str, n: int = N) -> str:
    make_table(ddb, name)
    with ddb_batch(ddb, name) as put:
        for i in range(n):
            put({"pk": {"S": f"item-{i}"}, "v": {"S": f"{name}-value-{i}"}})
    return ddb.describe_table(TableName=name)["Table"]["TableId"]


class ddb_batch:  # noqa: N801 - a tiny context manager around BatchWriteItem
    def __init__(self, ddb, name: str) -> None:
        self.ddb, self.name, self.items = ddb, name, []

    def __enter__(self):
        return self.items.append

    def __exit__(self, *exc) -> None:
        for i in range(0, len(self.items), 25):
            reqs = [{"PutRequest": {"Item": it}} for it in self.items[i : i + 25]]
            self.ddb.batch_write_item(RequestItems={self.name: reqs})


def _roots(db, table_id: str) -> list[bytes]:
    """Row keys of the base table's partition roots (node id 0)."""
    prefix = b"T" + uuid.UUID(table_id).bytes + b"\x00\x00\x00\x00"
    con = sqlite3.connect(db)
    keys = [k for (k,) in con.execute("select k from kv order by k") if k.startswith(prefix)
            and k.endswith(b"\x00" * 8)]
    con.close()
    return keys


def _sql(db, statement: str, *args) -> None:
    con = sqlite3.connect(db)
    con.execute(statement, args)
    con.commit()
    con.close()


def _is_500(err: ClientError) -> bool:
    return (err.response["ResponseMetadata"]["HTTPStatusCode"] == 500
            and err.response["Error"]["Code"] == "InternalServerError")


def _reads(ddb, name: str, n: int = N) -> tuple[int, int]:
    """-> (right answers, 500s); anything else (a wrong item, "not found" with 200) fails the test."""
    good = failed = 0
    for i in range(n):
        try:
            item = ddb.get_item(TableName=name, Key={"pk": {"S": f"item-{i}"}}).get("Item")
        except ClientError as err:
            assert _is_500(err), err.response
            failed += 1
            continue
        assert item is not None, f"item-{i} answered 'not found' with 200"
        assert item["v"]["S"] == f"{name}-value-{i}", "wrong data"
        good += 1
    return good, failed


def _scan(ddb, name: str, n: int = N) -> str:
    """'ok' (every item, right data) or '500'; a short or wrong Scan fails the test."""
    items: list[dict] = []
    kwargs: dict = {"TableName": name}
    try:
        while True:
            page = ddb.scan(**kwargs)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    except ClientError as err:
        assert _is_500(err), err.response
        return "500"
    got = sorted((it["pk"]["S"], it["v"]["S"]) for it in items)
    assert got == sorted((f"item-{i}", f"{name}-value-{i}") for i in range(n)), "short or wrong Scan with 200"
    return "ok"


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[ServerProcess, str]:
    """A data dir a real server wrote, then stopped: tables "victim" (N items, one partition each), "bystander"
    (5) and "tbl" (3). -> (the stopped server, victim's table id); tests change copies of it."""
    srv = ServerProcess(tmp_path_factory.mktemp("written"), allow_any_credentials=True)
    ddb = srv.client("dynamodb")
    tid = _make_table(ddb, "victim")
    _make_table(ddb, "bystander", 5)
    _make_table(ddb, "tbl", 3)
    srv.stop()
    return srv, tid


def _copy(written: tuple[ServerProcess, str], dest: Path) -> tuple[Path, str]:
    """-> (a copy of the written data dir, victim's table id)."""
    srv, tid = written
    shutil.copytree(srv.data_dir, dest)
    return dest, tid


def _start_on(start_server, written: tuple[ServerProcess, str], data: Path) -> ServerProcess:
    return start_server(allow_any_credentials=True, data_dir=data, root_key_file=written[0].root_key_file)


@pytest.mark.parametrize("attack", ["rename-root", "delete-partition", "rename-root-to-new-token"])
def test_vanished_or_renamed_partition_is_500_not_absent(start_server, written, tmp_path, attack):
    data, tid = _copy(written, tmp_path / "data")
    db = data / "tables.db"
    roots = _roots(db, tid)
    assert len(roots) == N  # one partition per item
    victim = roots[7]
    if attack == "rename-root":  # a flipped bit in the token part of the row key
        renamed = bytearray(victim)
        renamed[1 + 16 + 4 + 5] ^= 0x10
        _sql(db, "update kv set k = ? where k = ?", bytes(renamed), victim)
    elif attack == "rename-root-to-new-token":  # onto another partition's token: a duplicate key would fail,
        renamed = victim[:21] + bytes(32) + victim[-8:]  # so onto a token no partition has
        _sql(db, "update kv set k = ? where k = ?", renamed, victim)
    else:
        _sql(db, "delete from kv where substr(k, 1, 53) = ?", victim[:53])
    srv = _start_on(start_server, written, data)
    ddb = srv.client("dynamodb")
    assert _reads(ddb, "victim") == (N - 1, 1)
    assert _scan(ddb, "victim") == "500"
    # a conditional write on the vanished item must not treat it as absent either
    failures = 0
    for i in range(N):
        try:
            ddb.put_item(TableName="victim", Item={"pk": {"S": f"item-{i}"}, "v": {"S": "overwritten"}},
                         ConditionExpression="attribute_not_exists(pk)")
        except ClientError as err:
            if _is_500(err):
                failures += 1
            else:
                assert err.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert failures == 1
    assert "integrity error" in srv.log_text()
    assert _reads(ddb, "bystander", 5) == (5, 0) and _scan(ddb, "bystander", 5) == "ok"


def test_deleted_directory_is_500(start_server, written, tmp_path):
    data, tid = _copy(written, tmp_path / "data")
    _sql(data / "tables.db", "delete from kv where substr(k, 1, 17) = ?", b"D" + uuid.UUID(tid).bytes)
    srv = _start_on(start_server, written, data)
    ddb = srv.client("dynamodb")
    assert _reads(ddb, "victim") == (N, 0)  # the partitions are all there: reads of them need no directory
    assert _scan(ddb, "victim") == "500"
    with pytest.raises(ClientError) as err:  # a new partition cannot be listed
        ddb.get_item(TableName="victim", Key={"pk": {"S": "never-written"}})
    assert _is_500(err.value)


def test_empty_then_refilled_partitions_keep_the_directory_right(start_server):
    """Partitions emptied and recreated (and a GSI created later) keep Scan, GetItem and Query right."""
    srv = start_server(allow_any_credentials=True)
    ddb = srv.client("dynamodb")
    _make_table(ddb, "churn", 10)
    for i in range(0, 10, 2):
        ddb.delete_item(TableName="churn", Key={"pk": {"S": f"item-{i}"}})
    ddb.update_table(TableName="churn", AttributeDefinitions=[{"AttributeName": "v", "AttributeType": "S"}],
                     GlobalSecondaryIndexUpdates=[{"Create": {
                         "IndexName": "byv", "KeySchema": [{"AttributeName": "v", "KeyType": "HASH"}],
                         "Projection": {"ProjectionType": "ALL"}}}])
    for i in range(0, 10, 2):
        ddb.put_item(TableName="churn", Item={"pk": {"S": f"item-{i}"}, "v": {"S": f"churn-value-{i}"}})
    srv.restart()
    ddb = srv.client("dynamodb")
    assert _reads(ddb, "churn", 10) == (10, 0)
    assert _scan(ddb, "churn", 10) == "ok"
    for _ in range(100):
        if ddb.describe_table(TableName="churn")["Table"]["GlobalSecondaryIndexes"][0]["IndexStatus"] == "ACTIVE":
            break
        import time

        time.sleep(0.1)
    got = ddb.scan(TableName="churn", IndexName="byv")["Items"]
    assert sorted(it["pk"]["S"] for it in got) == sorted(f"item-{i}" for i in range(10))


def test_random_bit_flips_never_give_a_wrong_200(start_server, tmp_path):
    srv = start_server(allow_any_credentials=True)
    ddb = srv.client("dynamodb")
    _make_table(ddb, "victim")
    srv.stop()
    original = (srv.data_dir / "tables.db").read_bytes()
    assert not (srv.data_dir / "tables.db-wal").exists() or (srv.data_dir / "tables.db-wal").stat().st_size == 0
    rnd = random.Random(12)
    outcomes = {"ok": 0, "500": 0, "refused": 0}
    for flip in range(16):  # bounded: each flip starts a real server on a fresh copy
        data = tmp_path / f"flip-{flip}"
        shutil.copytree(srv.data_dir, data)
        bad = bytearray(original)
        # a bit in the used part of the file (the page header area of page 1 aside, which SQLite rejects)
        pos = rnd.randrange(100, len(bad))
        bad[pos] ^= 1 << rnd.randrange(8)
        (data / "tables.db").write_bytes(bytes(bad))
        try:
            flipped = start_server(f"flip{flip}", allow_any_credentials=True, data_dir=data,
                                   root_key_file=srv.root_key_file)
        except RuntimeError as exc:
            assert "exited (2)" in str(exc) and "Traceback" not in str(exc), str(exc)[-800:]
            outcomes["refused"] += 1
            continue
        c = flipped.client("dynamodb")
        good, failed = _reads(c, "victim")
        scan = _scan(c, "victim")
        outcomes["ok" if failed == 0 and scan == "ok" else "500"] += 1
        flipped.kill()  # a throwaway copy: nothing to shut down cleanly for
    assert sum(outcomes.values()) == 16, outcomes


# -- item 18: a damaged store refuses to start with one line ------------------------------------------------
def _serve(data_dir: Path, root_key_file: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dynavault.cli", "serve", "--host", "127.0.0.1", "--port", "0",
           "--data-dir", str(data_dir), "--root-key-file", str(root_key_file), "--allow-any-credentials"]
    return subprocess.run(cmd, capture_output=True, timeout=60)


@pytest.mark.parametrize("damage", ["truncate", "garble", "catalog-row", "catalog-json-shape", "format-row"])
def test_damaged_store_refuses_to_start_with_one_line(written, tmp_path, damage):
    data, _ = _copy(written, tmp_path / "data")
    db = data / "tables.db"
    if damage == "truncate":
        with open(db, "r+b") as fh:
            fh.truncate(1000)
    elif damage == "garble":
        raw = bytearray(db.read_bytes())
        raw[:100] = bytes(range(100))
        db.write_bytes(bytes(raw))
    elif damage == "catalog-row":
        _sql(db, "update kv set v = ? where substr(k, 1, 10) = ?", b"{not json", b"\x00\x00catalog\x00")
    elif damage == "catalog-json-shape":
        _sql(db, "update kv set v = ? where substr(k, 1, 10) = ?", b'{"table_id": 5}', b"\x00\x00catalog\x00")
    else:
        _sql(db, "delete from kv where k = ?", b"\x00\x00format\x00")
    p = _serve(data, written[0].root_key_file)
    err = p.stderr.decode()
    assert p.returncode == 2, (p.returncode, err[-2000:])
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("dynavault: "), err
    assert "tables.db" in lines[0]
