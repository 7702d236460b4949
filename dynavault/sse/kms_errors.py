"""DynamoDB's wrapping of KMS failures (sse-spec.md §1.4): generic DynamoDB codes, KMS SDK text inside."""

from __future__ import annotations

import uuid

from dynavault.errors import AWSError

_SDK = "com.amazonaws.services.kms.model."


def _suffix(code: str, status: int = 400) -> str:
    return f" (Service: AWSKMS; Status Code: {status}; Error Code: {code}; Request ID: {uuid.uuid4()}; Proxy: null)"


def wrap_kms_error(err: AWSError, *, region_label: str = "") -> AWSError:
    """Turn an error from the key service into what DynamoDB answers for it."""
    code = err.code
    msg = err.message or ""
    region = f" for region {region_label}" if region_label else ""
    if code == "DisabledException":
        return AWSError("ValidationException", f"KMS key disabled error{region}: {_SDK}DisabledException: {msg}"
                        + _suffix(code))
    if code in ("KMSInvalidStateException", "NotFoundException", "InvalidArnException", "ValidationException"):
        return AWSError("ValidationException", f"KMS validation error{region}: {_SDK}{code}: {msg}" + _suffix(code))
    if code == "AccessDeniedException":
        return AWSError("AccessDeniedException",
                        f"KMS key access denied error{region}: {_SDK}AWSKMSException: {msg}" + _suffix(code))
    if code in ("ThrottlingException", "LimitExceededException"):
        return AWSError("ThrottlingException", f"KMS throttling error{region}: {_SDK}{code}: {msg}" + _suffix(code))
    if code == "KMSUnavailable":
        return AWSError("InternalServerError", f"KMS unavailable error{region}: {msg}", 500)
    return AWSError("InternalServerError",
                    f"KMS internal error{region}: {_SDK}AWSKMSException: {msg}" + _suffix(code, err.status), 500)
