"""Hostile input (DESIGN.md invariant 7): generated requests never get a 500, a hang or unbounded memory.

Requests are generated from botocore's own service models (every DynamoDB, Streams and KMS operation,
members present or missing, right and wrong JSON types, hostile strings, deep and huge values) plus
generators for what shapes do not describe: long and deeply nested expressions, huge numbers,
compressed bodies and odd headers. All are signed with a real credential and sent over one keep-alive
connection to a real server. The number of generated requests is bounded (about 1,500), so the test
takes seconds; the bound on the server's memory is stated in ``RSS_BOUND_MIB``.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import itertools
import json
import zlib
from urllib.parse import urlparse

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.servers import ServerProcess

# Generated examples include 70 KB strings; hypothesis warns about their repr, which is harmless here.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

#: the server's resident set after all generated requests (it starts near 60 MiB)
RSS_BOUND_MIB = 400
TABLE = "hostile"
#: a request not answered in this long counts as a hang (generous: this is not a speed test)
HANG_SECONDS = 20
DESTRUCTIVE = {"DeleteTable", "UpdateTable", "DeleteBackup", "ScheduleKeyDeletion", "DisableKey",
               "DeleteResourcePolicy", "PutResourcePolicy", "UpdateTimeToLive", "DisableKinesisStreamingDestination"}
EXAMPLES_PER_OPERATION = 12
#: the operations that parse expressions, numbers and items get more examples
DATA_OPERATIONS = {"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem",
                   "BatchWriteItem", "TransactGetItems", "TransactWriteItems", "ExecuteStatement",
                   "BatchExecuteStatement", "ExecuteTransaction", "CreateTable", "CreateKey", "PutKeyPolicy"}
DATA_EXAMPLES = 80

_MODELS = botocore.session.get_session()
SERVICES = {
    "dynamodb": ("DynamoDB_20120810", "dynamodb", "application/x-amz-json-1.0"),
    "dynamodbstreams": ("DynamoDBStreams_20120810", "dynamodb", "application/x-amz-json-1.0"),
    "kms": ("TrentService", "kms", "application/x-amz-json-1.1"),
    "dax": ("AmazonDAXV3", "dax", "application/x-amz-json-1.1"),
}

HOSTILE_STRINGS = [
    "", " ", "\x00", "a\nb", "\r\n\r\nHTTP/1.1 200 OK", "\u202e", "\ud7ff", "é" * 300, "x" * 70_000,
    "arn:aws:dynamodb:us-east-1:111122223333:table/other", "arn:/../../x", "../../etc/passwd", "%s%n",
    "9" * 5000, "-1e-130", "1e126", "NaN", "Infinity", "0x10", "alias/aws/dynamodb", "alias/", "#", ":",
    "{\"a\":1}", "null",
]
EXPRESSION_TOKENS = [
    "#n", ":v", ":w", "pk", "sk", "a.b", "a[0]", "a[99999999999999999999]", "=", "<>", "<", "<=", ">", ">=",
    "AND", "OR", "NOT", "(", ")", ",", "BETWEEN", "IN", "SET", "REMOVE", "ADD", "DELETE", "attribute_exists",
    "attribute_not_exists", "attribute_type", "begins_with", "contains", "size", "if_not_exists", "list_append",
    "+", "-", ".", "[", "]", "#", ":", "\"", "'", "\\", "\x00", "é",
]


def _expression() -> st.SearchStrategy[str]:
    tokens = st.lists(st.sampled_from(EXPRESSION_TOKENS), max_size=40).map(" ".join)
    deep = st.integers(1, 5000).flatmap(lambda n: st.sampled_from([
        "(" * n + "pk = :v" + ")" * n,
        " AND ".join(["pk = :v"] * n),
        "NOT " * n + "pk = :v",
        "size(" * n + "pk" + ")" * n + " > :v",
        "SET " + ", ".join(f"a{i} = :v" for i in range(n)),
        ", ".join(f"p{i}" for i in range(n)),
        "pk IN (" + ", ".join([":v"] * n) + ")",
        ".".join(["a"] * n),
        "a" + "[0]" * n,
    ]))
    return st.one_of(tokens, deep, st.sampled_from(HOSTILE_STRINGS), st.text(max_size=50))


def _number() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-(10**40), 10**40).map(str),
        st.decimals(allow_nan=True, allow_infinity=True).map(str),
        st.integers(1, 6000).map(lambda n: "1" * n),
        st.integers(1, 400).map(lambda e: f"1e{e}"),
        st.sampled_from(["", "-", "1.", ".1", "1e", "01", "+1", " 1", "1_000", "٣"]),
    )


def _attribute_value() -> st.SearchStrategy[dict]:
    leaves = st.one_of(
        st.builds(lambda s: {"S": s}, st.one_of(st.text(max_size=30), st.sampled_from(HOSTILE_STRINGS))),
        st.builds(lambda n: {"N": n}, _number()),
        st.builds(lambda b: {"B": base64.b64encode(b).decode()}, st.binary(max_size=30)),
        st.sampled_from([{"B": "not base64!"}, {"NULL": True}, {"NULL": False}, {"BOOL": True}, {}, {"S": 1},
                         {"S": "a", "N": "1"}, {"SS": []}, {"NS": ["1", "1"]}, {"BS": ["AA=="]}, {"X": "1"}]),
        st.builds(lambda ns: {"NS": ns}, st.lists(_number(), max_size=4)),
        st.builds(lambda ss: {"SS": ss}, st.lists(st.text(max_size=5), max_size=4)),
    )
    nested = st.recursive(
        leaves,
        lambda inner: st.one_of(st.builds(lambda items: {"L": items}, st.lists(inner, max_size=3)),
                                st.builds(lambda m: {"M": m}, st.dictionaries(st.text(max_size=5), inner, max_size=3))),
        max_leaves=12,
    )
    deep = st.integers(1, 200).map(lambda n: _deep_map(n))
    return st.one_of(nested, deep)


def _deep_map(depth: int) -> dict:
    value: dict = {"S": "x"}
    for _ in range(depth):
        value = {"M": {"a": value}}
    return value


WRONG_TYPES = st.sampled_from([None, 0, -1, 2**70, 1.5, True, "", "x", [], {}, [1], {"a": 1}])


def _mostly(good: st.SearchStrategy, bad: st.SearchStrategy, odds: int = 8) -> st.SearchStrategy:
    """``good`` ``odds`` times out of ``odds + 1``: one bad member per request is enough to be refused early,
    so most members must be plausible for the deeper checks (expressions, keys, numbers) to be reached."""
    return st.integers(0, odds).flatmap(lambda i: bad if i == 0 else good)


class ShapeStrategies:
    """Hypothesis strategies for botocore shapes, steered toward the values a server must survive."""

    def __init__(self, service: str) -> None:
        self.model = _MODELS.get_service_model(service)
        self._cache: dict[str, st.SearchStrategy] = {}

    def for_operation(self, operation: str) -> st.SearchStrategy[dict]:
        shape = self.model.operation_model(operation).input_shape
        if shape is None:
            return st.just({})
        return self._structure(shape, operation, depth=0)

    def _member(self, name: str, shape, operation: str, depth: int) -> st.SearchStrategy:
        if shape.name == "AttributeValue":
            base = _attribute_value()
        elif name in ("TableName", "TableArn", "ResourceArn", "SourceTableArn", "GlobalTableName"):
            names = ["missing-table", "ab", "x" * 256, "bad name", "arn:aws:dynamodb:us-east-1:000000000000:table/x"]
            if operation not in DESTRUCTIVE:
                names.append(TABLE)
            base = _mostly(st.just(TABLE) if operation not in DESTRUCTIVE else st.sampled_from(names),
                           st.one_of(st.sampled_from(names), st.sampled_from(HOSTILE_STRINGS)), odds=3)
        elif name == "ExpressionAttributeNames":
            base = _mostly(st.just({"#n": "a", "#m": "pk"}), self._shape(shape, operation, depth + 1), odds=3)
        elif name == "ExpressionAttributeValues":
            base = _mostly(st.just({":v": {"S": "x"}, ":w": {"N": "1"}}), self._shape(shape, operation, depth + 1),
                           odds=3)
        elif name in ("Key", "Item") and depth == 0:
            good = st.fixed_dictionaries({"pk": st.just({"S": "p1"}), "sk": st.just({"N": "1"})},
                                         optional={"a": _attribute_value(), "g": _attribute_value()})
            base = _mostly(good, self._shape(shape, operation, depth + 1), odds=2)
        elif name.endswith("Expression") or name == "Statement":
            base = _expression()
        elif shape.type_name == "string" and name in ("KeyId", "TargetKeyId", "DestinationKeyId", "SourceKeyId"):
            base = st.sampled_from(["alias/aws/dynamodb", "alias/hostile", "x", "", "arn:aws:kms:us-east-1:1:key/x",
                                    "00000000-0000-0000-0000-000000000000", "alias/" + "a" * 300])
        else:
            base = self._shape(shape, operation, depth + 1)
        return _mostly(base, WRONG_TYPES) if depth < 3 else base

    def _structure(self, shape, operation: str, depth: int) -> st.SearchStrategy[dict]:
        required = set(shape.required_members)
        members = {n: self._member(n, m, operation, depth) for n, m in shape.members.items()}
        return st.fixed_dictionaries(
            {n: s for n, s in members.items() if n in required and depth == 0},
            optional={n: s for n, s in members.items() if n not in required or depth > 0}
            | {"Unknown" + shape.name: st.just(1)},
        )

    def _shape(self, shape, operation: str, depth: int) -> st.SearchStrategy:
        kind = shape.type_name
        if depth > 6:
            return WRONG_TYPES
        if kind == "structure":
            return self._structure(shape, operation, depth)
        if kind == "list":
            return st.lists(self._shape(shape.member, operation, depth + 1), max_size=3)
        if kind == "map":
            keys = st.one_of(st.text(max_size=8), st.sampled_from(["", TABLE, "#n", ":v", "\x00"]))
            value = (_attribute_value() if shape.value.name == "AttributeValue"
                     else self._shape(shape.value, operation, depth + 1))
            return st.dictionaries(keys, value, max_size=3)
        if kind == "string":
            enum = shape.metadata.get("enum")
            text = st.one_of(st.text(max_size=40), st.sampled_from(HOSTILE_STRINGS))
            return st.one_of(st.sampled_from(enum), text) if enum else text
        if kind in ("integer", "long"):
            return st.one_of(st.integers(-(2**64), 2**64), st.sampled_from([0, 1, 25, 100, 101, 2**31]))
        if kind == "boolean":
            return st.booleans()
        if kind == "blob":
            return st.one_of(st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
                             st.sampled_from(["!!", "A", "A" * 10_000]))
        if kind == "timestamp":
            return st.one_of(st.floats(allow_nan=True), st.sampled_from(["2020-01-01", "yesterday", -1]))
        if kind in ("double", "float"):
            return st.floats(allow_nan=True, allow_infinity=True)
        return WRONG_TYPES


class Wire:
    """One keep-alive connection; every request SigV4-signed with the server's root credential."""

    def __init__(self, endpoint: str, access_key: str, secret: str) -> None:
        self.endpoint = endpoint
        self.url = urlparse(endpoint)
        self.creds = Credentials(access_key, secret)
        self.conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=HANG_SECONDS)

    def send(self, service: str, operation: str, body: bytes, *, headers: dict[str, str] | None = None,
             region: str = "us-east-1") -> tuple[int, bytes]:
        prefix, signing_name, content_type = SERVICES[service]
        hdrs = {"Content-Type": content_type, "X-Amz-Target": f"{prefix}.{operation}", **(headers or {})}
        request = AWSRequest("POST", self.endpoint + "/", data=body, headers=hdrs)
        SigV4Auth(self.creds, signing_name, region).add_auth(request)
        for attempt in range(2):
            try:
                self.conn.request("POST", "/", body=body, headers=dict(request.headers))
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.conn.close()
                return resp.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server may close a connection after a refused request; that is allowed, a hang is not.
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=HANG_SECONDS)
                if attempt:
                    raise
        raise AssertionError("unreachable")


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="session")  # once per session: the server outlives the module, and so does its table
def hostile_server(server_factory):
    srv = server_factory(group="hostile")  # of its own: the RSS bound is absolute
    out = "".join(srv.stdout_lines)
    access_key = out.split("aws_access_key_id = ")[1].split()[0]
    secret = out.split("aws_secret_access_key = ")[1].split()[0]
    ddb = srv.client("dynamodb", access_key=access_key, secret=secret)
    ddb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"},
                              {"AttributeName": "g", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[{"IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in range(5):
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": f"p{i % 2}"}, "sk": {"N": str(i)}, "g": {"S": "g"},
                                            "a": {"L": [{"S": "x"}]}})
    return srv, Wire(srv.endpoint, access_key, secret)


def _check(srv: ServerProcess, status: int, body: bytes, what: str) -> None:
    """A 4xx or a 200; never a 500, a dead server, or (through Wire's timeout) a hang."""
    assert srv.proc is not None and srv.proc.poll() is None, f"server died on {what}"
    assert status < 500, f"{status} for {what}: {body[:300]!r}\n{srv.log_text()[-2000:]}"
    assert 400 <= status or status == 200, (status, what)


def _operations() -> list[tuple[str, str]]:
    ops = []
    for service in SERVICES:
        model = _MODELS.get_service_model(service)
        ops.extend((service, op) for op in model.operation_names)
    return ops


_STRATEGIES = {service: ShapeStrategies(service) for service in SERVICES}


@pytest.mark.parametrize("service,operation", _operations())
def test_generated_requests_never_get_a_500(hostile_server, service, operation):
    srv, wire = hostile_server

    examples = DATA_EXAMPLES if operation in DATA_OPERATIONS else EXAMPLES_PER_OPERATION

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(_STRATEGIES[service].for_operation(operation))
    def run(params):
        body = json.dumps(params).encode()
        status, data = wire.send(service, operation, body)
        _check(srv, status, data, f"{operation} {body[:500]!r}")

    run()
    rss = _rss_mib(srv.proc.pid)
    assert rss < RSS_BOUND_MIB, f"server RSS {rss:.0f} MiB after generated {operation} requests"


EXPRESSION_SLOTS = [
    ("Scan", "FilterExpression"), ("Scan", "ProjectionExpression"), ("Query", "KeyConditionExpression"),
    ("Query", "FilterExpression"), ("UpdateItem", "UpdateExpression"), ("UpdateItem", "ConditionExpression"),
    ("PutItem", "ConditionExpression"), ("DeleteItem", "ConditionExpression"), ("GetItem", "ProjectionExpression"),
]
KEY = {"pk": {"S": "p1"}, "sk": {"N": "1"}}


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(slot=st.sampled_from(EXPRESSION_SLOTS), expression=_expression(), value=_attribute_value())
def test_generated_expressions_never_get_a_500(hostile_server, slot, expression, value):
    """Everything else in the request is valid, so the expression itself is parsed and evaluated."""
    srv, wire = hostile_server
    operation, member = slot
    params: dict = {"TableName": TABLE, member: expression}
    if operation in ("UpdateItem", "DeleteItem", "GetItem"):
        params["Key"] = KEY
    if operation == "PutItem":
        params["Item"] = {**KEY, "a": value}
    if operation == "Query" and member != "KeyConditionExpression":
        params["KeyConditionExpression"] = "pk = :k"
    placeholders = {":v": value, ":w": {"N": "1"}, ":k": {"S": "p1"}}
    params["ExpressionAttributeNames"] = {n: v for n, v in {"#n": "a", "#m": "pk"}.items() if n in expression} or None
    used = {n: v for n, v in placeholders.items() if n in expression or n in params.get("KeyConditionExpression", "")}
    params["ExpressionAttributeValues"] = used or None
    body = json.dumps({k: v for k, v in params.items() if v is not None}).encode()
    status, data = wire.send("dynamodb", operation, body)
    _check(srv, status, data, f"{operation} {body[:500]!r}")


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(value=_attribute_value(), number=_number(), name=st.one_of(st.text(max_size=5), st.sampled_from(HOSTILE_STRINGS)))
def test_generated_items_never_get_a_500(hostile_server, value, number, name):
    srv, wire = hostile_server
    item = {**KEY, "a": value, "n": {"N": number}, name or "e": {"S": "x"}}
    for operation, params in (("PutItem", {"Item": item}), ("GetItem", {"Key": {**KEY, "sk": {"N": number}}}),
                              ("Query", {"KeyConditionExpression": "pk = :k AND sk > :n",
                                         "ExpressionAttributeValues": {":k": {"S": "p1"}, ":n": {"N": number}}})):
        body = json.dumps({"TableName": TABLE, **params}).encode()
        status, data = wire.send("dynamodb", operation, body)
        _check(srv, status, data, f"{operation} {body[:500]!r}")


ENCODINGS = st.sampled_from(["gzip", "deflate", "raw-deflate", "identity", "br", "gzip, gzip", "", "DEFLATE"])


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    encoding=ENCODINGS,
    payload=st.one_of(st.binary(max_size=200), st.just(b"{" * 5000), st.just(b"[" * 100_000),
                      st.just(b'{"TableName": "hostile", "Key": ' + b'{"M": {"a": ' * 2000 + b"}}" * 2000 + b"}"),
                      st.just(b"\x00" * 1000), st.just(json.dumps({"Limit": 1}).encode())),
    content_type=st.sampled_from(["application/x-amz-json-1.0", "application/json", "text/plain", "", "\x7f"]),
    extra=st.dictionaries(st.sampled_from(["X-Amz-Content-Sha256", "Content-Md5", "X-Amz-Security-Token",
                                           "Transfer-Encoding-Hint", "Expect", "X-Amz-Date-Extra"]),
                          st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
                          max_size=2),
)
def test_bodies_encodings_and_headers_never_get_a_500(hostile_server, encoding, payload, content_type, extra):
    srv, wire = hostile_server
    if encoding in ("gzip", "gzip, gzip"):
        body = gzip.compress(payload)
    elif encoding in ("deflate", "DEFLATE"):
        body = zlib.compress(payload)
    elif encoding == "raw-deflate":
        c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body, encoding = c.compress(payload) + c.flush(), "deflate"
    else:
        body = payload
    headers = {"Content-Type": content_type, **extra}
    if encoding:
        headers["Content-Encoding"] = encoding
    status, data = wire.send("dynamodb", "GetItem", body, headers=headers)
    _check(srv, status, data, f"{encoding} {content_type} {extra} {payload[:80]!r}")


def test_compressed_bombs_are_refused_in_bounded_memory(hostile_server):
    srv, wire = hostile_server
    zeros = b"\x00" * (64 * 1024 * 1024)
    raw = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bombs = {"gzip": gzip.compress(zeros, 9), "deflate": zlib.compress(zeros, 9),
             "raw-deflate": raw.compress(zeros) + raw.flush()}
    for name, body in bombs.items():
        encoding = "deflate" if name == "raw-deflate" else name
        status, data = wire.send("dynamodb", "ListTables", body, headers={"Content-Encoding": encoding})
        assert status == 413, (name, status, data[:200])
    assert _rss_mib(srv.proc.pid) < RSS_BOUND_MIB


#: text that str.isdigit() accepts but int() refuses or chokes on: over int()'s 4,300-digit limit, a
#: superscript, Arabic-Indic digits
DIGIT_LIKE = ["9" * 5000, "\u00b2", "\u0661\u0662"]


def _string_members(service: str, operation: str) -> list[str]:
    shape = _MODELS.get_service_model(service).operation_model(operation).input_shape
    if shape is None:
        return []
    return [name for name, member in shape.members.items() if member.type_name == "string"]


@pytest.mark.parametrize("service,operation", [(s, o) for s, o in _operations() if _string_members(s, o)])
def test_digit_like_strings_in_every_string_member_never_get_a_500(hostile_server, service, operation):
    # Page tokens and markers are parsed as numbers in several places: a generated example reaches one
    # only by chance, so every string member of every operation gets each digit-like text here.
    srv, wire = hostile_server
    if operation in DESTRUCTIVE:
        return
    status, data = wire.send("dynamodb", "DescribeTable", json.dumps({"TableName": TABLE}).encode())
    # the table's name and ARN where the operation takes them, so the digit-like member is what is judged
    valid = {"TableName": TABLE, "ResourceArn": json.loads(data)["Table"]["TableArn"]}
    members = _string_members(service, operation)
    for member in members:
        for text in DIGIT_LIKE:
            params = {k: v for k, v in valid.items() if k in members and service == "dynamodb"}
            params[member] = text
            body = json.dumps(params).encode()
            status, data = wire.send(service, operation, body)
            _check(srv, status, data, f"{operation} {member}={text[:20]!r}")


#: JSON numbers for integral members: a decimal (Coral truncates it), past Long's range both ways, zero, -1
ODD_INTEGERS = [2.5, -9223372036854775809, 18446744073709551616, 1e300, 0, -1]


def _integer_members(service: str, operation: str) -> list[str]:
    shape = _MODELS.get_service_model(service).operation_model(operation).input_shape
    if shape is None:
        return []
    return [name for name, member in shape.members.items() if member.type_name in ("integer", "long")]


@pytest.mark.parametrize("service,operation", [(s, o) for s, o in _operations() if _integer_members(s, o)])
def test_odd_numbers_in_every_integer_member_never_get_a_500(hostile_server, service, operation):
    # orjson hands a number past 64 bits over as a float, and the shape check passes decimals through for
    # members with no bounds: handlers must still never see a value they cannot slice or count with.
    srv, wire = hostile_server
    if operation in DESTRUCTIVE:
        return
    for member in _integer_members(service, operation):
        for number in ODD_INTEGERS:
            params = {"TableName": TABLE} if service == "dynamodb" and "TableName" in \
                _MODELS.get_service_model(service).operation_model(operation).input_shape.members else {}
            params[member] = number
            body = json.dumps(params).encode()
            status, data = wire.send(service, operation, body)
            _check(srv, status, data, f"{operation} {member}={number!r}")


#: timestamps: ISO text, a day, non-finite text, and numbers far past any date
ODD_TIMESTAMPS = ["2020-01-01", "2020-01-01T00:00:00Z", "1700000000", "Infinity", "NaN", "-1e400", 1e300, -1e300,
                  1e12, 0]


def _timestamp_members(service: str, operation: str) -> list[tuple[str, str | None]]:
    """(member, nested member) of the operation's timestamps, one level of structure deep."""
    shape = _MODELS.get_service_model(service).operation_model(operation).input_shape
    if shape is None:
        return []
    out: list[tuple[str, str | None]] = []
    for name, member in shape.members.items():
        if member.type_name == "timestamp":
            out.append((name, None))
        elif member.type_name == "structure":
            out += [(name, sub) for sub, m in member.members.items() if m.type_name == "timestamp"]
    return out


@pytest.mark.parametrize("service,operation", [(s, o) for s, o in _operations() if _timestamp_members(s, o)])
def test_odd_timestamps_in_every_timestamp_member_never_get_a_500(hostile_server, service, operation):
    srv, wire = hostile_server
    if operation in DESTRUCTIVE:
        return
    members = _MODELS.get_service_model(service).operation_model(operation).input_shape.members
    # a backup to list, so the time bounds are compared with something
    wire.send("dynamodb", "CreateBackup", json.dumps({"TableName": TABLE, "BackupName": "odd-times"}).encode())
    for member, sub in _timestamp_members(service, operation):
        for when, named in itertools.product(ODD_TIMESTAMPS, (True, False)):
            params: dict = {"TableName": TABLE} if named and "TableName" in members else {}
            params[member] = when if sub is None else {sub: when}
            body = json.dumps(params).encode()
            status, data = wire.send(service, operation, body)
            _check(srv, status, data, f"{operation} {member}.{sub}={when!r}")


@pytest.mark.parametrize("expression", ["SET a[" + "9" * 5000 + "] = :v", "REMOVE a[\u0661]"])
def test_digit_like_list_indexes_never_get_a_500(hostile_server, expression):
    srv, wire = hostile_server
    body = json.dumps({"TableName": TABLE, "Key": KEY, "UpdateExpression": expression,
                       **({"ExpressionAttributeValues": {":v": {"S": "x"}}} if ":v" in expression else {})}).encode()
    status, data = wire.send("dynamodb", "UpdateItem", body)
    _check(srv, status, data, expression[:40])
    body = json.dumps({"Statement": f"SELECT a[{'9' * 5000}] FROM \"{TABLE}\""}).encode()
    status, data = wire.send("dynamodb", "ExecuteStatement", body)
    _check(srv, status, data, "PartiQL list index")


@pytest.mark.parametrize("operation,member", [("TransactWriteItems", "TransactItems"),
                                              ("ExecuteTransaction", "TransactStatements")])
def test_a_token_with_a_request_nested_past_the_encoder_gets_a_validation_error(hostile_server, operation, member):
    # The ClientRequestToken's digest encodes the request: past 255 levels of nesting that encoder refuses.
    srv, wire = hostile_server
    deep: object = {"S": "x"}
    for _ in range(300):
        deep = {"M": {"a": deep}}
    entry = {"Put": {"TableName": TABLE, "Item": {**KEY, "d": deep}}} if operation == "TransactWriteItems" \
        else {"Statement": f"INSERT INTO \"{TABLE}\" VALUE {{'pk': ?}}", "Parameters": [deep]}
    body = json.dumps({member: [entry], "ClientRequestToken": "t1"}).encode()
    status, data = wire.send("dynamodb", operation, body)
    _check(srv, status, data, operation)
    assert status == 400 and b"ValidationException" in data, data[:300]
