"""Stream records under the table's key: unreadable while the key is unusable (GetRecords fails like other
data-plane calls), readable again once it is back, unchanged by a KMS key switch (re-wrap only), and the
TTL cause carries DynamoDB's service identity."""

from __future__ import annotations

import sqlite3
import time

import pytest
from botocore.exceptions import ClientError

from dynavault.dynamodb.item_store import ItemChange
from dynavault.dynamodb.streams.api import _record
from dynavault.dynamodb.streams.store import StreamInfo
from dynavault.dynamodb.streams.writer import record_body
from tests.dynamodb.streams_util import all_shards, consume, summary

ACCOUNT = "123456789012"
KEYS = [{"AttributeName": "pk", "KeyType": "HASH"}]
DEFS = [{"AttributeName": "pk", "AttributeType": "S"}]
STREAM = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}


def _create(ddb, name: str, key_arn: str | None) -> str:
    args = dict(TableName=name, KeySchema=KEYS, AttributeDefinitions=DEFS, BillingMode="PAY_PER_REQUEST",
                StreamSpecification=STREAM)
    if key_arn:
        args["SSESpecification"] = {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn}
    return ddb.create_table(**args)["TableDescription"]["LatestStreamArn"]


def _wait(ddb, name: str, status: str, timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while ddb.describe_table(TableName=name)["Table"]["TableStatus"] != status:
        assert time.time() < deadline, f"{name} never reached {status}"
        time.sleep(0.2)


def test_records_follow_the_table_key(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, key_refresh_seconds=1, key_check_seconds=0.5,
                       stream_status_seconds=0)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    st = srv.client("dynamodbstreams", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    arn = _create(ddb, unique_name, key["Arn"])
    for i in range(3):
        ddb.put_item(TableName=unique_name, Item={"pk": {"S": f"k{i}"}, "v": {"N": str(i)}})
    before = summary(consume(st, arn))
    assert len(before) == 3
    shard = all_shards(st, arn)[0]["ShardId"]
    it = st.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]

    kms.disable_key(KeyId=key["KeyId"])
    time.sleep(1.3)  # past the cached table key's refresh
    for call, kwargs in ((st.get_records, {"ShardIterator": it}),
                         (st.get_shard_iterator, {"StreamArn": arn, "ShardId": shard,
                                                  "ShardIteratorType": "TRIM_HORIZON"})):
        with pytest.raises(ClientError) as err:
            call(**kwargs)
        assert err.value.response["Error"]["Code"] == "ValidationException"
        assert err.value.response["Error"]["Message"].startswith(f"KMS key disabled error: com.amazonaws.services."
                                                                 f"kms.model.DisabledException: {key['Arn']}")
    _wait(ddb, unique_name, "INACCESSIBLE_ENCRYPTION_CREDENTIALS")
    with pytest.raises(ClientError) as err:
        st.get_records(ShardIterator=it)
    assert err.value.response["Error"]["Message"].startswith("KMS key disabled error: ")
    # metadata only: still served
    assert st.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"] == shard
    assert [s["StreamArn"] for s in st.list_streams(TableName=unique_name)["Streams"]] == [arn]

    kms.enable_key(KeyId=key["KeyId"])
    _wait(ddb, unique_name, "ACTIVE")
    assert summary(consume(st, arn)) == before
    assert len(st.get_records(ShardIterator=it)["Records"]) == 3  # iterators survive too


def test_key_switch_keeps_records_and_iterators(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, sse_update_seconds=0.5, stream_status_seconds=0)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    st = srv.client("dynamodbstreams", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    arn = _create(ddb, unique_name, None)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "before"}})
    shard = all_shards(st, arn)[0]["ShardId"]
    it = st.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    db = srv.data_dir / "tables.db"

    def stream_rows() -> dict:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return {bytes(k): bytes(v) for k, v in con.execute("SELECT k, v FROM kv")
                    if bytes(k).startswith(b"\x00\x00stream\x00") and bytes(k)[25:26] == b"r"}
        finally:
            con.close()

    rows = stream_rows()
    assert len(rows) == 1
    ddb.update_table(TableName=unique_name, SSESpecification={"Enabled": True, "SSEType": "KMS",
                                                              "KMSMasterKeyId": key["Arn"]})
    deadline = time.time() + 20
    while ddb.describe_table(TableName=unique_name)["Table"].get("SSEDescription", {}).get("Status") != "ENABLED":
        assert time.time() < deadline
        time.sleep(0.2)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "after"}})
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in consume(st, arn)] == ["before", "after"]
    assert len(st.get_records(ShardIterator=it)["Records"]) == 2
    after = stream_rows()
    assert {k: after[k] for k in rows} == rows  # the old record's blob was not rewritten


def test_ttl_cause_carries_the_service_identity():
    meta_like = type("M", (), {"key_names": {"pk"}})()
    change = ItemChange(meta_like, {"pk": {"S": "a"}, "exp": {"N": "1"}}, None, "TTL")  # type: ignore[arg-type]
    body = record_body(change, "NEW_AND_OLD_IMAGES", 1_700_000_000.5)
    info = StreamInfo(1, "2026-01-01T00:00:00.000", "arn", "t", "NEW_AND_OLD_IMAGES", [], 0.0)
    rec = _record(body, info, 1, "us-east-1")
    assert rec["eventName"] == "REMOVE" and rec["userIdentity"] == {"Type": "Service",
                                                                   "PrincipalId": "dynamodb.amazonaws.com"}
    assert rec["dynamodb"]["OldImage"] == {"pk": {"S": "a"}, "exp": {"N": "1"}} and "NewImage" not in rec["dynamodb"]
    user = record_body(ItemChange(meta_like, change.old, None, "DeleteItem"), "KEYS_ONLY", 0.0)  # type: ignore[arg-type]
    assert "userIdentity" not in _record(user, info, 2, "us-east-1")


def test_records_still_expire_while_the_key_is_unusable(start_server, unique_name):
    """sse-spec.md §1.5: stream records still expire while the table is inaccessible (trimming needs no key)."""
    srv = start_server(allow_any_credentials=True, key_refresh_seconds=1, key_check_seconds=0.5,
                       stream_status_seconds=0, stream_shard_max_records=1, stream_retention_seconds=3)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    st = srv.client("dynamodbstreams", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    arn = _create(ddb, unique_name, key["Arn"])
    for i in range(2):  # the first shard closes with one record
        ddb.put_item(TableName=unique_name, Item={"pk": {"S": f"k{i}"}})
    first = all_shards(st, arn)[0]["ShardId"]
    kms.disable_key(KeyId=key["KeyId"])
    _wait(ddb, unique_name, "INACCESSIBLE_ENCRYPTION_CREDENTIALS")
    deadline = time.time() + 15
    while first in [s["ShardId"] for s in all_shards(st, arn)]:
        assert time.time() < deadline, "the closed shard was not trimmed while the key was unusable"
        time.sleep(0.2)
    assert ddb.describe_table(TableName=unique_name)["Table"]["TableStatus"] == "INACCESSIBLE_ENCRYPTION_CREDENTIALS"
