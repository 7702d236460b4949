"""Local-development conveniences: --in-memory, --shared-db, --init, config typos, empty signing region,
--version."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

import dynavault
from tests.conftest import make_table
from tests.servers import ServerProcess
from tests.wire import signed_request

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dynavault.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


def _wait(check, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline
        time.sleep(0.05)


# --- --in-memory -------------------------------------------------------------------------------------------

class _Foreign:
    """A server started with its own HOME and working directory (both empty), as a test suite would."""

    def __init__(self, tmp: Path, *flags: str) -> None:
        self.home, self.cwd, self.data = tmp / "home", tmp / "cwd", tmp / "data"
        self.home.mkdir()
        self.cwd.mkdir()
        env = {**os.environ, "HOME": str(self.home), "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("AWS_PROFILE", None)
        # no --root-key-file: the default (under HOME) must not be created either
        cmd = [sys.executable, "-m", "dynavault.cli", "serve", "--port", "0", "--data-dir", str(self.data), *flags]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=self.cwd,
                                     text=True)
        self.out: list[str] = []
        while True:
            line = self.proc.stdout.readline()
            assert line, self.proc.stderr.read()
            self.out.append(line)
            if line.startswith("dynavault listening on "):
                break
        self.ready = line
        self.endpoint = line.split(" on ", 1)[1].split()[0]

    def client(self, service: str, key: str, secret: str):
        return ServerProcess.client(self, service, access_key=key, secret=secret)  # type: ignore[arg-type]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(30)
        self.stderr = self.proc.stderr.read()
        return rc


def test_in_memory_writes_nothing_and_still_encrypts(tmp_path):
    srv = _Foreign(tmp_path, "--in-memory")
    try:
        assert "in memory: nothing is written to disk" in srv.ready  # said in the ready line itself
        text = "".join(srv.out)
        key = re.search(r"aws_access_key_id = (\S+)", text).group(1)
        secret = re.search(r"aws_secret_access_key = (\S+)", text).group(1)
        ddb, kms = srv.client("dynamodb", key, secret), srv.client("kms", key, secret)
        cmk = kms.create_key(Description="in-memory cmk")["KeyMetadata"]["Arn"]
        kms.create_alias(AliasName="alias/in-memory", TargetKeyId=cmk)
        ddb.create_table(
            TableName="mem-items", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "N"},
                                  {"AttributeName": "v", "AttributeType": "S"}],
            SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": cmk},
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
            GlobalSecondaryIndexes=[{"IndexName": "by-v", "KeySchema": [{"AttributeName": "v", "KeyType": "HASH"}],
                                     "Projection": {"ProjectionType": "ALL"}}])
        for i in range(50):
            ddb.put_item(TableName="mem-items", Item={"pk": {"S": f"p{i % 5}"}, "sk": {"N": str(i)},
                                                        "v": {"S": f"v{i % 3}"}})
        ddb.update_time_to_live(TableName="mem-items",
                                TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"})
        assert ddb.query(TableName="mem-items", KeyConditionExpression="pk = :p",
                         ExpressionAttributeValues={":p": {"S": "p1"}})["Count"] == 10
        backup = ddb.create_backup(TableName="mem-items", BackupName="mem-backup")["BackupDetails"]["BackupArn"]
        _wait(lambda: ddb.describe_backup(BackupArn=backup)["BackupDescription"]["BackupDetails"][
            "BackupStatus"] == "AVAILABLE")
        ddb.put_item(TableName="mem-items", Item={"pk": {"S": "after"}, "sk": {"N": "0"}, "v": {"S": "x"}})
        ddb.restore_table_from_backup(TargetTableName="mem-restored", BackupArn=backup)
        _wait(lambda: ddb.describe_table(TableName="mem-restored")["Table"]["TableStatus"] == "ACTIVE")
        # the backup is the table as it was when it was made
        assert ddb.scan(TableName="mem-restored", Select="COUNT")["Count"] == 50
        blob = kms.encrypt(KeyId="alias/in-memory", Plaintext=b"x")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
        # encrypted the same way: the table key came from KMS under the customer key, and the audit trail
        # (in memory) has the events
        events = srv.client("cloudtrail", key, secret).lookup_events(
            LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "GenerateDataKey"}])["Events"]
        assert any(cmk in json.dumps(e["Resources"]) for e in events), events
        desc = ddb.describe_table(TableName="mem-items")["Table"]
        assert desc["SSEDescription"]["KMSMasterKeyArn"] == cmk
    finally:
        rc = srv.stop()
    assert rc == 0, srv.stderr
    assert not srv.data.exists()
    assert list(srv.home.rglob("*")) == []
    assert list(srv.cwd.rglob("*")) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "home"]


def test_in_memory_starts_empty_every_time(start_server):
    srv = start_server(in_memory=True, allow_any_credentials=True)
    make_table(srv.client("dynamodb"), "mem-gone")
    srv.restart()
    assert srv.client("dynamodb").list_tables()["TableNames"] == []
    assert not srv.data_dir.exists() and not srv.root_key_file.exists()


# --- --shared-db -------------------------------------------------------------------------------------------

def test_shared_db_one_account_and_one_region_for_every_key(start_server):
    srv = start_server(allow_any_credentials=True, shared_db=True)
    one = srv.client("dynamodb", access_key="111111111111", region="us-east-1")
    two = srv.client("dynamodb", access_key="key", secret="secret", region="eu-west-1")
    make_table(one, "shared-table")
    one.put_item(TableName="shared-table", Item={"pk": {"S": "a"}})
    assert "shared-table" in two.list_tables()["TableNames"]
    assert two.get_item(TableName="shared-table", Key={"pk": {"S": "a"}})["Item"] == {"pk": {"S": "a"}}
    key = srv.client("kms", access_key="222222222222", region="ap-south-1").create_key()["KeyMetadata"]
    keys = srv.client("kms", access_key="dynamodb-admin", region="local").list_keys()["Keys"]
    assert key["KeyId"] in [k["KeyId"] for k in keys]
    arn = two.describe_table(TableName="shared-table")["Table"]["TableArn"]
    assert arn.startswith("arn:aws:dynamodb:us-east-1:000000000000:table/")


def test_without_shared_db_keys_and_regions_are_apart(start_server):
    srv = start_server(allow_any_credentials=True)
    make_table(srv.client("dynamodb", access_key="111111111111"), "apart-table")
    assert srv.client("dynamodb", access_key="222222222222").list_tables()["TableNames"] == []
    assert srv.client("dynamodb", access_key="111111111111", region="eu-west-1").list_tables()["TableNames"] == []


def test_shared_db_needs_allow_any_credentials(tmp_path):
    p = _cli("serve", "--shared-db", "--port", "0", "--data-dir", str(tmp_path / "data"),
             "--root-key-file", str(tmp_path / "root.key"))
    assert p.returncode == 2
    assert "--shared-db needs --allow-any-credentials" in p.stderr
    assert not (tmp_path / "data").exists()


# --- --init ------------------------------------------------------------------------------------------------

def _seed_dir(tmp_path: Path) -> Path:
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "01-keys.json").write_text(json.dumps({"KmsKeys": [{"Alias": "alias/app", "Description": "app key"}]}))
    (seed / "02-tables.json").write_text(json.dumps({
        "Tables": [{"TableName": "seed-users", "BillingMode": "PAY_PER_REQUEST",
                    "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                    "SSESpecification": {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": "alias/app"}}],
        "Items": {"seed-users": [{"id": {"S": "u1"}, "name": {"S": "Ada"}}, {"id": {"S": "u2"}}]}}))
    # a bare CreateTable input, as `aws dynamodb create-table --cli-input-json` takes
    (seed / "03-orders.json").write_text(json.dumps({
        "TableName": "seed-orders", "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}]}))
    (seed / "notes.txt").write_text("not a seed file")
    return seed


def test_init_seeds_a_new_data_dir_once(start_server, tmp_path):
    seed = _seed_dir(tmp_path)
    srv = start_server(allow_any_credentials=True, init=seed)
    ddb, kms = srv.client("dynamodb"), srv.client("kms")
    assert sorted(ddb.list_tables()["TableNames"]) == ["seed-orders", "seed-users"]
    alias = [a for a in kms.list_aliases()["Aliases"] if a["AliasName"] == "alias/app"]
    assert alias and ddb.describe_table(TableName="seed-users")["Table"]["SSEDescription"][
        "KMSMasterKeyArn"].endswith(alias[0]["TargetKeyId"])
    assert ddb.get_item(TableName="seed-users", Key={"id": {"S": "u1"}})["Item"]["name"] == {"S": "Ada"}
    assert ddb.scan(TableName="seed-users", Select="COUNT")["Count"] == 2
    assert "--init: done" in srv.log_path.read_text()
    # the data dir is no longer new: a restart with the same --init changes nothing
    ddb.delete_item(TableName="seed-users", Key={"id": {"S": "u1"}})
    srv.restart()
    assert "Item" not in srv.client("dynamodb").get_item(TableName="seed-users", Key={"id": {"S": "u1"}})
    assert len([a for a in srv.client("kms").list_aliases()["Aliases"] if a["AliasName"] == "alias/app"]) == 1
    assert srv.log_path.read_text().count("--init: done") == 1


def test_init_with_in_memory_seeds_every_start(start_server, tmp_path):
    srv = start_server(allow_any_credentials=True, in_memory=True, init=_seed_dir(tmp_path))
    assert srv.client("dynamodb").scan(TableName="seed-users", Select="COUNT")["Count"] == 2
    srv.restart()
    assert srv.client("dynamodb").scan(TableName="seed-users", Select="COUNT")["Count"] == 2


def test_init_with_registered_credentials_seeds_the_root_account(start_server, tmp_path):
    srv = start_server(init=_seed_dir(tmp_path))
    text = "".join(srv.stdout_lines)
    key = re.search(r"aws_access_key_id = (\S+)", text).group(1)
    secret = re.search(r"aws_secret_access_key = (\S+)", text).group(1)
    names = srv.client("dynamodb", access_key=key, secret=secret).list_tables()["TableNames"]
    assert sorted(names) == ["seed-orders", "seed-users"]


def test_a_bad_seed_file_refuses_to_start_naming_it(tmp_path):
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "bad.json").write_text(json.dumps({"Items": {"no-such-table": [{"id": {"S": "x"}}]}}))
    p = _cli("serve", "--allow-any-credentials", "--in-memory", "--port", "0", "--init", str(seed))
    assert p.returncode == 2, p.stderr
    assert f"--init {seed / 'bad.json'} Items['no-such-table'][0]: ResourceNotFoundException" in p.stderr
    (seed / "bad.json").write_text(json.dumps({"Tabels": []}))
    p = _cli("serve", "--allow-any-credentials", "--in-memory", "--port", "0", "--init", str(seed))
    assert p.returncode == 2 and "unknown member(s) Tabels" in p.stderr, p.stderr


# --- the config file ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("port = 8001\nkey_refresh_secnds = 3\n",
     "line 2: unknown setting 'key_refresh_secnds' (did you mean 'key_refresh_seconds'?)"),
    ("[dynavault]\nport = 8001\n\n# a comment\nallow-any-credentals = true\n",
     "line 5: unknown setting 'allow-any-credentals' (did you mean 'allow_any_credentials'?)"),
    ("[dynavault]\nport = 8001\n[other]\nx = 1\n", "line 3: unknown setting 'other' outside [dynavault]"),
    ("port = 8001\nallow_any_credentials = \"maybe\"\n",
     "line 2: allow_any_credentials = 'maybe' is not a valid boolean"),
    ("port = \"eighty\"\n", "line 1: port = 'eighty' is not a valid integer"),
    ("port = 8001\nport = = 3\n", "Invalid value (at line 2, column 8)"),
], ids=["typo", "typo-in-section", "unknown-section", "bad-bool", "bad-int", "syntax"])
def test_config_errors_name_the_key_and_line(tmp_path, text, message):
    config = tmp_path / "dynavault.toml"
    config.write_text(text)
    p = _cli("serve", "--config", str(config), "--data-dir", str(tmp_path / "data"))
    assert p.returncode == 2
    assert p.stderr.startswith(f"dynavault: config file {config}"), p.stderr
    assert message in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1  # one line, no traceback
    assert not (tmp_path / "data").exists()


def test_a_valid_config_still_starts(start_server, tmp_path):
    config = tmp_path / "ok.toml"
    config.write_text("[dynavault]\nallow-any-credentials = true\nkey_refresh_seconds = 5\n")
    srv = start_server(config=config)
    assert srv.client("dynamodb").list_tables()["TableNames"] == []


# --- the signing region ------------------------------------------------------------------------------------

@pytest.mark.parametrize("allow_any", [True, False], ids=["allow-any", "registered-key"])
def test_empty_signing_region_is_a_400_that_says_the_region_is_missing(start_server, allow_any):
    srv = start_server(allow_any_credentials=allow_any)
    key, secret = "testing", "testing"
    if not allow_any:
        text = "".join(srv.stdout_lines)
        key = re.search(r"aws_access_key_id = (\S+)", text).group(1)
        secret = re.search(r"aws_secret_access_key = (\S+)", text).group(1)
    for target, service, ctype in (("DynamoDB_20120810.ListTables", "dynamodb", "application/x-amz-json-1.0"),
                                   ("TrentService.ListKeys", "kms", "application/x-amz-json-1.1")):
        resp = signed_request(srv.endpoint, target, {}, service=service, access_key=key, secret=secret, region="",
                              content_type=ctype)
        assert resp.status == 400, resp.body
        body = resp.json()
        assert body["__type"].endswith("#InvalidSignatureException")
        assert "region is missing" in body["message"], body
    assert "Traceback" not in srv.log_text()


# --- --version ---------------------------------------------------------------------------------------------

def test_version():
    p = _cli("--version")
    assert p.returncode == 0
    assert p.stdout.strip() == f"dynavault {dynavault.__version__}"


def test_client_errors_are_unaffected_by_local_dev_flags(start_server):
    srv = start_server(allow_any_credentials=True, shared_db=True, in_memory=True)
    with pytest.raises(ClientError) as err:
        srv.client("dynamodb").describe_table(TableName="no-such-table")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"


# --- logs of long work -------------------------------------------------------------------------------------

def test_long_work_logs_start_progress_and_end(start_server):
    srv = start_server(allow_any_credentials=True, ttl_sweep_seconds=0.2)
    ddb = srv.client("dynamodb")
    make_table(ddb, "long-work")
    for i in range(30):
        ddb.put_item(TableName="long-work", Item={"pk": {"S": f"p{i}"}, "g": {"S": "x"},
                                                           "exp": {"N": str(int(time.time()) - 60)}})
    ddb.update_table(TableName="long-work", AttributeDefinitions=[{"AttributeName": "g", "AttributeType": "S"}],
                     GlobalSecondaryIndexUpdates=[{"Create": {
                         "IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                         "Projection": {"ProjectionType": "KEYS_ONLY"}}}])
    _wait(lambda: ddb.describe_table(TableName="long-work")["Table"]["GlobalSecondaryIndexes"][0][
        "IndexStatus"] == "ACTIVE")
    ddb.update_time_to_live(TableName="long-work", TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"})
    _wait(lambda: ddb.scan(TableName="long-work", Select="COUNT")["Count"] == 0)
    _wait(lambda: "Time to Live sweep:" in srv.log_path.read_text())
    log = srv.log_path.read_text()
    assert "index by-g of table long-work: backfill started (30 items in the table)" in log
    assert re.search(r"index by-g of table long-work: backfill done, 30 items in [\d.]+ s", log)
    assert re.search(r"table long-work: Time to Live deleted 30 expired item\(s\) of 30 scanned in [\d.]+ s", log)
    assert re.search(r"Time to Live sweep: 1 table\(s\), 30 expired item\(s\) deleted in [\d.]+ s", log)
