"""The server's own HTTP/1.1 protocol (server/http_protocol.py) over a real socket: keep-alive, pipelining,
100-continue, chunked bodies, HEAD, HTTP/1.0, malformed requests, and bodies left unread by a refusal."""

from __future__ import annotations

import json
import socket
import time

import pytest

from dynavault.bench.sigv4 import Signer

LIST_TABLES = "DynamoDB_20120810.ListTables"


class Raw:
    """One TCP connection; responses read by Content-Length."""

    def __init__(self, server) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
        self.signer = Signer("testing", "testing", "us-east-1", f"127.0.0.1:{server.port}")
        self.buf = b""

    def post(self, target: str = LIST_TABLES, body: bytes = b"{}", *, extra: bytes = b"") -> bytes:
        """The bytes of one signed POST (the Content-Length header last, ``extra`` header lines after it)."""
        return b"POST / HTTP/1.1\r\n" + self.signer.headers(target, body) + extra + b"\r\n" + body

    def read(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._more()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        self.buf += data

    def closed(self) -> bool:
        """Whether the server closed the connection (after what is already buffered)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(shared_server):
    conn = Raw(shared_server)
    yield conn
    conn.close()


def test_pipelined_requests_are_answered_in_order(raw):
    ids = []
    raw.sock.sendall(raw.post() + raw.post(LIST_TABLES, b'{"Limit": 1}') + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
                     + raw.post("DynamoDB_20120810.NoSuchThing"))
    for expected in (200, 200, 200, 400):
        status, headers, body = raw.read()
        assert status == expected, body
        ids.append(headers["x-amzn-requestid"])
    assert len(set(ids)) == 4
    raw.sock.sendall(raw.post())  # the connection goes on
    assert raw.read()[0] == 200


def test_expect_100_continue(raw):
    body = b'{"Limit": 2}'
    head = raw.post(LIST_TABLES, body, extra=b"Expect: 100-continue\r\n")[: -len(body)]
    raw.sock.sendall(head)
    status, _, _ = raw.read()
    assert status == 100
    raw.sock.sendall(body)
    status, _, data = raw.read()
    assert status == 200 and "TableNames" in json.loads(data)


def test_chunked_request_body(raw):
    body = b'{"Limit": 3}'
    head = raw.post(LIST_TABLES, body)[: -len(body)]
    head = head.replace(b"Content-Length: %d\r\n" % len(body), b"Transfer-Encoding: chunked\r\n")
    raw.sock.sendall(head + b"5\r\n" + body[:5] + b"\r\n")
    time.sleep(0.05)
    raw.sock.sendall(b"%x\r\n" % (len(body) - 5) + body[5:] + b"\r\n0\r\n\r\n")
    status, _, data = raw.read()
    assert status == 200, data


def test_body_arriving_in_pieces(raw):
    request = raw.post(LIST_TABLES, b'{"Limit": 4}')
    for i in range(0, len(request), 7):
        raw.sock.sendall(request[i:i + 7])
        time.sleep(0.001)
    assert raw.read()[0] == 200


def test_head_has_no_body_and_the_connection_goes_on(raw):
    raw.sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    raw.sock.sendall(raw.post())
    while b"\r\n\r\n" not in raw.buf:
        raw._more()
    head, _, rest = raw.buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: " in head.lower()
    raw.buf = rest  # no body follows a HEAD's head: the next bytes are the POST's answer
    status, _, data = raw.read()
    assert status == 200 and "TableNames" in json.loads(data)


def test_http_1_0_closes_after_the_answer(raw):
    raw.sock.sendall(raw.post().replace(b"HTTP/1.1", b"HTTP/1.0", 1))
    status, headers, _ = raw.read()
    assert status == 200 and headers.get("connection") == "close"
    assert raw.closed()


def test_malformed_request_is_400_and_closed(raw):
    raw.sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n")
    status, headers, body = raw.read()
    assert (status, body) == (400, b"Invalid HTTP request received.")
    assert headers.get("connection") == "close" and raw.closed()


def test_body_of_a_refused_request_is_dropped_and_the_connection_goes_on(raw):
    # An unsigned request is refused before its body is read; the 200 KB body that follows is parsed and dropped.
    body = b'{"Limit": 1, "pad": "' + b"x" * 200_000 + b'"}'
    unsigned = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: "
                + LIST_TABLES.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body))
    raw.sock.sendall(unsigned + body + raw.post())
    status, _, data = raw.read()
    assert status == 400 and b"MissingAuthenticationTokenException" in data
    status, _, data = raw.read()
    assert status == 200 and "TableNames" in json.loads(data)
