"""Invariant 1: no plaintext user data at rest, under all three key types, in the data dir or the log."""

from __future__ import annotations

import base64
import os
import sqlite3
import subprocess
import sys
import time

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dynavault.storage.kv.sqlite import SqliteKV
from dynavault.storage.sealed import PartitionToken, Sealed
from dynavault.storage.trees import EncryptedTrees
from tests.canary import rows_under, scan

PK = "canary-pk-Quixotic7781"
SK = "canary-sk-Zephyr4410"
ATTR = "canary-attr-Marmalade9902"
NESTED = "canary-nested-Obsidian3317"
NUMBER = "31415926535897932"
BINARY = b"\x13canary-bin-Lattice\x99"
SET_MEMBER = "canary-set-Wombat5520"
UPDATED = "canary-updated-Gossamer6634"
DELETED = "canary-deleted-Halcyon1123"
KMS_PLAINTEXT = b"canary-kms-plaintext-Nimbus8803"
#: an item Time to Live deletes, and the expiry of one it keeps (2100-01-01 + 17 s). The TTL attribute's
#: name is table metadata kept in plaintext in the catalog, like key schema: it is not a canary.
TTL_GONE = "canary-ttl-expired-Bramble2291"
TTL_FUTURE = "4102444817"
CANARIES: list[str | bytes] = [PK, SK, ATTR, NESTED, NUMBER, BINARY, SET_MEMBER, UPDATED, DELETED, KMS_PLAINTEXT,
                               TTL_GONE, TTL_FUTURE]


def _items(suffix: str) -> list[dict]:
    return [
        {
            "pk": {"S": f"{PK}-{suffix}"},
            "sk": {"S": f"{SK}-{i}"},
            "a": {"S": ATTR},
            "n": {"N": NUMBER},
            "b": {"B": base64.b64encode(BINARY).decode()},
            "m": {"M": {"inner": {"S": NESTED}, "l": {"L": [{"S": NESTED}, {"N": NUMBER}]}}},
            "ss": {"SS": [SET_MEMBER, "other"]},
        }
        for i in range(30)
    ]


def _exercise(srv) -> None:
    ddb = srv.client("dynamodb")
    kms = srv.client("kms")
    key = kms.create_key(Description="canary key")["KeyMetadata"]
    specs = {
        "owned": None,
        "managed": {"Enabled": True},
        "customer": {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key["Arn"]},
    }
    for label, spec in specs.items():
        args = dict(
            TableName=f"canary-{label}",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            # stream records hold every image of every change: they are at rest too
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        if spec is not None:
            args["SSESpecification"] = spec
        ddb.create_table(**args)
        # point-in-time recovery: every change below also lands in the table's sealed history
        ddb.update_continuous_backups(TableName=args["TableName"],
                                      PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
        for item in _items(label):
            ddb.put_item(TableName=args["TableName"], Item=item)
        first = {"pk": {"S": f"{PK}-{label}"}, "sk": {"S": f"{SK}-0"}}
        ddb.update_item(TableName=args["TableName"], Key=first, UpdateExpression="SET u = :u",
                        ExpressionAttributeValues={":u": {"S": UPDATED}})
        gone = {"pk": {"S": f"{DELETED}-{label}"}, "sk": {"S": DELETED}}
        ddb.put_item(TableName=args["TableName"], Item={**gone, "x": {"S": DELETED}})
        ddb.delete_item(TableName=args["TableName"], Key=gone)
        got = ddb.get_item(TableName=args["TableName"], Key=first, ConsistentRead=True)["Item"]
        assert got["u"]["S"] == UPDATED and got["m"]["M"]["inner"]["S"] == NESTED
        # an on-demand backup: a copy of the table's sealed rows, as unreadable as the table
        backup = ddb.create_backup(TableName=args["TableName"], BackupName=f"canary-{label}")["BackupDetails"]
        deadline = time.time() + 30
        while ddb.describe_backup(BackupArn=backup["BackupArn"])["BackupDescription"]["BackupDetails"][
                "BackupStatus"] != "AVAILABLE":
            assert time.time() < deadline
            time.sleep(0.05)
        _assert_stream_holds_canaries(srv, args["TableName"])
        # Time to Live: one item for the sweeper to delete, one it keeps
        ddb.update_time_to_live(TableName=args["TableName"],
                                TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"})
        ddb.put_item(TableName=args["TableName"], Item={"pk": {"S": f"{TTL_GONE}-{label}"}, "sk": {"S": TTL_GONE},
                                                         "x": {"S": TTL_GONE}, "exp": {"N": str(int(time.time()) - 60)}})
        ddb.update_item(TableName=args["TableName"], Key=first, UpdateExpression="SET exp = :e",
                        ExpressionAttributeValues={":e": {"N": TTL_FUTURE}})
    for label in specs:
        gone = {"pk": {"S": f"{TTL_GONE}-{label}"}, "sk": {"S": TTL_GONE}}
        deadline = time.time() + 15
        while "Item" in ddb.get_item(TableName=f"canary-{label}", Key=gone, ConsistentRead=True):
            assert time.time() < deadline, "the TTL sweeper did not delete the expired item"
            time.sleep(0.1)
    # KMS data too: a user's own Encrypt, and a data key's plaintext
    kms.encrypt(KeyId=key["KeyId"], Plaintext=KMS_PLAINTEXT, EncryptionContext={"purpose": "canary"})
    data_key = kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")["Plaintext"]
    CANARIES.append(data_key)


def _assert_stream_holds_canaries(srv, table: str) -> None:
    """The stream really carries the canaries (so the scan below covers stream storage, not nothing)."""
    st = srv.client("dynamodbstreams")
    arn = srv.client("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
    text = ""
    for shard in st.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        it = st.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                   ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        text += str(st.get_records(ShardIterator=it)["Records"])
    assert UPDATED in text and DELETED in text and NESTED in text


def test_no_canary_at_rest_under_any_key_type(start_server, tmp_path):
    access_log = tmp_path / "access.log"  # the per-request log is at rest too
    srv = start_server(allow_any_credentials=True, log_file="", ttl_sweep_seconds=0.3, access_log=access_log,
                       log_format="json")
    _exercise(srv)
    assert srv.stop() == 0
    files = list(srv.data_dir.rglob("*"))
    assert any(f.name == "tables.db" for f in files), files
    assert access_log.read_text().count('"operation":"PutItem"') > 90  # it logged the requests scanned for
    # the PITR history holds every change of the three tables (30 puts, an update, a put and a delete, TTL's)
    assert rows_under(srv.data_dir / "tables.db", b"\x00\x00pitr\x00") >= 3 * 33
    hits = scan([srv.data_dir, srv.log_path, access_log], CANARIES)
    assert hits == []
    # the server's printed output (ready line, any notices) holds no user data either
    assert not any(str(c) in srv.log_text() for c in CANARIES if isinstance(c, str))
    # and the auditor's tool agrees: every blob opens, every count matches, no canary in any form
    cmd = [sys.executable, "-m", "dynavault.cli", "verify", "--data-dir", str(srv.data_dir),
           "--root-key-file", str(srv.root_key_file)]
    for c in CANARIES:
        if isinstance(c, str):
            cmd += ["--canary", c]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "tables: 3" in p.stdout and "problems: 0" in p.stdout
    assert p.stdout.count("stream records 0") == 0  # the stream records were opened and checked too


def test_scan_finds_plaintext_when_the_cipher_is_bypassed(tmp_path):
    """The same scan, over a store written through an identity codec built here in the test, must hit."""

    class IdentityCodec:
        def seal(self, aad: bytes, plaintext: bytes) -> Sealed:
            return Sealed(plaintext)

        def open(self, aad: bytes, sealed: Sealed) -> bytes:
            return sealed.raw

    kv = SqliteKV(tmp_path / "tables.db")
    trees = EncryptedTrees(kv)
    table_id = os.urandom(16)
    with kv.transaction() as tx:
        trees.create_directory(tx, IdentityCodec(), table_id, 0)
        for item in _items("bypass"):
            token = PartitionToken(os.urandom(32))
            trees.put(tx, IdentityCodec(), table_id, 0, token, item["sk"]["S"].encode(), orjson.dumps(item))
    kv.close()
    hits = {h[0] for h in scan([tmp_path], [ATTR, NESTED, NUMBER, BINARY, SET_MEMBER])}
    assert hits == {repr(ATTR), repr(NESTED), repr(NUMBER), repr(BINARY), repr(SET_MEMBER)}

    # and with the real AEAD the same rows are clean
    real = tmp_path / "real"
    real.mkdir()
    kv = SqliteKV(real / "tables.db")
    trees = EncryptedTrees(kv)
    aead = AESGCM(AESGCM.generate_key(bit_length=256))

    class Aead:
        def seal(self, aad: bytes, plaintext: bytes) -> Sealed:
            nonce = os.urandom(12)
            return Sealed(nonce + aead.encrypt(nonce, plaintext, aad))

        def open(self, aad: bytes, sealed: Sealed) -> bytes:
            return aead.decrypt(sealed.raw[:12], sealed.raw[12:], aad)

    with kv.transaction() as tx:
        trees.create_directory(tx, Aead(), table_id, 0)
        for item in _items("real"):
            trees.put(tx, Aead(), table_id, 0, PartitionToken(os.urandom(32)), b"k", orjson.dumps(item))
    kv.close()
    assert scan([real], [ATTR, NESTED, NUMBER, BINARY, SET_MEMBER]) == []
    assert sqlite3.connect(real / "tables.db").execute("select count(*) from kv").fetchone()[0] >= 1
