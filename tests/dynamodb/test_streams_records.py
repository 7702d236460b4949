"""Stream records: shaped as DynamoDB shapes them for each view type, one per change from every write
operation (and none for a write that changes nothing or is rolled back), read by a consumer across shard
rollovers in per-item order."""

from __future__ import annotations

import random

import pytest
from botocore.exceptions import ClientError

from tests.dynamodb.streams_util import all_shards, consume, create_stream_table, in_lineage_order, summary


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.servers import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("streams-records"), allow_any_credentials=True,
                        stream_status_seconds=0, stream_shard_max_records=7)
    yield srv
    srv.stop()


def k(pk: str, sk: str = "s") -> dict:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


@pytest.mark.parametrize("view", ["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"])
def test_records_per_view_type(server, unique_name, view):
    ddb, st = server.client("dynamodb"), server.client("dynamodbstreams")
    arn = create_stream_table(ddb, unique_name, view)["LatestStreamArn"]
    v1 = {**k("a"), "v": {"N": "1"}, "l": {"L": [{"S": "x"}, {"M": {"b": {"BOOL": True}}}]}}
    v2 = {**k("a"), "v": {"N": "2"}, "bs": {"BS": [b"\x01\x02"]}}
    ddb.put_item(TableName=unique_name, Item=v1)
    ddb.put_item(TableName=unique_name, Item=v2)
    ddb.delete_item(TableName=unique_name, Key=k("a"))
    records = consume(st, arn)
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    images = {"KEYS_ONLY": [(None, None)] * 3,
              "NEW_IMAGE": [(v1, None), (v2, None), (None, None)],
              "OLD_IMAGE": [(None, None), (None, v1), (None, v2)],
              "NEW_AND_OLD_IMAGES": [(v1, None), (v2, v1), (None, v2)]}[view]
    seqs = []
    for rec, (new, old) in zip(records, images, strict=True):
        assert rec["eventVersion"] == "1.1" and rec["eventSource"] == "aws:dynamodb"
        assert rec["awsRegion"] == "us-east-1" and len(rec["eventID"]) == 32 and "userIdentity" not in rec
        d = rec["dynamodb"]
        assert d["Keys"] == k("a") and d["StreamViewType"] == view
        assert d.get("NewImage") == new and d.get("OldImage") == old
        assert d["SizeBytes"] > 0 and d["ApproximateCreationDateTime"].year >= 2024
        assert d["SequenceNumber"].isdigit() and len(d["SequenceNumber"]) >= 21
        seqs.append(int(d["SequenceNumber"]))
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert len({r["eventID"] for r in records}) == 3


@pytest.mark.parametrize("view,sizes", [("KEYS_ONLY", [6, 6, 6]), ("NEW_IMAGE", [16, 18, 6]),
                                        ("OLD_IMAGE", [6, 16, 18]), ("NEW_AND_OLD_IMAGES", [16, 28, 18])])
def test_record_size_is_its_keys_and_the_images_it_keeps(server, unique_name, view, sizes):
    # SizeBytes: the keys (pk a, sk s: 6 bytes) and each image the view keeps (v xyz: 10, v hello: 12)
    ddb, st = server.client("dynamodb"), server.client("dynamodbstreams")
    arn = create_stream_table(ddb, unique_name, view)["LatestStreamArn"]
    ddb.put_item(TableName=unique_name, Item={**k("a"), "v": {"S": "xyz"}})
    ddb.put_item(TableName=unique_name, Item={**k("a"), "v": {"S": "hello"}})
    ddb.delete_item(TableName=unique_name, Key=k("a"))
    assert [r["dynamodb"]["SizeBytes"] for r in consume(st, arn)] == sizes


def test_every_write_operation_writes_exactly_its_changes(server, unique_name):
    ddb, st = server.client("dynamodb"), server.client("dynamodbstreams")
    t = unique_name
    arn = create_stream_table(ddb, t, "NEW_AND_OLD_IMAGES")["LatestStreamArn"]
    ddb.put_item(TableName=t, Item={**k("p"), "v": {"S": "1"}})
    ddb.put_item(TableName=t, Item={**k("p"), "v": {"S": "1"}})  # same item again: no change, no record
    ddb.update_item(TableName=t, Key=k("u"), UpdateExpression="SET v = :v", ExpressionAttributeValues={":v": {"N": "1"}})
    ddb.update_item(TableName=t, Key=k("u"), UpdateExpression="SET v = :v",
                    ExpressionAttributeValues={":v": {"N": "1"}})  # unchanged: no record
    ddb.delete_item(TableName=t, Key=k("never"))  # nothing removed: no record
    with pytest.raises(ClientError):
        ddb.put_item(TableName=t, Item=k("p"), ConditionExpression="attribute_not_exists(pk)")
    ddb.delete_item(TableName=t, Key=k("u"))
    ddb.batch_write_item(RequestItems={t: [{"PutRequest": {"Item": k("b1")}}, {"PutRequest": {"Item": k("b2")}},
                                           {"DeleteRequest": {"Key": k("p")}}]})
    ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": t, "Item": k("t1")}},
        {"Update": {"TableName": t, "Key": k("b1"), "UpdateExpression": "SET w = :w",
                    "ExpressionAttributeValues": {":w": {"S": "w"}}}},
        {"Delete": {"TableName": t, "Key": k("b2")}},
    ])
    with pytest.raises(ClientError):  # cancelled as a whole: none of its changes reaches the stream
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": t, "Item": k("never-1")}},
            {"ConditionCheck": {"TableName": t, "Key": k("absent"), "ConditionExpression": "attribute_exists(pk)"}},
        ])
    ddb.execute_statement(Statement=f"INSERT INTO \"{t}\" VALUE {{'pk': 'q', 'sk': 's'}}")
    ddb.execute_statement(Statement=f"UPDATE \"{t}\" SET z = 1 WHERE pk = 'q' AND sk = 's'")
    ddb.batch_execute_statement(Statements=[{"Statement": f"DELETE FROM \"{t}\" WHERE pk = 'q' AND sk = 's'"}])
    ddb.execute_transaction(TransactStatements=[
        {"Statement": f"INSERT INTO \"{t}\" VALUE {{'pk': 'x1', 'sk': 's'}}"},
        {"Statement": f"INSERT INTO \"{t}\" VALUE {{'pk': 'x2', 'sk': 's'}}"}])

    got = [(e, dict(key)["pk"]) for e, key, _, _ in summary(consume(st, arn))]
    head = [("INSERT", "p"), ("INSERT", "u"), ("REMOVE", "u")]
    batch = sorted([("INSERT", "b1"), ("INSERT", "b2"), ("REMOVE", "p")])
    transact = sorted([("INSERT", "t1"), ("MODIFY", "b1"), ("REMOVE", "b2")])
    partiql = [("INSERT", "q"), ("MODIFY", "q"), ("REMOVE", "q")]
    assert got[:3] == head
    assert sorted(got[3:6]) == batch and sorted(got[6:9]) == transact
    assert got[9:12] == partiql and sorted(got[12:]) == [("INSERT", "x1"), ("INSERT", "x2")]
    # every record's images agree with the item's history
    for rec in consume(st, arn):
        d = rec["dynamodb"]
        if rec["eventName"] == "MODIFY":
            assert d["NewImage"] != d["OldImage"]


def test_consumer_across_rollovers_sees_exactly_the_writes_in_item_order(server, unique_name):
    """Random puts, updates and deletes over a few items; the stream, read shard by shard in lineage order,
    equals the model's history, and each item's own changes come in order."""
    ddb, st = server.client("dynamodb"), server.client("dynamodbstreams")
    t = unique_name
    arn = create_stream_table(ddb, t, "NEW_AND_OLD_IMAGES")["LatestStreamArn"]
    rng = random.Random(1234)
    state: dict[str, dict | None] = {}
    expected: list[tuple] = []
    for i in range(60):
        pk = f"item-{rng.randrange(5)}"
        old = state.get(pk)
        op = rng.choice(["put", "put", "update", "delete"])
        if op == "put":
            new = {**k(pk), "n": {"N": str(i)}}
            ddb.put_item(TableName=t, Item=new)
        elif op == "update":
            ddb.update_item(TableName=t, Key=k(pk), UpdateExpression="SET n = :n",
                            ExpressionAttributeValues={":n": {"N": str(i)}})
            new = {**(old or k(pk)), "n": {"N": str(i)}}
        else:
            ddb.delete_item(TableName=t, Key=k(pk))
            new = None
        if old != new:
            event = "INSERT" if old is None else ("REMOVE" if new is None else "MODIFY")
            expected.append((event, (("pk", pk), ("sk", "s")), new, old))
        state[pk] = new

    shards = in_lineage_order(all_shards(st, arn, page=2))
    assert len(shards) == -(-len(expected) // 7)  # rolled over every 7 records
    for parent, child in zip(shards, shards[1:], strict=False):
        assert child["ParentShardId"] == parent["ShardId"]
        assert int(child["SequenceNumberRange"]["StartingSequenceNumber"]) == \
            int(parent["SequenceNumberRange"]["EndingSequenceNumber"]) + 1
    assert summary(consume(st, arn, limit=3)) == expected
    assert summary(consume(st, arn)) == expected
    per_item: dict[str, list] = {}
    for e, key, new, old in summary(consume(st, arn)):
        per_item.setdefault(dict(key)["pk"], []).append((e, new, old))
    for pk, events in per_item.items():
        for (_, new1, _), (_, _, old2) in zip(events, events[1:], strict=False):
            assert new1 == old2, pk  # each change starts where the previous one left the item


def test_a_write_rolled_back_after_its_record_leaves_no_trace(server, unique_name):
    """The first Put of a transaction is applied (record appended) before the second fails on its index key:
    the whole transaction rolls back, and the next write's record follows the last committed one, no gap."""
    ddb, st = server.client("dynamodb"), server.client("dynamodbstreams")
    t = unique_name
    arn = create_stream_table(ddb, t, "NEW_IMAGE", GlobalSecondaryIndexes=[{
        "IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
        "Projection": {"ProjectionType": "KEYS_ONLY"}}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"},
                              {"AttributeName": "g", "AttributeType": "S"}])["LatestStreamArn"]
    ddb.put_item(TableName=t, Item=k("first"))
    for _ in range(3):
        with pytest.raises(ClientError) as err:
            ddb.transact_write_items(TransactItems=[
                {"Put": {"TableName": t, "Item": {**k("rolled-back"), "g": {"S": "ok"}}}},
                {"Put": {"TableName": t, "Item": {**k("bad"), "g": {"N": "1"}}}}])
        assert err.value.response["Error"]["Code"] == "ValidationException"
    ddb.put_item(TableName=t, Item=k("next"))
    records = consume(st, arn)
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in records] == ["first", "next"]
    seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert seqs[1] == seqs[0] + 1
