"""SSESpecification as DynamoDB reads it (sse-spec.md §1.2) and SSEDescription as it answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dynavault.errors import AWSError, validation
from dynavault.sse.key_port import key_error
from dynavault.sse.kms_errors import wrap_kms_error
from dynavault.sse.table_keys import AWS_MANAGED, CUSTOMER, OWNED

if TYPE_CHECKING:
    from .catalog import TableMeta

_INVALID = "One or more parameter values were invalid: "
INACCESSIBLE = "INACCESSIBLE_ENCRYPTION_CREDENTIALS"
ARCHIVING = "ARCHIVING"
ARCHIVED = "ARCHIVED"
#: table states in which no data operation is served (the key is not usable)
NO_DATA_STATES = frozenset({INACCESSIBLE, ARCHIVING, ARCHIVED})


def inaccessible_error(meta: TableMeta) -> AWSError:
    """What a refused operation answers while the table's key is unusable: the KMS error naming the key."""
    err = meta.sse_state.get("error") or {}
    code = err.get("code") or "DisabledException"
    message = err.get("message") or f"{meta.sse.get('key_arn')} is disabled."
    return wrap_kms_error(key_error(code, message))


def refuse_if_inaccessible(meta: TableMeta) -> None:
    if meta.status in NO_DATA_STATES:
        raise inaccessible_error(meta)


def parse_sse_specification(spec: dict | None) -> tuple[str, str | None]:
    """-> (mode, KMSMasterKeyId as given). Raises DynamoDB's ValidationExceptions."""
    if not spec:
        return OWNED, None
    enabled = spec.get("Enabled")
    sse_type = spec.get("SSEType")
    key_id = spec.get("KMSMasterKeyId")
    if enabled is False:
        if sse_type is not None:
            raise validation(_INVALID + "SSEType can not be specified if Enabled is false")
        if key_id is not None:
            raise validation(_INVALID + "KMSMasterKeyId can not be specified if Enabled is false")
        return OWNED, None
    if sse_type == "AES256":
        raise validation(_INVALID + "SSEType AES256 is not supported")
    if key_id is not None and sse_type is None:
        raise validation(_INVALID + "SSEType KMS is required if KMSMasterKeyId is specified")
    if enabled is None and sse_type is None:
        return OWNED, None
    if key_id is not None:
        return CUSTOMER, key_id
    return AWS_MANAGED, None


def sse_description(sse: dict, sse_state: dict) -> dict | None:
    """None for the AWS owned key (DynamoDB omits SSEDescription entirely)."""
    phase = sse_state.get("phase")
    if phase:  # an SSE switch in progress (key-lifecycle issue)
        shown = dict(phase)
        return shown or None
    if not sse or sse.get("mode") == OWNED:
        return None
    desc = {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": sse["key_arn"]}
    if sse_state.get("inaccessible_since") is not None:
        desc["InaccessibleEncryptionDateTime"] = sse_state["inaccessible_since"]
    return desc
