"""Authorization: which key a request names, and whether the caller may use it for an action.

Resolution turns a KeyId (id, key ARN, alias name, alias ARN) into a key record the caller may see. The
decision evaluates the key policy (policy.py, conditions.py), then the key's grants, and caches verdicts
per (key version, principal, action, context, policy scope): the key's version moves whenever its policy or
grants change, so a cached verdict never outlives the rules it came from.
"""

from __future__ import annotations

import re

from dynavault.audit.events import service_root
from dynavault.caller import Caller
from dynavault.errors import AWSError
from dynavault.kms import params as prm
from dynavault.kms import policy as pol
from dynavault.kms.keyring import KeyRing
from dynavault.kms.model import (
    ALIAS_ARN,
    AWS_OWNED_ACCOUNT,
    CROSS_ACCOUNT,
    OWNED_ALIAS,
    CallInfo,
    KmsKey,
)
from dynavault.kms.provision import MANAGED_KEYS, managed_key, owned_key

KEY_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:([^:]*):([^:]*):key/(.+)$")
#: verdicts kept before the cache starts over (bounded memory whatever the callers do)
_CACHE_LIMIT = 50_000


class Authorizer:
    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self._cache: dict[tuple, bool] = {}

    def __repr__(self) -> str:
        return f"Authorizer(cached={len(self._cache)})"

    def clear(self) -> None:
        """Forget every cached verdict (a key went away)."""
        self._cache.clear()

    def resolve(
        self, caller: Caller, key_ref: object, info: CallInfo, op: str, field_path: str = "keyId"
    ) -> KmsKey:
        if key_ref is None:
            raise prm.not_null(field_path)
        if not isinstance(key_ref, str):
            raise AWSError("SerializationException", f"Unexpected value type for {field_path}")
        if not 1 <= len(key_ref) <= 2048:
            raise prm.validation(field_path, key_ref, "Member must have length greater than or equal to 1")
        m = KEY_ARN.match(key_ref)
        if m:
            region, account, key_id = m.groups()
            if region != caller.region:
                raise AWSError("NotFoundException", f"Invalid arn {region}")
            key = self.ring.keys.get(key_id)
            if key is None or key.account != account or key.region != region or hidden(caller, key):
                raise AWSError("NotFoundException", f"Key '{key_ref}' does not exist")
        else:
            m = ALIAS_ARN.match(key_ref)
            if m:
                region, account, name = m.groups()
                if region != caller.region:
                    raise AWSError("NotFoundException", f"Invalid arn {region}")
                alias_arn = key_ref
            elif key_ref.startswith("alias/"):
                region, account, name = caller.region, caller.account, key_ref
                alias_arn = f"arn:aws:kms:{region}:{account}:{name}"
            else:
                if not KEY_UUID.match(key_ref) and not key_ref.startswith("mrk-"):
                    raise AWSError("NotFoundException", f"Invalid keyId '{key_ref}'")
                key = self.ring.keys.get(key_ref.lower())
                arn = f"arn:aws:kms:{caller.region}:{caller.account}:key/{key_ref}"
                if key is None or key.account != caller.account or key.region != caller.region:
                    raise AWSError("NotFoundException", f"Key '{arn}' does not exist")
                return cross_account_check(caller, info.touch(key), op)
            if name in MANAGED_KEYS and account == caller.account and account != AWS_OWNED_ACCOUNT:
                key = managed_key(self.ring, account, region, name)
            elif name == OWNED_ALIAS and account == caller.account == AWS_OWNED_ACCOUNT:
                # a remote database (dynavault serve --kms-endpoint) finds the owned key by its alias
                key = owned_key(self.ring, region)
            else:
                alias = self.ring.aliases.get((account, region), {}).get(name)
                key = self.ring.keys.get(alias["TargetKeyId"]) if alias is not None else None
                if key is None or hidden(caller, key):
                    raise AWSError("NotFoundException", f"Alias {alias_arn} is not found.")
        return cross_account_check(caller, info.touch(key), op)

    def authorize(
        self,
        caller: Caller,
        key: KmsKey,
        action: str,
        context: dict | None = None,
        context_bytes: bytes = b"",
        extra: dict[str, list[str]] | None = None,
    ) -> None:
        scope = pol.cache_scope(key.policy_doc, caller.source_ip)
        cache_key = (
            key.key_id,
            key.version,
            caller.principal_arn,
            caller.account,
            caller.is_service,
            caller.via_service,
            action,
            context_bytes,
            scope,
            tuple(sorted((k, tuple(v)) for k, v in extra.items())) if extra else (),
        )
        verdict = self._cache.get(cache_key) if scope is not None else None
        if verdict is None:
            verdict = self._evaluate(caller, key, action, context, extra)
            if scope is not None:
                if len(self._cache) > _CACHE_LIMIT:
                    self._cache.clear()
                self._cache[cache_key] = verdict
        if verdict is True:
            return
        raise denied(caller, key, action, explicit=verdict == pol.DENY)

    def _evaluate(
        self, caller: Caller, key: KmsKey, action: str, context: dict | None, extra: dict | None = None
    ) -> bool | str:
        values = pol.request_context(
            account=caller.account,
            principal_arn=caller.principal_arn,
            action=f"kms:{action}",
            source_ip=caller.source_ip,
            via_service=caller.via_service,
            is_service=caller.is_service,
            now=self.ring.clock(),
            encryption_context=context,
            extra={"kms:KeySpec": [key.key_spec], "kms:KeyUsage": [key.key_usage],
                   "kms:KeyOrigin": ["AWS_KMS"],
                   **(extra or {})},
        )
        req = pol.Request(caller.principal_arn, caller.account, caller.is_service, f"kms:{action}", values)
        verdict = pol.evaluate(key.policy_doc, req)
        if verdict == pol.DENY:
            return pol.DENY
        if verdict == pol.ALLOW:
            return True
        for grant in key.grants.values():
            if grant_allows(grant, caller, action, context):
                return True
        return False


def hidden(caller: Caller, key: KmsKey) -> bool:
    """AWS owned keys exist only for the database: to a customer's own calls they are unknown keys."""
    return (
        key.account == AWS_OWNED_ACCOUNT
        and caller.account != AWS_OWNED_ACCOUNT
        and not caller.is_service
        and caller.via_service is None
    )


def cross_account_check(caller: Caller, key: KmsKey, op: str) -> KmsKey:
    if key.account != caller.account and op not in CROSS_ACCOUNT:
        raise denied(caller, key, op)
    return key


def denied(caller: Caller, key: KmsKey, action: str, explicit: bool = False) -> AWSError:
    tail = (
        "with an explicit deny in a resource-based policy"
        if explicit
        else f"because no resource-based policy allows the kms:{action} action"
    )
    return AWSError(
        "AccessDeniedException",
        f"User: {caller.principal_arn} is not authorized to perform: kms:{action} "
        f"on resource: {key.arn} {tail}",
    )


def grantee_matches(principal: str, caller: Caller) -> bool:
    if principal == caller.principal_arn:
        return True
    if caller.is_service:
        return principal == service_root(caller.principal_arn)
    return principal in (caller.account, f"arn:aws:iam::{caller.account}:root")


def grant_allows(grant: dict, caller: Caller, action: str, context: dict | None) -> bool:
    if action not in grant["Operations"] or not grantee_matches(grant["GranteePrincipal"], caller):
        return False
    constraints = grant.get("Constraints") or {}
    if action in ("DescribeKey", "RetireGrant"):
        return True
    ctx = context or {}
    subset = constraints.get("EncryptionContextSubset")
    if subset is not None and any(ctx.get(k) != v for k, v in subset.items()):
        return False
    equals = constraints.get("EncryptionContextEquals")
    if equals is not None and ctx != equals:
        return False
    return True
