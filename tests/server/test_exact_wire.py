"""The HTTP and wire details DynamoDB clients and test suites rely on (issue 17, items 4-10 and 23), against real
server processes, with exact __type, message, status and headers.

Where the answers come from: dynalite's test/connection.js (recorded against the live service: the 404 body
and its crc32, SerializationException before UnknownOperationException, 52-character request ids, query-string
auth texts); ScyllaDB Alternator's test_compressed_response.py / test_compressed_request.py (DynamoDB's 4 KB
compression threshold, Accept-Encoding choices, concatenated gzip members); public reports of SigV4 clock
errors ("Signature expired: ... is now earlier than ... (... - 5 min.)").
"""

from __future__ import annotations

import datetime
import gzip
import http.client
import json
import re
import uuid
import zlib
from urllib.parse import urlparse

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.conftest import make_table
from tests.servers import ServerProcess
from tests.wire import Response, send, signed_request

DDB = "DynamoDB_20120810."
JSON_10 = "application/x-amz-json-1.0"
SER = "com.amazon.coral.service#SerializationException"
REQUEST_ID = re.compile(r"[0-9A-Z]{52}")
NOT_FOUND_BODY = b"<UnknownOperationException/>\n"


def _common(resp: Response) -> None:
    """Every answer: a DynamoDB request id and the crc32 of the bytes sent."""
    assert REQUEST_ID.fullmatch(resp.headers.get("x-amzn-requestid", "")), resp.headers
    assert int(resp.headers["x-amz-crc32"]) == zlib.crc32(resp.body)


def _raw(srv: ServerProcess, method: str, body: bytes = b"", headers: dict[str, str] | None = None,
         path: str = "/") -> Response:
    return send(srv.endpoint, body, headers or {}, method=method, path=path)


@pytest.fixture(scope="module")
def table(srv) -> str:
    name = f"wire-{uuid.uuid4().hex[:8]}"
    make_table(srv.client("dynamodb"), name)
    return name


# --- item 4: SerializationException says "Message" ---------------------------------------------------------------

def test_serialization_exception_body_uses_capital_message(srv):
    resp = signed_request(srv.endpoint, DDB + "DescribeTable", {"TableName": 5})
    assert resp.status == 400
    assert resp.json() == {"__type": SER, "Message": "NUMBER_VALUE cannot be converted to String"}
    _common(resp)
    # other errors keep the lower-case key
    resp = signed_request(srv.endpoint, DDB + "DescribeTable", {"TableName": "ab"})
    assert set(resp.json()) == {"__type", "message"}


def test_boto3_reads_the_serialization_message(srv):
    ddb = srv.client("dynamodb", validate=False)
    with pytest.raises(ClientError) as e:
        ddb.scan(TableName="abc", Limit="x")
    assert e.value.response["Error"] == {"Code": "SerializationException",
                                         "Message": "STRING_VALUE cannot be converted to Integer"}


# --- item 5: methods, content types, bodies that are not JSON -----------------------------------------------------

@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_404_with_dynamodbs_body(srv, method):
    resp = _raw(srv, method, b"{}", {"Content-Type": JSON_10, "X-Amz-Target": DDB + "ListTables"})
    assert resp.status == 404
    assert resp.body == NOT_FOUND_BODY
    assert resp.headers["x-amz-crc32"] == "3552371480"  # what DynamoDB sends with it
    assert resp.headers["content-length"] == "29"
    _common(resp)


def test_get_of_another_path_is_404(srv):
    resp = _raw(srv, "GET", path="/nothing-here")
    assert resp.status == 404 and resp.body == NOT_FOUND_BODY
    _common(resp)


@pytest.mark.parametrize("content_type", [None, "whatever", "application/jsonasdf", "text/plain"])
def test_body_of_unknown_content_type_is_404(srv, content_type):
    headers = {"X-Amz-Target": DDB + "ListTables"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    resp = _raw(srv, "POST", b"hi", headers)
    assert resp.status == 404 and resp.body == NOT_FOUND_BODY
    _common(resp)


@pytest.mark.parametrize("content_type,echo", [
    ("application/x-amz-json-1.0", "application/x-amz-json-1.0"),
    ("application/x-amz-json-1.1", "application/x-amz-json-1.1"),
    ("application/json", "application/json"),
    ("application/x-amz-json-1.0; charset=utf-8", "application/x-amz-json-1.0"),
])
def test_response_content_type_echoes_the_request(srv, content_type, echo):
    ok = signed_request(srv.endpoint, DDB + "ListTables", {}, content_type=content_type)
    assert ok.status == 200 and ok.headers["content-type"] == echo
    bad = signed_request(srv.endpoint, DDB + "DescribeTable", {"TableName": "ab"}, content_type=content_type)
    assert bad.status == 400 and bad.headers["content-type"] == echo


def test_body_not_json_is_serialization_exception(srv):
    # signed, known operation
    resp = signed_request(srv.endpoint, DDB + "ListTables", b"hi")
    assert resp.status == 400 and resp.json() == {"__type": SER}
    _common(resp)
    # no target at all: DynamoDB parses the body before it looks at the target
    resp = _raw(srv, "POST", b"hi", {"Content-Type": JSON_10})
    assert resp.status == 400 and resp.json() == {"__type": SER}
    assert resp.headers["content-type"] == JSON_10
    # unknown operation
    resp = _raw(srv, "POST", b"{not json", {"Content-Type": JSON_10, "X-Amz-Target": DDB + "ListTable"})
    assert resp.status == 400 and resp.json() == {"__type": SER}
    # a known operation, unsigned: the body is still judged first
    resp = _raw(srv, "POST", b"hi", {"Content-Type": JSON_10, "X-Amz-Target": DDB + "ListTables"})
    assert resp.status == 400 and resp.json() == {"__type": SER}


def test_json_body_with_unknown_target_is_unknown_operation(srv):
    for headers in ({"Content-Type": JSON_10}, {"Content-Type": JSON_10, "X-Amz-Target": DDB + "ListTable"},
                    {"Content-Type": JSON_10, "X-Amz-Target": "whatever"}):
        resp = _raw(srv, "POST", b"{}", headers)
        assert resp.status == 400
        assert resp.json() == {"__type": "com.amazon.coral.service#UnknownOperationException"}
        _common(resp)
    resp = _raw(srv, "POST", b"{}", {"Content-Type": JSON_10, "X-Amz-Target": DDB + "ListTables"})
    assert resp.json() == {"__type": "com.amazon.coral.service#MissingAuthenticationTokenException",
                           "message": "Request is missing Authentication Token"}


# --- item 6: request ids on every answer ------------------------------------------------------------------------

def test_every_answer_has_a_dynamodb_request_id(srv, table):
    answers = [
        signed_request(srv.endpoint, DDB + "ListTables", {}),
        signed_request(srv.endpoint, DDB + "GetItem", {"TableName": table, "Key": {"pk": {"S": "none"}}}),
        signed_request(srv.endpoint, DDB + "DescribeTable", {"TableName": "no-such-table-here"}),
        signed_request(srv.endpoint, DDB + "ListTables", b"hi"),
        _raw(srv, "POST", b"{}", {"Content-Type": JSON_10}),
        _raw(srv, "GET"),
        _raw(srv, "GET", path="/metrics"),
        _raw(srv, "DELETE"),
    ]
    ids = set()
    for resp in answers:
        _common(resp)
        ids.add(resp.headers["x-amzn-requestid"])
    assert len(ids) == len(answers)
    # KMS answers carry AWS KMS's form, a UUID
    kms = signed_request(srv.endpoint, "TrentService.ListKeys", {}, service="kms",
                         content_type="application/x-amz-json-1.1")
    assert kms.status == 200
    uuid.UUID(kms.headers["x-amzn-requestid"])


def test_too_large_answer_has_a_request_id(srv):
    resp = _raw(srv, "POST", b"{" + b" " * (16 * 1024 * 1024 + 10) + b"}",
                {"Content-Type": JSON_10, "X-Amz-Target": DDB + "ListTables"})
    assert resp.status == 413
    _common(resp)


def test_overload_answer_has_a_request_id(server_factory):
    import socket
    import time

    srv = server_factory("wire-503", allow_any_credentials=True, max_connections=2)
    url = urlparse(srv.endpoint)
    idle = [socket.create_connection((url.hostname, url.port), timeout=10) for _ in range(2)]
    try:
        time.sleep(0.2)
        resp = signed_request(srv.endpoint, DDB + "ListTables", {})
        assert resp.status == 503
        assert resp.json()["__type"] == "com.amazon.coral.service#ServiceUnavailableException"
        _common(resp)
    finally:
        for sock in idle:
            sock.close()


# --- item 7: CORS headers only for a request with an (allowed) Origin --------------------------------------------

@pytest.fixture(scope="module")
def cors_server(server_factory) -> ServerProcess:
    return server_factory("wire-cors", allow_any_credentials=True, cors_origin="*")


def test_cors_headers_only_when_the_request_has_an_origin(cors_server):
    plain = signed_request(cors_server.endpoint, DDB + "ListTables", {})
    assert plain.status == 200
    assert not [h for h in plain.headers if h.startswith("access-control-")], plain.headers
    with_origin = signed_request(cors_server.endpoint, DDB + "ListTables", {},
                                 extra_headers={"Origin": "http://app.example"})
    assert with_origin.headers["access-control-allow-origin"] == "*"
    health = _raw(cors_server, "GET")
    assert not [h for h in health.headers if h.startswith("access-control-")]
    pre = _raw(cors_server, "OPTIONS", headers={"Origin": "http://app.example",
                                                "Access-Control-Request-Method": "POST"})
    assert pre.status == 200 and pre.headers["access-control-allow-origin"] == "*"
    assert pre.headers["access-control-max-age"] == "172800"
    _common(pre)
    # an OPTIONS without an Origin is no preflight: DynamoDB's 404
    assert _raw(cors_server, "OPTIONS").status == 404


def test_preflight_from_an_origin_not_allowed_is_404(srv):
    resp = _raw(srv, "OPTIONS", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert resp.status == 404 and resp.body == NOT_FOUND_BODY
    assert not [h for h in resp.headers if h.startswith("access-control-")]


# --- item 8: compression ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_item(srv, table) -> str:
    srv.client("dynamodb").put_item(TableName=table, Item={"pk": {"S": "big"}, "x": {"S": "x" * 6000}})
    return json.dumps({"TableName": table, "Key": {"pk": {"S": "big"}}})


def _get(srv: ServerProcess, body: str, accept: str | None) -> Response:
    extra = {} if accept is None else {"Accept-Encoding": accept}
    return signed_request(srv.endpoint, DDB + "GetItem", body.encode(), extra_headers=extra)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_large_response_is_compressed_when_asked(srv, big_item, coding):
    resp = _get(srv, big_item, coding)
    assert resp.status == 200
    assert resp.headers["content-encoding"] == coding
    _common(resp)  # crc32 over the compressed bytes, as DynamoDB computes it
    raw = gzip.decompress(resp.body) if coding == "gzip" else zlib.decompress(resp.body)
    assert json.loads(raw)["Item"]["x"]["S"] == "x" * 6000
    assert len(resp.body) * 30 < len(raw)


@pytest.mark.parametrize("accept,chosen", [
    ("identity", None), ("", None), ("br", None), ("x-gzip", None),
    ("gzip, deflate", "gzip"), ("br, identity, deflate, gzip", "deflate"), ("GZIP, identity", "gzip"),
    ("dog, gzip ,, cat", "gzip"), ("gzip;q=0.8, deflate;q=0.5", "gzip"),
    ("br, gzip;q=0, deflate; q = 0.5 , identity;q=0", "deflate"), ("*", "gzip"), ("*, deflate", "deflate"),
    ("*, gzip;q=0.5", "deflate"), ("gzip ;q=0", None), ("*;q=0", None), ("*;q=0.5,identity", "gzip"),
    ("br;q=0.8,identity;q=0.5,*;q=0", None), ('"gzip"', None), ("gzip br", None), ("gzip:q=1", None),
    ("gzip;q=31,deflate;q=51", "gzip"), ("deflate;q=0.5, gzip;q=1;q=0.2", "gzip"),
    ("deflate;q=0.5,gzip;q=0.", "deflate"), ("deflate;q=0.5,gzip;q=0.x", "gzip"),
    ("deflate;q=-0.5,gzip;q=0.2", "gzip"), ("gzip;nq=1;q=0 ", None), ("gzip;q=0, gzip;q=1, gzip;q=0", "gzip"),
])
def test_accept_encoding_choice_as_dynamodb(srv, big_item, accept, chosen):
    resp = _get(srv, big_item, accept)
    assert resp.status == 200
    assert resp.headers.get("content-encoding") == chosen


def test_small_or_unasked_responses_are_not_compressed(srv, big_item, table):
    assert "content-encoding" not in _get(srv, big_item, None).headers
    small = json.dumps({"TableName": table, "Key": {"pk": {"S": "none"}}})
    assert "content-encoding" not in _get(srv, small, "gzip").headers
    # boto3 asks for nothing and reads the large item as is
    item = srv.client("dynamodb").get_item(TableName=table, Key={"pk": {"S": "big"}})["Item"]
    assert item["x"]["S"] == "x" * 6000


def _put_body(table: str, pk: str) -> bytes:
    return json.dumps({"TableName": table, "Item": {"pk": {"S": pk}, "v": {"S": "value"}}}).encode()


def test_two_concatenated_gzip_members_are_one_body(srv, table):
    raw = _put_body(table, "two-members")
    body = gzip.compress(raw[:10]) + gzip.compress(raw[10:])
    resp = signed_request(srv.endpoint, DDB + "PutItem", body, extra_headers={"Content-Encoding": "gzip"})
    assert resp.status == 200, resp.body
    item = srv.client("dynamodb").get_item(TableName=table, Key={"pk": {"S": "two-members"}})["Item"]
    assert item["v"] == {"S": "value"}


@pytest.mark.parametrize("damage", ["truncated", "empty", "junk-after", "not-gzip"])
def test_broken_gzip_body_is_serialization_exception(srv, table, damage):
    pk = f"broken-{damage}"
    good = gzip.compress(_put_body(table, pk))
    body = {"truncated": good[:-1], "empty": b"", "junk-after": good + b"junk",
            "not-gzip": _put_body(table, pk)}[damage]
    resp = signed_request(srv.endpoint, DDB + "PutItem", body, extra_headers={"Content-Encoding": "gzip"})
    assert resp.status == 400, resp.body
    assert resp.json() == {"__type": SER, "Message": "Could not decode the request body"}
    _common(resp)
    assert "Item" not in srv.client("dynamodb").get_item(TableName=table, Key={"pk": {"S": pk}})


def test_gzip_members_are_capped_together(srv):
    """Each member alone is under the 16 MB limit; together they are not: 413, never 32 MB held."""
    c = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    member = c.compress(bytes(10 << 20)) + c.flush()
    resp = signed_request(srv.endpoint, DDB + "ListTables", member + member,
                          extra_headers={"Content-Encoding": "gzip"})
    assert resp.status == 413
    assert resp.json() == {"__type": "com.amazon.coral.service#RequestEntityTooLarge",
                           "message": "Request Entity Too Large"}


# --- item 9: the server names itself -------------------------------------------------------------------------------

def test_health_and_describe_endpoints_name_this_server(srv):
    resp = _raw(srv, "GET")
    assert resp.status == 200
    assert resp.body == f"healthy: 127.0.0.1:{srv.port} ".encode()
    _common(resp)
    endpoints = srv.client("dynamodb").describe_endpoints()["Endpoints"]
    assert endpoints == [{"Address": f"127.0.0.1:{srv.port}", "CachePeriodInMinutes": 1440}]


def test_health_names_the_host_the_client_used(srv):
    url = urlparse(srv.endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("GET", "/", headers={"Host": f"localhost:{srv.port}"})
    assert conn.getresponse().read() == f"healthy: localhost:{srv.port} ".encode()
    conn.request("GET", "/", headers={"Host": "bad host\u00e9"})  # not a host name: the socket's address
    assert conn.getresponse().read() == f"healthy: 127.0.0.1:{srv.port} ".encode()
    conn.close()


# --- item 10: SigV4 forms and clock texts (a server with real credentials) ---------------------------------------

class _Root:
    def __init__(self, srv: ServerProcess) -> None:
        out = "".join(srv.stdout_lines)
        self.srv = srv
        self.key = out.split("aws_access_key_id = ")[1].split()[0]
        self.secret = out.split("aws_secret_access_key = ")[1].split()[0]


@pytest.fixture(scope="module")
def root(server_factory) -> _Root:
    # DynamoDB's 5-minute window, so the texts read as AWS's do today
    return _Root(server_factory("wire-sigv4", max_clock_skew_seconds=300))


def _signed_headers(root: _Root, target: str, body: bytes, when: datetime.datetime | None = None) -> dict:
    request = AWSRequest("POST", root.srv.endpoint + "/", data=body,
                         headers={"Content-Type": JSON_10, "X-Amz-Target": target})
    auth = SigV4Auth(Credentials(root.key, root.secret), "dynamodb", "us-east-1")
    if when is None:
        auth.add_auth(request)
    else:
        from unittest import mock

        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            auth.add_auth(request)
    return dict(request.headers)


def test_authorization_components_separated_by_spaces_only(root):
    headers = _signed_headers(root, DDB + "ListTables", b"{}")
    headers["Authorization"] = headers["Authorization"].replace(", ", " ")
    assert "," not in headers["Authorization"]
    resp = send(root.srv.endpoint, b"{}", headers)
    assert resp.status == 200, resp.body
    # still the signature that counts
    headers["Authorization"] = headers["Authorization"][:-1] + ("0" if headers["Authorization"][-1] != "0" else "1")
    resp = send(root.srv.endpoint, b"{}", headers)
    assert resp.status == 400 and resp.json()["__type"] == "com.amazon.coral.service#InvalidSignatureException"


def _clock_error(resp: Response) -> str:
    assert resp.status == 400
    body = resp.json()
    assert body["__type"] == "com.amazon.coral.service#InvalidSignatureException"
    return body["message"]


def _ts(value: str) -> datetime.datetime:
    return datetime.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)


def test_expired_signature_text(root):
    when = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(minutes=10)
    resp = send(root.srv.endpoint, b"{}", _signed_headers(root, DDB + "ListTables", b"{}", when))
    message = _clock_error(resp)
    m = re.fullmatch(r"Signature expired: (\S+) is now earlier than (\S+) \((\S+) - 5 min\.\)", message)
    assert m, message
    assert m.group(1) == when.strftime("%Y%m%dT%H%M%SZ")
    assert _ts(m.group(3)) - _ts(m.group(2)) == datetime.timedelta(minutes=5)


def test_signature_not_yet_current_text(root):
    when = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(minutes=10)
    resp = send(root.srv.endpoint, b"{}", _signed_headers(root, DDB + "ListTables", b"{}", when))
    message = _clock_error(resp)
    m = re.fullmatch(r"Signature not yet current: (\S+) is still later than (\S+) \((\S+) \+ 5 min\.\)", message)
    assert m, message
    assert m.group(1) == when.strftime("%Y%m%dT%H%M%SZ")
    assert _ts(m.group(2)) - _ts(m.group(3)) == datetime.timedelta(minutes=5)


class _JsonQueryAuth(SigV4QueryAuth):
    """botocore's presigner, keeping the JSON body in the body (it would move form fields to the query)."""

    def _modify_request_before_signing(self, request):
        data, request.data = request.data, b""
        super()._modify_request_before_signing(request)
        request.data = data


def _presigned(root: _Root, target: str, body: bytes, expires: int = 300,
               when: datetime.datetime | None = None) -> tuple[str, dict]:
    request = AWSRequest("POST", root.srv.endpoint + "/", data=body,
                         headers={"Content-Type": JSON_10, "X-Amz-Target": target})
    auth = _JsonQueryAuth(Credentials(root.key, root.secret), "dynamodb", "us-east-1", expires=expires)
    if when is None:
        auth.add_auth(request)
    else:
        from unittest import mock

        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            auth.add_auth(request)
    url = urlparse(request.url)
    return f"/?{url.query}", {k: v for k, v in request.headers.items() if k.lower() != "authorization"}


def test_presigned_query_string_auth(root):
    name = f"presign-{uuid.uuid4().hex[:8]}"
    make_table(root.srv.client("dynamodb", access_key=root.key, secret=root.secret), name)
    body = json.dumps({"TableName": name, "Item": {"pk": {"S": "p"}}}).encode()
    path, headers = _presigned(root, DDB + "PutItem", body)
    assert "X-Amz-Signature=" in path and "Authorization" not in headers
    resp = send(root.srv.endpoint, body, headers, path=path)
    assert resp.status == 200, resp.body
    _common(resp)
    # the body is covered: another body with the same query is refused
    other = json.dumps({"TableName": name, "Item": {"pk": {"S": "q"}}}).encode()
    resp = send(root.srv.endpoint, other, headers, path=path)
    assert resp.status == 400 and resp.json()["__type"] == "com.amazon.coral.service#InvalidSignatureException"
    # and the target: another operation with the same query is refused
    resp = send(root.srv.endpoint, body, {**headers, "X-Amz-Target": DDB + "DeleteItem"}, path=path)
    assert resp.status == 400 and resp.json()["__type"] == "com.amazon.coral.service#InvalidSignatureException"


def test_presigned_query_string_auth_for_kms_json_1_1(root):
    request = AWSRequest("POST", root.srv.endpoint + "/", data=b"{}",
                         headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.ListKeys"})
    _JsonQueryAuth(Credentials(root.key, root.secret), "kms", "us-east-1").add_auth(request)
    headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
    resp = send(root.srv.endpoint, b"{}", headers, path=f"/?{urlparse(request.url).query}")
    assert resp.status == 200, resp.body
    assert "Keys" in resp.json()


def test_presigned_request_past_its_expiry(root):
    when = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(minutes=3)
    path, headers = _presigned(root, DDB + "ListTables", b"{}", expires=60, when=when)
    message = _clock_error(send(root.srv.endpoint, b"{}", headers, path=path))
    assert message.startswith(f"Signature expired: {when.strftime('%Y%m%dT%H%M%SZ')} is now earlier than ")
    path, headers = _presigned(root, DDB + "ListTables", b"{}", expires=600, when=when)
    assert send(root.srv.endpoint, b"{}", headers, path=path).status == 200


def test_query_string_auth_errors(root):
    headers = {"Content-Type": JSON_10, "X-Amz-Target": DDB + "ListTables"}
    resp = send(root.srv.endpoint, b"{}", {**headers, "Authorization": "X"}, path="/?X-Amz-Algorithm")
    assert resp.status == 400 and resp.json() == {
        "__type": "com.amazon.coral.service#InvalidSignatureException",
        "message": "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header."}
    resp = send(root.srv.endpoint, b"{}", headers, path="/?X-Amz-Algorithm")
    assert resp.json() == {
        "__type": "com.amazon.coral.service#IncompleteSignatureException",
        "message": "AWS query-string parameters must include 'X-Amz-Algorithm'. AWS query-string parameters must "
                   "include 'X-Amz-Credential'. AWS query-string parameters must include 'X-Amz-Signature'. AWS "
                   "query-string parameters must include 'X-Amz-SignedHeaders'. AWS query-string parameters must "
                   "include 'X-Amz-Date'. Re-examine the query-string parameters."}
    resp = send(root.srv.endpoint, b"{}", headers,
                path="/?X-Amz-Algorithm=a&X-Amz-Credential=b&X-Amz-Signature=c&X-Amz-Date=d")
    assert resp.json() == {
        "__type": "com.amazon.coral.service#IncompleteSignatureException",
        "message": "AWS query-string parameters must include 'X-Amz-SignedHeaders'. Re-examine the query-string "
                   "parameters."}
    # all but X-Amz-Algorithm: not query-string auth at all
    resp = send(root.srv.endpoint, b"{}", headers,
                path="/?X-Amz-Credential=a&X-Amz-Signature=b&X-Amz-SignedHeaders=c&X-Amz-Date=d")
    assert resp.json() == {"__type": "com.amazon.coral.service#MissingAuthenticationTokenException",
                           "message": "Request is missing Authentication Token"}


# --- item 23: optional members sent as JSON null are absent --------------------------------------------------------

def test_null_optional_members_are_absent(srv, table):
    def call(op: str, body: dict) -> Response:
        resp = signed_request(srv.endpoint, DDB + op, body)
        assert resp.status == 200, (op, resp.status, resp.body)
        return resp

    call("ListTables", {"Limit": None, "ExclusiveStartTableName": None})
    call("PutItem", {"TableName": table, "Item": {"pk": {"S": "nulls"}}, "ConditionExpression": None,
                     "ExpressionAttributeNames": None, "ExpressionAttributeValues": None, "ReturnValues": None})
    call("GetItem", {"TableName": table, "Key": {"pk": {"S": "nulls"}}, "ProjectionExpression": None,
                     "ConsistentRead": None, "AttributesToGet": None})
    call("UpdateItem", {"TableName": table, "Key": {"pk": {"S": "nulls"}}, "UpdateExpression": "SET a = :a",
                        "ExpressionAttributeValues": {":a": {"S": "x"}}, "ConditionExpression": None,
                        "AttributeUpdates": None, "Expected": None})
    call("Scan", {"TableName": table, "Limit": None, "ExclusiveStartKey": None, "Segment": None,
                  "TotalSegments": None, "FilterExpression": None, "Select": None})
    call("Query", {"TableName": table, "KeyConditionExpression": "pk = :p",
                   "ExpressionAttributeValues": {":p": {"S": "nulls"}}, "IndexName": None, "Limit": None,
                   "ScanIndexForward": None, "ExclusiveStartKey": None})
    call("TransactWriteItems", {"TransactItems": [
        {"Put": {"TableName": table, "Item": {"pk": {"S": "tx-nulls"}}, "ConditionExpression": None},
         "Update": None}], "ClientRequestToken": None})
    call("BatchGetItem", {"RequestItems": {table: {"Keys": [{"pk": {"S": "nulls"}}], "ProjectionExpression": None}},
                          "ReturnConsumedCapacity": None})
    call("DescribeTable", {"TableName": table, "Bogus": None})
    got = srv.client("dynamodb").get_item(TableName=table, Key={"pk": {"S": "nulls"}})["Item"]
    assert got == {"pk": {"S": "nulls"}, "a": {"S": "x"}}


def test_null_required_member_is_still_missing(srv):
    resp = signed_request(srv.endpoint, DDB + "DescribeTable", {"TableName": None})
    assert resp.status == 400
    assert resp.json() == {"__type": "com.amazon.coral.validate#ValidationException",
                           "message": "1 validation error detected: Value null at 'tableName' failed to satisfy "
                                      "constraint: Member must not be null"}
