"""AWS Signature Version 4 verification for POST JSON requests.

The canonical request is rebuilt from what arrived on the wire and compared in constant time.
Signing keys are cached per (secret, date, region, service): deriving one costs four HMACs. What is the same
for every request of a client on one day (the Authorization header up to its signature, the request path) is
parsed once and cached; the signature itself is checked on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from datetime import UTC, datetime
from typing import NamedTuple
from urllib.parse import parse_qsl, quote, unquote

from dynavault.errors import AWSError
from dynavault.small_ints import small_int

from .credentials import Credential, CredentialStore

_SERVICE_PREFIX = "com.amazon.coral.service#"
#: the Authorization header up to its signature: "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., "
#: (components are separated by a comma, by spaces, or both: AWS accepts "Credential=.. SignedHeaders=.." too)
_AUTH_HEAD_RE = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+)(?:\s*,\s*|\s+)SignedHeaders=(?P<signed>[^,\s]+)"
    r"(?:\s*,\s*|\s+)"
)
#: the query-string (presigned) form's parameters, in the order AWS names the missing ones
_QUERY_PARAMS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-SignedHeaders", "X-Amz-Date")
#: SigV4's longest presigned lifetime (a week), as AWS enforces it
_MAX_EXPIRES = 604800
_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]+")
_SPACES = re.compile(r"\s+")
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: AWS region names: lower-case letters, digits and inner hyphens (``us-east-1``, ``us-gov-west-1``; ``local``
#: for DynamoDB Local setups), at most 32 characters. Anything else is refused before any handler runs.
_REGION_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")


def _error(code: str, message: str, status: int = 400) -> AWSError:
    return AWSError(code, message, status, type_prefix=_SERVICE_PREFIX)


def missing_token() -> AWSError:
    return _error("MissingAuthenticationTokenException", "Request is missing Authentication Token")


class Identity(NamedTuple):
    credential: Credential
    region: str
    service: str


#: longer inputs are parsed each time, not cached, and a cache is emptied when full: the caches stay small
#: whatever a client sends
_CACHED_LEN = 512
_CACHED_ENTRIES = 256


def _parse_auth_head(head: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(credential scope parts, lower-cased signed header names) of the Authorization header's part before
    ``Signature=``; None if that part is malformed."""
    m = _AUTH_HEAD_RE.fullmatch(head)
    if m is None:
        return None
    return tuple(m.group("cred").split("/")), tuple(m.group("signed").lower().split(";"))


def _split_auth(auth: str) -> tuple[str, str] | None:
    """(the head up to ``Signature=``, the signature) of what
    ``^AWS4-HMAC-SHA256\\s+Credential=C\\s*,\\s*SignedHeaders=H\\s*,\\s*Signature=HEX$`` would match in the
    stripped header, the head still to be parsed (``_parse_auth_head``); None if the signature part is not
    that. HEX has no "Signature=" in it, so the last one splits the header."""
    auth = auth.strip()
    at = auth.rfind("Signature=")
    if at < 0:
        return None
    signature = auth[at + 10:]
    if _SIGNATURE_RE.fullmatch(signature) is None:
        return None
    return auth[:at], signature


def _header_value(value: str) -> str:
    """A header's value in the canonical request: trimmed, each run of whitespace one space."""
    value = value.strip()
    # Printable text holds no whitespace but the space itself: only a double space would change.
    if value.isprintable() and "  " not in value:
        return value
    return _SPACES.sub(" ", value)


def _canonical_uri(path: str) -> str:
    # Non-S3 services normalise then encode each segment once (as botocore signs).
    segments = unquote(path or "/").split("/")
    return "/".join(quote(s, safe="-_.~") for s in segments) or "/"


def _canonical_query(query: str, presigned: bool = False) -> str:
    if not query:
        return ""
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        if presigned and unquote(k) == "X-Amz-Signature":
            continue  # the signature is not part of what it signs
        pairs.append((quote(unquote(k), safe="-_.~"), quote(unquote(v), safe="-_.~")))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def _format_amz(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H%M%SZ")


def _parse_amz_date(value: str) -> float | None:
    for fmt in ("%Y%m%dT%H%M%SZ", "%a, %d %b %Y %H:%M:%S GMT"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


class Pending(NamedTuple):
    """A request whose headers passed every SigV4 check; only the body's hash is left to check."""

    identity: Identity
    amz_date: str
    scope_date: str
    signed: tuple[str, ...]
    signature: str
    check: bool
    #: authenticated by query-string parameters (a presigned request), not an Authorization header
    presigned: bool = False


def _signature_mismatch() -> AWSError:
    return _error(
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check your AWS "
        "Secret Access Key and signing method. Consult the service documentation for details.",
    )


class SigV4Verifier:
    """Two steps, so a request is refused before its body is read: ``authenticate`` (headers only: shape,
    key, scope, date, signed headers) then ``check_body`` (the signature over the bytes received)."""

    def __init__(self, store: CredentialStore, *, max_skew_seconds: int = 900, clock=time.time) -> None:
        self.store = store
        self.max_skew = max_skew_seconds
        self.clock = clock
        self._keys: dict[tuple[str, str, str, str], tuple] = {}
        # What every request of a client's day repeats, parsed once: the Authorization head (all but the
        # signature) and the request path (DynamoDB's JSON protocol posts to "/").
        self._heads: dict[str, tuple[tuple[str, ...], tuple[str, ...]] | None] = {}
        self._uris: dict[str, str] = {}
        self._dates: dict[str, float | None] = {}  # clients send one X-Amz-Date string for a whole second
        #: the regions served here (--regions; empty: any). Another region's endpoint is another server
        self.regions: frozenset[str] = frozenset()
        # A fresh SHA-256 object is an OpenSSL 3 algorithm fetch (~18 k instructions, twice a request); a copy of
        # this empty one is not. Only ever copied, never updated.
        self._sha256 = hashlib.sha256()

    @staticmethod
    def _memo(cache: dict, key: str, make):
        if len(key) > _CACHED_LEN:
            return make(key)
        try:
            return cache[key]
        except KeyError:
            if len(cache) >= _CACHED_ENTRIES:
                cache.clear()
            value = cache[key] = make(key)
            return value

    def _signing_key(self, secret: str, date: str, region: str, service: str):
        """HMAC-SHA256 under the day's signing key, as its two keyed SHA-256 states (RFC 2104: inner
        H((K ^ ipad) || m), outer H((K ^ opad) || inner)): a signature then costs two hash copies, not the
        HMAC set-up that OpenSSL does per call."""
        cache_key = (secret, date, region, service)
        states = self._keys.get(cache_key)
        if states is None:
            k = hmac.digest(("AWS4" + secret).encode(), date.encode(), "sha256")
            k = hmac.digest(k, region.encode(), "sha256")
            k = hmac.digest(k, service.encode(), "sha256")
            key = hmac.digest(k, b"aws4_request", "sha256").ljust(64, b"\0")  # 32 bytes: padded, never hashed
            states = (hashlib.sha256(bytes(b ^ 0x36 for b in key)), hashlib.sha256(bytes(b ^ 0x5C for b in key)))
            if len(self._keys) > 4096:
                self._keys.clear()
            self._keys[cache_key] = states
        return states

    @staticmethod
    def _hmac_hex(states, message: bytes) -> str:
        inner, outer = states[0].copy(), states[1].copy()
        inner.update(message)
        outer.update(inner.digest())
        return outer.hexdigest()

    def verify(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        expected_service: str,
    ) -> Identity:
        """Both steps at once. ``headers``: lower-cased names, repeated headers joined with ','."""
        return self.check_body(self.authenticate(headers, expected_service, query), method, path, query, headers,
                               body)

    def authenticate(self, headers: dict[str, str], expected_service: str, query: str = "") -> Pending:
        """Everything that needs no body. Raises the AWS error for the first problem found."""
        auth = headers.get("authorization")
        if "X-Amz-Algorithm" in query:
            params = dict(parse_qsl(query, keep_blank_values=True))
            if "X-Amz-Algorithm" in params:
                if auth:
                    raise _error("InvalidSignatureException", "Found both 'X-Amz-Algorithm' as a query-string param "
                                 "and 'Authorization' as HTTP header.")
                return self._authenticate_query(params, headers, expected_service)
        if not auth:
            raise missing_token()
        split = _split_auth(auth)
        head = None if split is None else self._memo(self._heads, split[0], _parse_auth_head)
        if head is None:
            if not auth.startswith("AWS4-HMAC-SHA256"):
                raise _error("IncompleteSignatureException", f"Authorization header requires 'Credential' parameter. "
                             f"Authorization header requires 'Signature' parameter. Authorization header requires "
                             f"'SignedHeaders' parameter. Authorization={auth}")
            raise _error("IncompleteSignatureException",
                         "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.")
        cred_parts, signed = head
        amz_date = headers.get("x-amz-date") or headers.get("date") or ""  # checked after the key
        return self._scoped(cred_parts, signed, split[1], amz_date, headers, expected_service, None)

    def _authenticate_query(self, params: dict[str, str], headers: dict[str, str], expected_service: str) -> Pending:
        """The query-string form (a presigned request): X-Amz-Algorithm, -Credential, -Date, -SignedHeaders,
        -Signature and optionally -Expires. Texts as dynalite records DynamoDB's."""
        missing = [name for name in _QUERY_PARAMS if not params.get(name)]
        if missing:
            raise _error("IncompleteSignatureException", "".join(
                f"AWS query-string parameters must include '{name}'. " for name in missing)
                + "Re-examine the query-string parameters.")
        algorithm = params["X-Amz-Algorithm"]
        if algorithm != "AWS4-HMAC-SHA256":
            raise _error("IncompleteSignatureException",
                         f"Unsupported AWS 'algorithm': '{algorithm}' (only AWS4-HMAC-SHA256 for now). ")
        signature = params["X-Amz-Signature"]
        if _SIGNATURE_RE.fullmatch(signature) is None:
            raise _signature_mismatch()
        expires_text = params.get("X-Amz-Expires")
        expires = None
        if expires_text is not None:
            expires = small_int(expires_text)
            if expires is None or expires > _MAX_EXPIRES:
                raise _error("IncompleteSignatureException", f"X-Amz-Expires must be a number of seconds from 0 to "
                             f"{_MAX_EXPIRES}, not '{expires_text[:64]}'.")
        amz_date = params["X-Amz-Date"]
        if "T" not in amz_date:
            raise _error("IncompleteSignatureException", f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'.")
        cred_parts = tuple(params["X-Amz-Credential"].split("/"))
        signed = tuple(params["X-Amz-SignedHeaders"].lower().split(";"))
        return self._scoped(cred_parts, signed, signature, amz_date, headers, expected_service, expires)

    def _scoped(self, cred_parts: tuple[str, ...], signed: tuple[str, ...], signature: str, amz_date: str,
                headers: dict[str, str], expected_service: str, expires: int | None) -> Pending:
        """The checks both forms share: credential scope, key, date and clock skew, signed headers.
        ``expires``: a presigned request's X-Amz-Expires (None for the header form)."""
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
        # The region names the tables, keys and events a request reaches (DESIGN.md "Accounts and regions"):
        # refuse one that is not a region name before anything is created under it.
        if not region:
            # Some SDKs sign with an empty region when none is configured (a custom endpoint resolver)
            raise _error("InvalidSignatureException", "Credential should be scoped to a valid region, not ''. "
                         "The region is missing from the credential scope: configure the client with a region "
                         "(e.g. AWS_REGION=us-east-1).")
        if _REGION_RE.fullmatch(region) is None:
            raise _error("InvalidSignatureException", f"Credential should be scoped to a valid region, not '{region}'. ")
        if self.regions and region not in self.regions:
            # as DynamoDB's endpoint of one region answers a request signed for another
            raise _error("InvalidSignatureException", f"Credential should be scoped to a valid region, not '{region}'. ")
        if not amz_date:
            raise _error("IncompleteSignatureException",
                         "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
        ts = self._memo(self._dates, amz_date, _parse_amz_date)
        if ts is None:
            raise _error("IncompleteSignatureException", f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'.")
        # Botocore signs with the X-Amz-Date value; an old-style Date header is normalised to basic format.
        request_date = amz_date if "T" in amz_date else _format_amz(ts)
        if scope_date != request_date[:8]:
            # A signing key is good for one day: a scope date other than the request's would make it last forever.
            raise _error("InvalidSignatureException",
                         f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                         f"'{scope_date}' != '{request_date[:8]}', from '{request_date}'.")
        now = self.clock()
        # A presigned request is good for its X-Amz-Expires; AWS's text for one that outlived it is not
        # recorded, so it reads as the header form's with that lifetime as the window.
        window = self.max_skew if expires is None else expires
        if ts < now - window:
            raise _error("InvalidSignatureException",
                         f"Signature expired: {_format_amz(ts)} is now earlier than {_format_amz(now - window)} "
                         f"({_format_amz(now)} - {window // 60} min.)")
        if ts > now + self.max_skew:
            raise _error("InvalidSignatureException",
                         f"Signature not yet current: {_format_amz(ts)} is still later than "
                         f"{_format_amz(now + self.max_skew)} ({_format_amz(now)} + {self.max_skew // 60} min.)")
        check = not self.store.allow_any or bool(credential.secret_access_key)
        if check:
            if "host" not in signed:
                raise _error("InvalidSignatureException", "'Host' or ':authority' must be a 'SignedHeader' in the "
                             "AWS Authorization.")
            # Every SDK signs the target; unsigned, a captured request could be replayed as another operation.
            if "x-amz-target" not in signed and "x-amz-target" in headers:
                raise _error("InvalidSignatureException", "'X-Amz-Target' must be a 'SignedHeader' in the AWS "
                             "Authorization.")
        return Pending(Identity(credential, region, service), request_date, scope_date, signed, signature, check,
                       expires is not None)

    def check_body(self, pending: Pending, method: str, path: str, query: str, headers: dict[str, str],
                   body: bytes) -> Identity:
        """The signature over the request as received: the payload hash is always that of ``body`` (the wire
        bytes, before any Content-Encoding is undone), never taken from the client."""
        if not pending.check:
            return pending.identity
        if body:
            h = self._sha256.copy()
            h.update(body)
            payload_hash = h.hexdigest()
        else:
            payload_hash = _EMPTY_SHA256
        claimed = headers.get("x-amz-content-sha256")
        if claimed is not None and claimed != payload_hash:
            # Also refuses UNSIGNED-PAYLOAD and streaming payloads: these JSON protocols sign the body.
            raise _signature_mismatch()
        signed = pending.signed
        canonical_headers = "".join([f"{name}:{_header_value(headers.get(name, ''))}\n" for name in signed])
        uri = self._memo(self._uris, path, _canonical_uri)
        canonical_request = "\n".join(
            (method, uri, _canonical_query(query, pending.presigned), canonical_headers, ";".join(signed),
             payload_hash)
        )
        identity = pending.identity
        scope = f"{pending.scope_date}/{identity.region}/{identity.service}/aws4_request"
        h = self._sha256.copy()
        h.update(canonical_request.encode())
        string_to_sign = "\n".join(("AWS4-HMAC-SHA256", pending.amz_date, scope, h.hexdigest()))
        states = self._signing_key(identity.credential.secret_access_key, pending.scope_date, identity.region,
                                   identity.service)
        expected = self._hmac_hex(states, string_to_sign.encode())
        if not hmac.compare_digest(expected, pending.signature.lower()):
            raise _signature_mismatch()
        return identity
