"""Model-based test: random writes, then Queries (table, LSI, GSI; both directions; random Limits and sort
conditions; filters) and Scans (pages and parallel segments) paged to the end, each page checked against an
in-memory model of DynamoDB's semantics."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PKS = ["a", "b", "\u00e9t\u00e9"]
SKS = list(range(-3, 4))
_counter = itertools.count()


@pytest.fixture(scope="module")
def ddb(srv):
    return srv.client("dynamodb")


def _create(ddb) -> str:
    name = f"model-{next(_counter)}"
    ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t}
                              for a, t in (("pk", "S"), ("sk", "N"), ("g", "S"), ("r", "N"), ("l", "N"))],
        LocalSecondaryIndexes=[{"IndexName": "lsi", "Projection": {"ProjectionType": "KEYS_ONLY"},
                                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                              {"AttributeName": "l", "KeyType": "RANGE"}]}],
        GlobalSecondaryIndexes=[{"IndexName": "gsi", "Projection": {"ProjectionType": "ALL"},
                                 "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"},
                                               {"AttributeName": "r", "KeyType": "RANGE"}]}],
    )
    return name


maybe_small = st.one_of(st.none(), st.integers(-2, 2))
writes = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(PKS), st.sampled_from(SKS), st.one_of(st.none(), st.sampled_from("xy")),
                  maybe_small, maybe_small, st.integers(0, 9)),
        st.tuples(st.just("del"), st.sampled_from(PKS), st.sampled_from(SKS)),
    ),
    max_size=40,
)
sort_cond = st.one_of(
    st.none(),
    st.tuples(st.sampled_from(["=", "<", "<=", ">", ">="]), st.integers(-3, 3)),
    st.tuples(st.just("between"), st.integers(-3, 3), st.integers(-3, 3)).map(
        lambda t: (t[0], min(t[1], t[2]), max(t[1], t[2]))),
)
reads = st.lists(
    st.tuples(
        st.sampled_from(["table", "lsi", "gsi", "scan"]),
        st.sampled_from(PKS + ["x", "y"]),
        sort_cond,
        st.booleans(),  # forward
        st.one_of(st.none(), st.integers(1, 5)),  # Limit
        st.one_of(st.none(), st.integers(0, 9)),  # filter v >= n
        st.integers(1, 4),  # TotalSegments
    ),
    min_size=1, max_size=8,
)


def _item(pk, sk, g, r, lv, v):
    item = {"pk": {"S": pk}, "sk": {"N": str(sk)}, "v": {"N": str(v)}}
    if g is not None:
        item["g"] = {"S": g}
    if r is not None:
        item["r"] = {"N": str(r)}
    if lv is not None:
        item["l"] = {"N": str(lv)}
    return item


def _num(item, a):
    return int(item[a]["N"]) if a in item else None


def _matches(value, cond) -> bool:
    if cond is None:
        return True
    op = cond[0]
    if op == "between":
        return cond[1] <= value <= cond[2]
    x = cond[1]
    return {"=": value == x, "<": value < x, "<=": value <= x, ">": value > x, ">=": value >= x}[op]


def _cond_expr(attr: str, cond) -> tuple[str, dict]:
    if cond is None:
        return "", {}
    if cond[0] == "between":
        return f" AND {attr} BETWEEN :a AND :b", {":a": {"N": str(cond[1])}, ":b": {"N": str(cond[2])}}
    return f" AND {attr} {cond[0]} :a", {":a": {"N": str(cond[1])}}


def _pages(call, args: dict, limit):
    esk, out = None, []
    for _ in range(500):
        kw = {"Limit": limit} if limit else {}
        if esk:
            kw["ExclusiveStartKey"] = esk
        r = call(**args, **kw)
        out.append(r)
        esk = r.get("LastEvaluatedKey")
        if not esk:
            return out
    raise AssertionError("pagination does not end")


def _check_pages(pages, expected, limit, flt) -> None:
    """Pages of ``limit`` evaluated items (LastEvaluatedKey iff the Limit was reached), filtered after."""
    if limit is None:
        chunks = [expected]
    else:
        chunks = [expected[i:i + limit] for i in range(0, len(expected), limit)]
        if len(expected) % limit == 0:
            chunks.append([])  # a full last page still says "maybe more"; the next one is empty
    assert len(pages) == len(chunks)
    for page, chunk in zip(pages, chunks, strict=True):
        want = [i for i in chunk if flt is None or _num(i, "v") >= flt]
        assert page["Items"] == want
        assert (page["Count"], page["ScannedCount"]) == (len(want), len(chunk))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=writes, reads=reads)
def test_model_agrees_on_every_page(ddb, writes, reads):
    name = _create(ddb)
    model: dict[tuple[str, int], dict] = {}
    for w in writes:
        if w[0] == "put":
            _, pk, sk, g, r, lv, v = w
            item = _item(pk, sk, g, r, lv, v)
            ddb.put_item(TableName=name, Item=item)
            model[(pk, sk)] = item
        else:
            ddb.delete_item(TableName=name, Key={"pk": {"S": w[1]}, "sk": {"N": str(w[2])}})
            model.pop((w[1], w[2]), None)
    items = list(model.values())
    for kind, hv, cond, forward, limit, flt, total in reads:
        extra: dict = {}
        fexpr = {}
        if flt is not None:
            fexpr = {"FilterExpression": "v >= :f"}
            extra[":f"] = {"N": str(flt)}
        if kind == "scan":
            seen = []
            for seg in range(total):
                fargs = {**fexpr, "ExpressionAttributeValues": extra} if extra else {}
                pages = _pages(ddb.scan, dict(TableName=name, Segment=seg, TotalSegments=total, **fargs), limit)
                for page in pages:
                    if limit:
                        assert page["ScannedCount"] <= limit
                    assert all(flt is None or _num(i, "v") >= flt for i in page["Items"])
                    seen += page["Items"]
            want = [i for i in items if flt is None or _num(i, "v") >= flt]
            key = lambda i: (i["pk"]["S"], _num(i, "sk"))  # noqa: E731
            assert sorted(seen, key=key) == sorted(want, key=key)
            continue
        if kind == "table":
            hk, sattr = "pk", "sk"
            hval = hv if hv in PKS else "a"
            exp = sorted((i for i in items if i["pk"]["S"] == hval and _matches(_num(i, "sk"), cond)),
                         key=lambda i: _num(i, "sk"))
            index = {}
        elif kind == "lsi":
            hk, sattr = "pk", "l"
            hval = hv if hv in PKS else "b"
            exp = sorted((i for i in items if i["pk"]["S"] == hval and "l" in i and _matches(_num(i, "l"), cond)),
                         key=lambda i: (_num(i, "l"), _num(i, "sk")))
            exp = [{k: i[k] for k in ("pk", "sk", "l")} for i in exp]  # KEYS_ONLY
            index = {"IndexName": "lsi"}
            if flt is not None:
                index["Select"] = "ALL_ATTRIBUTES"  # the filter needs v: fetched from the table
                exp = [model[(i["pk"]["S"], _num(i, "sk"))] for i in exp]
        else:
            hk, sattr = "g", "r"
            hval = hv if hv in ("x", "y") else "x"
            exp = sorted((i for i in items if i.get("g", {}).get("S") == hval and "r" in i
                          and _matches(_num(i, "r"), cond)),
                         key=lambda i: (_num(i, "r"), i["pk"]["S"].encode(), _num(i, "sk")))
            index = {"IndexName": "gsi"}
        if not forward:
            exp = exp[::-1]
        cexpr, cvals = _cond_expr(sattr, cond)
        values = {":h": {"S": hval}, **cvals, **extra}
        pages = _pages(ddb.query, dict(TableName=name, KeyConditionExpression=f"{hk} = :h{cexpr}",
                                       ExpressionAttributeValues=values, ScanIndexForward=forward, **fexpr, **index),
                       limit)
        _check_pages(pages, exp, limit, flt)
