"""SSESpecification as DynamoDB reads it (sse-spec.md §1.2) and SSEDescription as it answers."""

from __future__ import annotations

from dynavault.errors import validation
from dynavault.sse.table_keys import AWS_MANAGED, CUSTOMER, OWNED

_INVALID = "One or more parameter values were invalid: "


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
