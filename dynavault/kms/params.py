"""Parsing and validating the wire parameters of KMS requests, with KMS's own error codes and texts.

Plain functions over the params dict: they know nothing of keys or callers, so every operation module uses
them the same way. Member names in messages are camelCase, as AWS's validation layer spells them.
"""

from __future__ import annotations

import base64
import binascii

from dynavault.audit.events import lower_first
from dynavault.errors import AWSError
from dynavault.kms import blob as blobfmt
from dynavault.kms.model import SYMMETRIC, KmsKey


def validation(field_path: str, value: object, constraint: str) -> AWSError:
    shown = "null" if value is None else f"'{value}'"
    return AWSError(
        "ValidationException",
        f"1 validation error detected: Value {shown} at '{field_path}' "
        f"failed to satisfy constraint: {constraint}",
    )


def not_null(field_path: str) -> AWSError:
    return validation(field_path, None, "Member must not be null")


def context(params: dict, name: str = "EncryptionContext") -> tuple[dict[str, str], bytes]:
    ctx = params.get(name)
    if ctx is None:
        return {}, b""
    if not isinstance(ctx, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in ctx.items()
    ):
        raise AWSError("SerializationException", f"Unexpected value type for {lower_first(name)}")
    return ctx, blobfmt.canonical_context(ctx)


def blob(params: dict, name: str, required: bool = True) -> bytes | None:
    value = params.get(name)
    if value is None:
        if required:
            raise not_null(lower_first(name))
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if not isinstance(value, str):
        raise AWSError("SerializationException", f"Unexpected value type for {lower_first(name)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AWSError(
            "SerializationException", f"Could not decode base64 for {lower_first(name)}"
        ) from None


def integer(params: dict, name: str, lo: int, hi: int, default: int | None = None) -> int | None:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise AWSError("SerializationException", f"Unexpected value type for {lower_first(name)}")
    if value < lo:
        raise validation(
            lower_first(name), value, f"Member must have value greater than or equal to {lo}"
        )
    if value > hi:
        raise validation(lower_first(name), value, f"Member must have value less than or equal to {hi}")
    return value


def string(params: dict, name: str, required: bool = False, max_len: int = 2048) -> str | None:
    value = params.get(name)
    if value is None:
        if required:
            raise not_null(lower_first(name))
        return None
    if not isinstance(value, str):
        raise AWSError("SerializationException", f"Unexpected value type for {lower_first(name)}")
    if len(value) > max_len:
        raise validation(
            lower_first(name), value, f"Member must have length less than or equal to {max_len}"
        )
    return value


def page(
    items: list, params: dict, limit_default: int = 100, limit_max: int = 1000
) -> tuple[list, dict]:
    limit = integer(params, "Limit", 1, limit_max, limit_default)
    marker = params.get("Marker")
    start = 0
    if marker is not None:
        try:
            start = int(base64.urlsafe_b64decode(str(marker).encode()).decode())
            if start < 0:
                raise ValueError
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise AWSError("InvalidMarkerException", "Invalid marker") from None
    page = items[start : start + limit]
    more = start + limit < len(items)
    extra: dict = {"Truncated": more}
    if more:
        extra["NextMarker"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
    return page, extra


def require_state(key: KmsKey, *, allow_disabled: bool = False, allow_pending: bool = False) -> None:
    if key.state == "PendingDeletion" and not allow_pending:
        raise AWSError("KMSInvalidStateException", f"{key.arn} is pending deletion.")
    if key.state == "Disabled" and not allow_disabled:
        raise AWSError("DisabledException", f"{key.arn} is disabled.")


def require_symmetric(key: KmsKey, op: str) -> None:
    if key.key_spec != SYMMETRIC:
        if key.key_usage != "ENCRYPT_DECRYPT" or op.startswith("GenerateDataKey"):
            raise AWSError(
                "InvalidKeyUsageException",
                f"{key.arn} key usage is {key.key_usage} which is not valid for {op}.",
            )
        raise AWSError(
            "UnsupportedOperationException",
            f"{key.arn} key spec {key.key_spec} is not supported for {op} by this key service.",
        )


def algorithm(params: dict, name: str = "EncryptionAlgorithm") -> str:
    alg = params.get(name)
    if alg is None or alg == SYMMETRIC:
        return SYMMETRIC
    if alg in ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE"):
        raise AWSError(
            "InvalidKeyUsageException",
            f"The encryption algorithm {alg} is not valid for a symmetric encryption KMS key.",
        )
    raise validation(
        lower_first(name),
        alg,
        "Member must satisfy enum value set: [SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, "
        "RSAES_OAEP_SHA_256, SM2PKE]",
    )


def policy_name(params: dict) -> str:
    name = params.get("PolicyName", "default")
    if name is None:
        name = "default"
    if not isinstance(name, str):
        raise AWSError("SerializationException", "Unexpected value type for policyName")
    if name != "default":
        raise AWSError("NotFoundException", "No such policy exists")
    return name


def tags(params: dict) -> list[dict]:
    tags = params.get("Tags")
    if tags is None:
        return []
    if not isinstance(tags, list):
        raise AWSError("SerializationException", "Unexpected value type for tags")
    out: list[dict] = []
    for i, tag in enumerate(tags, 1):
        if (
            not isinstance(tag, dict)
            or not isinstance(tag.get("TagKey"), str)
            or not isinstance(tag.get("TagValue"), str)
        ):
            raise AWSError("SerializationException", "Unexpected value type for tags")
        if not 1 <= len(tag["TagKey"]) <= 128:
            raise validation(
                f"tags.{i}.member.tagKey",
                tag["TagKey"],
                "Member must have length greater than or equal to 1"
                if not tag["TagKey"]
                else "Member must have length less than or equal to 128",
            )
        if len(tag["TagValue"]) > 256:
            raise validation(
                f"tags.{i}.member.tagValue",
                tag["TagValue"],
                "Member must have length less than or equal to 256",
            )
        if tag["TagKey"].lower().startswith("aws:"):
            raise AWSError("TagException", "Tags beginning with aws: are reserved")
        out = [t for t in out if t["TagKey"] != tag["TagKey"]]
        out.append({"TagKey": tag["TagKey"], "TagValue": tag["TagValue"]})
    return out
