"""SigV4 as parsed on the hot path (the Authorization header split once per client day, header values
canonicalised without a regex when they can be), against a real server with a real credential."""

from __future__ import annotations

import json

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.wire import send

LIST_TABLES = "DynamoDB_20120810.ListTables"


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    from tests.servers import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("sigv4"))
    out = "".join(srv.stdout_lines)
    key = out.split("aws_access_key_id = ")[1].split()[0]
    secret = out.split("aws_secret_access_key = ")[1].split()[0]
    yield srv, key, secret
    srv.stop()


def _signed(endpoint: str, key: str, secret: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    body = b"{}"
    request = AWSRequest("POST", endpoint + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": LIST_TABLES, **(extra or {})})
    SigV4Auth(Credentials(key, secret), "dynamodb", "us-east-1").add_auth(request)
    return dict(request.headers)


def _send(endpoint: str, headers: dict[str, str]):
    return send(endpoint, b"{}", headers)


@pytest.mark.parametrize("value", ["a  b", "a\tb", "a\xa0b", " padded ", "plain value"])
def test_signed_header_values_with_any_whitespace_verify(real_server, value):
    srv, key, secret = real_server
    headers = _signed(srv.endpoint, key, secret, {"X-Custom": value})
    assert "x-custom" in headers["Authorization"]
    resp = _send(srv.endpoint, headers)
    assert resp.status == 200, resp.body
    # and the value is covered by the signature: a changed one is refused
    headers["X-Custom"] = value.replace("a", "c") if "a" in value else value + "x"
    resp = _send(srv.endpoint, headers)
    assert resp.status == 400 and json.loads(resp.body)["__type"].endswith("#InvalidSignatureException")


@pytest.mark.parametrize("rewrite", [
    lambda a: a,
    lambda a: a.replace(", ", ","),
    lambda a: a.replace(", ", " ,   ").replace("AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA256    "),
    lambda a: a + "   ",
    # components separated by spaces only, or by a mix (AWS accepts both, as dynalite records)
    lambda a: a.replace(", ", " "),
    lambda a: a.replace(", SignedHeaders", " SignedHeaders"),
    lambda a: a[: a.rindex("Signature=") + 10] + a[a.rindex("Signature=") + 10:].upper(),  # hex in capitals
])
def test_authorization_header_spacing_and_case_accepted(real_server, rewrite):
    srv, key, secret = real_server
    headers = _signed(srv.endpoint, key, secret)
    headers["Authorization"] = rewrite(headers["Authorization"])
    resp = _send(srv.endpoint, headers)
    assert resp.status == 200, resp.body


@pytest.mark.parametrize("rewrite", [
    lambda a: a.replace(", Signature=", ", Signature=abc, Signature="),  # a second signature
    lambda a: a.rsplit(", Signature=", 1)[0],  # no signature
    lambda a: a.rsplit(", Signature=", 1)[0] + ", Signature=",  # an empty one
    lambda a: a + "zz",  # not hex
    lambda a: a.replace("SignedHeaders=", "Signed="),
    lambda a: "x" + a,
])
def test_malformed_authorization_is_incomplete_signature(real_server, rewrite):
    srv, key, secret = real_server
    headers = _signed(srv.endpoint, key, secret)
    headers["Authorization"] = rewrite(headers["Authorization"])
    resp = _send(srv.endpoint, headers)
    assert resp.status == 400, resp.body
    assert json.loads(resp.body)["__type"].endswith("#IncompleteSignatureException")


def test_long_authorization_header_is_parsed_uncached(real_server):
    """A head past the cache's length limit is parsed each time, with the same outcome."""
    srv, key, secret = real_server
    long_value = "v" * 700
    headers = _signed(srv.endpoint, key, secret, {"X-" + "h" * 600: long_value})
    assert len(headers["Authorization"].rsplit("Signature=", 1)[0]) > 512
    for _ in range(2):
        assert _send(srv.endpoint, headers).status == 200
    headers["Authorization"] = headers["Authorization"][:-1] + ("0" if headers["Authorization"][-1] != "0" else "1")
    resp = _send(srv.endpoint, headers)
    assert resp.status == 400 and json.loads(resp.body)["__type"].endswith("#InvalidSignatureException")
