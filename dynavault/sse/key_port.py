"""The typed key port: everything ``sse`` asks of a KMS, in bytes and small records, never wire JSON.

Each call carries the ``Caller`` the database acts as (the user through DynamoDB, or the database
itself): the key service authorizes and audits that principal. Adapters: ``InProcessKeys`` (the key
service in this process), ``RemoteKms`` (an HTTP KMS endpoint, in kms_client.py) and ``OfflineKms``
(decrypt only, for ``dynavault verify`` / ``upgrade``). Only adapters know KMS's wire shapes.

Failures are ``KeyPortError`` subclasses chosen by what they mean to a table (disabled, not found,
denied, unreachable, ...). Each keeps KMS's own error code and message, because DynamoDB's wrapped
error texts (kms_errors.py) quote them and the lifecycle records them with the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from dynavault.caller import Caller


# -- errors --------------------------------------------------------------------------------------------------
class KeyPortError(Exception):
    """A KMS refusal or failure; ``code``/``message``/``status`` are what the KMS answered."""

    def __init__(self, code: str, message: str | None = "", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message or ""
        self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r}, {self.status})"


class KeyDisabled(KeyPortError):
    """The KMS key is disabled."""


class KeyInvalidState(KeyPortError):
    """The KMS key is in a state that forbids the call (pending deletion, pending import, ...)."""


class KeyNotFound(KeyPortError):
    """No such KMS key (or a malformed key id / ARN)."""


class InvalidKeyRequest(KeyPortError):
    """KMS rejected the request's parameters (ValidationException)."""


class AccessDenied(KeyPortError):
    """The key policy and grants do not allow the caller this operation."""


class KeyThrottled(KeyPortError):
    """KMS throttled the call or a quota was hit."""


class KeyUnavailable(KeyPortError):
    """The KMS could not be reached in bounded time (an outage, not a verdict on the key)."""


class InvalidCiphertext(KeyPortError):
    """The blob is not a ciphertext of this key under this encryption context."""


class KmsFailure(KeyPortError):
    """Any other KMS failure (internal errors, unsupported operations)."""


_BY_CODE: dict[str, type[KeyPortError]] = {
    "DisabledException": KeyDisabled,
    "KMSInvalidStateException": KeyInvalidState,
    "NotFoundException": KeyNotFound,
    "InvalidArnException": KeyNotFound,
    "ValidationException": InvalidKeyRequest,
    "AccessDeniedException": AccessDenied,
    "ThrottlingException": KeyThrottled,
    "LimitExceededException": KeyThrottled,
    "KMSUnavailable": KeyUnavailable,
    "InvalidCiphertextException": InvalidCiphertext,
    "IncorrectKeyException": InvalidCiphertext,
}


def key_error(code: str, message: str | None = "", status: int = 400) -> KeyPortError:
    """The typed error for a KMS error code (adapters call this; unknown codes are ``KmsFailure``)."""
    return _BY_CODE.get(code, KmsFailure)(code, message, status)


# -- results -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What DescribeKey tells ``sse`` about a key."""

    arn: str
    state: str | None = None
    manager: str | None = None  # "AWS" or "CUSTOMER"
    usage: str = "ENCRYPT_DECRYPT"
    spec: str = "SYMMETRIC_DEFAULT"


@dataclass(frozen=True, slots=True)
class DataKey:
    """A fresh data key: the plaintext (never printed) and its KMS ciphertext blob."""

    plaintext: bytes = field(repr=False)
    blob: bytes

    def __iter__(self):  # ``plaintext, blob = port.generate_data_key(...)``
        return iter((self.plaintext, self.blob))


@dataclass(frozen=True, slots=True)
class Grant:
    grant_id: str
    token: str = ""


# -- the port ------------------------------------------------------------------------------------------------
class KeyPort(Protocol):
    def describe_key(self, caller: Caller, key_id: str) -> KeyInfo: ...

    def generate_data_key(self, caller: Caller, key_id: str, context: dict[str, str]) -> DataKey:
        """A 256-bit data key under ``key_id`` bound to ``context``."""
        ...

    def decrypt(self, caller: Caller, blob: bytes, context: dict[str, str]) -> bytes: ...

    def create_grant(self, caller: Caller, key_id: str, *, grantee: str, retiring: str,
                     operations: list[str], context_subset: dict[str, str]) -> Grant: ...

    def retire_grant(self, caller: Caller, key_id: str, grant_id: str) -> None: ...
