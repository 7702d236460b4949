"""Secondary indexes through boto3: LSI and GSI definitions and errors, projections, sparse indexes, duplicate
index keys, write-time key validation, multi-attribute GSI keys, online create (backfill) and delete."""

from __future__ import annotations

import time
import uuid

import pytest
from botocore.exceptions import ClientError

INVALID = "One or more parameter values were invalid: "
HASH = {"AttributeName": "pk", "KeyType": "HASH"}
RANGE = {"AttributeName": "sk", "KeyType": "RANGE"}


@pytest.fixture(scope="module")
def ddb(srv):
    return srv.client("dynamodb")


def _defs(**types):
    return [{"AttributeName": k, "AttributeType": v} for k, v in types.items()]


def _ks(*pairs):
    return [{"AttributeName": n, "KeyType": t} for n, t in pairs]


def _err(fn, code="ValidationException", **kw) -> str:
    with pytest.raises(ClientError) as e:
        fn(**kw)
    assert e.value.response["Error"]["Code"] == code, e.value.response
    return e.value.response["Error"]["Message"]


def _wait_active(ddb, name, index, timeout=20.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for g in ddb.describe_table(TableName=name)["Table"].get("GlobalSecondaryIndexes", []):
            if g["IndexName"] == index and g["IndexStatus"] == "ACTIVE":
                return g
        time.sleep(0.1)
    raise AssertionError(f"index {index} not ACTIVE")


def _wait_gone(ddb, name, index, timeout=20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        names = [g["IndexName"] for g in ddb.describe_table(TableName=name)["Table"].get("GlobalSecondaryIndexes", [])]
        if index not in names:
            return
        time.sleep(0.1)
    raise AssertionError(f"index {index} still there")


@pytest.fixture(scope="module")
def shop(ddb):
    """pk/sk table with an LSI (KEYS_ONLY), a GSI (INCLUDE) and a GSI (ALL) on a number key."""
    name = f"idx-shop-{uuid.uuid4().hex[:8]}"  # unique: xdist may set the module up twice
    ddb.create_table(
        TableName=name, KeySchema=[HASH, RANGE], BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=_defs(pk="S", sk="S", price="N", cat="S", rank="B"),
        LocalSecondaryIndexes=[{"IndexName": "by-price", "KeySchema": _ks(("pk", "HASH"), ("price", "RANGE")),
                                "Projection": {"ProjectionType": "KEYS_ONLY"}}],
        GlobalSecondaryIndexes=[
            {"IndexName": "by-cat", "KeySchema": _ks(("cat", "HASH"), ("price", "RANGE")),
             "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["title"]}},
            {"IndexName": "by-rank", "KeySchema": _ks(("rank", "HASH")), "Projection": {"ProjectionType": "ALL"}},
        ],
    )
    rows = [("s1", "a", 30, "toys", b"\x01"), ("s1", "b", 10, "toys", b"\x02"), ("s1", "c", 20, "books", None),
            ("s2", "a", 10, "toys", b"\x01"), ("s2", "b", None, None, None)]
    for pk, sk, price, cat, rank in rows:
        item = {"pk": {"S": pk}, "sk": {"S": sk}, "title": {"S": f"{pk}{sk}"}, "secret": {"S": "s"}}
        if price is not None:
            item["price"] = {"N": str(price)}
        if cat is not None:
            item["cat"] = {"S": cat}
        if rank is not None:
            item["rank"] = {"B": rank}
        ddb.put_item(TableName=name, Item=item)
    return name


def test_describe_shows_indexes(ddb, shop):
    t = ddb.describe_table(TableName=shop)["Table"]
    (lsi,) = t["LocalSecondaryIndexes"]
    assert lsi["IndexName"] == "by-price" and lsi["IndexArn"] == t["TableArn"] + "/index/by-price"
    assert lsi["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert lsi["ItemCount"] == 4 and lsi["IndexSizeBytes"] > 0
    gsis = {g["IndexName"]: g for g in t["GlobalSecondaryIndexes"]}
    assert gsis["by-cat"]["IndexStatus"] == "ACTIVE" and gsis["by-cat"]["ItemCount"] == 4
    assert gsis["by-rank"]["ItemCount"] == 3
    assert "Backfilling" not in gsis["by-cat"]
    assert gsis["by-cat"]["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["title"]}


def test_lsi_query_keys_only_and_fetch(ddb, shop):
    q = dict(TableName=shop, IndexName="by-price", KeyConditionExpression="pk = :p AND price >= :lo",
             ExpressionAttributeValues={":p": {"S": "s1"}, ":lo": {"N": "15"}})
    r = ddb.query(**q)
    assert r["Items"] == [{"pk": {"S": "s1"}, "sk": {"S": "c"}, "price": {"N": "20"}},
                          {"pk": {"S": "s1"}, "sk": {"S": "a"}, "price": {"N": "30"}}]
    # LSIs fetch what they do not hold from the table
    r = ddb.query(**q, Select="ALL_ATTRIBUTES")
    assert [i["title"]["S"] for i in r["Items"]] == ["s1c", "s1a"]
    r = ddb.query(**q, ProjectionExpression="title")
    assert r["Items"] == [{"title": {"S": "s1c"}}, {"title": {"S": "s1a"}}]
    r = ddb.query(**q, ScanIndexForward=False, Limit=1)
    assert r["LastEvaluatedKey"] == {"pk": {"S": "s1"}, "sk": {"S": "a"}, "price": {"N": "30"}}
    r = ddb.query(**q, ScanIndexForward=False, ExclusiveStartKey=r["LastEvaluatedKey"])
    assert [i["sk"]["S"] for i in r["Items"]] == ["c"]


def test_gsi_include_duplicates_and_sparse(ddb, shop):
    r = ddb.query(TableName=shop, IndexName="by-cat", KeyConditionExpression="cat = :c",
                  ExpressionAttributeValues={":c": {"S": "toys"}})
    # two items share price 10: both are there, ordered by the table key after the index key
    assert [(i["pk"]["S"], i["price"]["N"]) for i in r["Items"]] == [("s1", "10"), ("s2", "10"), ("s1", "30")]
    assert set(r["Items"][0]) == {"pk", "sk", "cat", "price", "title"}  # no "secret": not projected
    assert _err(ddb.query, TableName=shop, IndexName="by-cat", KeyConditionExpression="cat = :c",
                ExpressionAttributeValues={":c": {"S": "toys"}}, Select="ALL_ATTRIBUTES") == (
        INVALID + "Select type ALL_ATTRIBUTES is not supported for global secondary index by-cat because its "
        "projection type is not ALL")
    assert _err(ddb.query, TableName=shop, IndexName="by-cat", KeyConditionExpression="cat = :c",
                ExpressionAttributeValues={":c": {"S": "toys"}}, ConsistentRead=True) == \
        "Consistent reads are not supported on global secondary indexes"
    # paging over duplicate index keys
    seen, esk = [], None
    while True:
        kw = {"ExclusiveStartKey": esk} if esk else {}
        r = ddb.query(TableName=shop, IndexName="by-cat", KeyConditionExpression="cat = :c",
                      ExpressionAttributeValues={":c": {"S": "toys"}}, Limit=1, **kw)
        seen += [(i["pk"]["S"], i["sk"]["S"]) for i in r["Items"]]
        esk = r.get("LastEvaluatedKey")
        if not esk:
            break
        assert set(esk) == {"pk", "sk", "cat", "price"}
    assert seen == [("s1", "b"), ("s2", "a"), ("s1", "a")]
    # sparse: the scan of an index holds only items with its keys
    r = ddb.scan(TableName=shop, IndexName="by-rank")
    assert sorted((i["pk"]["S"], i["sk"]["S"]) for i in r["Items"]) == [("s1", "a"), ("s1", "b"), ("s2", "a")]
    assert r["Items"][0]["secret"] == {"S": "s"}  # ALL projection


def test_index_follows_updates_and_deletes(ddb, shop):
    key = {"pk": {"S": "s2"}, "sk": {"S": "a"}}
    ddb.update_item(TableName=shop, Key=key, UpdateExpression="SET cat = :c, price = :p",
                    ExpressionAttributeValues={":c": {"S": "books"}, ":p": {"N": "5"}})
    r = ddb.query(TableName=shop, IndexName="by-cat", KeyConditionExpression="cat = :c",
                  ExpressionAttributeValues={":c": {"S": "books"}}, ReturnConsumedCapacity="INDEXES")
    assert [(i["pk"]["S"], i["price"]["N"]) for i in r["Items"]] == [("s2", "5"), ("s1", "20")]
    assert r["ConsumedCapacity"]["GlobalSecondaryIndexes"]["by-cat"]["CapacityUnits"] == 0.5
    r = ddb.query(TableName=shop, IndexName="by-cat", KeyConditionExpression="cat = :c",
                  ExpressionAttributeValues={":c": {"S": "toys"}})
    assert ("s2", "a") not in [(i["pk"]["S"], i["sk"]["S"]) for i in r["Items"]]
    # removing the key attribute takes the item out of the index
    r = ddb.update_item(TableName=shop, Key=key, UpdateExpression="REMOVE cat", ReturnConsumedCapacity="INDEXES")
    assert r["ConsumedCapacity"]["GlobalSecondaryIndexes"]["by-cat"]["CapacityUnits"] == 1.0
    r = ddb.query(TableName=shop, IndexName="by-cat", KeyConditionExpression="cat = :c",
                  ExpressionAttributeValues={":c": {"S": "books"}})
    assert [i["pk"]["S"] for i in r["Items"]] == ["s1"]
    ddb.delete_item(TableName=shop, Key=key)
    r = ddb.query(TableName=shop, IndexName="by-rank", KeyConditionExpression="#r = :r",
                  ExpressionAttributeNames={"#r": "rank"}, ExpressionAttributeValues={":r": {"B": b"\x01"}})
    assert [(i["pk"]["S"], i["sk"]["S"]) for i in r["Items"]] == [("s1", "a")]


def test_wrong_index_key_type_rejects_the_write(ddb, shop):
    item = {"pk": {"S": "s9"}, "sk": {"S": "z"}, "cat": {"N": "1"}}
    assert _err(ddb.put_item, TableName=shop, Item=item) == (
        INVALID + "Type mismatch for Index Key cat Expected: S Actual: N IndexName: by-cat")
    assert "Item" not in ddb.get_item(TableName=shop, Key={"pk": {"S": "s9"}, "sk": {"S": "z"}})
    msg = _err(ddb.put_item, TableName=shop, Item={**item, "cat": {"S": ""}})
    assert "IndexName: by-cat, IndexKey: cat" in msg


def test_multi_attribute_gsi_keys(ddb):
    # a real server: multi-attribute GSI key schemas go through the request validator like any other
    name = "idx-multi"
    ddb.create_table(
        TableName=name, KeySchema=[HASH], BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=_defs(pk="S", tour="S", area="S", round="N", bracket="S"),
        GlobalSecondaryIndexes=[{"IndexName": "matches", "Projection": {"ProjectionType": "KEYS_ONLY"},
                                 "KeySchema": _ks(("tour", "HASH"), ("area", "HASH"), ("round", "RANGE"),
                                                  ("bracket", "RANGE"))}],
    )
    n = 0
    for zone in ("eu", "us"):
        for rnd in (1, 2, 10):
            for bracket in ("lower", "upper"):
                n += 1
                ddb.put_item(TableName=name, Item={"pk": {"S": f"m{n}"}, "tour": {"S": "w24"}, "area": {"S": zone},
                                                   "round": {"N": str(rnd)}, "bracket": {"S": bracket}})
    ddb.put_item(TableName=name, Item={"pk": {"S": "partial"}, "tour": {"S": "w24"}, "area": {"S": "eu"}})

    def q(cond, **values):
        vals = {":t": {"S": "w24"}, ":r": {"S": "eu"}, **values}
        r = ddb.query(TableName=name, IndexName="matches", KeyConditionExpression=cond, ExpressionAttributeValues=vals)
        return [(i["round"]["N"], i["bracket"]["S"]) for i in r["Items"]]

    everything = q("tour = :t AND area = :r")
    assert everything == [("1", "lower"), ("1", "upper"), ("2", "lower"), ("2", "upper"), ("10", "lower"),
                          ("10", "upper")]
    assert q("tour = :t AND area = :r AND round >= :n", **{":n": {"N": "2"}}) == everything[2:]
    assert q("tour = :t AND area = :r AND round = :n AND bracket = :b",
             **{":n": {"N": "10"}, ":b": {"S": "upper"}}) == [("10", "upper")]
    assert q("tour = :t AND area = :r AND round = :n AND begins_with(bracket, :b)",
             **{":n": {"N": "2"}, ":b": {"S": "lo"}}) == [("2", "lower")]
    assert q("tour = :t AND area = :r AND round = :n AND bracket < :b",
             **{":n": {"N": "1"}, ":b": {"S": "u"}}) == [("1", "lower")]
    r = ddb.query(TableName=name, IndexName="matches", KeyConditionExpression="tour = :t AND area = :r",
                  ExpressionAttributeValues={":t": {"S": "w24"}, ":r": {"S": "us"}}, Limit=4)
    assert set(r["LastEvaluatedKey"]) == {"pk", "tour", "area", "round", "bracket"}
    r = ddb.query(TableName=name, IndexName="matches", KeyConditionExpression="tour = :t AND area = :r",
                  ExpressionAttributeValues={":t": {"S": "w24"}, ":r": {"S": "us"}},
                  ExclusiveStartKey=r["LastEvaluatedKey"])
    assert [(i["round"]["N"], i["bracket"]["S"]) for i in r["Items"]] == [("10", "lower"), ("10", "upper")]
    msg = _err(ddb.query, TableName=name, IndexName="matches", KeyConditionExpression="tour = :t",
               ExpressionAttributeValues={":t": {"S": "w24"}})
    assert msg == "Query condition missed key schema element: area"
    msg = _err(ddb.query, TableName=name, IndexName="matches",
               KeyConditionExpression="tour = :t AND area = :r AND bracket = :b",
               ExpressionAttributeValues={":t": {"S": "w24"}, ":r": {"S": "eu"}, ":b": {"S": "upper"}})
    assert msg == ("RANGE key attributes round must have equality conditions specified in the query because a "
                   "condition is present on key attribute bracket")
    msg = _err(ddb.query, TableName=name, IndexName="matches",
               KeyConditionExpression="tour = :t AND area = :r AND round > :n AND bracket = :b",
               ExpressionAttributeValues={":t": {"S": "w24"}, ":r": {"S": "eu"}, ":n": {"N": "1"},
                                          ":b": {"S": "upper"}})
    assert msg.startswith("RANGE key attributes round must have equality conditions")
    # a wrong type in any of the key attributes rejects the write
    msg = _err(ddb.put_item, TableName=name, Item={"pk": {"S": "x"}, "tour": {"S": "w24"}, "area": {"S": "eu"},
                                                   "round": {"S": "one"}})
    assert msg == INVALID + "Type mismatch for Index Key round Expected: N Actual: S IndexName: matches"


def test_create_table_index_errors(ddb):
    def create(**kw):
        args = dict(TableName="idx-bad", KeySchema=[HASH, RANGE], BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=_defs(pk="S", sk="S", x="S"))
        args.update(kw)
        return ddb.create_table(**args)

    lsi = {"IndexName": "lsi1", "KeySchema": _ks(("pk", "HASH"), ("x", "RANGE")), "Projection": {"ProjectionType": "ALL"}}
    assert _err(create, KeySchema=[HASH], AttributeDefinitions=_defs(pk="S", x="S"), LocalSecondaryIndexes=[lsi]) == (
        INVALID + "Table KeySchema does not have a range key, which is required when specifying a LocalSecondaryIndex")
    bad_lsi = {**lsi, "KeySchema": _ks(("x", "HASH"), ("sk", "RANGE"))}
    assert _err(create, LocalSecondaryIndexes=[bad_lsi]).startswith(
        INVALID + "Index KeySchema does not have the same leading hash key as table KeySchema for index: lsi1")
    assert _err(create, LocalSecondaryIndexes=[lsi, lsi]) == INVALID + "Duplicate index name: lsi1"
    inc = {**lsi, "Projection": {"ProjectionType": "INCLUDE"}}
    assert _err(create, LocalSecondaryIndexes=[inc]) == (
        INVALID + "ProjectionType is INCLUDE, but NonKeyAttributes is not specified")
    gsi = {"IndexName": "gsi1", "KeySchema": _ks(("y", "HASH")), "Projection": {"ProjectionType": "ALL"}}
    assert "Some index key attributes are not defined in AttributeDefinitions" in _err(
        create, GlobalSecondaryIndexes=[gsi])
    assert _err(create, AttributeDefinitions=_defs(pk="S", sk="S", x="S", unused="S"), LocalSecondaryIndexes=[lsi]) == (
        INVALID + "Number of attributes in KeySchema does not exactly match number of attributes defined in "
        "AttributeDefinitions")
    prov = {"IndexName": "gsi1", "KeySchema": _ks(("x", "HASH")), "Projection": {"ProjectionType": "ALL"}}
    assert _err(create, BillingMode="PROVISIONED", GlobalSecondaryIndexes=[prov],
                ProvisionedThroughput={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1}) == (
        INVALID + "ProvisionedThroughput should not be null for index: gsi1")
    with pytest.raises(ClientError):
        ddb.describe_table(TableName="idx-bad")


def test_gsi_added_later_backfills_then_deleted(ddb):
    name = "idx-online"
    ddb.create_table(TableName=name, KeySchema=[HASH], AttributeDefinitions=_defs(pk="S"),
                     BillingMode="PAY_PER_REQUEST")
    for i in range(450):  # more than one backfill batch
        item = {"pk": {"S": f"k{i}"}, "n": {"N": str(i % 7)}}
        if i % 5 == 0:
            item["n"] = {"S": "not a number"}  # a wrong type is skipped by the backfill
        ddb.put_item(TableName=name, Item=item)
    r = ddb.update_table(TableName=name, AttributeDefinitions=_defs(n="N"), GlobalSecondaryIndexUpdates=[
        {"Create": {"IndexName": "by-n", "KeySchema": _ks(("n", "HASH"), ("pk", "RANGE")),
                    "Projection": {"ProjectionType": "KEYS_ONLY"}}}])
    (g,) = r["TableDescription"]["GlobalSecondaryIndexes"]
    assert (g["IndexStatus"], g["Backfilling"]) == ("CREATING", True)
    assert _err(ddb.query, TableName=name, IndexName="by-n", KeyConditionExpression="n = :n",
                ExpressionAttributeValues={":n": {"N": "3"}}) == \
        "Cannot read from backfilling global secondary index: by-n"
    assert _err(ddb.update_table, code="LimitExceededException", TableName=name,
                GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "by-n"}}]).startswith("Subscriber limit exceeded")
    # writes during the backfill reach the index too
    ddb.put_item(TableName=name, Item={"pk": {"S": "late"}, "n": {"N": "3"}})
    g = _wait_active(ddb, name, "by-n")
    assert "Backfilling" not in g  # DynamoDB shows it only while the index is CREATING
    expected = sorted([f"k{i}" for i in range(450) if i % 7 == 3 and i % 5 != 0] + ["late"])
    r = ddb.query(TableName=name, IndexName="by-n", KeyConditionExpression="n = :n",
                  ExpressionAttributeValues={":n": {"N": "3"}})
    assert [i["pk"]["S"] for i in r["Items"]] == expected
    assert g["ItemCount"] == 450 - 90 + 1
    assert _err(ddb.update_table, TableName=name, AttributeDefinitions=_defs(n="N"), GlobalSecondaryIndexUpdates=[
        {"Create": {"IndexName": "by-n", "KeySchema": _ks(("n", "HASH")), "Projection": {"ProjectionType": "ALL"}}}]
    ) == INVALID + "Index with name: by-n already exists"
    r = ddb.update_table(TableName=name, GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "by-n"}}])
    assert r["TableDescription"]["GlobalSecondaryIndexes"][0]["IndexStatus"] == "DELETING"
    _wait_gone(ddb, name, "by-n")
    assert "by-n" in _err(ddb.query, TableName=name, IndexName="by-n", KeyConditionExpression="n = :n",
                          ExpressionAttributeValues={":n": {"N": "3"}})
    # the table itself is untouched
    assert ddb.scan(TableName=name, Select="COUNT")["Count"] == 451


def test_backfill_resumes_after_restart(start_server):
    srv = start_server(allow_any_credentials=True)
    ddb = srv.client("dynamodb")
    name = "idx-restart"
    ddb.create_table(TableName=name, KeySchema=[HASH], AttributeDefinitions=_defs(pk="S"),
                     BillingMode="PAY_PER_REQUEST")
    for i in range(50):
        ddb.put_item(TableName=name, Item={"pk": {"S": f"k{i}"}, "g": {"S": "all"}})
    ddb.update_table(TableName=name, AttributeDefinitions=_defs(g="S"), GlobalSecondaryIndexUpdates=[
        {"Create": {"IndexName": "by-g", "KeySchema": _ks(("g", "HASH")), "Projection": {"ProjectionType": "ALL"}}}])
    srv.kill()  # before the backfill can start: the catalog says CREATING
    srv.start()
    ddb = srv.client("dynamodb")
    _wait_active(ddb, name, "by-g")
    r = ddb.query(TableName=name, IndexName="by-g", KeyConditionExpression="g = :g",
                  ExpressionAttributeValues={":g": {"S": "all"}}, Select="COUNT")
    assert r["Count"] == 50
