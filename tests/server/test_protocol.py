"""The wire protocol as DynamoDB speaks it, against a real server process."""

from __future__ import annotations

import datetime
import gzip
import json
import os
import subprocess
import sys
import zlib

import pytest
from botocore.exceptions import ClientError

from tests.wire import send, signed_request

LIST_TABLES = "DynamoDB_20120810.ListTables"


def _check_common_headers(resp) -> None:
    assert resp.headers.get("x-amzn-requestid")
    assert int(resp.headers["x-amz-crc32"]) == zlib.crc32(resp.body)


def test_health_check(shared_server):
    resp = send(shared_server.endpoint, b"", {}, method="GET")
    assert resp.status == 200
    # this server's own host and port where DynamoDB names dynamodb.<region>.amazonaws.com
    assert resp.body == f"healthy: 127.0.0.1:{shared_server.port} ".encode()


def test_the_response_crc32_is_zlibs_at_every_length():
    """The answer's x-amz-crc32 comes from ISA-L's CRC-32 when it is installed: it must be zlib's checksum (what
    every SDK checks) for any body, whatever the length's tail past the 16- and 64-byte folds."""
    import random

    from dynavault.server.app import crc32

    rnd = random.Random(3)
    for n in [*range(70), 127, 128, 255, 256, 1023, 1024, 4095, 4096, 22_001, 65_536 + 13, 1_048_583]:
        data = rnd.randbytes(n)
        assert crc32(data) == zlib.crc32(data), n
    assert crc32(b"\xff" * 4096) == zlib.crc32(b"\xff" * 4096)
    assert crc32(memoryview(b"abc")) == zlib.crc32(b"abc")


def test_every_response_has_request_id_and_crc32(shared_server):
    ok = signed_request(shared_server.endpoint, LIST_TABLES, {})
    assert ok.status == 200 and "TableNames" in ok.json()
    _check_common_headers(ok)
    bad = signed_request(shared_server.endpoint, "DynamoDB_20120810.NoSuchThing", {})
    assert bad.status == 400
    assert bad.json()["__type"].endswith("#UnknownOperationException")
    _check_common_headers(bad)


@pytest.mark.parametrize("content_type", ["application/x-amz-json-1.0", "application/x-amz-json-1.1"])
def test_both_json_content_types(shared_server, content_type):
    resp = signed_request(shared_server.endpoint, LIST_TABLES, {}, content_type=content_type)
    assert resp.status == 200
    assert resp.headers["content-type"] == content_type


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_request_bodies(shared_server, encoding):
    raw = json.dumps({"Limit": 5}).encode()
    body = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
    resp = signed_request(shared_server.endpoint, LIST_TABLES, body, extra_headers={"Content-Encoding": encoding})
    assert resp.status == 200, resp.body
    assert "TableNames" in resp.json()


def test_cors_preflight_and_headers(start_server):
    # CORS headers only for configured origins (tests/server/test_sigv4_and_connection_limits.py covers the
    # unconfigured default).
    srv = start_server(allow_any_credentials=True, cors_origin="http://localhost:3000,http://example.test")
    pre = send(srv.endpoint, b"", {"Origin": "http://localhost:3000",
                                   "Access-Control-Request-Method": "POST",
                                   "Access-Control-Request-Headers": "x-amz-target,content-type"},
               method="OPTIONS")
    assert pre.status == 200
    assert pre.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "x-amz-target" in pre.headers["access-control-allow-headers"]
    resp = signed_request(srv.endpoint, LIST_TABLES, {}, extra_headers={"Origin": "http://example.test"})
    assert resp.headers["access-control-allow-origin"] == "http://example.test"
    assert "x-amzn-RequestId" in resp.headers["access-control-expose-headers"]


def test_body_over_limit_is_413(shared_server):
    body = b"{" + b" " * (16 * 1024 * 1024 + 10) + b"}"
    resp = send(shared_server.endpoint, body, {"Content-Type": "application/x-amz-json-1.0",
                                               "X-Amz-Target": LIST_TABLES})
    assert resp.status == 413


def test_malformed_json_is_serialization_exception(shared_server):
    resp = signed_request(shared_server.endpoint, LIST_TABLES, b"{not json")
    assert resp.status == 400
    assert resp.json()["__type"] == "com.amazon.coral.service#SerializationException"


def test_wrong_type_is_serialization_exception(shared_server):
    resp = signed_request(shared_server.endpoint, "DynamoDB_20120810.DescribeTable", {"TableName": 5})
    assert resp.status == 400
    assert resp.json()["__type"].endswith("SerializationException")


def test_constraint_violation_is_validation_exception(shared_server):
    resp = signed_request(shared_server.endpoint, "DynamoDB_20120810.DescribeTable", {"TableName": "ab"})
    assert resp.status == 400
    body = resp.json()
    assert body["__type"] == "com.amazon.coral.validate#ValidationException"
    assert "Member must have length greater than or equal to 3" in body["message"]


def test_missing_authentication(shared_server):
    resp = send(shared_server.endpoint, b"{}", {"Content-Type": "application/x-amz-json-1.0",
                                                "X-Amz-Target": LIST_TABLES})
    assert resp.status == 400
    assert resp.json()["__type"].endswith("#MissingAuthenticationTokenException")


def test_clock_skew_rejected(shared_server):
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=20)
    resp = signed_request(shared_server.endpoint, LIST_TABLES, {}, when=old)
    assert resp.status == 400
    body = resp.json()
    assert body["__type"].endswith("#InvalidSignatureException")
    assert body["message"].startswith("Signature expired:")
    recent = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)
    assert signed_request(shared_server.endpoint, LIST_TABLES, {}, when=recent).status == 200
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=20)
    resp = signed_request(shared_server.endpoint, LIST_TABLES, {}, when=future)
    assert resp.status == 400 and resp.json()["message"].startswith("Signature not yet current:")


def test_real_credentials_signature_checks(start_server):
    srv = start_server()
    out = "".join(srv.stdout_lines)
    assert "aws_access_key_id = " in out, out
    key = out.split("aws_access_key_id = ")[1].split()[0]
    secret = out.split("aws_secret_access_key = ")[1].split()[0]
    creds = json.loads((srv.data_dir / "credentials.json").read_text())
    assert creds["credentials"][0]["access_key_id"] == key
    assert oct((srv.data_dir / "credentials.json").stat().st_mode & 0o777) == "0o600"

    good = srv.client("dynamodb", access_key=key, secret=secret)
    assert good.list_tables()["TableNames"] == []
    with pytest.raises(ClientError) as err:
        srv.client("dynamodb", access_key=key, secret=secret + "x").list_tables()
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"
    with pytest.raises(ClientError) as err:
        srv.client("dynamodb", access_key="AKIANOTAKEY00000000", secret=secret).list_tables()
    assert err.value.response["Error"]["Code"] == "UnrecognizedClientException"
    # The same works for KMS, whose errors have no namespace prefix.
    with pytest.raises(ClientError) as err:
        srv.client("kms", access_key=key, secret="wrong").list_keys()
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"

    # The credential is shown only on first start.
    srv.restart()
    later = "".join(srv.stdout_lines[len(out.splitlines()):])
    assert "aws_secret_access_key" not in later
    assert srv.client("dynamodb", access_key=key, secret=secret).list_tables()["TableNames"] == []


def test_sigterm_exits_zero(start_server):
    srv = start_server(allow_any_credentials=True)
    assert srv.stop() == 0


def test_settings_from_config_file_and_environment(tmp_path):
    data_dir = tmp_path / "from-env"
    config = tmp_path / "dynavault.toml"
    config.write_text('[dynavault]\nallow_any_credentials = true\nhost = "127.0.0.1"\nport = 0\n')
    env = dict(os.environ, DYNAVAULT_DATA_DIR=str(data_dir), DYNAVAULT_ROOT_KEY_FILE=str(tmp_path / "k" / "root"))
    proc = subprocess.Popen([sys.executable, "-m", "dynavault.cli", "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        line = ""
        while "listening on" not in line:
            line = proc.stdout.readline().decode()
            assert line, "server exited early"
        endpoint = line.split(" on ", 1)[1].strip()
        # allow_any_credentials came from the file: an arbitrary key is accepted
        assert signed_request(endpoint, LIST_TABLES, {}, access_key="whoever").status == 200
        assert (data_dir / "credentials.json").exists() or data_dir.exists()
        assert (tmp_path / "k" / "root").exists()
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
