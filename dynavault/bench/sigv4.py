"""A minimal SigV4 signer for DynamoDB JSON POSTs, built for throughput.

The signing key (four HMACs) is derived once per UTC day and the timestamp strings once per second, so a
signature costs two SHA-256 and one HMAC over short strings.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["Signer"]

_SIGNED = "content-type;host;x-amz-date;x-amz-target"
_CTYPE = "application/x-amz-json-1.0"


class Signer:
    __slots__ = ("access_key", "_secret", "region", "service", "host", "_day", "_key", "_sec", "_amzdate",
                 "_scope", "derivations")

    def __init__(self, access_key: str, secret_key: str, region: str, host: str, service: str = "dynamodb"):
        self.access_key = access_key
        self._secret = secret_key
        self.region = region
        self.service = service
        self.host = host
        self._day = ""
        self._key = b""
        self._sec = -1
        self._amzdate = ""
        self._scope = ""
        self.derivations = 0  # how often the signing key was derived (once per day when cached)

    def __repr__(self) -> str:  # never the secret
        return f"Signer(access_key={self.access_key!r}, region={self.region!r})"

    def _refresh(self, now: int) -> None:
        self._sec = now
        self._amzdate = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        day = self._amzdate[:8]
        if day != self._day:
            k = hmac.digest(("AWS4" + self._secret).encode(), day.encode(), "sha256")
            k = hmac.digest(k, self.region.encode(), "sha256")
            k = hmac.digest(k, self.service.encode(), "sha256")
            self._key = hmac.digest(k, b"aws4_request", "sha256")
            self._day = day
            self._scope = f"{day}/{self.region}/{self.service}/aws4_request"
            self.derivations += 1

    def headers(self, target: str, body: bytes, now: int | None = None) -> bytes:
        """The request's header block (without the request line), signed."""
        now = int(time.time()) if now is None else now
        if now != self._sec:
            self._refresh(now)
        amzdate = self._amzdate
        canonical = (
            f"POST\n/\n\ncontent-type:{_CTYPE}\nhost:{self.host}\nx-amz-date:{amzdate}\nx-amz-target:{target}\n\n"
            f"{_SIGNED}\n{hashlib.sha256(body).hexdigest()}"
        )
        sts = f"AWS4-HMAC-SHA256\n{amzdate}\n{self._scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        sig = hmac.new(self._key, sts.encode(), "sha256").hexdigest()
        return (
            f"Host: {self.host}\r\nContent-Type: {_CTYPE}\r\nX-Amz-Date: {amzdate}\r\nX-Amz-Target: {target}\r\n"
            f"Authorization: AWS4-HMAC-SHA256 Credential={self.access_key}/{self._scope}, "
            f"SignedHeaders={_SIGNED}, Signature={sig}\r\nContent-Length: {len(body)}\r\n"
        ).encode()
