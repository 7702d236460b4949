"""Issue 12, the HTTP and SigV4 front door (items 1, 2, 3, 9, 13, 16), against real server processes.

Signature tests use a server with real credentials (the root key printed on first start), never
``--allow-any-credentials``, which skips signature checks by design.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
import zlib
from urllib.parse import urlparse

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.conftest import make_table
from tests.servers import ServerProcess
from tests.wire import Response, send, signed_request

DDB = "DynamoDB_20120810."
JSON_10 = "application/x-amz-json-1.0"
JSON_11 = "application/x-amz-json-1.1"
MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details.")


class Root:
    """The server and its root credential."""

    def __init__(self, srv: ServerProcess) -> None:
        out = "".join(srv.stdout_lines)
        self.srv = srv
        self.key = out.split("aws_access_key_id = ")[1].split()[0]
        self.secret = out.split("aws_secret_access_key = ")[1].split()[0]

    def client(self, service: str = "dynamodb", **kw):
        return self.srv.client(service, access_key=self.key, secret=self.secret, **kw)

    def signed(self, target: str, body: dict | bytes, **kw) -> Response:
        return signed_request(self.srv.endpoint, target, body, access_key=self.key, secret=self.secret, **kw)


@pytest.fixture(scope="module")
def root(server_factory):
    return Root(server_factory())


@pytest.fixture(scope="module")
def table(root) -> str:
    name = f"trust-{uuid.uuid4().hex[:8]}"
    ddb = root.client()
    make_table(ddb, name)
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2})
    for pk, owner in (("alice", "alice"), ("bob", "bob")):
        ddb.put_item(TableName=name, Item={"pk": {"S": pk}, "owner": {"S": owner}})
    return name


def _sign(root: Root, target: str, body: bytes, *, auth_cls=SigV4Auth, service: str = "dynamodb",
          region: str = "us-east-1", content_type: str = JSON_10,
          extra: dict[str, str] | None = None) -> dict[str, str]:
    """Headers of a request signed by botocore (or a variant of its signer)."""
    request = AWSRequest("POST", root.srv.endpoint + "/", data=body,
                         headers={"Content-Type": content_type, "X-Amz-Target": target, **(extra or {})})
    auth_cls(Credentials(root.key, root.secret), service, region).add_auth(request)
    return dict(request.headers)


def _error(resp: Response) -> tuple[str, str]:
    doc = resp.json()
    return doc["__type"].rsplit("#", 1)[-1], doc.get("message", "")


def _rss_kib(srv: ServerProcess) -> int:
    with open(f"/proc/{srv.proc.pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _connect(srv: ServerProcess, timeout: float = 10.0) -> socket.socket:
    url = urlparse(srv.endpoint)
    return socket.create_connection((url.hostname, url.port), timeout=timeout)


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ")[1]), body


# --- item 1: the body is bound to the signature ----------------------------------------------------------------

def test_replayed_getitem_with_another_body_is_refused(root, table):
    original = json.dumps({"TableName": table, "Key": {"pk": {"S": "alice"}}}).encode()
    headers = _sign(root, DDB + "GetItem", original)
    assert send(root.srv.endpoint, original, headers).status == 200  # the captured request itself is fine
    other = json.dumps({"TableName": table, "Key": {"pk": {"S": "bob"}}}).encode()
    # The attacker keeps the signature and claims the original body's hash for the new body.
    forged = dict(headers, **{"X-Amz-Content-Sha256": hashlib.sha256(original).hexdigest()})
    resp = send(root.srv.endpoint, other, forged)
    assert resp.status == 400, resp.body
    assert _error(resp) == ("InvalidSignatureException", MISMATCH)
    assert b"bob" not in resp.body
    # Without the header the body's own hash is used: still refused.
    assert send(root.srv.endpoint, other, headers).status == 400


def test_replayed_putitem_cannot_overwrite_another_item(root, table):
    original = json.dumps({"TableName": table, "Item": {"pk": {"S": "carol"}, "owner": {"S": "carol"}}}).encode()
    headers = _sign(root, DDB + "PutItem", original)
    other = json.dumps({"TableName": table, "Item": {"pk": {"S": "alice"}, "owner": {"S": "mallory"}}}).encode()
    forged = dict(headers, **{"X-Amz-Content-Sha256": hashlib.sha256(original).hexdigest()})
    resp = send(root.srv.endpoint, other, forged)
    assert resp.status == 400 and _error(resp)[0] == "InvalidSignatureException", resp.body
    item = root.client().get_item(TableName=table, Key={"pk": {"S": "alice"}}, ConsistentRead=True)["Item"]
    assert item["owner"] == {"S": "alice"}


class _UnsignedPayload(SigV4Auth):
    """Signs as S3 may: the payload hash in the canonical request is the literal UNSIGNED-PAYLOAD."""

    claim = "UNSIGNED-PAYLOAD"

    def payload(self, request):
        return self.claim

    def _modify_request_before_signing(self, request):
        super()._modify_request_before_signing(request)
        request.headers["X-Amz-Content-SHA256"] = self.claim


class _ZeroPayload(_UnsignedPayload):
    claim = "0" * 64


@pytest.mark.parametrize("auth_cls", [_UnsignedPayload, _ZeroPayload], ids=["unsigned-payload", "zero-hash"])
def test_payload_hash_other_than_the_body_is_refused(root, table, auth_cls):
    body = json.dumps({"TableName": table, "Key": {"pk": {"S": "alice"}}}).encode()
    headers = _sign(root, DDB + "GetItem", body, auth_cls=auth_cls)
    assert "x-amz-content-sha256" in headers["Authorization"]  # the claim itself is signed
    resp = send(root.srv.endpoint, body, headers)
    assert resp.status == 400, resp.body
    assert _error(resp) == ("InvalidSignatureException", MISMATCH)


def test_signed_matching_payload_hash_is_accepted(root, table):
    """A client that signs x-amz-content-sha256 with the body's real hash (as some SDKs do) works."""

    class _Signed(_UnsignedPayload):
        def payload(self, request):
            return hashlib.sha256(request.body).hexdigest()

        def _modify_request_before_signing(self, request):
            SigV4Auth._modify_request_before_signing(self, request)
            request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(request.body).hexdigest()

    body = json.dumps({"TableName": table, "Key": {"pk": {"S": "alice"}}}).encode()
    resp = send(root.srv.endpoint, body, _sign(root, DDB + "GetItem", body, auth_cls=_Signed))
    assert resp.status == 200 and resp.json()["Item"]["pk"] == {"S": "alice"}


class _OldScope(SigV4Auth):
    """A signature made with a signing key for another day than X-Amz-Date's (a leaked one-day key)."""

    day = "20200101"

    def credential_scope(self, request):
        return "/".join([self.day, self._region_name, self._service_name, "aws4_request"])

    def scope(self, request):
        return f"{self.credentials.access_key}/{self.credential_scope(request)}"

    def signature(self, string_to_sign, request):
        k = self._sign(f"AWS4{self.credentials.secret_key}".encode(), self.day)
        k = self._sign(k, self._region_name)
        k = self._sign(k, self._service_name)
        k = self._sign(k, "aws4_request")
        return self._sign(k, string_to_sign, hex=True)


def test_credential_scope_date_must_match_x_amz_date(root):
    headers = _sign(root, DDB + "ListTables", b"{}", auth_cls=_OldScope)
    amz_date = headers["X-Amz-Date"]
    resp = send(root.srv.endpoint, b"{}", headers)
    assert resp.status == 400, resp.body
    assert _error(resp) == (
        "InvalidSignatureException",
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
        f"'20200101' != '{amz_date[:8]}', from '{amz_date}'.",
    )


class _TargetUnsigned(SigV4Auth):
    def headers_to_sign(self, request):
        headers = super().headers_to_sign(request)
        del headers["x-amz-target"]
        return headers


def test_x_amz_target_must_be_signed(root, table):
    body = json.dumps({"TableName": table}).encode()
    headers = _sign(root, DDB + "DescribeTable", body, auth_cls=_TargetUnsigned)
    assert "x-amz-target" not in headers["Authorization"]
    # Re-pointed at another operation with the same body, or sent as is: refused either way.
    for target in ("DeleteTable", "DescribeTable"):
        resp = send(root.srv.endpoint, body, dict(headers, **{"X-Amz-Target": DDB + target}))
        assert resp.status == 400, resp.body
        assert _error(resp) == ("InvalidSignatureException",
                                "'X-Amz-Target' must be a 'SignedHeader' in the AWS Authorization.")
    assert root.client().describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE"


def test_on_behalf_header_must_be_signed(tmp_path):
    """A trusted database's request names whom it acts for; that header must be under the signature."""
    data = tmp_path / "data"
    out = subprocess.run([sys.executable, "-m", "dynavault.cli", "credentials", "create", "--data-dir", str(data)],
                         capture_output=True, check=True, text=True).stdout
    kv = dict(line.split(" = ", 1) for line in out.strip().splitlines())
    srv = ServerProcess(tmp_path / "srv", data_dir=data, trusted_service_keys=kv["aws_access_key_id"])
    try:
        svc = Root.__new__(Root)
        svc.srv, svc.key, svc.secret = srv, kv["aws_access_key_id"], kv["aws_secret_access_key"]
        behalf = json.dumps({"account": "111122223333", "principal": "arn:aws:iam::111122223333:root"})
        signed = _sign(svc, "TrentService.ListKeys", b"{}", service="kms", content_type=JSON_11,
                       extra={"x-dynavault-on-behalf-of": behalf})
        assert send(srv.endpoint, b"{}", signed).status == 200
        unsigned = dict(_sign(svc, "TrentService.ListKeys", b"{}", service="kms", content_type=JSON_11),
                        **{"x-dynavault-on-behalf-of": behalf})
        resp = send(srv.endpoint, b"{}", unsigned)
        assert resp.status == 400, resp.body
        assert _error(resp) == ("InvalidSignatureException",
                                "'X-Dynavault-On-Behalf-Of' must be a 'SignedHeader' in the AWS Authorization.")
    finally:
        srv.stop()


def test_compressed_body_is_signed_as_sent(root):
    """SDKs sign the wire bytes: a gzip body signed compressed is accepted, its hash is of the gzip bytes."""
    import gzip

    raw = gzip.compress(b'{"Limit": 3}')
    resp = root.signed(DDB + "ListTables", raw, extra_headers={"Content-Encoding": "gzip"})
    assert resp.status == 200, resp.body


# --- item 2: decompression bombs -------------------------------------------------------------------------------

def _raw_deflate_bomb(size: int = 1 << 20) -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    zero = bytes(16 << 20)
    parts, n = [], 0
    while n < size:
        part = c.compress(zero)
        parts.append(part)
        n += len(part)
    parts.append(c.flush())
    return b"".join(parts)


@pytest.mark.parametrize("encoding", ["deflate-raw", "deflate", "gzip"])
def test_decompression_bomb_is_413_with_bounded_memory(root, encoding):
    bomb = _raw_deflate_bomb()
    if encoding == "deflate":  # zlib-wrapped
        bomb = zlib.compress(bytes(64 << 20), 1)
    elif encoding == "gzip":
        c = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        bomb = c.compress(bytes(64 << 20)) + c.flush()
    before = _rss_kib(root.srv)
    resp = root.signed(DDB + "ListTables", bomb,
                       extra_headers={"Content-Encoding": "deflate" if encoding.startswith("deflate") else "gzip"})
    assert resp.status == 413, resp.body
    assert _error(resp)[0] == "RequestEntityTooLarge"
    grown = (_rss_kib(root.srv) - before) // 1024
    assert grown < 100, f"server RSS grew {grown} MiB"


# --- item 3: no state for unauthenticated requests -------------------------------------------------------------

def _metrics_size(root: Root) -> int:
    resp = send(root.srv.endpoint, b"", {}, method="GET", path="/metrics")
    assert resp.status == 200
    return len(resp.body)


def test_unknown_targets_do_not_grow_metrics(root):
    url = urlparse(root.srv.endpoint)
    import http.client

    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)

    def unknown(target: str) -> int:
        conn.request("POST", "/", body=b"{}", headers={"Content-Type": JSON_10, "X-Amz-Target": target})
        resp = conn.getresponse()
        resp.read()
        return resp.status

    # Warm up: the fixed labels exist once.
    assert unknown("DynamoDB_20120810.Nope") == 400 and unknown("Nope.Nope") == 400
    size = _metrics_size(root)
    for _ in range(1500):
        unknown(f"{DDB}{secrets.token_hex(8)}")
        unknown(f"{secrets.token_hex(8)}.{secrets.token_hex(8)}")
    conn.close()
    assert _metrics_size(root) - size < 200
    text = send(root.srv.endpoint, b"", {}, method="GET", path="/metrics").body.decode()
    assert 'operation="unknown"' in text


def test_huge_header_is_refused_quickly_with_bounded_memory(root):
    before = _rss_kib(root.srv)
    for _ in range(5):
        sock = _connect(root.srv)
        started = time.monotonic()
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: " + DDB.encode() + b"ListTables\r\nX-Big: ")
        status = None
        try:
            for _ in range(128):  # 8 MiB in 64 KiB pieces, watching for the answer
                sock.sendall(b"a" * 65536)
                sock.settimeout(0.0)
                try:
                    if sock.recv(1, socket.MSG_PEEK):
                        break
                except BlockingIOError:
                    pass
                finally:
                    sock.settimeout(10.0)
            status, _ = _read_response(sock)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            sock.close()
        assert status in (431, None)
        assert time.monotonic() - started < 5
    grown = (_rss_kib(root.srv) - before) // 1024
    assert grown < 24, f"server RSS grew {grown} MiB"
    # The answer itself, read cleanly: a head just over the limit.
    sock = _connect(root.srv)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\n\r\n")
    status, _ = _read_response(sock)
    sock.close()
    assert status == 431
    assert send(root.srv.endpoint, b"", {}, method="GET").status == 200  # still serving


@pytest.mark.parametrize("auth", [None, "unknown-key"])
def test_large_body_refused_before_it_is_read(root, auth):
    """15 MB announced, 64 KiB sent: the auth error comes back without waiting for the rest."""
    headers = [b"POST / HTTP/1.1", b"Host: x", b"Content-Type: " + JSON_10.encode(),
               b"X-Amz-Target: " + DDB.encode() + b"PutItem", b"Content-Length: 15000000"]
    if auth:
        day = time.strftime("%Y%m%d", time.gmtime())
        headers += [b"X-Amz-Date: " + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()).encode(),
                    f"Authorization: AWS4-HMAC-SHA256 Credential=AKIANOTAKEY000000000/{day}/us-east-1/dynamodb/"
                    f"aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature={'0' * 64}".encode()]
    sock = _connect(root.srv, timeout=5)
    try:
        sock.sendall(b"\r\n".join(headers) + b"\r\n\r\n" + b"{" + b" " * 65535)
        status, body = _read_response(sock)
    finally:
        sock.close()
    assert status == 400
    code = json.loads(body)["__type"].rsplit("#", 1)[-1]
    assert code == ("MissingAuthenticationTokenException" if auth is None else "UnrecognizedClientException")


# --- item 9: the region of the credential scope -----------------------------------------------------------------

BAD_REGIONS = ["us.east.1", "us-" + "e" * 67, "us-éast-1", "US-EAST-1", "us-east-1-"]


def _kms_regions(srv: ServerProcess) -> set[str]:
    db = sqlite3.connect(f"file:{srv.data_dir / 'kms' / 'keys.sqlite3'}?mode=ro", uri=True)
    try:
        return {json.loads(doc)["region"] for (doc,) in db.execute("SELECT doc FROM keys")}
    finally:
        db.close()


@pytest.mark.parametrize("region", BAD_REGIONS, ids=["dots", "70-chars", "non-ascii", "upper", "trailing-hyphen"])
def test_invalid_scope_region_is_refused_before_any_handler(root, region):
    create_table = json.dumps({
        "TableName": f"region-{uuid.uuid4().hex[:8]}", "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]}).encode()
    calls = [(DDB + "CreateTable", create_table, "dynamodb", JSON_10),
             ("TrentService.CreateKey", b'{"Description": "bad region"}', "kms", JSON_11)]
    for target, body, service, ctype in calls:
        headers = _sign(root, target, body, service=service, region=region, content_type=ctype)
        resp = send(root.srv.endpoint, body, headers)
        assert resp.status == 400, (target, resp.status, resp.body)
        assert _error(resp) == ("InvalidSignatureException",
                                f"Credential should be scoped to a valid region, not '{region}'. ")
    assert root.client().list_tables()["TableNames"] == [t for t in root.client().list_tables()["TableNames"]
                                                          if not t.startswith("region-")]
    root.client("kms").list_keys()
    assert not _kms_regions(root.srv) & set(BAD_REGIONS)


def test_valid_regions_still_work(root):
    for region in ("eu-west-1", "us-gov-west-1", "local"):
        assert root.client(region=region).list_tables()["TableNames"] is not None


# --- item 13: timeouts and the connection cap -------------------------------------------------------------------

@pytest.fixture(scope="module")
def limited(server_factory):
    return server_factory(allow_any_credentials=True, request_timeout_seconds=1.5, max_connections=4,
                          cors_origin="*")


def _closed_after(sock: socket.socket, drip: bytes, limit: float = 8.0) -> float:
    """Send ``drip`` one byte every 0.25 s until the server closes the connection; seconds it took."""
    started = time.monotonic()
    sock.settimeout(0.25)
    i = 0
    while time.monotonic() - started < limit:
        try:
            sock.send(drip[i % len(drip):i % len(drip) + 1])
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
        i += 1
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except ConnectionResetError:
            return time.monotonic() - started
    return limit


def test_slow_header_sender_is_cut_off(limited):
    sock = _connect(limited)
    try:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
        took = _closed_after(sock, b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    finally:
        sock.close()
    assert 1.0 < took < 4.0, took


def test_slow_body_sender_is_cut_off(limited):
    sock = _connect(limited)
    try:
        sock.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: {JSON_10}\r\nX-Amz-Target: {DDB}ListTables\r\n"
                     f"Authorization: AWS4-HMAC-SHA256 Credential=x/{time.strftime('%Y%m%d', time.gmtime())}/"
                     f"us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00\r\n"
                     f"X-Amz-Date: {time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}\r\n"
                     f"Content-Length: 1000\r\n\r\n{{".encode())
        took = _closed_after(sock, b" ")
    finally:
        sock.close()
    assert 1.0 < took < 4.0, took
    assert limited.client("dynamodb").list_tables()["TableNames"] is not None


def test_silent_connection_is_closed(limited):
    sock = _connect(limited)
    try:
        sock.settimeout(5)
        started = time.monotonic()
        data = sock.recv(4096)
        assert data == b"" or data.startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 4
    finally:
        sock.close()


def test_connections_over_the_cap_get_503(limited):
    idle = [_connect(limited) for _ in range(4)]
    try:
        time.sleep(0.2)
        with pytest.raises(ClientError) as err:
            limited.client("dynamodb").list_tables()
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert err.value.response["Error"]["Code"] == "ServiceUnavailableException"
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.2)
    assert limited.client("dynamodb").list_tables()["TableNames"] is not None


# --- item 16: CORS only for configured origins ------------------------------------------------------------------

def _preflight(srv: ServerProcess, origin: str) -> Response:
    return send(srv.endpoint, b"", {"Origin": origin, "Access-Control-Request-Method": "POST",
                                    "Access-Control-Request-Headers": "x-amz-target,content-type,authorization"},
                method="OPTIONS")


def test_no_cors_headers_by_default(root):
    pre = _preflight(root.srv, "http://evil.example")
    assert not any(h.startswith("access-control-") for h in pre.headers), pre.headers
    resp = root.signed(DDB + "ListTables", {}, extra_headers={"Origin": "http://evil.example"})
    assert resp.status == 200
    assert not any(h.startswith("access-control-") for h in resp.headers), resp.headers


def test_cors_only_for_configured_origins(start_server):
    srv = start_server(allow_any_credentials=True, cors_origin="http://app.example, http://other.example")
    for good in ("http://app.example", "http://other.example"):
        pre = _preflight(srv, good)
        assert pre.headers["access-control-allow-origin"] == good
        resp = signed_request(srv.endpoint, DDB + "ListTables", {}, extra_headers={"Origin": good})
        assert resp.headers["access-control-allow-origin"] == good
    assert "access-control-allow-origin" not in _preflight(srv, "http://evil.example").headers
    resp = signed_request(srv.endpoint, DDB + "ListTables", {}, extra_headers={"Origin": "http://evil.example"})
    assert resp.status == 200 and "access-control-allow-origin" not in resp.headers


def test_cors_wildcard_is_explicit(limited):
    assert _preflight(limited, "http://anywhere.example").headers["access-control-allow-origin"] == "*"
