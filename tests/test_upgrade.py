"""``dynavault upgrade``: a data dir written before partition directories existed (tables, no format record, no
directory rows) is refused by ``serve`` with a line naming the command; the upgrade gives it directories, passes
``dynavault verify``, the server starts and every item reads back; a second run says it is already upgraded."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import ServerProcess

N = 30
FORMAT_KEY = b"\x00\x00format\x00"  # dynamodb/catalog.py
DIR_PREFIX = b"D"  # storage/directory.py: b"D" ‖ table id ‖ index id ‖ node id


def _items(i: int) -> tuple[dict, dict]:
    # every 5th item of "withgsi" is big: partition p0 grows inner nodes (several rows per token)
    owned = {"pk": {"S": f"p{i % 5}"}, "sk": {"N": str(i)}, "g": {"S": f"g{i % 3}"},
             "v": {"S": "x" * (4000 if i % 5 == 0 else 10)}}
    return owned, {"pk": {"S": f"k{i}"}, "v": {"N": str(i)}}


@pytest.fixture(scope="module")
def old_dir(tmp_path_factory) -> ServerProcess:
    """A data dir as the previous version left it: written by a real server, then its format record and every
    partition directory row deleted."""
    srv = ServerProcess(tmp_path_factory.mktemp("upgrade"), allow_any_credentials=True)
    ddb = srv.client("dynamodb")
    ddb.create_table(
        TableName="withgsi", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"},
                              {"AttributeName": "g", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[{"IndexName": "byg", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"},
                                                                  {"AttributeName": "sk", "KeyType": "RANGE"}],
                                 "Projection": {"ProjectionType": "ALL"}}])
    key_arn = srv.client("kms").create_key(Description="upgrade test")["KeyMetadata"]["Arn"]
    ddb.create_table(
        TableName="custom", BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn})
    for i in range(N):
        owned, custom = _items(i)
        ddb.put_item(TableName="withgsi", Item=owned)
        ddb.put_item(TableName="custom", Item=custom)
    ddb.delete_item(TableName="custom", Key={"pk": {"S": "k0"}})  # an emptied partition: no rows, not listed
    srv.stop()
    con = sqlite3.connect(srv.data_dir / "tables.db")
    con.execute("delete from kv where k = ?", (FORMAT_KEY,))
    gone = con.execute("delete from kv where k >= ? and k < ?", (DIR_PREFIX, b"E")).rowcount
    con.commit()
    con.close()
    assert gone >= 3  # base table + GSI of one table, base table of the other
    return srv


def _copy(srv: ServerProcess, dest: Path) -> ServerProcess:
    """A ServerProcess-like handle on a copy of the old data dir (same root key), not started."""
    shutil.copytree(srv.data_dir, dest / "data")
    clone = ServerProcess.__new__(ServerProcess)
    clone.__dict__.update(srv.__dict__)
    clone.base, clone.data_dir, clone.log_path = dest, dest / "data", dest / "server.log"
    clone.settings = dict(srv.settings)
    clone.proc, clone.stdout_lines = None, []
    return clone


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dynavault.cli", *args], capture_output=True, timeout=120,
                          text=True)


def _upgrade(srv: ServerProcess, root_key: Path | None = None) -> subprocess.CompletedProcess:
    return _cli("upgrade", "--data-dir", str(srv.data_dir), "--root-key-file", str(root_key or srv.root_key_file))


def _rows(db: Path, lo: bytes, hi: bytes) -> list[tuple[bytes, bytes]]:
    con = sqlite3.connect(db)
    rows = list(con.execute("select k, v from kv where k >= ? and k < ? order by k", (lo, hi)))
    con.close()
    return rows


def test_old_dir_refused_then_upgraded_verified_and_served(old_dir, tmp_path):
    srv = _copy(old_dir, tmp_path)
    serve = _cli("serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(srv.data_dir),
                 "--root-key-file", str(srv.root_key_file), "--allow-any-credentials")
    lines = [line for line in serve.stderr.splitlines() if line.strip()]
    assert serve.returncode == 2 and len(lines) == 1, serve.stderr[-2000:]
    assert "run `dynavault upgrade --data-dir DIR --root-key-file F` once with the server stopped" in lines[0]

    up = _upgrade(srv)
    assert up.returncode == 0, up.stderr[-2000:]
    out = up.stdout.splitlines()
    tables = [line for line in out if line.startswith("table ")]
    assert len(tables) == 2, up.stdout
    assert any(" withgsi: " in t and "base table 5" in t and "index byg 3" in t for t in tables), up.stdout
    assert any(" custom: " in t and f"base table {N - 1}" in t for t in tables), up.stdout
    assert "BEFORE this upgrade cannot be detected" in out[-1], up.stdout

    ver = _cli("verify", "--data-dir", str(srv.data_dir), "--root-key-file", str(srv.root_key_file))
    assert ver.returncode == 0, ver.stdout + ver.stderr
    assert ver.stdout.rstrip().endswith("OK")

    srv.start()
    try:
        ddb = srv.client("dynamodb")
        for i in range(N):
            owned, custom = _items(i)
            got = ddb.get_item(TableName="withgsi", Key={"pk": owned["pk"], "sk": owned["sk"]}, ConsistentRead=True)
            assert got.get("Item") == owned
            got = ddb.get_item(TableName="custom", Key={"pk": custom["pk"]}, ConsistentRead=True)
            assert got.get("Item") == (None if i == 0 else custom)
        for g in range(3):
            q = ddb.query(TableName="withgsi", IndexName="byg", KeyConditionExpression="g = :g",
                          ExpressionAttributeValues={":g": {"S": f"g{g}"}})
            assert sorted(int(it["sk"]["N"]) for it in q["Items"]) == [i for i in range(N) if i % 3 == g]
        for name, want in (("withgsi", N), ("custom", N - 1)):
            assert len(ddb.scan(TableName=name, ConsistentRead=True)["Items"]) == want
        # the directories are live: a new partition and an emptied one go through them
        ddb.put_item(TableName="custom", Item={"pk": {"S": "new"}})
        ddb.delete_item(TableName="custom", Key={"pk": {"S": "k1"}})
    finally:
        srv.stop()
    ver = _cli("verify", "--data-dir", str(srv.data_dir), "--root-key-file", str(srv.root_key_file))
    assert ver.returncode == 0, ver.stdout + ver.stderr

    again = _upgrade(srv)
    assert again.returncode == 0, again.stderr
    assert "already upgraded" in again.stdout and "table " not in again.stdout


def test_upgrade_lists_a_damaged_partition_so_it_stays_visible(old_dir, tmp_path):
    """A partition whose root row went missing before the upgrade (other nodes left) is listed: the server then
    answers an integrity error for it, never "not found"."""
    srv = _copy(old_dir, tmp_path)
    db = srv.data_dir / "tables.db"
    # the big partition of "withgsi" (several nodes): drop its root node (node id 0)
    tree = _rows(db, b"T", b"U")
    by_token: dict[bytes, list[bytes]] = {}
    for k, _ in tree:
        by_token.setdefault(k[:-8], []).append(k)
    victim = next(ks for ks in by_token.values() if len(ks) > 1)
    root = next(k for k in victim if k.endswith(b"\x00" * 8))
    con = sqlite3.connect(db)
    con.execute("delete from kv where k = ?", (root,))
    con.commit()
    con.close()
    up = _upgrade(srv)
    assert up.returncode == 0, up.stderr
    ver = _cli("verify", "--data-dir", str(srv.data_dir), "--root-key-file", str(srv.root_key_file))
    assert ver.returncode == 1 and "missing B+tree node" in ver.stdout, ver.stdout


def test_format_record_removed_from_a_current_dir_keeps_its_directories(old_dir, tmp_path):
    """Directories already present (a run that stopped before the format record, or the record removed) are
    kept when they match the store, and refused (exit 2, nothing written) when they do not."""
    srv = _copy(old_dir, tmp_path)
    assert _upgrade(srv).returncode == 0
    db = srv.data_dir / "tables.db"
    dirs = _rows(db, b"D", b"E")
    con = sqlite3.connect(db)
    con.execute("delete from kv where k = ?", (FORMAT_KEY,))
    con.commit()
    con.close()
    up = _upgrade(srv)
    assert up.returncode == 0, up.stderr
    assert up.stdout.count("(kept)") == 3, up.stdout
    assert _rows(db, b"D", b"E") == dirs  # not rebuilt

    # now a partition vanishes and the format record goes with it: the kept directory shows it
    con = sqlite3.connect(db)
    con.execute("delete from kv where k = ?", (FORMAT_KEY,))
    token = _rows(db, b"T", b"U")[0][0][:-8]
    con.execute("delete from kv where k >= ? and k < ?", (token, token + b"\xff" * 9))
    con.commit()
    con.close()
    up = _upgrade(srv)
    assert up.returncode == 2, up.stdout + up.stderr
    assert "partition directory and the store's partitions differ" in up.stderr
    assert not _rows(db, FORMAT_KEY, FORMAT_KEY + b"\x00")


def test_upgrade_could_not_run(old_dir, tmp_path):
    """Exit 2 with one line, nothing written: no data dir, another root key."""
    missing = _cli("upgrade", "--data-dir", str(tmp_path / "nope"), "--root-key-file", str(old_dir.root_key_file))
    assert missing.returncode == 2 and "not found" in missing.stderr
    assert not (tmp_path / "nope").exists()
    srv = _copy(old_dir, tmp_path / "copy")
    other = tmp_path / "other.key"
    other.write_bytes(b"\x01" * 32)
    other.chmod(0o600)
    bad = _upgrade(srv, other)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert not _rows(srv.data_dir / "tables.db", b"D", b"E")
