"""The DAX wire protocol's fixed parts: method ids, option keys, error codes, the handshake and
``authorizeConnection``'s SigV4 check.

Read from the official clients (Apache-2.0): a connection opens with the text "J7yne5G", 0, a session id
(bytes or null), ``{"UserAgent": ...}`` and 0; each request is ``1, method id, arguments...``; each response is an
error header (an empty array when the call succeeded) then the result. ``authorizeConnection`` has no response of
its own: the next request's answer covers it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from dynavault.errors import AWSError

MAGIC = "J7yne5G"

AUTHORIZE_CONNECTION = 1489122155
ENDPOINTS = 455855874
DEFINE_KEY_SCHEMA = -742646399
DEFINE_ATTRIBUTE_LIST = 670678385
DEFINE_ATTRIBUTE_LIST_ID = -1230579644
GET_ITEM = 263244906
PUT_ITEM = -2106490455
UPDATE_ITEM = 1425579023
DELETE_ITEM = 1013539361
QUERY = -931250863
SCAN = -1875390620
BATCH_GET_ITEM = -697851100
BATCH_WRITE_ITEM = 116217951
TRANSACT_WRITE_ITEMS = -1160037738
TRANSACT_GET_ITEMS = 1866287579

#: arguments each method sends after its id (the option map, or null, counted)
ARG_COUNTS = {
    AUTHORIZE_CONNECTION: 5, ENDPOINTS: 0, DEFINE_KEY_SCHEMA: 1, DEFINE_ATTRIBUTE_LIST: 1,
    DEFINE_ATTRIBUTE_LIST_ID: 1, GET_ITEM: 3, PUT_ITEM: 4, UPDATE_ITEM: 3, DELETE_ITEM: 3, QUERY: 3, SCAN: 2,
    BATCH_GET_ITEM: 2, BATCH_WRITE_ITEM: 2, TRANSACT_WRITE_ITEMS: 9, TRANSACT_GET_ITEMS: 4,
}
#: the DynamoDB operation each data method runs (metrics and the error's operation name)
OPERATION_NAMES = {
    GET_ITEM: "GetItem", PUT_ITEM: "PutItem", UPDATE_ITEM: "UpdateItem", DELETE_ITEM: "DeleteItem",
    QUERY: "Query", SCAN: "Scan", BATCH_GET_ITEM: "BatchGetItem", BATCH_WRITE_ITEM: "BatchWriteItem",
    TRANSACT_WRITE_ITEMS: "TransactWriteItems", TRANSACT_GET_ITEMS: "TransactGetItems",
    DEFINE_KEY_SCHEMA: "defineKeySchema", DEFINE_ATTRIBUTE_LIST: "defineAttributeList",
    DEFINE_ATTRIBUTE_LIST_ID: "defineAttributeListId", ENDPOINTS: "endpoints",
}


class Param:
    """Keys of a request's option map (DynamoDB's parameter order)."""

    PROJECTION = 0
    NAMES = 1
    CONSISTENT_READ = 2
    RETURN_CONSUMED_CAPACITY = 3
    CONDITION = 4
    VALUES = 5
    RETURN_ITEM_COLLECTION_METRICS = 6
    RETURN_VALUES = 7
    UPDATE = 8
    EXCLUSIVE_START_KEY = 9
    FILTER = 10
    INDEX_NAME = 11
    KEY_CONDITION = 12
    LIMIT = 13
    SCAN_INDEX_FORWARD = 14
    SELECT = 15
    SEGMENT = 16
    TOTAL_SEGMENTS = 17
    CLIENT_REQUEST_TOKEN = 19


class Result:
    """Keys of a response's result map."""

    ITEM = 0
    CONSUMED_CAPACITY = 1
    ATTRIBUTES = 2
    ITEM_COLLECTION_METRICS = 3
    ITEMS = 7
    COUNT = 8
    LAST_EVALUATED_KEY = 9
    SCANNED_COUNT = 10


RETURN_CONSUMED_CAPACITY = {0: "NONE", 1: "TOTAL", 2: "INDEXES"}
RETURN_ITEM_COLLECTION_METRICS = {0: "NONE", 1: "SIZE"}
RETURN_VALUES = {1: "NONE", 2: "ALL_OLD", 3: "UPDATED_OLD", 4: "ALL_NEW", 5: "UPDATED_NEW"}
SELECT = {1: "ALL_ATTRIBUTES", 2: "ALL_PROJECTED_ATTRIBUTES", 3: "COUNT", 4: "SPECIFIC_ATTRIBUTES"}
#: TransactWriteItems' operation numbers
TX_PUT, TX_DELETE, TX_PARTIAL_UPDATE, TX_CHECK = 2, 7, 9, 12

#: DynamoDB error code -> DAX's code list. A list not starting with 3 is retried by the Python client.
_DATA = [4, 37, 38, 39]
ERROR_CODES = {
    "ProvisionedThroughputExceededException": _DATA + [40],
    "ResourceNotFoundException": _DATA + [41],
    "ConditionalCheckFailedException": _DATA + [43],
    "ResourceInUseException": _DATA + [45],
    "ValidationException": _DATA + [46],
    "InternalServerError": _DATA + [47],
    "ItemCollectionSizeLimitExceededException": _DATA + [48],
    "LimitExceededException": _DATA + [49],
    "ThrottlingException": _DATA + [50],
    "TransactionCanceledException": _DATA + [58],
    "RequestLimitExceeded": _DATA + [61],
    "AccessDeniedException": [4, 37, 38, 42],
    "TransactionConflictException": _DATA + [46],
    "IdempotentParameterMismatchException": _DATA + [46],
    "TransactionInProgressException": _DATA + [46],
    # authentication: [x, 23, 31, ...] marks an auth error to the clients (they stop at startup)
    # (33: authentication required, which the JS client retries after authorizing again)
    "UnrecognizedClientException": [4, 23, 31, 34],
    "MissingAuthenticationTokenException": [4, 23, 31, 33],
    "InvalidSignatureException": [4, 23, 31, 34],
}
#: errors a retry cannot fix: code lists starting with 3 are not retried by the clients
NOT_RETRYABLE = frozenset({"ConditionalCheckFailedException", "ValidationException", "ResourceNotFoundException",
                           "AccessDeniedException", "TransactionCanceledException", "UnrecognizedClientException",
                           "InvalidSignatureException",
                           "IdempotentParameterMismatchException", "ResourceInUseException"})


def error_codes(code: str) -> list[int]:
    """The code list for a DynamoDB error code. Errors a retry cannot fix lead with 3 ("do not retry"): the
    Python client retries every list that does not, which would send a failed conditional write three times;
    both clients still name the error from the rest of the list and the error code sent beside it."""
    codes = list(ERROR_CODES.get(code, _DATA + [46]))
    if code in NOT_RETRYABLE:
        codes[0] = 3
    return codes


# ---- authorizeConnection ----------------------------------------------------------------------------------------

#: the host the clients sign for, whatever address they connect to
SIGNED_HOST = "dax.amazonaws.com"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_SCOPE_RE = re.compile(r"(\d{8})/([a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?)/dax/aws4_request")
_DATE_RE = re.compile(r"\d{8}T\d{6}Z")
_HEX_RE = re.compile(r"[0-9a-f]{64}")
#: a signature is accepted this long either side of now (SigV4's window)
MAX_SKEW_SECONDS = 900


@dataclass(frozen=True)
class Authorization:
    access_key: str
    account: str
    principal_arn: str
    region: str
    #: the signature's time: the connection's authorization ends MAX_SKEW_SECONDS after it
    signed_at: float


def _auth_error(code: str, message: str) -> AWSError:
    return AWSError(code, message)


def _signing_key(secret: str, date: str, region: str) -> bytes:
    k = hmac.digest(("AWS4" + secret).encode(), date.encode(), "sha256")
    k = hmac.digest(k, region.encode(), "sha256")
    k = hmac.digest(k, b"dax", "sha256")
    return hmac.digest(k, b"aws4_request", "sha256")


def verify_authorization(lookup, allow_any: bool, access_key, signature, string_to_sign, session_token,
                         now: float | None = None) -> Authorization:
    """Check an ``authorizeConnection``: the string to sign must be the one a client makes for ``POST /`` to
    dax.amazonaws.com at its date (so no signature made for anything else passes), the date within
    MAX_SKEW_SECONDS of now, and the signature the HMAC of it under the access key's secret.
    ``lookup(access key) -> credential | None`` (attributes secret_access_key, account_id, principal_arn)."""
    now = time.time() if now is None else now
    if not isinstance(access_key, str) or not access_key or len(access_key) > 128:
        raise _auth_error("MissingAuthenticationTokenException", "Request is missing Authentication Token")
    if not isinstance(signature, str) or not isinstance(string_to_sign, (bytes, bytearray)):
        raise _auth_error("InvalidSignatureException", "The request signature is malformed.")
    if session_token is not None and not isinstance(session_token, str):
        raise _auth_error("InvalidSignatureException", "The request signature is malformed.")
    # A session token is otherwise not checked, as the HTTP API does not check X-Amz-Security-Token: the
    # credential store holds long-term keys only, with no temporary credentials a token could belong to.
    try:
        lines = bytes(string_to_sign).decode("ascii").split("\n")
    except UnicodeDecodeError:
        lines = []
    if len(lines) != 4 or lines[0] != "AWS4-HMAC-SHA256" or not _DATE_RE.fullmatch(lines[1]):
        raise _auth_error("InvalidSignatureException", "The request signature is malformed.")
    amz_date, scope, digest = lines[1], lines[2], lines[3]
    m = _SCOPE_RE.fullmatch(scope)
    if m is None or m.group(1) != amz_date[:8] or not _HEX_RE.fullmatch(digest):
        raise _auth_error("InvalidSignatureException", "Credential should be scoped to the dax service.")
    region = m.group(2)
    credential = lookup(access_key)
    if credential is None:
        raise _auth_error("UnrecognizedClientException", "The security token included in the request is invalid.")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise _auth_error("InvalidSignatureException", "The request signature is malformed.") from None
    if abs(signed_at - now) > MAX_SKEW_SECONDS:
        raise _auth_error("InvalidSignatureException", "Signature expired or not yet current: "
                          f"{amz_date} is more than {MAX_SKEW_SECONDS // 60} min. from the server's time.")
    canonical = f"POST\n/\n\nhost:{SIGNED_HOST}\nx-amz-date:{amz_date}\n\nhost;x-amz-date\n{_EMPTY_SHA256}"
    if not hmac.compare_digest(hashlib.sha256(canonical.encode()).hexdigest(), digest):
        raise _auth_error("InvalidSignatureException", "The signed request is not one for DAX.")
    check = not allow_any or bool(credential.secret_access_key)
    if check:
        expected = hmac.new(_signing_key(credential.secret_access_key, amz_date[:8], region),
                            bytes(string_to_sign), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            # DAX answers a wrong secret as it answers an unknown key
            raise _auth_error("UnrecognizedClientException",
                              "The security token included in the request is invalid.")
    return Authorization(access_key, credential.account_id, credential.principal_arn, region, signed_at)
