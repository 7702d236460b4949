"""The Streams API's paging, iterator types, limits and errors, with DynamoDB's texts."""

from __future__ import annotations

import base64
import time

import pytest
from botocore.exceptions import ClientError

from tests.dynamodb.streams_util import all_shards, consume, create_stream_table, read_shard

NOT_FOUND = "Requested resource not found: Stream: {} not found"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.servers import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("streams-api"), allow_any_credentials=True,
                        stream_status_seconds=0, stream_shard_max_records=5)
    yield srv
    srv.stop()


def _error(call, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


def _fill(ddb, table: str, n: int, size: int = 10) -> None:
    for i in range(n):
        ddb.put_item(TableName=table, Item={"pk": {"S": f"k{i:03d}"}, "sk": {"S": "s"}, "v": {"S": "x" * size}})


def test_list_streams_paging_and_filter(server, unique_name):
    ddb, st = server.client("dynamodb"), server.client("dynamodbstreams")
    arns = sorted(create_stream_table(ddb, f"{unique_name}-{i}")["LatestStreamArn"] for i in range(3))
    create_stream_table(ddb, f"{unique_name}-none", view=None)
    mine = [s for s in st.list_streams()["Streams"] if s["TableName"].startswith(unique_name)]
    assert sorted(s["StreamArn"] for s in mine) == arns
    seen, start = [], None
    while True:
        page = st.list_streams(Limit=1, **({"ExclusiveStartStreamArn": start} if start else {}))
        assert len(page["Streams"]) <= 1
        seen += [s["StreamArn"] for s in page["Streams"]]
        start = page.get("LastEvaluatedStreamArn")
        if not start:
            break
    assert [a for a in seen if unique_name in a] == arns and len(seen) == len(set(seen))
    only = st.list_streams(TableName=f"{unique_name}-1")["Streams"]
    assert [s["StreamArn"] for s in only] == [arns[1]] and only[0]["StreamLabel"] == arns[1].rsplit("/", 1)[1]
    assert st.list_streams(TableName=f"{unique_name}-none")["Streams"] == []
    assert _error(st.list_streams, TableName=f"{unique_name}-missing") == (
        "ResourceNotFoundException", f"Requested resource not found: Table: {unique_name}-missing not found")
    code, message = _error(st.list_streams, Limit=101)
    assert code == "ValidationException" and "less than or equal to 100" in message


def test_describe_stream_paging_and_child_filter(server, unique_name):
    ddb, st = server.client("dynamodb"), server.client("dynamodbstreams")
    arn = create_stream_table(ddb, unique_name)["LatestStreamArn"]
    _fill(ddb, unique_name, 22)  # five records a shard: five shards, the last one open
    shards = all_shards(st, arn)
    assert len(shards) == 5 and all_shards(st, arn, page=2) == shards
    assert [("EndingSequenceNumber" in s["SequenceNumberRange"]) for s in shards] == [True] * 4 + [False]
    first = st.describe_stream(StreamArn=arn, Limit=2)["StreamDescription"]
    assert first["LastEvaluatedShardId"] == shards[1]["ShardId"] and first["Shards"] == shards[:2]
    children = st.describe_stream(StreamArn=arn, ShardFilter={"Type": "CHILD_SHARDS",
                                                              "ShardId": shards[2]["ShardId"]})["StreamDescription"]
    assert children["Shards"] == [shards[3]]
    assert len(shards[0]["ShardId"]) >= 28 and shards[0]["ShardId"].startswith("shardId-")
    assert sum(len(read_shard(st, arn, s["ShardId"])[0]) for s in shards) == 22


def test_iterator_types(server, unique_name):
    ddb, st = server.client("dynamodb"), server.client("dynamodbstreams")
    arn = create_stream_table(ddb, unique_name)["LatestStreamArn"]
    _fill(ddb, unique_name, 3)
    shard = all_shards(st, arn)[0]["ShardId"]
    every, closed = read_shard(st, arn, shard)
    assert len(every) == 3 and not closed
    seqs = [r["dynamodb"]["SequenceNumber"] for r in every]
    at, _ = read_shard(st, arn, shard, "AT_SEQUENCE_NUMBER", SequenceNumber=seqs[1])
    after, _ = read_shard(st, arn, shard, "AFTER_SEQUENCE_NUMBER", SequenceNumber=seqs[1])
    assert [r["dynamodb"]["SequenceNumber"] for r in at] == seqs[1:]
    assert [r["dynamodb"]["SequenceNumber"] for r in after] == seqs[2:]
    latest = st.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
    assert st.get_records(ShardIterator=latest)["Records"] == []
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "late"}, "sk": {"S": "s"}})
    page = st.get_records(ShardIterator=latest)
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in page["Records"]] == ["late"]
    # an open shard's iterator keeps going: later writes show up on NextShardIterator
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "later"}, "sk": {"S": "s"}})
    nxt = st.get_records(ShardIterator=page["NextShardIterator"])
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in nxt["Records"]] == ["later"]
    # the shard closes (fifth record): its last page has no NextShardIterator
    end = st.get_records(ShardIterator=nxt["NextShardIterator"])
    assert end["Records"] == [] and "NextShardIterator" in end
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "sixth"}, "sk": {"S": "s"}})
    final = st.get_records(ShardIterator=end["NextShardIterator"])
    assert final["Records"] == [] and "NextShardIterator" not in final
    closed_latest = st.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
    assert "NextShardIterator" not in st.get_records(ShardIterator=closed_latest)


def test_get_shard_iterator_errors(server, unique_name):
    ddb, st = server.client("dynamodb"), server.client("dynamodbstreams")
    arn = create_stream_table(ddb, unique_name)["LatestStreamArn"]
    _fill(ddb, unique_name, 2)
    shard = all_shards(st, arn)[0]
    sid = shard["ShardId"]
    start = int(shard["SequenceNumberRange"]["StartingSequenceNumber"])
    missing = arn[:-3] + "999" if not arn.endswith("999") else arn[:-3] + "998"
    assert _error(st.get_shard_iterator, StreamArn=missing, ShardId=sid, ShardIteratorType="LATEST") == (
        "ResourceNotFoundException", NOT_FOUND.format(missing))
    assert _error(st.describe_stream, StreamArn=missing) == ("ResourceNotFoundException", NOT_FOUND.format(missing))
    other_account = arn.replace(":000000000000:", ":111111111111:")
    assert _error(st.describe_stream, StreamArn=other_account)[0] == "ResourceNotFoundException"
    assert server.client("dynamodbstreams", access_key="111111111111").list_streams()["Streams"] == []
    assert _error(st.get_shard_iterator, StreamArn=arn, ShardId="shardId-00000000000000000000-00000000",
                  ShardIteratorType="LATEST") == (
        "ResourceNotFoundException", "Requested resource not found: Shard does not exist")
    code, message = _error(st.get_shard_iterator, StreamArn=arn, ShardId=sid,
                           ShardIteratorType="AT_SEQUENCE_NUMBER")
    assert code == "ValidationException" and "SequenceNumber" in message
    for bad in (str(start + 2), str(start - 1), "9" * 21, "1" * 30):
        code, message = _error(st.get_shard_iterator, StreamArn=arn, ShardId=sid,
                               ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=bad)
        assert code == "ValidationException" and message.startswith("Invalid SequenceNumber"), bad
    raw = server.client("dynamodbstreams", validate=False)
    code, message = _error(raw.get_shard_iterator, StreamArn=arn, ShardId=sid, ShardIteratorType="NEWEST")
    assert code == "ValidationException" and "shardIteratorType" in message


def test_get_records_limits(server, unique_name):
    ddb, st = server.client("dynamodb"), server.client("dynamodbstreams")
    arn = create_stream_table(ddb, unique_name)["LatestStreamArn"]
    _fill(ddb, unique_name, 4, size=300_000)  # ~1.2 MB of new images in one shard
    sid = all_shards(st, arn)[0]["ShardId"]
    it = st.get_shard_iterator(StreamArn=arn, ShardId=sid, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    first = st.get_records(ShardIterator=it)
    assert 1 <= len(first["Records"]) < 4  # at most 1 MB a call
    assert sum(r["dynamodb"]["SizeBytes"] for r in first["Records"]) <= 1024 * 1024
    rest = st.get_records(ShardIterator=first["NextShardIterator"])
    assert len(first["Records"]) + len(rest["Records"]) == 4
    one = st.get_records(ShardIterator=it, Limit=1)
    assert len(one["Records"]) == 1
    code, message = _error(st.get_records, ShardIterator=it, Limit=1001)
    assert (code, message) == ("ValidationException", "1 validation error detected: Value '1001' at 'limit' failed "
                               "to satisfy constraint: Member must have value less than or equal to 1000")
    raw = server.client("dynamodbstreams", validate=False)
    assert _error(raw.get_records, ShardIterator=it, Limit=0)[0] == "ValidationException"


def test_forged_and_foreign_iterators_are_refused(server, unique_name):
    ddb, st = server.client("dynamodb"), server.client("dynamodbstreams")
    arn = create_stream_table(ddb, unique_name)["LatestStreamArn"]
    arn2 = create_stream_table(ddb, unique_name + "-2")["LatestStreamArn"]
    _fill(ddb, unique_name, 2)
    it = st.get_shard_iterator(StreamArn=arn, ShardId=all_shards(st, arn)[0]["ShardId"],
                               ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    assert it.startswith(arn + "|")
    head, blob = it.rsplit("|", 1)
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    tampered = f"{head}|{base64.b64encode(bytes(raw)).decode()}"
    for bad in (tampered, it.replace(arn, arn2, 1), "garbage", f"{arn}|1|!!!", f"{arn}|2|{blob}"):
        code, message = _error(st.get_records, ShardIterator=bad)
        assert code in ("ValidationException", "ResourceNotFoundException"), (bad, code, message)
    assert _error(st.get_records, ShardIterator=tampered) == ("ValidationException", "Invalid ShardIterator")
    assert _error(st.get_records, ShardIterator=it.replace(arn, arn2, 1)) == (
        "ValidationException", "Invalid ShardIterator")
    assert len(st.get_records(ShardIterator=it)["Records"]) == 2  # the real one still works


def test_expired_iterator_and_trimmed_data(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, stream_status_seconds=0, stream_iterator_seconds=3,
                       stream_shard_max_records=2, stream_retention_seconds=1)
    ddb, st = srv.client("dynamodb"), srv.client("dynamodbstreams")
    arn = create_stream_table(ddb, unique_name)["LatestStreamArn"]
    _fill(ddb, unique_name, 3)  # shard 0 closes with two records, shard 1 holds the third
    first, second = (s["ShardId"] for s in all_shards(st, arn))
    old = st.get_shard_iterator(StreamArn=arn, ShardId=second, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    issued = time.time()
    it = st.get_shard_iterator(StreamArn=arn, ShardId=first, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    deadline = time.time() + 10
    while first in [s["ShardId"] for s in all_shards(st, arn)]:  # the job trims the closed shard
        assert time.time() < deadline, "the closed shard was never trimmed"
        time.sleep(0.2)
    assert _error(st.get_records, ShardIterator=it) == (
        "TrimmedDataAccessException", "The data you are trying to access has been trimmed.")
    shards = all_shards(st, arn)
    assert [s["ShardId"] for s in shards] == [second]
    assert shards[0]["ParentShardId"] == first  # lineage still names the trimmed parent
    assert len(consume(st, arn)) == 1
    time.sleep(max(0.0, issued + 3.2 - time.time()))
    assert _error(st.get_records, ShardIterator=old) == (
        "ExpiredIteratorException", "The provided iterator exceeds the maximum age allowed.")


def test_shards_roll_over_by_age(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, stream_status_seconds=0, stream_shard_seconds=1)
    ddb, st = srv.client("dynamodb"), srv.client("dynamodbstreams")
    arn = create_stream_table(ddb, unique_name)["LatestStreamArn"]
    time.sleep(1.5)
    assert len(all_shards(st, arn)) == 1  # an empty shard has nothing to close over
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "one"}, "sk": {"S": "s"}})
    deadline = time.time() + 10
    while len(shards := all_shards(st, arn)) < 2:  # the job closes the aged shard and opens its child
        assert time.time() < deadline, shards
        time.sleep(0.2)
    first, child = shards[:2]
    assert child["ParentShardId"] == first["ShardId"] and "EndingSequenceNumber" in first["SequenceNumberRange"]
    records, closed = read_shard(st, arn, first["ShardId"])
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in records] == ["one"] and closed
    time.sleep(1.1)
    _fill(ddb, unique_name, 2)  # the child is old too: the writer rolls it over after its first record
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in consume(st, arn)] == ["one", "k000", "k001"]
    assert len(all_shards(st, arn)) >= 3
