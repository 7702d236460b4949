"""StreamSpecification on CreateTable and UpdateTable: DynamoDB's rules and texts, LatestStreamArn/Label,
a new stream after disable + enable (the old one still readable), StreamStatus transitions, DeleteTable."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from tests.dynamodb.streams_util import DEFS, KEYS, consume, create_stream_table

_INVALID = "One or more parameter values were invalid: "


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.servers import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("streams-control"), allow_any_credentials=True,
                        stream_status_seconds=0)
    yield srv
    srv.stop()


def _error(call, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


@pytest.mark.parametrize("view", ["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"])
def test_create_table_with_each_view_type(server, unique_name, view):
    ddb = server.client("dynamodb")
    desc = create_stream_table(ddb, unique_name, view)
    assert desc["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": view}
    label = desc["LatestStreamLabel"]
    assert desc["LatestStreamArn"] == f"{desc['TableArn']}/stream/{label}"
    assert len(label) == 23 and label[10] == "T"
    table = ddb.describe_table(TableName=unique_name)["Table"]
    assert (table["StreamSpecification"], table["LatestStreamArn"]) == (desc["StreamSpecification"],
                                                                        desc["LatestStreamArn"])
    st = server.client("dynamodbstreams")
    sd = st.describe_stream(StreamArn=desc["LatestStreamArn"])["StreamDescription"]
    assert sd["StreamViewType"] == view and sd["StreamStatus"] == "ENABLED" and sd["TableName"] == unique_name
    assert sd["KeySchema"] == KEYS and sd["StreamLabel"] == label
    assert len(sd["Shards"]) == 1 and "ParentShardId" not in sd["Shards"][0]


def test_create_table_stream_validation(server, unique_name):
    ddb = server.client("dynamodb")
    base = dict(TableName=unique_name, KeySchema=KEYS, AttributeDefinitions=DEFS, BillingMode="PAY_PER_REQUEST")
    assert _error(ddb.create_table, **base, StreamSpecification={"StreamEnabled": True}) == (
        "ValidationException", _INVALID + "Table is being created with a stream enabled, UpdateViewType is required")
    assert _error(ddb.create_table, **base, StreamSpecification={"StreamEnabled": False,
                                                                 "StreamViewType": "KEYS_ONLY"}) == (
        "ValidationException",
        _INVALID + "Table is being created with a stream disabled, UpdateViewType should not be specified")
    code, message = _error(server.client("dynamodb", validate=False).create_table, **base,
                           StreamSpecification={"StreamEnabled": True, "StreamViewType": "ALL"})
    assert code == "ValidationException" and "streamSpecification.streamViewType" in message
    with pytest.raises(ClientError):
        ddb.describe_table(TableName=unique_name)  # nothing was created
    # {StreamEnabled: false} creates no stream: nothing shown, as when never asked
    desc = ddb.create_table(**base, StreamSpecification={"StreamEnabled": False})["TableDescription"]
    assert not {"StreamSpecification", "LatestStreamArn", "LatestStreamLabel"} & desc.keys()
    assert server.client("dynamodbstreams").list_streams(TableName=unique_name)["Streams"] == []


def test_update_table_enable_disable_reenable(server, unique_name):
    ddb = server.client("dynamodb")
    st = server.client("dynamodbstreams")
    create_stream_table(ddb, unique_name, view=None)
    assert _error(ddb.update_table, TableName=unique_name, StreamSpecification={"StreamEnabled": False}) == (
        "ValidationException", f"Table has no stream to disable: TableName: {unique_name}")
    assert _error(ddb.update_table, TableName=unique_name, StreamSpecification={"StreamEnabled": True}) == (
        "ValidationException", _INVALID + "If stream is being enabled then UpdateViewType is required")

    first = ddb.update_table(TableName=unique_name, StreamSpecification={
        "StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})["TableDescription"]
    assert first["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    arn1 = first["LatestStreamArn"]
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "sk": {"S": "1"}, "v": {"S": "first"}})
    for spec in ({"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
                 {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}):
        assert _error(ddb.update_table, TableName=unique_name, StreamSpecification=spec) == (
            "ValidationException", f"Table already has an enabled stream: TableName: {unique_name}")
    assert _error(ddb.update_table, TableName=unique_name,
                  StreamSpecification={"StreamEnabled": False, "StreamViewType": "KEYS_ONLY"}) == (
        "ValidationException", _INVALID + "If stream is being disabled, then UpdateViewType must not be specified")

    off = ddb.update_table(TableName=unique_name, StreamSpecification={"StreamEnabled": False})["TableDescription"]
    assert "StreamSpecification" not in off and off["LatestStreamArn"] == arn1
    table = ddb.describe_table(TableName=unique_name)["Table"]
    assert "StreamSpecification" not in table and table["LatestStreamArn"] == arn1
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "b"}, "sk": {"S": "1"}})  # no stream: no record
    assert _error(ddb.update_table, TableName=unique_name, StreamSpecification={"StreamEnabled": False}) == (
        "ValidationException", f"Table has no stream to disable: TableName: {unique_name}")

    again = ddb.update_table(TableName=unique_name, StreamSpecification={
        "StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})["TableDescription"]
    arn2 = again["LatestStreamArn"]
    assert arn2 != arn1 and again["LatestStreamLabel"] != first["LatestStreamLabel"]
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "c"}, "sk": {"S": "1"}})

    # the old stream: DISABLED, its shard closed, its record still readable; the new one has only its own
    old = st.describe_stream(StreamArn=arn1)["StreamDescription"]
    assert old["StreamStatus"] == "DISABLED" and old["StreamViewType"] == "NEW_IMAGE"
    assert all("EndingSequenceNumber" in s["SequenceNumberRange"] for s in old["Shards"])
    assert [r["dynamodb"]["NewImage"]["v"]["S"] for r in consume(st, arn1)] == ["first"]
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in consume(st, arn2)] == ["c"]
    listed = st.list_streams(TableName=unique_name)["Streams"]
    assert sorted(s["StreamArn"] for s in listed) == sorted([arn1, arn2])
    assert all(s["TableName"] == unique_name for s in listed)


def test_stream_change_with_index_change_is_refused(server, unique_name):
    ddb = server.client("dynamodb")
    create_stream_table(ddb, unique_name, view=None)
    code, message = _error(ddb.update_table, TableName=unique_name,
                           StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
                           AttributeDefinitions=[{"AttributeName": "g", "AttributeType": "S"}],
                           GlobalSecondaryIndexUpdates=[{"Create": {
                               "IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                               "Projection": {"ProjectionType": "ALL"}}}])
    assert (code, message) == ("ValidationException",
                               _INVALID + "You cannot create or delete index while changing stream status")
    assert "LatestStreamArn" not in ddb.describe_table(TableName=unique_name)["Table"]


def test_delete_table_removes_its_streams(server, unique_name):
    ddb = server.client("dynamodb")
    st = server.client("dynamodbstreams")
    arn = create_stream_table(ddb, unique_name)["LatestStreamArn"]
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "sk": {"S": "1"}})
    ddb.delete_table(TableName=unique_name)
    assert arn not in [s["StreamArn"] for s in st.list_streams()["Streams"]]
    assert _error(st.describe_stream, StreamArn=arn) == (
        "ResourceNotFoundException", f"Requested resource not found: Stream: {arn} not found")
    # a new table of the same name does not inherit the old stream
    arn2 = create_stream_table(ddb, unique_name)["LatestStreamArn"]
    assert arn2 != arn and consume(st, arn2) == []


def test_stream_status_transitions(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, stream_status_seconds=1.0)
    ddb = srv.client("dynamodb")
    st = srv.client("dynamodbstreams")
    arn = create_stream_table(ddb, unique_name)["LatestStreamArn"]
    assert st.describe_stream(StreamArn=arn)["StreamDescription"]["StreamStatus"] == "ENABLING"
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "sk": {"S": "1"}})  # captured while ENABLING
    time.sleep(1.1)
    assert st.describe_stream(StreamArn=arn)["StreamDescription"]["StreamStatus"] == "ENABLED"
    ddb.update_table(TableName=unique_name, StreamSpecification={"StreamEnabled": False})
    assert st.describe_stream(StreamArn=arn)["StreamDescription"]["StreamStatus"] == "DISABLING"
    time.sleep(1.1)
    assert st.describe_stream(StreamArn=arn)["StreamDescription"]["StreamStatus"] == "DISABLED"
    assert len(consume(st, arn)) == 1


def test_aws_cli_consumes_a_stream(server, unique_name, tmp_path):
    import json
    import os
    import shutil
    import subprocess

    aws = shutil.which("aws")
    if aws is None:
        pytest.skip("AWS CLI not installed")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))

    def cli(*args: str) -> dict:
        out = subprocess.run([aws, "--endpoint-url", server.endpoint, "--output", "json", *args], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else {}

    created = cli("dynamodb", "create-table", "--table-name", unique_name, "--billing-mode", "PAY_PER_REQUEST",
                  "--attribute-definitions", "AttributeName=pk,AttributeType=S",
                  "--key-schema", "AttributeName=pk,KeyType=HASH",
                  "--stream-specification", "StreamEnabled=true,StreamViewType=NEW_IMAGE")
    arn = created["TableDescription"]["LatestStreamArn"]
    cli("dynamodb", "put-item", "--table-name", unique_name, "--item", '{"pk": {"S": "cli"}, "v": {"N": "7"}}')
    assert [s["StreamArn"] for s in cli("dynamodbstreams", "list-streams", "--table-name", unique_name)["Streams"]] \
        == [arn]
    shard = cli("dynamodbstreams", "describe-stream", "--stream-arn", arn)["StreamDescription"]["Shards"][0]
    it = cli("dynamodbstreams", "get-shard-iterator", "--stream-arn", arn, "--shard-id", shard["ShardId"],
             "--shard-iterator-type", "TRIM_HORIZON")["ShardIterator"]
    records = cli("dynamodbstreams", "get-records", "--shard-iterator", it)["Records"]
    assert [(r["eventName"], r["dynamodb"]["NewImage"]) for r in records] == [
        ("INSERT", {"pk": {"S": "cli"}, "v": {"N": "7"}})]
