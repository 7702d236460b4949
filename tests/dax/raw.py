"""A bare DAX protocol speaker for tests that need to send what no official client sends (stale signatures,
unknown methods, garbage): CBOR values over a socket, SigV4 as the clients sign."""

from __future__ import annotations

import hashlib
import hmac
import socket
import time
from datetime import UTC, datetime

import cbor2

from dynavault.dax import protocol as P
from dynavault.dax.cbor_stream import StreamDecoder


def handshake() -> bytes:
    return b"".join(cbor2.dumps(v) for v in (P.MAGIC, 0, None, {"UserAgent": "raw-test"}, 0))


def authorize(key: str, secret: str, region: str = "us-east-1", when: float | None = None) -> bytes:
    now = datetime.fromtimestamp(time.time() if when is None else when, UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    canonical = (f"POST\n/\n\nhost:dax.amazonaws.com\nx-amz-date:{amz_date}\n\nhost;x-amz-date\n"
                 f"{hashlib.sha256(b'').hexdigest()}")
    to_sign = (f"AWS4-HMAC-SHA256\n{amz_date}\n{day}/{region}/dax/aws4_request\n"
               f"{hashlib.sha256(canonical.encode()).hexdigest()}")
    k = hmac.digest(("AWS4" + secret).encode(), day.encode(), "sha256")
    for part in (region, "dax", "aws4_request"):
        k = hmac.digest(k, part.encode(), "sha256")
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    return request(P.AUTHORIZE_CONNECTION, key, signature, to_sign.encode(), None, "raw-test")


def request(method: int, *args) -> bytes:
    return b"".join(cbor2.dumps(v) for v in (1, method, *args))


class Conn:
    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.decoder = StreamDecoder()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def value(self):
        while True:
            v = self.decoder.next()
            if v is not StreamDecoder.NEED_MORE:
                return v
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("closed")
            self.decoder.feed(data)

    def response(self, body_values: int = 1):
        """("ok", [values]) or ("error", codes, message, detail)."""
        head = self.value()
        if head == []:
            return ("ok", [self.value() for _ in range(body_values)])
        return ("error", head, self.value(), self.value())

    def closed(self, within: float = 10.0) -> bool:
        """True when the server closes the connection (reads until EOF, discarding what comes)."""
        self.sock.settimeout(within)
        try:
            while self.sock.recv(65536):
                pass
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return True

    def close(self) -> None:
        self.sock.close()
