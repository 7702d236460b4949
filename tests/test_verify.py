"""``dynavault verify``: offline and read-only; ok on a clean data dir, never "ok" on a tampered one; canaries
found in any file under the data dir in raw, base64 and hex form."""

from __future__ import annotations

import base64
import hashlib
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from tests.canary import rows_of
from tests.servers import ServerProcess

SECRET = "verify-canary-7f3a9c-item-value"
N = 40


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> ServerProcess:
    """A data dir a real server wrote (then stopped): an AWS owned key table with a GSI and a customer key
    table, items carrying the canary as a value, some multi-node partitions."""
    srv = ServerProcess(tmp_path_factory.mktemp("verify"), allow_any_credentials=True)
    ddb = srv.client("dynamodb")
    ddb.create_table(
        TableName="owned", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"},
                              {"AttributeName": "g", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[{"IndexName": "byg", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}])
    key_arn = srv.client("kms").create_key(Description="verify test")["KeyMetadata"]["Arn"]
    ddb.create_table(
        TableName="custom", BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn})
    for i in range(N):
        # partition p0 grows past one 16 KiB leaf: inner nodes and links get checked too
        ddb.put_item(TableName="owned", Item={"pk": {"S": f"p{i % 4}"}, "sk": {"N": str(i)}, "g": {"S": f"g{i % 3}"},
                                             "v": {"S": SECRET + "x" * (3000 if i % 4 == 0 else 10)}})
        ddb.put_item(TableName="custom", Item={"pk": {"S": f"k{i}"}, "v": {"S": SECRET}})
    ddb.delete_item(TableName="custom", Key={"pk": {"S": "k0"}})  # an emptied partition
    srv.stop()
    srv.key_arn = key_arn  # type: ignore[attr-defined]
    return srv


def _copy(srv: ServerProcess, dest: Path) -> Path:
    shutil.copytree(srv.data_dir, dest)
    return dest


def _verify(data_dir: Path, *extra: str, root_key: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dynavault.cli", "verify", "--data-dir", str(data_dir)]
    if root_key is not None:
        cmd += ["--root-key-file", str(root_key)]
    return subprocess.run(cmd + list(extra), capture_output=True, timeout=120, text=True)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _sql(db: Path, statement: str, *args) -> None:
    con = sqlite3.connect(db)
    con.execute(statement, args)
    con.commit()
    con.close()


def _table_id(srv: ServerProcess, name: str) -> bytes:
    con = sqlite3.connect(srv.data_dir / "tables.db")
    for k, v in con.execute("select k, v from kv"):
        if k.startswith(b"\x00\x00catalog\x00") and k.endswith(name.encode()):
            con.close()
            return uuid.UUID(orjson.loads(v)["table_id"]).bytes
    raise AssertionError(name)


def test_clean_data_dir_is_ok_with_a_summary_and_nothing_written(written):
    before = _digest(written.data_dir)
    p = _verify(written.data_dir, "--canary", SECRET, root_key=written.root_key_file)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert "tables: 2" in out and "problems: 0" in out and out.rstrip().endswith("OK")
    assert "owned" in out and "custom" in out and written.key_arn in out and "CUSTOMER" in out and "OWNED" in out
    assert f"items {N} (catalog {N})" in out and f"items {N - 1} (catalog {N - 1})" in out
    assert _digest(written.data_dir) == before  # read-only: not a byte changed, no file added

    p = _verify(written.data_dir, "--json", root_key=written.root_key_file)
    doc = orjson.loads(p.stdout)
    assert p.returncode == 0 and doc["ok"] and doc["problems"] == []
    assert doc["blobs_checked"] > 2 * N // 4 and doc["files_scanned"] >= 3
    owned = next(t for t in doc["tables"] if t["name"] == "owned")
    assert owned["items"] == N and owned["indexes"][0]["items"] == N and owned["key_type"] == "OWNED"


def test_missing_or_wrong_root_key_cannot_run_and_creates_nothing(written, tmp_path):
    missing = tmp_path / "no" / "root.key"
    p = _verify(written.data_dir, root_key=missing)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "root key file" in p.stderr
    assert not missing.exists() and not missing.parent.exists()
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(b"\x01" * 32)
    wrong.chmod(0o600)
    p = _verify(written.data_dir, root_key=wrong)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "root key" in p.stderr
    p = _verify(tmp_path / "nowhere", root_key=written.root_key_file)
    assert p.returncode == 2 and "data dir" in p.stderr


@pytest.mark.parametrize("form", ["raw", "base64", "hex", "HEX", "base64-shifted", "nested-new-file"])
def test_a_canary_planted_in_any_file_is_found(written, tmp_path, form):
    data = _copy(written, tmp_path / "data")
    raw = SECRET.encode()
    planted = {
        "raw": raw,
        "base64": base64.b64encode(raw),
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
        "base64-shifted": base64.b64encode(b"ab" + raw),
        "nested-new-file": raw,
    }[form]
    target = data / "some" / "new" / "dir" / "notes.bin" if form == "nested-new-file" else data / "audit" / "x.log"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"\x00" * 5000 + b"noise " + planted + b" more noise")
    p = _verify(data, "--canary", SECRET, "--canary", "another-absent-canary", root_key=written.root_key_file)
    assert p.returncode == 1, p.stdout
    assert str(target) in p.stdout and "canary" in p.stdout and "NOT OK" in p.stdout
    assert "another-absent-canary" not in p.stdout


def _tamper(srv: ServerProcess, data: Path, kind: str) -> None:
    db = data / "tables.db"
    owned = _table_id(srv, "owned")
    rows = rows_of(db, b"T" + owned)
    if kind == "flip":
        k, v = rows[len(rows) // 2]
        bad = bytearray(v)
        bad[len(bad) // 2] ^= 0x04
        _sql(db, "update kv set v = ? where k = ?", bytes(bad), k)
    elif kind == "swap":
        (k1, v1), (k2, v2) = rows[0], rows[-1]
        _sql(db, "update kv set v = ? where k = ?", v2, k1)
        _sql(db, "update kv set v = ? where k = ?", v1, k2)
    elif kind == "delete-row":
        _sql(db, "delete from kv where k = ?", rows[-1][0])
    elif kind == "delete-partition":
        _sql(db, "delete from kv where substr(k, 1, 53) = ?", rows[-1][0][:53])
    elif kind == "rename-row":
        k = rows[-1][0]
        _sql(db, "update kv set k = ? where k = ?", k[:30] + bytes([k[30] ^ 1]) + k[31:], k)
    elif kind == "delete-directory":
        _sql(db, "delete from kv where substr(k, 1, 17) = ?", b"D" + owned)
    elif kind == "move-between-tables":
        custom = rows_of(db, b"T" + _table_id(srv, "custom"))
        _sql(db, "update kv set v = ? where k = ?", custom[0][1], rows[0][0])
    elif kind == "count":
        key = b"\x00\x00stats\x00" + str(uuid.UUID(bytes=owned)).encode()
        _sql(db, "update kv set v = ? where k = ?", (N + 1).to_bytes(8, "big") + bytes(8), key)
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["flip", "swap", "delete-row", "delete-partition", "rename-row",
                                  "delete-directory", "move-between-tables", "count"])
def test_every_tamper_kind_is_reported(written, tmp_path, kind):
    data = _copy(written, tmp_path / "data")
    _tamper(written, data, kind)
    p = _verify(data, "--json", root_key=written.root_key_file)
    doc = orjson.loads(p.stdout)
    assert p.returncode == 1, p.stdout + p.stderr
    assert not doc["ok"] and doc["problems"], doc
    assert any("owned" in prob["where"] for prob in doc["problems"]), doc["problems"]
