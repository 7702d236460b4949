"""A Time to Live delete reaches the table's stream as DynamoDB writes it: one REMOVE record with the old
image and ``userIdentity {Type: Service, PrincipalId: dynamodb.amazonaws.com}``; a user's delete has none."""

from __future__ import annotations

import time

from tests.dynamodb.streams_util import all_shards, create_stream_table, read_shard


def test_ttl_deletes_are_remove_records_by_the_service(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, ttl_sweep_seconds=0.3, ttl_cooldown_seconds=0)
    ddb, st = srv.client("dynamodb"), srv.client("dynamodbstreams")
    arn = create_stream_table(ddb, unique_name)["LatestStreamArn"]
    ddb.update_time_to_live(TableName=unique_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"})
    expired = {"pk": {"S": "gone"}, "sk": {"S": "1"}, "exp": {"N": str(int(time.time()) - 60)}}
    ddb.put_item(TableName=unique_name, Item=expired)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "mine"}, "sk": {"S": "1"}})
    ddb.delete_item(TableName=unique_name, Key={"pk": {"S": "mine"}, "sk": {"S": "1"}})
    deadline = time.time() + 20
    while "Item" in ddb.get_item(TableName=unique_name, Key={"pk": {"S": "gone"}, "sk": {"S": "1"}},
                                 ConsistentRead=True):
        assert time.time() < deadline, "the sweeper did not delete the expired item"
        time.sleep(0.1)
    records = []
    for shard in all_shards(st, arn):
        records += read_shard(st, arn, shard["ShardId"])[0]
    removes = [r for r in records if r["eventName"] == "REMOVE"]
    by_key = {r["dynamodb"]["Keys"]["pk"]["S"]: r for r in removes}
    assert sorted(by_key) == ["gone", "mine"]
    ttl = by_key["gone"]
    assert ttl["userIdentity"] == {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
    assert ttl["dynamodb"]["OldImage"] == expired
    assert "userIdentity" not in by_key["mine"]
    assert [r["eventName"] for r in records if r["dynamodb"]["Keys"]["pk"]["S"] == "gone"] == ["INSERT", "REMOVE"]
