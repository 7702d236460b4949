"""Grant operations: create, list, retire, revoke. Grant *decisions* live in authz.py.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from types import MappingProxyType

from dynavault.audit.events import service_root
from dynavault.caller import Caller
from dynavault.errors import AWSError
from dynavault.kms import params as prm
from dynavault.kms import policy as pol
from dynavault.kms.authz import denied, grantee_matches
from dynavault.kms.context import Handler, KmsContext
from dynavault.kms.model import GRANT_OPERATIONS, SYMMETRIC, CallInfo, KmsKey

# -- grants --------------------------------------------------------------------------------------------------

def _grant_token(grant_id: str) -> str:
    # Opaque to clients; carries the grant id plus randomness so every CreateGrant returns a fresh token.
    raw = b"dvgt1" + bytes.fromhex(grant_id) + os.urandom(16)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _grant_id_from_token(token: object) -> str:
    try:
        text = str(token)
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        if not raw.startswith(b"dvgt1") or len(raw) != 5 + 32 + 16:
            raise ValueError
        return raw[5:37].hex()
    except (ValueError, binascii.Error):
        raise AWSError("InvalidGrantTokenException", "Grant token is invalid") from None


def create_grant(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    grantee = prm.string(params, "GranteePrincipal", required=True, max_len=256)
    retiring = prm.string(params, "RetiringPrincipal", max_len=256)
    operations = params.get("Operations")
    if operations is None:
        raise prm.not_null("operations")
    if not isinstance(operations, list) or not all(isinstance(o, str) for o in operations):
        raise AWSError("SerializationException", "Unexpected value type for operations")
    bad = [o for o in operations if o not in GRANT_OPERATIONS]
    if bad or not operations:
        raise prm.validation(
            "operations",
            "[" + ", ".join(operations) + "]",
            "Member must satisfy constraint: [Member must satisfy enum value set: ["
            + ", ".join(GRANT_OPERATIONS)
            + "]]",
        )
    constraints = params.get("Constraints")
    if constraints is not None:
        if not isinstance(constraints, dict) or set(constraints) - {
            "EncryptionContextSubset",
            "EncryptionContextEquals",
        }:
            raise AWSError("SerializationException", "Unexpected value type for constraints")
        for value in constraints.values():
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise AWSError("SerializationException", "Unexpected value type for constraints")
    name = prm.string(params, "Name", max_len=256)
    key = ctx.authz.resolve(caller, params.get("KeyId"), info, "CreateGrant")
    ctx.authz.authorize(caller, key, "CreateGrant", extra=pol.grant_context(
        operations, grantee, retiring, aws_resource=caller.via_service is not None))
    prm.require_state(key)
    if constraints and key.key_spec != SYMMETRIC:
        raise AWSError(
            "ValidationException",
            "EncryptionContext is supported only when creating a grant for a "
            "symmetric encryption KMS key.",
        )
    grant = {
        "KeyId": key.arn,
        "Name": name or "",
        "GranteePrincipal": grantee,
        "IssuingAccount": f"arn:aws:iam::{caller.account}:root",
        "Operations": list(dict.fromkeys(operations)),
    }
    if retiring:
        grant["RetiringPrincipal"] = retiring
    if constraints:
        grant["Constraints"] = constraints
    with ctx.ring.lock:
        existing = None
        if name:
            for g in key.grants.values():
                if all(
                    g.get(k) == grant.get(k)
                    for k in (
                        "Name",
                        "GranteePrincipal",
                        "RetiringPrincipal",
                        "Operations",
                        "Constraints",
                    )
                ):
                    existing = g
                    break
        if existing is None:
            grant_id = hashlib.sha256(os.urandom(32)).hexdigest()
            grant = {"GrantId": grant_id, "CreationDate": ctx.ring.clock(), **grant}
            key.grants[grant_id] = grant
            key.version += 1
            ctx.ring.store.put_grant(grant_id, key.key_id, grant)
        else:
            grant_id = existing["GrantId"]
    info.response_elements = {"grantId": grant_id}
    return {"GrantToken": _grant_token(grant_id), "GrantId": grant_id}


def _grant_entry(grant: dict) -> dict:
    return {
        k: grant[k]
        for k in (
            "KeyId",
            "GrantId",
            "Name",
            "CreationDate",
            "GranteePrincipal",
            "RetiringPrincipal",
            "IssuingAccount",
            "Operations",
            "Constraints",
        )
        if k in grant
    }


def list_grants(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    key = ctx.authz.resolve(caller, params.get("KeyId"), info, "ListGrants")
    ctx.authz.authorize(caller, key, "ListGrants")
    grant_id = params.get("GrantId")
    grantee = params.get("GranteePrincipal")
    grants = sorted(key.grants.values(), key=lambda g: (g["CreationDate"], g["GrantId"]))
    entries = [
        _grant_entry(g)
        for g in grants
        if (grant_id is None or g["GrantId"] == grant_id)
        and (grantee is None or g["GranteePrincipal"] == grantee)
    ]
    page, extra = prm.page(entries, params, 50, 100)
    return {"Grants": page, **extra}


def list_retirable_grants(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    retiring = prm.string(params, "RetiringPrincipal", required=True, max_len=256)
    entries = []
    for key in sorted(ctx.ring.keys.values(), key=lambda k: (k.created, k.key_id)):
        if key.account != caller.account or key.region != caller.region:
            continue
        for g in sorted(key.grants.values(), key=lambda g: (g["CreationDate"], g["GrantId"])):
            if g.get("RetiringPrincipal") == retiring:
                entries.append(_grant_entry(g))
    page, extra = prm.page(entries, params, 50, 100)
    return {"Grants": page, **extra}


def _find_grant(key: KmsKey, grant_id: object) -> dict:
    grant = key.grants.get(grant_id) if isinstance(grant_id, str) else None
    if grant is None:
        raise AWSError("NotFoundException", f"Grant ID {grant_id} not found")
    return grant


def _drop_grant(ctx: KmsContext, key: KmsKey, grant_id: str) -> None:
    with ctx.ring.lock:
        key.grants.pop(grant_id, None)
        key.version += 1
        ctx.ring.store.delete_grant(grant_id)


def retire_grant(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    token = params.get("GrantToken")
    if token is not None:
        grant_id = _grant_id_from_token(token)
        key = next((k for k in ctx.ring.keys.values() if grant_id in k.grants), None)
        if key is None:
            raise AWSError("NotFoundException", f"Grant ID {grant_id} not found")
        info.touch(key)
    else:
        if params.get("KeyId") is None or params.get("GrantId") is None:
            raise AWSError(
                "ValidationException", "Either GrantToken or KeyId and GrantId must be specified."
            )
        key = ctx.authz.resolve(caller, params.get("KeyId"), info, "RetireGrant")
        grant_id = params["GrantId"]
    grant = _find_grant(key, grant_id)
    retiring = grant.get("RetiringPrincipal")
    allowed = (
        (retiring is not None and grantee_matches(retiring, caller))
        or (
            "RetireGrant" in grant["Operations"]
            and grantee_matches(grant["GranteePrincipal"], caller)
        )
        or (not caller.is_service and caller.account == key.account)
        or (
            caller.is_service
            and caller.account == key.account
            and retiring is not None
            and service_root(retiring) == service_root(caller.principal_arn)
        )
    )
    if not allowed:
        raise denied(caller, key, "RetireGrant")
    info.response_elements = {"keyId": key.arn, "grantId": grant_id}
    _drop_grant(ctx, key, grant_id)
    return {}


def revoke_grant(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    if params.get("GrantId") is None:
        raise prm.not_null("grantId")
    key = ctx.authz.resolve(caller, params.get("KeyId"), info, "RevokeGrant")
    ctx.authz.authorize(caller, key, "RevokeGrant")
    _find_grant(key, params["GrantId"])
    _drop_grant(ctx, key, params["GrantId"])
    return {}


HANDLERS: Mapping[str, Handler] = MappingProxyType(
    {
        "CreateGrant": create_grant,
        "ListGrants": list_grants,
        "ListRetirableGrants": list_retirable_grants,
        "RetireGrant": retire_grant,
        "RevokeGrant": revoke_grant,
    }
)
