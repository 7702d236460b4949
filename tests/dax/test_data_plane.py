"""The official DAX Python client (amazon-dax-client 2.1.0) against a real `dynavault serve --dax-port`: every
data method, every attribute type, both kinds of sort key, and what it writes seen over the HTTP API (one
engine behind both)."""

from __future__ import annotations

import base64

import pytest

from tests.conftest import make_table
from tests.dax.daxclient import b

ALL_TYPES = '''{
    "s": {"S": "héllo"}, "n": {"N": "-12.50"}, "big": {"N": "12345678901234567890123456789012345678"},
    "tiny": {"N": "1E-130"}, "bin": {"B": b"\\x00\\xff\\x10"}, "t": {"BOOL": True}, "f": {"BOOL": False},
    "nul": {"NULL": True}, "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2.5", "-3"]},
    "bs": {"BS": [b"\\x01", b"\\x02"]}, "l": {"L": [{"S": "x"}, {"N": "1"}, {"L": []}, {"M": {}}]},
    "m": {"M": {"k": {"S": "v"}, "deep": {"M": {"n": {"N": "7"}}}, "lst": {"L": [{"B": b"\\x09"}]}}},
}'''


def _sets_sorted(item: dict) -> dict:
    return {k: ({t: sorted(v) for t, v in av.items()} if next(iter(av)) in ("SS", "NS", "BS") else av)
            for k, av in item.items()}


def test_every_attribute_type_round_trips_with_string_and_number_sort_keys(dax, dax_py, unique_name):
    http = dax.http()
    make_table(http, unique_name + "-s", range_type="S")
    make_table(http, unique_name + "-n", range_type="N")
    make_table(http, unique_name + "-b", hash_type="B")
    make_table(http, unique_name + "-h", hash_type="N")
    res = dax.run(dax_py, f'''
        ITEM = {' '.join(ALL_TYPES.split())}
        for suffix, key in (("-s", {{"pk": {{"S": "p"}}, "sk": {{"S": "zé"}}}}),
                            ("-n", {{"pk": {{"S": "p"}}, "sk": {{"N": "-0.5"}}}}),
                            ("-b", {{"pk": {{"B": b"\\x00k"}}}}),
                            ("-h", {{"pk": {{"N": "42"}}}})):
            table = {unique_name!r} + suffix
            dax.put_item(TableName=table, Item=dict(ITEM, **key))
            out(suffix, dax.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"])
    ''')
    for suffix, table in (("-s", "-s"), ("-n", "-n"), ("-b", "-b"), ("-h", "-h")):
        got = res[suffix]
        # the same item over HTTP: one engine, one stored item
        key = {k: v for k, v in got.items() if k in ("pk", "sk")}
        key = {k: ({"B": b(v["B"])} if "B" in v else v) for k, v in key.items()}
        stored = http.get_item(TableName=unique_name + table, Key=key, ConsistentRead=True)["Item"]
        assert stored["n"] == {"N": "-12.5"} and float(stored["tiny"]["N"]) == 1e-130
        assert stored["bin"] == {"B": b"\x00\xff\x10"}
        assert sorted(stored["ss"]["SS"]) == ["a", "b"] and sorted(stored["ns"]["NS"]) == ["-3", "1", "2.5"]
        assert got["s"] == {"S": "héllo"} and got["t"] == {"BOOL": True} and got["nul"] == {"NULL": True}
        assert got["big"] == {"N": "12345678901234567890123456789012345678"}
        assert b(got["bin"]["B"]) == b"\x00\xff\x10"
        assert sorted(b(x) for x in got["bs"]["BS"]) == [b"\x01", b"\x02"]
        assert got["l"] == {"L": [{"S": "x"}, {"N": "1"}, {"L": []}, {"M": {}}]}
        assert got["m"]["M"]["deep"] == {"M": {"n": {"N": "7"}}}
        assert b(got["m"]["M"]["lst"]["L"][0]["B"]) == b"\x09"
        assert float(got["n"]["N"]) == -12.5 and float(got["tiny"]["N"]) == 1e-130
    assert res["-n"]["sk"] == {"N": "-0.5"} and res["-s"]["sk"] == {"S": "zé"}
    assert b(res["-b"]["pk"]["B"]) == b"\x00k" and res["-h"]["pk"] == {"N": "42"}


def test_projections_return_values_and_failing_conditions(dax, dax_py, unique_name):
    http = dax.http()
    make_table(http, unique_name, range_type="N")
    res = dax.run(dax_py, f'''
        T = {unique_name!r}
        K = {{"pk": {{"S": "a"}}, "sk": {{"N": "1"}}}}
        dax.put_item(TableName=T, Item=dict(K, v={{"S": "x"}}, n={{"N": "1"}},
                     m={{"M": {{"z": {{"L": [{{"N": "0"}}, {{"N": "1"}}, {{"N": "2"}}]}}, "w": {{"S": "w"}}}}}}))
        out("proj", dax.get_item(TableName=T, Key=K, ProjectionExpression="m.z[2], #v, m.z[0]",
                                 ExpressionAttributeNames={{"#v": "v"}}))
        out("old", dax.put_item(TableName=T, Item=dict(K, v={{"S": "y"}}, n={{"N": "1"}}), ReturnValues="ALL_OLD"))
        out("upd_new", dax.update_item(TableName=T, Key=K, UpdateExpression="SET n = n + :d, added = :a",
                                       ExpressionAttributeValues={{":d": {{"N": "2"}}, ":a": {{"SS": ["q"]}}}},
                                       ReturnValues="UPDATED_NEW"))
        out("upd_old", dax.update_item(TableName=T, Key=K, UpdateExpression="REMOVE added",
                                       ReturnValues="UPDATED_OLD"))
        out("all_new", dax.update_item(TableName=T, Key=K, UpdateExpression="ADD n :d",
                                       ExpressionAttributeValues={{":d": {{"N": "10"}}}}, ReturnValues="ALL_NEW"))
        out("cond_put", err(dax.put_item, TableName=T, Item=K, ConditionExpression="attribute_not_exists(pk)"))
        out("cond_upd", err(dax.update_item, TableName=T, Key=K, UpdateExpression="SET v = :v",
                            ConditionExpression="n < :m AND begins_with(v, :p)",
                            ExpressionAttributeValues={{":v": {{"S": "no"}}, ":m": {{"N": "5"}}, ":p": {{"S": "y"}}}}))
        out("cond_del", err(dax.delete_item, TableName=T, Key=K, ConditionExpression="v IN (:a, :b)",
                            ExpressionAttributeValues={{":a": {{"S": "1"}}, ":b": {{"S": "2"}}}}))
        out("bad_expr", err(dax.update_item, TableName=T, Key=K, UpdateExpression="SET #k = :v",
                            ExpressionAttributeNames={{"#k": "pk"}}, ExpressionAttributeValues={{":v": {{"S": "z"}}}}))
        out("missing_table", err(dax.get_item, TableName=T + "-gone", Key=K))
        out("deleted", dax.delete_item(TableName=T, Key=K, ReturnValues="ALL_OLD"))
        out("after", dax.get_item(TableName=T, Key=K))
    ''')
    assert res["proj"]["Item"] == {"m": {"M": {"z": {"L": [{"N": "0"}, {"N": "2"}]}}}, "v": {"S": "x"}}
    assert res["old"]["Attributes"]["v"] == {"S": "x"} and res["old"]["Attributes"]["pk"] == {"S": "a"}
    assert res["upd_new"]["Attributes"] == {"n": {"N": "3"}, "added": {"SS": ["q"]}}
    assert res["upd_old"]["Attributes"] == {"added": {"SS": ["q"]}}
    assert res["all_new"]["Attributes"]["n"] == {"N": "13"} and res["all_new"]["Attributes"]["v"] == {"S": "y"}
    for name in ("cond_put", "cond_upd", "cond_del"):
        assert res[name]["code"] == "ConditionalCheckFailedException", res[name]
    assert res["bad_expr"]["code"] == "ValidationException" and "key" in res["bad_expr"]["message"].lower()
    assert res["missing_table"]["code"] == "ResourceNotFoundException"
    assert res["deleted"]["Attributes"]["n"] == {"N": "13"}
    assert "Item" not in res["after"]
    # the failed conditional writes changed nothing (checked before the delete over HTTP would be moot: the
    # delete returned n = 13, the value the last successful write left)


def test_query_and_scan_pages_in_number_order_with_index(dax, dax_py, unique_name):
    http = dax.http()
    http.create_table(
        TableName=unique_name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"},
                              {"AttributeName": "g", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[{"IndexName": "byg", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}])
    numbers = ["-1000", "-2.5", "-1", "0", "0.001", "1", "1.5", "2", "10", "99.99", "100", "1E+20"]
    res = dax.run(dax_py, f'''
        T = {unique_name!r}
        for i, n in enumerate({numbers!r}):
            dax.put_item(TableName=T, Item={{"pk": {{"S": "q"}}, "sk": {{"N": n}}, "g": {{"S": "G"}},
                                             "i": {{"N": str(i)}}}})
        def pages(call, **kw):
            seen, count = [], 0
            while True:
                r = call(**kw)
                seen += r.get("Items", [])
                count += 1
                if "LastEvaluatedKey" not in r:
                    return seen, count
                kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]
        q = dict(TableName=T, KeyConditionExpression="pk = :p", ExpressionAttributeValues={{":p": {{"S": "q"}}}})
        items, n = pages(dax.query, Limit=5, **q)
        out("asc", [x["sk"]["N"] for x in items]); out("asc_pages", n)
        items, n = pages(dax.query, Limit=4, ScanIndexForward=False, **q)
        out("desc", [x["sk"]["N"] for x in items])
        out("between", [x["sk"]["N"] for x in dax.query(TableName=T,
            KeyConditionExpression="pk = :p AND sk BETWEEN :a AND :b",
            ExpressionAttributeValues={{":p": {{"S": "q"}}, ":a": {{"N": "-1"}}, ":b": {{"N": "2"}}}})["Items"]])
        r = dax.query(Select="COUNT", FilterExpression="i >= :k",
                      **dict(q, ExpressionAttributeValues={{":p": {{"S": "q"}}, ":k": {{"N": "6"}}}}))
        out("count", [r["Count"], r["ScannedCount"], "Items" in r])
        out("proj", dax.query(ProjectionExpression="sk, i", Limit=2, **q)["Items"])
        items, n = pages(dax.query, TableName=T, IndexName="byg", Limit=5, KeyConditionExpression="g = :g",
                         ExpressionAttributeValues={{":g": {{"S": "G"}}}})
        out("index", sorted(x["i"]["N"] for x in items)); out("index_pages", n)
        items, n = pages(dax.scan, TableName=T, Limit=3)
        out("scan", sorted(x["sk"]["N"] for x in items)); out("scan_pages", n)
        out("segment", sorted(x["i"]["N"] for s in (0, 1)
                              for x in pages(dax.scan, TableName=T, Segment=s, TotalSegments=2)[0]))
        r = dax.scan(TableName=T, ReturnConsumedCapacity="TOTAL")
        out("cc", r.get("ConsumedCapacity"))
    ''')
    order = sorted(numbers, key=float)
    assert [float(x) for x in res["asc"]] == [float(x) for x in order]
    assert res["asc_pages"] >= 3
    assert [float(x) for x in res["desc"]] == [float(x) for x in reversed(order)]
    assert [float(x) for x in res["between"]] == [-1, 0, 0.001, 1, 1.5, 2]
    assert res["count"] == [6, 12, False]
    assert res["proj"] == [{"sk": {"N": "-1000"}, "i": {"N": "0"}}, {"sk": {"N": "-2.5"}, "i": {"N": "1"}}]
    assert sorted(res["index"], key=int) == [str(i) for i in range(12)] and res["index_pages"] >= 3
    assert len(res["scan"]) == 12 and res["scan_pages"] >= 4
    assert sorted(res["segment"], key=int) == [str(i) for i in range(12)]
    assert res["cc"]["TableName"] == unique_name and res["cc"]["CapacityUnits"] > 0


def test_batches_and_transactions(dax, dax_py, unique_name):
    http = dax.http()
    make_table(http, unique_name, range_type="S")
    make_table(http, unique_name + "-2")
    res = dax.run(dax_py, f'''
        T, T2 = {unique_name!r}, {unique_name!r} + "-2"
        def k(i):
            return {{"pk": {{"S": "b"}}, "sk": {{"S": "%03d" % i}}}}
        out("bw", dax.batch_write_item(RequestItems={{
            T: [{{"PutRequest": {{"Item": dict(k(i), v={{"N": str(i)}})}}}} for i in range(20)],
            T2: [{{"PutRequest": {{"Item": {{"pk": {{"S": "one"}}, "x": {{"BOOL": True}}}}}}}}]}}))
        dax.batch_write_item(RequestItems={{T: [{{"DeleteRequest": {{"Key": k(i)}}}} for i in range(15, 20)]}})
        r = dax.batch_get_item(RequestItems={{T: {{"Keys": [k(i) for i in range(0, 20, 2)], "ConsistentRead": True}},
                                              T2: {{"Keys": [{{"pk": {{"S": "one"}}}}], "ProjectionExpression": "x"}}}})
        out("bg", r["Responses"])
        out("tw", dax.transact_write_items(TransactItems=[
            {{"Put": {{"TableName": T, "Item": dict(k(100), v={{"S": "tx"}})}}}},
            {{"Update": {{"TableName": T, "Key": k(1), "UpdateExpression": "SET v = v + :one",
                         "ExpressionAttributeValues": {{":one": {{"N": "1"}}}}}}}},
            {{"Delete": {{"TableName": T, "Key": k(2)}}}},
            {{"ConditionCheck": {{"TableName": T2, "Key": {{"pk": {{"S": "one"}}}},
                                 "ConditionExpression": "x = :t", "ExpressionAttributeValues": {{":t": {{"BOOL": True}}}}}}}}]))
        out("cancel", err(dax.transact_write_items, TransactItems=[
            {{"Put": {{"TableName": T, "Item": dict(k(101), v={{"S": "never"}})}}}},
            {{"ConditionCheck": {{"TableName": T2, "Key": {{"pk": {{"S": "one"}}}},
                                 "ConditionExpression": "x = :f", "ExpressionAttributeValues": {{":f": {{"BOOL": False}}}},
                                 "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}}}]))
        out("tg", dax.transact_get_items(TransactItems=[
            {{"Get": {{"TableName": T, "Key": k(100)}}}}, {{"Get": {{"TableName": T, "Key": k(2)}}}},
            {{"Get": {{"TableName": T, "Key": k(1), "ProjectionExpression": "v"}}}}]))
    ''')
    assert res["bw"]["UnprocessedItems"] == {}
    got = sorted(int(i["v"]["N"]) for i in res["bg"][unique_name])
    assert got == [0, 2, 4, 6, 8, 10, 12, 14]
    assert res["bg"][unique_name + "-2"] == [{"x": {"BOOL": True}}]
    assert res["cancel"]["code"] == "TransactionCanceledException"
    assert "ConditionalCheckFailed" in res["cancel"]["message"]
    reasons = res["cancel"]["reasons"]
    assert reasons[0::3] == ["None", "ConditionalCheckFailed"] or reasons[0::3] == [None, "ConditionalCheckFailed"]
    assert reasons[5] is not None  # the failed check's item (ALL_OLD), as a stream item
    tg = res["tg"]["Responses"]
    assert tg[0]["Item"]["v"] == {"S": "tx"} and tg[1] == {} and tg[2]["Item"] == {"v": {"N": "2"}}
    stored = http.get_item(TableName=unique_name, Key={"pk": {"S": "b"}, "sk": {"S": "101"}})
    assert "Item" not in stored  # the cancelled transaction wrote nothing


def test_wrong_secret_and_unknown_key_are_refused(dax, dax_py):
    # the client authorizes before its first call (endpoints discovery) and stops on an auth error
    for key, secret in ((dax.key, "not-the-secret"), ("AKIAUNKNOWN000000000", "whatever")):
        with pytest.raises(AssertionError, match="UnrecognizedClientException"):
            dax.run(dax_py, "out('x', 1)", key=key, secret=secret)


def test_binary_keys_survive_http_and_dax_alike(dax, dax_py, unique_name):
    http = dax.http()
    make_table(http, unique_name, hash_type="B", range_type="B")
    http.put_item(TableName=unique_name, Item={"pk": {"B": b"\x00\x01"}, "sk": {"B": b"\xff"}, "v": {"S": "h"}})
    res = dax.run(dax_py, f'''
        r = dax.query(TableName={unique_name!r}, KeyConditionExpression="pk = :p",
                      ExpressionAttributeValues={{":p": {{"B": b"\\x00\\x01"}}}})
        out("items", r["Items"])
    ''')
    (item,) = res["items"]
    assert base64.b64decode(item["sk"]["B"]["$b"]) == b"\xff" and item["v"] == {"S": "h"}
