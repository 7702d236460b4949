"""Hostile expressions and values against a real server: DynamoDB's limits and texts, never a 500, bounded time.

Issue 12 items 4 (expression limits, linear parsing, bounded recursion), 5 (the expression cache keeps no
request values and is bounded) and 17a (empty attribute names).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from dynavault.dynamodb.expressions import (
    DEFAULT_CACHE_BYTES,
    ExpressionCache,
    ExpressionContext,
    evaluate,
    parse_condition,
)
from dynavault.dynamodb.expressions.parser import parse_condition_raw, parse_update_raw
from dynavault.dynamodb.expressions.resolver import parse_projection_text
from tests.conftest import make_table

TIME_BOUND = 5.0  # seconds; generous: a sanity bound against quadratic work, not a benchmark
NESTING = ("Nesting Levels have exceeded supported limits: Attributes in the item have nested levels beyond "
           "supported limit")
OVERFLOW = "Number overflow. Attempting to store a number with magnitude larger than supported range"
DIGITS = "Attempting to store more than 38 significant digits in a Number"


@pytest.fixture(scope="module")
def table(shared_server):
    ddb = shared_server.client("dynamodb")
    name = f"trust-expr-{uuid.uuid4().hex[:8]}"
    make_table(ddb, name)
    ddb.put_item(TableName=name, Item={"pk": {"S": "k"}, "a": {"N": "1"}})
    return name


@pytest.fixture(scope="module")
def raw(shared_server):
    """A client with boto3's own parameter checks off, so hostile shapes reach the server."""
    return shared_server.client("dynamodb", validate=False)


def refused(call, message: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(ClientError) as e:
        call()
    elapsed = time.monotonic() - t0
    err = e.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400, err
    assert err["Error"]["Code"] == "ValidationException", err
    assert err["Error"]["Message"] == message
    assert elapsed < TIME_BOUND, elapsed


def size_error(kind: str, text: str) -> str:
    return (f"Invalid {kind}: Expression size has exceeded the maximum allowed size; "
            f"expression size: {len(text.encode())}")


def test_35kb_projection_expression(raw, table):
    text = ",".join(f"a{i}" for i in range(6000))
    assert len(text) > 34_000
    refused(lambda: raw.get_item(TableName=table, Key={"pk": {"S": "k"}}, ProjectionExpression=text),
            size_error("ProjectionExpression", text))


def test_6000_set_actions(raw, table):
    text = "SET " + ", ".join(f"a{i} = :v" for i in range(6000))
    refused(lambda: raw.update_item(TableName=table, Key={"pk": {"S": "k"}}, UpdateExpression=text,
                                    ExpressionAttributeValues={":v": {"S": "x"}}),
            size_error("UpdateExpression", text))


def test_size_limit_is_4096_bytes(raw, table):
    # 4,096 bytes is accepted, 4,097 refused; the size is in UTF-8 bytes, not characters.
    ok = "a = :v" + " " * 4090
    raw.scan(TableName=table, FilterExpression=ok, ExpressionAttributeValues={":v": {"N": "1"}})
    big = ok + " "
    refused(lambda: raw.scan(TableName=table, FilterExpression=big, ExpressionAttributeValues={":v": {"N": "1"}}),
            size_error("FilterExpression", big))
    wide = "a = :v" + " " * 3000 + "\u00fc" * 600  # 3,606 characters, 4,206 bytes
    refused(lambda: raw.scan(TableName=table, FilterExpression=wide, ExpressionAttributeValues={":v": {"N": "1"}}),
            size_error("FilterExpression", wide))


@pytest.mark.parametrize("depth", [300, 101])
def test_deep_parentheses(raw, table, depth):
    text = "(" * depth + "a = :v" + ")" * depth
    refused(lambda: raw.scan(TableName=table, FilterExpression=text, ExpressionAttributeValues={":v": {"N": "1"}}),
            "Invalid FilterExpression: The expression has redundant parentheses;")
    refused(lambda: raw.put_item(TableName=table, Item={"pk": {"S": "p"}}, ConditionExpression=text,
                                 ExpressionAttributeValues={":v": {"N": "1"}}),
            "Invalid ConditionExpression: The expression has redundant parentheses;")


def test_deep_parentheses_in_update(raw, table):
    text = "SET a = " + "(" * 1500 + ":v" + ")" * 1500
    refused(lambda: raw.update_item(TableName=table, Key={"pk": {"S": "k"}}, UpdateExpression=text,
                                    ExpressionAttributeValues={":v": {"N": "1"}}),
            "Invalid UpdateExpression: The expression has redundant parentheses;")


def test_1000_ands(raw, table):
    text = " AND ".join(["a = :v"] * 1001)
    refused(lambda: raw.scan(TableName=table, FilterExpression=text, ExpressionAttributeValues={":v": {"N": "1"}}),
            size_error("FilterExpression", text))


def test_too_many_operators_within_4kb(raw, table):
    text = " AND ".join(["a=:v"] * 301)  # 301 comparisons + 300 ANDs in ~2.7 KB
    refused(lambda: raw.scan(TableName=table, FilterExpression=text, ExpressionAttributeValues={":v": {"N": "1"}}),
            "Invalid FilterExpression: The expression contains too many operators; operator count: 601")
    ok = " AND ".join(["a=:v"] * 150)  # 299 operators: fine
    raw.scan(TableName=table, FilterExpression=ok, ExpressionAttributeValues={":v": {"N": "1"}})


def test_3000_nots(raw, table):
    text = "NOT " * 3000 + "a = :v"
    refused(lambda: raw.scan(TableName=table, FilterExpression=text, ExpressionAttributeValues={":v": {"N": "1"}}),
            size_error("FilterExpression", text))
    text = "NOT " * 1000 + "a=:v"  # 4,004 bytes: within the size limit, not the operator limit
    refused(lambda: raw.scan(TableName=table, FilterExpression=text, ExpressionAttributeValues={":v": {"N": "1"}}),
            "Invalid FilterExpression: The expression contains too many operators; operator count: 1001")


def test_nested_functions(raw, table):
    text = "size(" * 600 + "a" + ")" * 600 + " = :v"
    refused(lambda: raw.scan(TableName=table, FilterExpression=text, ExpressionAttributeValues={":v": {"N": "1"}}),
            "Invalid FilterExpression: The expression contains too many operators; operator count: 601")
    text = "SET a = " + "list_append(" * 200 + ":l" + ",:l)" * 200 + "+:n" * 101  # 3.7 KB
    refused(lambda: raw.update_item(TableName=table, Key={"pk": {"S": "k"}}, UpdateExpression=text,
                                    ExpressionAttributeValues={":l": {"L": []}, ":n": {"N": "1"}}),
            "Invalid UpdateExpression: The expression contains too many operators; operator count: 301")


def test_in_with_101_operands(raw, table):
    values = {f":v{i}": {"N": str(i)} for i in range(101)}
    text = "a IN (" + ", ".join(values) + ")"
    refused(lambda: raw.scan(TableName=table, FilterExpression=text, ExpressionAttributeValues=values),
            "Invalid FilterExpression: The IN operator is provided with too many operands; number of operands: 101")


def test_document_path_depth(raw, table):
    ok = "a" + ".b" * 31  # 32 levels, the attribute itself included
    raw.get_item(TableName=table, Key={"pk": {"S": "k"}}, ProjectionExpression=ok)
    deep = "a" + ".b" * 32
    refused(lambda: raw.get_item(TableName=table, Key={"pk": {"S": "k"}}, ProjectionExpression=deep),
            "Invalid ProjectionExpression: The document path has too many nesting levels; nesting levels: 33")
    deep = "a" + "[0]" * 32
    refused(lambda: raw.scan(TableName=table, FilterExpression=f"attribute_exists({deep})"),
            "Invalid FilterExpression: The document path has too many nesting levels; nesting levels: 33")


def test_5000_digit_numbers(raw, table):
    huge = "1" * 5000
    refused(lambda: raw.put_item(TableName=table, Item={"pk": {"S": "n"}, "x": {"N": huge}}), OVERFLOW)
    fraction = "0." + "1" * 5000
    refused(lambda: raw.put_item(TableName=table, Item={"pk": {"S": "n"}, "x": {"N": fraction}}), DIGITS)
    refused(lambda: raw.put_item(TableName=table, Item={"pk": {"S": "n"}, "x": {"NS": ["1", huge]}}), OVERFLOW)
    refused(lambda: raw.scan(TableName=table, FilterExpression="a = :v", ExpressionAttributeValues={":v": {"N": huge}}),
            f"ExpressionAttributeValues contains invalid value: {OVERFLOW} for key :v")
    refused(lambda: raw.scan(TableName=table, FilterExpression="a = :v",
                             ExpressionAttributeValues={":v": {"N": fraction}}),
            f"ExpressionAttributeValues contains invalid value: {DIGITS} for key :v")
    refused(lambda: raw.get_item(TableName=table, Key={"pk": {"N": "1e" + "9" * 5000}}), OVERFLOW)


def _deep_map(wraps: int) -> dict:
    v: dict = {"S": "leaf"}
    for _ in range(wraps):
        v = {"M": {"n": v}}
    return v


def test_nested_values(raw, table):
    raw.put_item(TableName=table, Item={"pk": {"S": "deep31"}, "d": _deep_map(31)})  # leaf at level 32
    got = raw.get_item(TableName=table, Key={"pk": {"S": "deep31"}})["Item"]["d"]
    assert got == _deep_map(31)
    refused(lambda: raw.put_item(TableName=table, Item={"pk": {"S": "deep32"}, "d": _deep_map(32)}), NESTING)
    refused(lambda: raw.put_item(TableName=table, Item={"pk": {"S": "deep40"}, "d": _deep_map(40)}), NESTING)
    deep_list: dict = {"S": "x"}
    for _ in range(40):
        deep_list = {"L": [deep_list]}
    refused(lambda: raw.put_item(TableName=table, Item={"pk": {"S": "deepl"}, "d": deep_list}), NESTING)
    refused(lambda: raw.update_item(TableName=table, Key={"pk": {"S": "k"}}, UpdateExpression="SET d = :d",
                                    ExpressionAttributeValues={":d": _deep_map(40)}), NESTING)
    refused(lambda: raw.scan(TableName=table, FilterExpression="a = :d", ExpressionAttributeValues={":d": _deep_map(40)}),
            NESTING)
    # A value built by an update deeper than the limit is refused too.
    refused(lambda: raw.update_item(TableName=table, Key={"pk": {"S": "deep31"}}, UpdateExpression="SET d.n = :d",
                                    ExpressionAttributeValues={":d": _deep_map(31)}), NESTING)


def test_empty_attribute_names(raw, table):
    refused(lambda: raw.put_item(TableName=table, Item={"pk": {"S": "e"}, "": {"S": "x"}}),
            "One or more parameter values were invalid: Empty attribute name")
    refused(lambda: raw.get_item(TableName=table, Key={"pk": {"S": "k"}}, ProjectionExpression="#n",
                                 ExpressionAttributeNames={"#n": ""}),
            "ExpressionAttributeNames contains invalid value: Empty attribute name for key #n")
    refused(lambda: raw.update_item(TableName=table, Key={"pk": {"S": "k"}}, UpdateExpression="SET #n = :v",
                                    ExpressionAttributeNames={"#n": ""}, ExpressionAttributeValues={":v": {"S": "x"}}),
            "ExpressionAttributeNames contains invalid value: Empty attribute name for key #n")
    refused(lambda: raw.transact_write_items(TransactItems=[
        {"Put": {"TableName": table, "Item": {"pk": {"S": "e"}, "": {"S": "x"}}}}]),
        "One or more parameter values were invalid: Empty attribute name")
    assert "Item" not in raw.get_item(TableName=table, Key={"pk": {"S": "e"}})


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_cache_keeps_no_request_values(start_server):
    """60 Scans, each with ~1 MB of unique values: the server's memory stays flat (when the cache was keyed on
    the values it grew by 120 MiB in this test)."""
    srv = start_server(allow_any_credentials=True)
    ddb = srv.client("dynamodb")
    make_table(ddb, "rss")
    ddb.put_item(TableName="rss", Item={"pk": {"S": "k"}, "a": {"S": "x"}})
    text = "a IN (" + ", ".join(f":v{i}" for i in range(100)) + ")"

    def scan(n: int) -> None:
        tag = f"{n:06d}"
        values = {f":v{i}": {"S": tag * 1700 + str(i)} for i in range(100)}  # ~1 MB, unique per request
        assert ddb.scan(TableName="rss", FilterExpression=text, ExpressionAttributeValues=values)["Count"] == 0

    for n in range(5):  # warm up: allocator arenas, imports, the first parse
        scan(n)
    before = _rss_kib(srv.proc.pid)
    for n in range(5, 65):
        scan(n)
    grown_mib = (_rss_kib(srv.proc.pid) - before) / 1024
    # 60 MB of values went through; with the values in the cache the server grew by 120 MiB, now by ~0.
    assert grown_mib < 40, f"server RSS grew by {grown_mib:.0f} MiB"


def test_cache_object_holds_no_values_and_is_bounded():
    canary = f"canary-{uuid.uuid4().hex}"
    text = f"trust_cache_{uuid.uuid4().hex[:8]} = :v"
    cache = ExpressionCache(DEFAULT_CACHE_BYTES)
    cond = parse_condition(text, ExpressionContext(None, {":v": {"S": canary}}, cache=cache))
    assert evaluate(cond, {text.split()[0]: {"S": canary}})
    assert ("cond", text) in cache.keys()
    assert canary not in repr(cache.keys())
    assert canary not in repr(cache.get(("cond", text)))
    # The bound is in bytes: many distinct expressions never take more than it.
    small = ExpressionCache(200_000)
    for i in range(2000):
        t = f"a{i} = :v AND b{i} = :w"
        small.put(("cond", t), parse_condition_raw(t, "ConditionExpression"), len(t))
        assert small.bytes <= small.max_bytes
    assert 0 < len(small) < 2000


def test_cache_cost_estimate_covers_measured_memory():
    """ExpressionCache.BYTES_PER_CHAR is an upper estimate of what the parsed trees really hold."""
    import tracemalloc

    samples = [
        ("cond", " AND ".join(f"attr{i} = :v{i}" for i in range(150))),
        ("update", "SET " + ", ".join(f"a{i} = if_not_exists(b{i}, :v) + :w" for i in range(60))),
        ("projection", ",".join(f"x{i}.b[1].c" for i in range(300))),
        ("projection", "a,b,c"),
    ]
    for kind, text in samples:
        tracemalloc.start()
        if kind == "cond":
            kept = parse_condition_raw(text, "FilterExpression")
        elif kind == "update":
            kept = parse_update_raw(text)
        else:
            kept = parse_projection_text(text, None)
        used, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert kept is not None
        assert used <= len(text) * ExpressionCache.BYTES_PER_CHAR + ExpressionCache.ENTRY_OVERHEAD, (kind, used)
