"""The item-collection size limit for tables with local secondary indexes (set low through settings)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError


def test_lsi_item_collection_limit(start_server):
    srv = start_server(allow_any_credentials=True, item_collection_max_bytes=20000)
    ddb = srv.client("dynamodb")
    ddb.create_table(
        TableName="coll", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "alt")],
        LocalSecondaryIndexes=[{"IndexName": "by-alt", "Projection": {"ProjectionType": "ALL"},
                                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                              {"AttributeName": "alt", "KeyType": "RANGE"}]}],
    )
    blob = "x" * 3000
    written = 0
    with pytest.raises(ClientError) as err:
        for i in range(10):
            ddb.put_item(TableName="coll", Item={"pk": {"S": "hot"}, "sk": {"S": f"{i}"}, "alt": {"S": f"a{i}"},
                                                 "v": {"S": blob}})
            written += 1
    assert err.value.response["Error"]["Code"] == "ItemCollectionSizeLimitExceededException"
    assert 2 <= written < 10
    # the refused write changed nothing; other partitions are unaffected; deletes free room
    assert ddb.query(TableName="coll", KeyConditionExpression="pk = :p",
                     ExpressionAttributeValues={":p": {"S": "hot"}}, Select="COUNT")["Count"] == written
    ddb.put_item(TableName="coll", Item={"pk": {"S": "cold"}, "sk": {"S": "0"}, "alt": {"S": "a"},
                                         "v": {"S": blob}})
    ddb.delete_item(TableName="coll", Key={"pk": {"S": "hot"}, "sk": {"S": "0"}})
    ddb.put_item(TableName="coll", Item={"pk": {"S": "hot"}, "sk": {"S": "new"}, "alt": {"S": "n"},
                                         "v": {"S": blob}})
