"""PartiQL (ExecuteStatement, BatchExecuteStatement, ExecuteTransaction) through boto3 (issue 6)."""

from __future__ import annotations

import base64

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_table

ACCOUNT = "640000000001"
MALFORMED = "Statement wasn't well formed, can't be processed: "


@pytest.fixture(scope="module")
def ddb(srv):
    return srv.client("dynamodb", access_key=ACCOUNT)


@pytest.fixture
def table(ddb, unique_name):
    make_table(ddb, unique_name, range_type="N")
    return unique_name


def _err(exc):
    e = exc.value.response["Error"]
    return e["Code"], e["Message"]


def _x(ddb, stmt, *params, **kw):
    args = {"Statement": stmt, **kw}
    if params:
        args["Parameters"] = list(params)
    return ddb.execute_statement(**args)


def test_insert_select_update_delete(ddb, table):
    _x(ddb, f"INSERT INTO \"{table}\" VALUE {{'pk': 'a', 'sk': 1, 'n': 10, 'tags': <<'x', 'y'>>, "
            "'m': {'k': [1, 'two', true, null]}}")
    _x(ddb, f'INSERT INTO "{table}" VALUE {{\'pk\': ?, \'sk\': ?, \'n\': ?}}', {"S": "a"}, {"N": "2"}, {"N": "20"})
    _x(ddb, f'insert into "{table}" value {{\'pk\': \'b\', \'sk\': 1}};')
    got = ddb.get_item(TableName=table, Key={"pk": {"S": "a"}, "sk": {"N": "1"}})["Item"]
    assert got["tags"] == {"SS": ["x", "y"]}
    assert got["m"] == {"M": {"k": {"L": [{"N": "1"}, {"S": "two"}, {"BOOL": True}, {"NULL": True}]}}}
    # a partition, a filter, a projection
    out = _x(ddb, f'SELECT sk, n FROM "{table}" WHERE pk = ? AND n > 5', {"S": "a"})
    assert sorted(int(i["sk"]["N"]) for i in out["Items"]) == [1, 2]
    assert all(set(i) == {"sk", "n"} for i in out["Items"])
    out = _x(ddb, f'SELECT * FROM "{table}" WHERE pk = \'a\' AND sk = 2')
    assert out["Items"] == [{"pk": {"S": "a"}, "sk": {"N": "2"}, "n": {"N": "20"}}]
    # a whole-table read with a filter
    out = _x(ddb, f'SELECT pk FROM "{table}" WHERE n IS MISSING')
    assert out["Items"] == [{"pk": {"S": "b"}}]
    out = _x(ddb, f'SELECT pk FROM "{table}" WHERE begins_with(pk, \'a\') AND sk BETWEEN 1 AND 1')
    assert out["Items"] == [{"pk": {"S": "a"}}]
    # UPDATE with SET, arithmetic, set_add and REMOVE; RETURNING
    out = _x(ddb, f'UPDATE "{table}" SET n = n + 5 SET tags = set_add(tags, <<\'z\'>>) REMOVE m '
                  f"WHERE pk = 'a' AND sk = 1 RETURNING ALL NEW *")
    item = out["Items"][0]
    assert item["n"] == {"N": "15"} and sorted(item["tags"]["SS"]) == ["x", "y", "z"] and "m" not in item
    out = _x(ddb, f'UPDATE "{table}" SET n = 1 WHERE pk = \'a\' AND sk = 1 RETURNING MODIFIED OLD *')
    assert out["Items"] == [{"n": {"N": "15"}}]
    out = _x(ddb, f'DELETE FROM "{table}" WHERE pk = \'b\' AND sk = 1 RETURNING ALL OLD *')
    assert out["Items"] == [{"pk": {"S": "b"}, "sk": {"N": "1"}}]
    assert _x(ddb, f'DELETE FROM "{table}" WHERE pk = \'b\' AND sk = 1')["Items"] == []  # missing: fine
    assert ddb.describe_table(TableName=table)["Table"]["ItemCount"] == 2


def test_errors(ddb, table):
    _x(ddb, f"INSERT INTO \"{table}\" VALUE {{'pk': 'a', 'sk': 1, 'n': 1}}")
    with pytest.raises(ClientError) as exc:
        _x(ddb, f"INSERT INTO \"{table}\" VALUE {{'pk': 'a', 'sk': 1}}")
    assert _err(exc) == ("DuplicateItemException", "Duplicate primary key exists in table")
    with pytest.raises(ClientError) as exc:
        _x(ddb, f"UPDATE \"{table}\" SET n = 2 WHERE pk = 'zz' AND sk = 1")
    assert _err(exc)[0] == "ConditionalCheckFailedException"
    with pytest.raises(ClientError) as exc:
        _x(ddb, f"UPDATE \"{table}\" SET n = 2 WHERE pk = 'a' AND sk = 1 AND n = 5",
           ReturnValuesOnConditionCheckFailure="ALL_OLD")
    assert _err(exc) == ("ConditionalCheckFailedException", "The conditional request failed")
    assert exc.value.response["Item"] == {"pk": {"S": "a"}, "sk": {"N": "1"}, "n": {"N": "1"}}
    with pytest.raises(ClientError) as exc:
        _x(ddb, f"UPDATE \"{table}\" SET n = 2 WHERE pk = 'a'")
    assert _err(exc) == ("ValidationException",
                         "Where clause does not contain a mandatory equality on all key attributes")
    with pytest.raises(ClientError) as exc:
        _x(ddb, f'SELECT * FROM "{table}" WHERE pk = ?')
    assert _err(exc) == ("ValidationException", "Number of parameters in request and statement don't match.")
    for bad in [f'SELEKT * FROM "{table}"', f'UPSERT INTO "{table}" VALUE {{\'pk\': \'a\', \'sk\': 1}}',
                f'SELECT * FROM "{table}" WHERE', f'SELECT * FROM "{table}"; SELECT 1']:
        with pytest.raises(ClientError) as exc:
            _x(ddb, bad)
        code, msg = _err(exc)
        assert code == "ValidationException" and msg.startswith(MALFORMED), (bad, msg)
    with pytest.raises(ClientError) as exc:
        _x(ddb, 'SELECT * FROM "no-such-table-here"')
    assert _err(exc)[0] == "ResourceNotFoundException"


def test_pagination(ddb, table):
    ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": {"pk": {"S": f"p{i % 3}"}, "sk": {"N": str(i)}}}}
                                               for i in range(24)]})
    for stmt in (f'SELECT * FROM "{table}"', f"SELECT * FROM \"{table}\" WHERE pk = 'p1'"):
        seen, token, pages = [], None, 0
        while True:
            kw = {"Limit": 5}
            if token:
                kw["NextToken"] = token
            out = _x(ddb, stmt, **kw)
            pages += 1
            assert len(out["Items"]) <= 5
            seen += [(i["pk"]["S"], int(i["sk"]["N"])) for i in out["Items"]]
            token = out.get("NextToken")
            if not token:
                break
        expected = [(f"p{i % 3}", i) for i in range(24) if "WHERE" not in stmt or i % 3 == 1]
        assert sorted(seen) == sorted(expected) and len(seen) == len(expected)
        assert pages >= len(expected) // 5
    with pytest.raises(ClientError) as exc:
        _x(ddb, f"SELECT pk FROM \"{table}\"", NextToken=_x(ddb, f'SELECT * FROM "{table}"', Limit=2)["NextToken"])
    assert _err(exc)[0] == "ValidationException"


def test_batch_execute_statement(ddb, table):
    out = ddb.batch_execute_statement(Statements=[
        {"Statement": f"INSERT INTO \"{table}\" VALUE {{'pk': 'a', 'sk': 1}}"},
        {"Statement": f"INSERT INTO \"{table}\" VALUE {{'pk': 'a', 'sk': 1}}"},
        {"Statement": f"UPDATE \"{table}\" SET v = ? WHERE pk = 'a' AND sk = 1", "Parameters": [{"S": "x"}]},
        {"Statement": "SELEKT"},
    ])["Responses"]
    assert out[0] == {"TableName": table}
    assert out[1]["Error"]["Code"] == "DuplicateItem"
    assert out[2] == {"TableName": table}
    assert out[3]["Error"]["Code"] == "ValidationError"
    out = ddb.batch_execute_statement(Statements=[
        {"Statement": f"SELECT * FROM \"{table}\" WHERE pk = 'a' AND sk = 1"},
        {"Statement": f"SELECT * FROM \"{table}\" WHERE pk = 'a' AND sk = 2"},
    ])["Responses"]
    assert out == [{"TableName": table, "Item": {"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"S": "x"}}},
                   {"TableName": table}]


def test_execute_transaction(ddb, table):
    _x(ddb, f"INSERT INTO \"{table}\" VALUE {{'pk': 'acct', 'sk': 1, 'bal': 10}}")
    ok = [
        {"Statement": f"UPDATE \"{table}\" SET bal = bal - 3 WHERE pk = 'acct' AND sk = 1 AND bal >= 3"},
        {"Statement": f"INSERT INTO \"{table}\" VALUE {{'pk': 'log', 'sk': 1, 'amt': 3}}"},
        {"Statement": f"EXISTS(SELECT * FROM \"{table}\" WHERE pk = 'acct' AND sk = 1)"},
    ]
    with pytest.raises(ClientError) as exc:  # two statements on one item
        ddb.execute_transaction(TransactStatements=ok + [
            {"Statement": f"DELETE FROM \"{table}\" WHERE pk = 'log' AND sk = 1"}])
    assert _err(exc) == ("ValidationException", "Transaction request cannot include multiple operations on one item")
    ddb.execute_transaction(TransactStatements=ok[:2], ClientRequestToken="tok-1")
    ddb.execute_transaction(TransactStatements=ok[:2], ClientRequestToken="tok-1")  # replay: runs once
    with pytest.raises(ClientError) as exc:
        ddb.execute_transaction(TransactStatements=ok[:1], ClientRequestToken="tok-1")
    assert _err(exc)[0] == "IdempotentParameterMismatchException"
    reads = ddb.execute_transaction(TransactStatements=[
        {"Statement": f"SELECT bal FROM \"{table}\" WHERE pk = 'acct' AND sk = 1"},
        {"Statement": f"SELECT * FROM \"{table}\" WHERE pk = 'nope' AND sk = 1"}])["Responses"]
    assert reads == [{"Item": {"bal": {"N": "7"}}}, {}]
    # a failing statement cancels the others, with reasons in order
    with pytest.raises(ClientError) as exc:
        ddb.execute_transaction(TransactStatements=[
            {"Statement": f"INSERT INTO \"{table}\" VALUE {{'pk': 'new', 'sk': 1}}"},
            {"Statement": f"UPDATE \"{table}\" SET bal = 0 WHERE pk = 'missing' AND sk = 1"},
            {"Statement": f"NOT EXISTS(SELECT * FROM \"{table}\" WHERE pk = 'acct' AND sk = 1)"},
        ])
    assert _err(exc)[0] == "TransactionCanceledException"
    codes = [r["Code"] for r in exc.value.response["CancellationReasons"]]
    assert codes == ["None", "ConditionalCheckFailed", "ConditionalCheckFailed"]
    assert _x(ddb, f"SELECT * FROM \"{table}\" WHERE pk = 'new'")["Items"] == []
    with pytest.raises(ClientError) as exc:
        ddb.execute_transaction(TransactStatements=[ok[1], {"Statement": f'SELECT * FROM "{table}" WHERE pk = \'a\''}])
    assert _err(exc) == ("ValidationException",
                         "ExecuteTransaction API does not support both read and write operations in the same request.")


def _pages(ddb, stmt, *params, limit, **kw):
    """Every page of a SELECT: [(items, next token)], following NextToken to the end."""
    pages, token = [], None
    while True:
        args = {"Limit": limit, **kw}
        if token:
            args["NextToken"] = token
        out = _x(ddb, stmt, *params, **args)
        token = out.get("NextToken")
        pages.append((out["Items"], token))
        assert len(pages) < 100
        if not token:
            return pages


def _fill(ddb, table):
    """Partitions q (30 items, n = sk) and r0..r4 (3 items each, n = 100 + sk)."""
    items = [{"pk": {"S": "q"}, "sk": {"N": str(i)}, "n": {"N": str(i)}} for i in range(30)]
    items += [{"pk": {"S": f"r{j}"}, "sk": {"N": str(i)}, "n": {"N": str(100 + i)}} for j in range(5) for i in range(3)]
    for start in range(0, len(items), 25):
        ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": it}} for it in items[start:start + 25]]})


def test_select_pages_query_shaped_with_filter(ddb, table):
    _fill(ddb, table)
    pages = _pages(ddb, f'SELECT sk FROM "{table}" WHERE pk = ? AND n >= 10', {"S": "q"}, limit=4)
    # Limit counts items read before the filter, as Query's does: 30 items in the partition, 4 a page
    assert len(pages) == 8
    assert [len(items) for items, _ in pages[:2]] == [0, 0]  # sk 0..7 read, filtered out, NextToken given
    assert all(token for _, token in pages[:-1])
    seen = [int(i["sk"]["N"]) for items, _ in pages for i in items]
    assert seen == list(range(10, 30))  # the partition in sort key order, no item twice
    assert all(set(i) == {"sk"} for items, _ in pages for i in items)
    # a sort key equality narrows the read to that item: the first page holds it
    out = _x(ddb, f"SELECT * FROM \"{table}\" WHERE pk = 'q' AND sk = 17", Limit=1)
    assert out["Items"] == [{"pk": {"S": "q"}, "sk": {"N": "17"}, "n": {"N": "17"}}]


def test_select_pages_scan_shaped_with_filter(ddb, table):
    _fill(ddb, table)
    pages = _pages(ddb, f'SELECT pk, sk FROM "{table}" WHERE n >= 25', limit=7,
                   ReturnConsumedCapacity="TOTAL")
    assert len(pages) == 7  # 45 items read, 7 a page
    seen = [(i["pk"]["S"], int(i["sk"]["N"])) for items, _ in pages for i in items]
    expected = [("q", i) for i in range(25, 30)] + [(f"r{j}", i) for j in range(5) for i in range(3)]
    assert sorted(seen) == sorted(expected) and len(seen) == len(expected)
    out = _x(ddb, f'SELECT pk, sk FROM "{table}" WHERE n >= 25', Limit=7, ReturnConsumedCapacity="TOTAL")
    assert out["ConsumedCapacity"]["TableName"] == table and out["ConsumedCapacity"]["CapacityUnits"] > 0
    # the same pages as a Scan with the same filter and Limit (one page walk behind both)
    scan_pages, esk = [], None
    while True:
        kw = {"ExclusiveStartKey": esk} if esk else {}
        got = ddb.scan(TableName=table, Limit=7, FilterExpression="n >= :v", ExpressionAttributeValues={
            ":v": {"N": "25"}}, ProjectionExpression="pk, sk", **kw)
        scan_pages.append(got["Items"])
        esk = got.get("LastEvaluatedKey")
        if not esk:
            break
    assert scan_pages == [items for items, _ in pages]


def test_next_token_is_sealed(ddb, table):
    secret = "canary-pk-7f3a9c"
    ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": {"pk": {"S": secret}, "sk": {"N": str(i)}}}}
                                               for i in range(6)]})
    stmt = f'SELECT * FROM "{table}" WHERE pk = ?'
    for kw in ({"Limit": 2}, {"Limit": 2, "Parameters": [{"S": secret}]}):
        s = stmt if "Parameters" in kw else f'SELECT * FROM "{table}"'
        token = ddb.execute_statement(Statement=s, **kw)["NextToken"]
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert secret.encode() not in raw and secret.encode() not in token.encode()
    token = _x(ddb, stmt, {"S": secret}, Limit=2)["NextToken"]
    # a flipped bit, the same statement with other parameters, another statement: all refused
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-1] ^= 1
    for bad, params in ((base64.urlsafe_b64encode(bytes(raw)).decode(), [{"S": secret}]),
                        (token, [{"S": "other"}]), ("not a token!", [{"S": secret}])):
        with pytest.raises(ClientError) as exc:
            _x(ddb, stmt, *params, Limit=2, NextToken=bad)
        assert _err(exc) == ("ValidationException", "Invalid NextToken")
    with pytest.raises(ClientError) as exc:
        _x(ddb, f'SELECT * FROM "{table}" WHERE pk = ? AND sk > 0', {"S": secret}, NextToken=token)
    assert _err(exc) == ("ValidationException", "Invalid NextToken")
