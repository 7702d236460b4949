"""AWS Signature Version 4 verification for POST JSON requests.

The canonical request is rebuilt from what arrived on the wire and compared in constant time.
Signing keys are cached per (secret, date, region, service): deriving one costs four HMACs.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from dynavault.errors import AWSError

from .credentials import Credential, CredentialStore

_SERVICE_PREFIX = "com.amazon.coral.service#"
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+)\s*,\s*SignedHeaders=(?P<signed>[^,\s]+)\s*,"
    r"\s*Signature=(?P<sig>[0-9a-fA-F]+)\s*$"
)
_SPACES = re.compile(r"\s+")
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _error(code: str, message: str, status: int = 400) -> AWSError:
    return AWSError(code, message, status, type_prefix=_SERVICE_PREFIX)


def missing_token() -> AWSError:
    return _error("MissingAuthenticationTokenException", "Request is missing Authentication Token")


@dataclass(frozen=True, slots=True)
class Identity:
    credential: Credential
    region: str
    service: str


def _canonical_uri(path: str) -> str:
    # Non-S3 services normalise then encode each segment once (as botocore signs).
    segments = unquote(path or "/").split("/")
    return "/".join(quote(s, safe="-_.~") for s in segments) or "/"


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        pairs.append((quote(unquote(k), safe="-_.~"), quote(unquote(v), safe="-_.~")))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def _format_amz(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H%M%SZ")


@functools.lru_cache(maxsize=256)  # clients send the same timestamp string for a whole second
def _parse_amz_date(value: str) -> float | None:
    for fmt in ("%Y%m%dT%H%M%SZ", "%a, %d %b %Y %H:%M:%S GMT"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


class SigV4Verifier:
    def __init__(self, store: CredentialStore, *, max_skew_seconds: int = 900, clock=time.time) -> None:
        self.store = store
        self.max_skew = max_skew_seconds
        self.clock = clock
        self._keys: dict[tuple[str, str, str, str], bytes] = {}

    def _signing_key(self, secret: str, date: str, region: str, service: str) -> bytes:
        cache_key = (secret, date, region, service)
        key = self._keys.get(cache_key)
        if key is None:
            k = hmac.digest(("AWS4" + secret).encode(), date.encode(), "sha256")
            k = hmac.digest(k, region.encode(), "sha256")
            k = hmac.digest(k, service.encode(), "sha256")
            key = hmac.digest(k, b"aws4_request", "sha256")
            if len(self._keys) > 4096:
                self._keys.clear()
            self._keys[cache_key] = key
        return key

    def verify(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        expected_service: str,
    ) -> Identity:
        """``headers``: lower-cased names, repeated headers joined with ','."""
        auth = headers.get("authorization")
        if not auth:
            raise missing_token()
        m = _AUTH_RE.match(auth.strip())
        if m is None:
            if not auth.startswith("AWS4-HMAC-SHA256"):
                raise _error("IncompleteSignatureException", f"Authorization header requires 'Credential' parameter. "
                             f"Authorization header requires 'Signature' parameter. Authorization header requires "
                             f"'SignedHeaders' parameter. Authorization={auth}")
            raise _error("IncompleteSignatureException",
                         "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.")
        cred_parts = m.group("cred").split("/")
        if len(cred_parts) != 5 or cred_parts[4] != "aws4_request":
            raise _error("IncompleteSignatureException",
                         f"Credential should be scoped to a valid region, not '{'/'.join(cred_parts[2:3])}'. ")
        access_key, scope_date, region, service, _ = cred_parts
        credential = self.store.lookup(access_key)
        if credential is None:
            raise _error("UnrecognizedClientException", "The security token included in the request is invalid.")
        if service != expected_service:
            raise _error("InvalidSignatureException",
                         f"Credential should be scoped to correct service: '{expected_service}'. ")
        amz_date = headers.get("x-amz-date") or headers.get("date")
        if not amz_date:
            raise _error("IncompleteSignatureException",
                         "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
        ts = _parse_amz_date(amz_date)
        if ts is None:
            raise _error("IncompleteSignatureException", f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'.")
        now = self.clock()
        if ts < now - self.max_skew:
            raise _error("InvalidSignatureException",
                         f"Signature expired: {_format_amz(ts)} is now earlier than {_format_amz(now - self.max_skew)} "
                         f"({_format_amz(now)} - {self.max_skew // 60} min.)")
        if ts > now + self.max_skew:
            raise _error("InvalidSignatureException",
                         f"Signature not yet current: {_format_amz(ts)} is still later than "
                         f"{_format_amz(now + self.max_skew)} ({_format_amz(now)} + {self.max_skew // 60} min.)")
        if not self.store.allow_any or credential.secret_access_key:
            self._check_signature(method, path, query, headers, body, m, amz_date, scope_date, region, service,
                                  credential)
        return Identity(credential, region, service)

    def _check_signature(self, method, path, query, headers, body, m, amz_date, scope_date, region, service,
                         credential: Credential) -> None:
        signed = m.group("signed").lower().split(";")
        if "host" not in signed:
            raise _error("InvalidSignatureException", "'Host' or ':authority' must be a 'SignedHeader' in the AWS "
                         "Authorization.")
        canonical_headers = "".join(
            f"{name}:{_SPACES.sub(' ', headers.get(name, '').strip())}\n" for name in signed
        )
        payload_hash = headers.get("x-amz-content-sha256") or (
            hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
        )
        canonical_request = "\n".join(
            (method, _canonical_uri(path), _canonical_query(query), canonical_headers, ";".join(signed), payload_hash)
        )
        scope = f"{scope_date}/{region}/{service}/aws4_request"
        # Botocore signs with the X-Amz-Date value; an old-style Date header is normalised to basic format.
        request_date = amz_date if "T" in amz_date else _format_amz(_parse_amz_date(amz_date) or 0)
        string_to_sign = "\n".join(
            ("AWS4-HMAC-SHA256", request_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest())
        )
        key = self._signing_key(credential.secret_access_key, scope_date, region, service)
        expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, m.group("sig").lower()):
            raise _error(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. Check your AWS "
                "Secret Access Key and signing method. Consult the service documentation for details.",
            )
