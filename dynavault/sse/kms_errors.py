"""DynamoDB's wrapping of KMS failures (sse-spec.md §1.4): generic DynamoDB codes, KMS SDK text inside."""

from __future__ import annotations

import uuid

from dynavault.errors import AWSError

from .key_port import (
    AccessDenied,
    InvalidKeyRequest,
    KeyDisabled,
    KeyInvalidState,
    KeyNotFound,
    KeyPortError,
    KeyThrottled,
    KeyUnavailable,
    key_error,
)

_SDK = "com.amazonaws.services.kms.model."


def _suffix(code: str, status: int = 400) -> str:
    return f" (Service: AWSKMS; Status Code: {status}; Error Code: {code}; Request ID: {uuid.uuid4()}; Proxy: null)"


def wrap_kms_error(err: KeyPortError | AWSError, *, region_label: str = "") -> AWSError:
    """Turn a key-port failure (or a KMS error recorded by code, e.g. with an inaccessible table) into what
    DynamoDB answers for it. The KMS code itself is quoted, as DynamoDB quotes the SDK's exception name."""
    if not isinstance(err, KeyPortError):
        err = key_error(err.code, err.message, err.status)
    code = err.code
    msg = err.message or ""
    region = f" for region {region_label}" if region_label else ""
    if isinstance(err, KeyDisabled):
        return AWSError("ValidationException", f"KMS key disabled error{region}: {_SDK}DisabledException: {msg}"
                        + _suffix(code))
    if isinstance(err, KeyInvalidState | KeyNotFound | InvalidKeyRequest):
        return AWSError("ValidationException", f"KMS validation error{region}: {_SDK}{code}: {msg}" + _suffix(code))
    if isinstance(err, AccessDenied):
        return AWSError("AccessDeniedException",
                        f"KMS key access denied error{region}: {_SDK}AWSKMSException: {msg}" + _suffix(code))
    if isinstance(err, KeyThrottled):
        return AWSError("ThrottlingException", f"KMS throttling error{region}: {_SDK}{code}: {msg}" + _suffix(code))
    if isinstance(err, KeyUnavailable):
        return AWSError("InternalServerError", f"KMS unavailable error{region}: {msg}", 500)
    return AWSError("InternalServerError",
                    f"KMS internal error{region}: {_SDK}AWSKMSException: {msg}" + _suffix(code, err.status), 500)
