"""What no official client sends: the listener's guards. Stale signatures, requests before authorization,
unknown methods and hostile byte streams each end in an error answer or a closed connection, never in a
traceback, a stuck connection or a server that stops answering."""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from datetime import UTC, datetime

import cbor2

from dynavault.dax import protocol as P
from tests.conftest import make_table
from tests.dax import raw
from tests.dax.daxclient import free_port


def _port(dax) -> int:
    return int(dax.srv.settings["dax_port"])


def _healthy(dax) -> None:
    """A fresh connection still gets an answer (the server survived whatever came before)."""
    c = raw.Conn(_port(dax))
    c.send(raw.handshake() + raw.authorize(dax.key, dax.secret) + raw.request(P.ENDPOINTS))
    kind, (endpoints,) = c.response()
    assert kind == "ok" and endpoints[0][3] == _port(dax) and endpoints[0][2] == bytes([127, 0, 0, 1])
    c.close()


def test_signature_outside_the_window_is_refused(dax):
    for skew in (-16 * 60, 16 * 60):
        c = raw.Conn(_port(dax))
        c.send(raw.handshake() + raw.authorize(dax.key, dax.secret, when=time.time() + skew)
               + raw.request(P.ENDPOINTS))
        kind, codes, message, detail = c.response()
        assert kind == "error" and codes[1:3] == [23, 31] and detail[1] == "InvalidSignatureException", message
        assert c.closed()
    # inside the window (a client whose clock is 10 minutes off) is fine
    c = raw.Conn(_port(dax))
    c.send(raw.handshake() + raw.authorize(dax.key, dax.secret, when=time.time() - 600) + raw.request(P.ENDPOINTS))
    assert c.response()[0] == "ok"
    c.close()


def _signed(secret: str, to_sign: str, day: str, region: str = "us-east-1", service: str = "dax") -> str:
    k = hmac.digest(("AWS4" + secret).encode(), day.encode(), "sha256")
    for part in (region, service, "aws4_request"):
        k = hmac.digest(k, part.encode(), "sha256")
    return hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()


def test_a_signature_made_for_anything_but_dax_is_refused(dax):
    """Correct signatures over strings to sign that are not DAX's: another service's scope, or another request
    (a captured DynamoDB request's string to sign) under DAX's scope."""
    now = datetime.now(UTC)
    amz, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    other = hashlib.sha256(f"POST\n/\n\nhost:dynamodb.us-east-1.amazonaws.com\nx-amz-date:{amz}\n\n"
                           f"host;x-amz-date\n{hashlib.sha256(b'{}').hexdigest()}".encode()).hexdigest()
    dax_digest = raw.authorize(dax.key, dax.secret)  # a genuine one, to take DAX's digest from
    genuine = [v for v in _values(dax_digest) if isinstance(v, bytes)][0].decode().split("\n")[3]
    cases = {
        "another service": (f"AWS4-HMAC-SHA256\n{amz}\n{day}/us-east-1/dynamodb/aws4_request\n{genuine}", "dynamodb"),
        "another request": (f"AWS4-HMAC-SHA256\n{amz}\n{day}/us-east-1/dax/aws4_request\n{other}", "dax"),
    }
    for name, (to_sign, service) in cases.items():
        c = raw.Conn(_port(dax))
        c.send(raw.handshake() + raw.request(P.AUTHORIZE_CONNECTION, dax.key, _signed(dax.secret, to_sign, day,
                                             service=service), to_sign.encode(), None, None)
               + raw.request(P.ENDPOINTS))
        kind, codes, _message, detail = c.response()
        assert kind == "error" and detail[1] == "InvalidSignatureException", name
        assert c.closed(), name


def _values(data: bytes) -> list:
    from dynavault.dax.cbor_stream import StreamDecoder

    d = StreamDecoder()
    d.feed(data)
    out = []
    while (v := d.next()) is not StreamDecoder.NEED_MORE:
        out.append(v)
    return out


def test_a_request_before_authorization_is_refused(dax):
    c = raw.Conn(_port(dax))
    c.send(raw.handshake() + raw.request(P.ENDPOINTS))
    kind, codes, _message, detail = c.response()
    assert kind == "error" and detail[1] == "MissingAuthenticationTokenException" and codes[1:3] == [23, 31]
    assert c.closed()


def test_unknown_method_closes_the_connection_cleanly(dax):
    c = raw.Conn(_port(dax))
    c.send(raw.handshake() + raw.authorize(dax.key, dax.secret) + raw.request(785068263))  # "methods"
    assert c.closed()
    _healthy(dax)
    assert "Traceback" not in dax.srv.log_text()


def test_hostile_streams_close_the_connection_and_the_server_carries_on(dax):
    streams = {
        "random bytes": os.urandom(4096),
        "no magic": cbor2.dumps("hello") + os.urandom(64),
        # a byte string announcing 2^60 bytes: refused from its header, nothing buffered for it
        "huge length": raw.handshake() + raw.authorize(dax.key, dax.secret) + b"\x01\x1a\x0f\xab\x11\x11"
                       + b"\x5b" + (1 << 60).to_bytes(8, "big"),
        "huge array": raw.handshake() + b"\x9b" + (1 << 62).to_bytes(8, "big") + b"\x00" * 100,
        "17 MiB string": raw.handshake() + b"\x5a" + (17 << 20).to_bytes(4, "big") + b"\x00" * 1000,
        "deep nesting": raw.handshake() + b"\x81" * 100_000,
        "deep tags": raw.handshake() + b"\xc4" * 10_000,
        "shared reference tag": raw.handshake() + b"\xd8\x1c\x81\xd8\x1d\x00",
        "reserved header": raw.handshake() + b"\x1c",
        "stray break": raw.handshake() + b"\xff",
        "long bignum": raw.handshake() + b"\xc2\x59\x10\x00" + b"\x01" * 4096,
        "bad utf-8": raw.handshake() + b"\x62\xff\xfe",
        "garbage after auth": raw.handshake() + raw.authorize(dax.key, dax.secret) + raw.request(P.GET_ITEM)
                              + b"\xfb" + os.urandom(8) + b"\x1c" * 8,
    }
    for name, data in streams.items():
        started = time.monotonic()
        c = raw.Conn(_port(dax))
        try:
            c.send(data)
        except ConnectionError:
            pass  # closed while we were still sending: as good
        assert c.closed(within=10), name
        assert time.monotonic() - started < 10, name
        c.close()
    _healthy(dax)
    log = dax.srv.log_text()
    assert "Traceback" not in log and "DAX connection" not in log  # closed quietly (debug lines only)


def test_a_request_is_bounded_as_a_whole(dax):
    """Each argument under the per-value cap, together far over a request's: closed before it is answered."""
    c = raw.Conn(_port(dax), timeout=60)
    big = cbor2.dumps(b"\x00" * (10 << 20))
    c.send(raw.handshake() + raw.authorize(dax.key, dax.secret) + cbor2.dumps(1) + cbor2.dumps(P.GET_ITEM))
    try:
        for _ in range(3):
            c.send(big)
    except ConnectionError:
        pass
    assert c.closed(within=30)
    _healthy(dax)


def test_malformed_arguments_get_validation_errors(dax, unique_name):
    make_table(dax.http(), unique_name)
    c = raw.Conn(_port(dax))
    c.send(raw.handshake() + raw.authorize(dax.key, dax.secret))
    for args in ((b"no-such-table", b"k", None), (b"\xff\xfe", b"k", None), (5, [], {}), (b"t", b"k", "opts")):
        c.send(raw.request(P.GET_ITEM, *args))
        kind, codes, _message, detail = c.response()
        assert kind == "error" and detail[1] in ("ValidationException", "ResourceNotFoundException"), detail
    c.send(raw.request(P.DEFINE_ATTRIBUTE_LIST, 999_999))
    kind, codes, _message, detail = c.response()
    assert kind == "error" and detail[1] == "ValidationException"
    c.send(raw.request(P.DEFINE_ATTRIBUTE_LIST_ID, ["a"]))
    kind, (list_id,) = c.response()
    assert kind == "ok"
    # nested values pass the same scan as the stream: a self-referencing array (cbor2's shared-value tags) and a
    # bignum of 10,000 digits are refused as bad input, not decoded into a 500
    for hostile in (b"\xd8\x1c\x81\xd8\x1d\x00", b"\xc2\x59\x10\x00" + b"\x01" * 4096):
        c.send(raw.request(P.PUT_ITEM, unique_name.encode(), b"k", cbor2.dumps(list_id) + hostile, None))
        kind, codes, _message, detail = c.response()
        assert kind == "error" and detail[1] == "ValidationException", detail
    c.close()
    assert "Traceback" not in dax.srv.log_text()


def test_shared_db_puts_dax_callers_in_the_one_shared_account(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, shared_db=True, dax_port=free_port())
    http = srv.client("dynamodb", access_key="AKIAHTTPCALLER000001", region="eu-west-1")
    make_table(http, unique_name)
    http.put_item(TableName=unique_name, Item={"pk": {"S": "k"}, "v": {"S": "shared"}})
    c = raw.Conn(int(srv.settings["dax_port"]))
    c.send(raw.handshake() + raw.authorize("AKIADAXCALLER0000002", "x", region="ap-south-1")
           + raw.request(P.GET_ITEM, unique_name.encode(), b"k", None))
    kind, (body,) = c.response()
    assert kind == "ok" and P.Result.ITEM in body
    c.close()
