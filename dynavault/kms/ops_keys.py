"""Key operations: create, describe, list, enable/disable, deletion schedule, rotation, key policies.

Each handler takes the narrow context (key ring + authorizer), the caller, the wire params and the call's
audit info; ``HANDLERS`` maps operation names to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from dynavault.audit.events import camel, iso_time
from dynavault.caller import Caller
from dynavault.errors import AWSError
from dynavault.kms import params as prm
from dynavault.kms import policy as pol
from dynavault.kms.context import Handler, KmsContext
from dynavault.kms.model import KEY_SPECS, MAX_ON_DEMAND_ROTATIONS, SYMMETRIC, CallInfo, KmsKey

# -- keys ----------------------------------------------------------------------------------------------------

def create_key(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    if caller.is_service:
        raise AWSError("AccessDeniedException", "Service principals cannot create keys.")
    description = prm.string(params, "Description", max_len=8192) or ""
    key_spec = (
        prm.string(params, "KeySpec") or prm.string(params, "CustomerMasterKeySpec") or SYMMETRIC
    )
    if key_spec not in KEY_SPECS:
        raise prm.validation(
            "keySpec", key_spec, "Member must satisfy enum value set: [" + ", ".join(KEY_SPECS) + "]"
        )
    key_usage = prm.string(params, "KeyUsage") or KEY_SPECS[key_spec][0]
    if key_usage not in ("ENCRYPT_DECRYPT", "SIGN_VERIFY", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT"):
        raise prm.validation(
            "keyUsage",
            key_usage,
            "Member must satisfy enum value set: "
            "[SIGN_VERIFY, ENCRYPT_DECRYPT, GENERATE_VERIFY_MAC, KEY_AGREEMENT]",
        )
    if key_usage not in KEY_SPECS[key_spec]:
        raise AWSError(
            "ValidationException", f"KeyUsage {key_usage} is not compatible with KeySpec {key_spec}"
        )
    origin = prm.string(params, "Origin") or "AWS_KMS"
    if origin != "AWS_KMS":
        raise AWSError(
            "UnsupportedOperationException", f"Origin {origin} is not supported by this key service."
        )
    if params.get("MultiRegion"):
        raise AWSError(
            "UnsupportedOperationException", "Multi-Region keys are not supported by this key service."
        )
    if params.get("CustomKeyStoreId") or params.get("XksKeyId"):
        raise AWSError(
            "UnsupportedOperationException", "Custom key stores are not supported by this key service."
        )
    tags = prm.tags(params)
    if len(tags) > pol.MAX_TAGS:
        raise pol.too_many_tags("TagException")
    policy_text = params.get("Policy")
    if policy_text is None:
        policy_text = pol.default_policy(caller.account)
    else:
        pol.parse(policy_text)
    key = ctx.ring.new_key(
        caller.account,
        caller.region,
        description,
        policy_text,
        "CUSTOMER",
        key_usage=key_usage,
        key_spec=key_spec,
        tags=tags,
    )
    info.touch(key)
    md = key.metadata()
    info.response_elements = {"keyMetadata": camel({**md, "CreationDate": iso_time(key.created)})}
    return {"KeyMetadata": md}


def describe_key(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    key = ctx.authz.resolve(caller, params.get("KeyId"), info, "DescribeKey")
    ctx.authz.authorize(caller, key, "DescribeKey")
    return {"KeyMetadata": key.metadata()}


def list_keys(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    keys = sorted(
        (k for k in ctx.ring.keys.values() if k.account == caller.account and k.region == caller.region),
        key=lambda k: (k.created, k.key_id),
    )
    page, extra = prm.page(keys, params)
    return {"Keys": [{"KeyId": k.key_id, "KeyArn": k.arn} for k in page], **extra}


def _set_enabled(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo, operation: str,
                 state: str) -> dict:
    key = ctx.authz.resolve(caller, params.get("KeyId"), info, operation)
    ctx.authz.authorize(caller, key, operation)
    prm.require_state(key, allow_disabled=True)
    with ctx.ring.lock:
        key.state = state
        ctx.ring.save(key)
    return {}


def enable_key(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    return _set_enabled(ctx, caller, params, info, "EnableKey", "Enabled")


def disable_key(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    return _set_enabled(ctx, caller, params, info, "DisableKey", "Disabled")


def schedule_key_deletion(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    window = params.get("PendingWindowInDays", 30)
    if isinstance(window, bool) or not isinstance(window, int):
        raise AWSError("SerializationException", "Unexpected value type for pendingWindowInDays")
    key = ctx.authz.resolve(caller, params.get("KeyId"), info, "ScheduleKeyDeletion")
    ctx.authz.authorize(caller, key, "ScheduleKeyDeletion")
    if not 7 <= window <= 30:
        raise AWSError(
            "ValidationException", f"PendingWindowInDays should be between 7 and 30, but it is {window}"
        )
    prm.require_state(key, allow_disabled=True)
    with ctx.ring.lock:
        key.state = "PendingDeletion"
        key.pending_window = window
        key.deletion_date = ctx.ring.clock() + window * ctx.ring.settings.kms_day_seconds
        ctx.ring.save(key)
    out = {
        "KeyId": key.arn,
        "DeletionDate": key.deletion_date,
        "KeyState": key.state,
        "PendingWindowInDays": window,
    }
    info.response_elements = {
        "keyId": key.arn,
        "deletionDate": iso_time(key.deletion_date),
        "keyState": key.state,
        "pendingWindowInDays": window,
    }
    return out


def cancel_key_deletion(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    key = ctx.authz.resolve(caller, params.get("KeyId"), info, "CancelKeyDeletion")
    ctx.authz.authorize(caller, key, "CancelKeyDeletion")
    if key.state != "PendingDeletion":
        raise AWSError("KMSInvalidStateException", f"{key.arn} is not pending deletion.")
    with ctx.ring.lock:
        key.state = "Disabled"  # as AWS: cancelling leaves the key disabled
        key.deletion_date = None
        key.pending_window = None
        ctx.ring.save(key)
    info.response_elements = {"keyId": key.arn}
    return {"KeyId": key.arn}



# -- rotation ------------------------------------------------------------------------------------------------

def _rotation_key(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo, op: str) -> KmsKey:
    key = ctx.authz.resolve(caller, params.get("KeyId"), info, op)
    ctx.authz.authorize(caller, key, op)
    prm.require_state(key)
    if key.key_spec != SYMMETRIC:
        raise AWSError(
            "UnsupportedOperationException",
            "You cannot perform this operation on a non-symmetric key or a key with "
            "non-ENCRYPT_DECRYPT key usage.",
        )
    return key


def enable_key_rotation(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    period = prm.integer(params, "RotationPeriodInDays", 90, 2560, 365)
    key = _rotation_key(ctx, caller, params, info, "EnableKeyRotation")
    with ctx.ring.lock:
        key.rotation_enabled = True
        key.rotation_period = period
        key.next_rotation = ctx.ring.clock() + period * ctx.ring.settings.kms_day_seconds
        ctx.ring.save(key)
    return {}


def disable_key_rotation(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    key = _rotation_key(ctx, caller, params, info, "DisableKeyRotation")
    with ctx.ring.lock:
        key.rotation_enabled = False
        key.next_rotation = None
        ctx.ring.save(key)
    return {}


def get_key_rotation_status(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    key = ctx.authz.resolve(caller, params.get("KeyId"), info, "GetKeyRotationStatus")
    ctx.authz.authorize(caller, key, "GetKeyRotationStatus")
    out: dict = {"KeyRotationEnabled": key.rotation_enabled, "KeyId": key.arn}
    if key.rotation_enabled:
        out["RotationPeriodInDays"] = key.rotation_period
        if key.next_rotation is not None:
            out["NextRotationDate"] = key.next_rotation
    return out


def rotate_key_on_demand(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    key = _rotation_key(ctx, caller, params, info, "RotateKeyOnDemand")
    with ctx.ring.lock:
        if key.on_demand_rotations >= MAX_ON_DEMAND_ROTATIONS:
            raise AWSError(
                "LimitExceededException",
                f"The on-demand rotations limit has been reached for the given keyId: {key.arn}",
            )
        key.on_demand_rotations += 1
        ctx.ring.rotate(key, "ON_DEMAND")
    return {"KeyId": key.key_id}


def list_key_rotations(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    key = ctx.authz.resolve(caller, params.get("KeyId"), info, "ListKeyRotations")
    ctx.authz.authorize(caller, key, "ListKeyRotations")
    if key.key_spec != SYMMETRIC:
        raise AWSError(
            "UnsupportedOperationException",
            "You cannot perform this operation on a non-symmetric key or a key with "
            "non-ENCRYPT_DECRYPT key usage.",
        )
    rotations = [
        {
            "KeyId": key.key_id,
            "KeyMaterialId": m.material_id,
            "RotationDate": m.created,
            "RotationType": m.rotation_type,
        }
        for m in key.materials
        if m.rotation_type
    ]
    page, extra = prm.page(rotations, params)
    return {"Rotations": page, **extra}



# -- policies ------------------------------------------------------------------------------------------------

def get_key_policy(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    key = ctx.authz.resolve(caller, params.get("KeyId"), info, "GetKeyPolicy")
    ctx.authz.authorize(caller, key, "GetKeyPolicy")
    name = prm.policy_name(params)
    return {"Policy": key.policy_text, "PolicyName": name}


def put_key_policy(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    if params.get("Policy") is None:
        raise prm.not_null("policy")
    key = ctx.authz.resolve(caller, params.get("KeyId"), info, "PutKeyPolicy")
    ctx.authz.authorize(caller, key, "PutKeyPolicy")
    prm.policy_name(params)
    doc = pol.parse(params["Policy"])
    with ctx.ring.lock:
        key.policy_text = params["Policy"]
        key.policy_doc = doc
        key.version += 1
        ctx.ring.save(key)
    return {}


def list_key_policies(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    key = ctx.authz.resolve(caller, params.get("KeyId"), info, "ListKeyPolicies")
    ctx.authz.authorize(caller, key, "ListKeyPolicies")
    return {"PolicyNames": ["default"], "Truncated": False}


HANDLERS: Mapping[str, Handler] = MappingProxyType(
    {
        "CreateKey": create_key,
        "DescribeKey": describe_key,
        "ListKeys": list_keys,
        "EnableKey": enable_key,
        "DisableKey": disable_key,
        "ScheduleKeyDeletion": schedule_key_deletion,
        "CancelKeyDeletion": cancel_key_deletion,
        "EnableKeyRotation": enable_key_rotation,
        "DisableKeyRotation": disable_key_rotation,
        "GetKeyRotationStatus": get_key_rotation_status,
        "RotateKeyOnDemand": rotate_key_on_demand,
        "ListKeyRotations": list_key_rotations,
        "GetKeyPolicy": get_key_policy,
        "PutKeyPolicy": put_key_policy,
        "ListKeyPolicies": list_key_policies,
    }
)
