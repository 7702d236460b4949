"""Invariant 1 for secondary indexes: distinctive values in LSI and GSI keys and in projected attributes
(including a GSI added, and backfilled, after the data exists) never reach disk or the log in plaintext."""

from __future__ import annotations

import time

from tests.canary import scan

LSI_KEY = "canary-lsikey-Peregrine4471"
GSI_KEY = "canary-gsikey-Tamarind8826"
GSI_SORT = "canary-gsisort-Vellum3390"
PROJECTED = "canary-projected-Quasar5517"
LATE_KEY = "canary-latekey-Fandango2264"
LATE_NUMBER = "27182818284590452"
BINARY = b"\x07canary-gsibin-Harrow\x93"
CANARIES: list[str | bytes] = [LSI_KEY, GSI_KEY, GSI_SORT, PROJECTED, LATE_KEY, LATE_NUMBER, BINARY]


def _ks(*pairs):
    return [{"AttributeName": n, "KeyType": t} for n, t in pairs]


def test_no_canary_in_index_data_at_rest(start_server):
    srv = start_server(allow_any_credentials=True, log_file="")
    ddb = srv.client("dynamodb")
    name = "canary-indexes"
    ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=_ks(("pk", "HASH"), ("sk", "RANGE")),
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in
                              (("pk", "S"), ("sk", "S"), ("lk", "S"), ("gk", "S"), ("gs", "S"), ("gb", "B"))],
        LocalSecondaryIndexes=[{"IndexName": "lsi-canary", "KeySchema": _ks(("pk", "HASH"), ("lk", "RANGE")),
                                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["proj"]}}],
        GlobalSecondaryIndexes=[
            {"IndexName": "gsi-canary", "KeySchema": _ks(("gk", "HASH"), ("gs", "RANGE")),
             "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["proj"]}},
            {"IndexName": "gsi-binary", "KeySchema": _ks(("gb", "HASH")), "Projection": {"ProjectionType": "ALL"}},
        ],
        SSESpecification={"Enabled": True},
    )
    for i in range(25):
        ddb.put_item(TableName=name, Item={
            "pk": {"S": f"p{i % 3}"}, "sk": {"S": f"s{i}"}, "lk": {"S": f"{LSI_KEY}-{i}"},
            "gk": {"S": GSI_KEY}, "gs": {"S": f"{GSI_SORT}-{i}"}, "gb": {"B": BINARY}, "proj": {"S": PROJECTED},
            "late": {"S": f"{LATE_KEY}-{i % 2}"}, "num": {"N": LATE_NUMBER},
        })
    # a GSI added after the data exists: the backfill writes index entries too
    ddb.update_table(TableName=name, AttributeDefinitions=[{"AttributeName": "late", "AttributeType": "S"}],
                     GlobalSecondaryIndexUpdates=[{"Create": {
                         "IndexName": "gsi-late", "KeySchema": _ks(("late", "HASH")),
                         "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["proj", "num"]}}}])
    deadline = time.time() + 20
    while time.time() < deadline:
        gsis = ddb.describe_table(TableName=name)["Table"]["GlobalSecondaryIndexes"]
        if all(g["IndexStatus"] == "ACTIVE" for g in gsis):
            break
        time.sleep(0.1)
    # every index really holds the values (so the scan below looks for data that exists)
    r = ddb.query(TableName=name, IndexName="gsi-late", KeyConditionExpression="late = :l",
                  ExpressionAttributeValues={":l": {"S": f"{LATE_KEY}-1"}})
    assert r["Count"] == 12 and r["Items"][0]["num"]["N"] == LATE_NUMBER and r["Items"][0]["proj"]["S"] == PROJECTED
    r = ddb.query(TableName=name, IndexName="gsi-canary", KeyConditionExpression="gk = :g AND begins_with(gs, :s)",
                  ExpressionAttributeValues={":g": {"S": GSI_KEY}, ":s": {"S": GSI_SORT}})
    assert r["Count"] == 25
    r = ddb.query(TableName=name, IndexName="lsi-canary", KeyConditionExpression="pk = :p AND lk > :l",
                  ExpressionAttributeValues={":p": {"S": "p0"}, ":l": {"S": LSI_KEY}})
    assert r["Count"] == 9 and r["Items"][0]["proj"]["S"] == PROJECTED
    r = ddb.query(TableName=name, IndexName="gsi-binary", KeyConditionExpression="gb = :b",
                  ExpressionAttributeValues={":b": {"B": BINARY}}, Select="COUNT")
    assert r["Count"] == 25
    assert srv.stop() == 0
    hits = scan([srv.data_dir, srv.log_path], CANARIES)
    assert hits == []
    assert not any(c in srv.log_text() for c in CANARIES if isinstance(c, str))
