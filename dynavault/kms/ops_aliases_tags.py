"""Alias and tag operations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from dynavault.caller import Caller
from dynavault.errors import AWSError
from dynavault.kms import params as prm
from dynavault.kms import policy as pol
from dynavault.kms.authz import denied
from dynavault.kms.context import Handler, KmsContext
from dynavault.kms.model import ALIAS_ARN, CallInfo, KmsKey

_ALIAS_NAME = re.compile(r"^[a-zA-Z0-9:/_-]+$")
_ALIAS_DOC = (
    'Alias must start with the prefix "alias/". Please see '
    "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html"
)


# -- aliases -------------------------------------------------------------------------------------------------

def _alias_name(caller: Caller, params: dict, op: str) -> str:
    name = params.get("AliasName")
    if name is None:
        raise prm.not_null("aliasName")
    if not isinstance(name, str):
        raise AWSError("SerializationException", "Unexpected value type for aliasName")
    if not 1 <= len(name) <= 256:
        raise prm.validation("aliasName", name, "Member must have length less than or equal to 256")
    if not _ALIAS_NAME.match(name):
        raise prm.validation(
            "aliasName", name, "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"
        )
    if not name.startswith("alias/"):
        raise AWSError("ValidationException", _ALIAS_DOC)
    if name.startswith("alias/aws/"):
        # AWS reserves this prefix for AWS managed keys; customers cannot create, move or delete them.
        arn = f"arn:aws:kms:{caller.region}:{caller.account}:{name}"
        raise AWSError(
            "AccessDeniedException",
            f"User: {caller.principal_arn} is not authorized to perform: kms:{op} on resource: {arn} "
            "because the alias/aws/ prefix is reserved for AWS managed keys",
        )
    return name


def _alias_target(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo, op: str) -> KmsKey:
    target = params.get("TargetKeyId")
    if isinstance(target, str) and (target.startswith("alias/") or ALIAS_ARN.match(target)):
        raise AWSError("ValidationException", "Aliases must refer to keys. Not aliases")
    key = ctx.authz.resolve(caller, target, info, op, "targetKeyId")
    if key.account != caller.account:
        raise denied(caller, key, op)
    ctx.authz.authorize(caller, key, op)
    prm.require_state(key, allow_disabled=True)
    return key


def create_alias(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    name = _alias_name(caller, params, "CreateAlias")
    key = _alias_target(ctx, caller, params, info, "CreateAlias")
    with ctx.ring.lock:
        if name in ctx.ring.aliases.get((caller.account, caller.region), {}):
            raise AWSError(
                "AlreadyExistsException",
                f"An alias with the name arn:aws:kms:{caller.region}:"
                f"{caller.account}:{name} already exists",
            )
        ctx.ring.put_alias(caller.account, caller.region, name, key.key_id, create=True)
    return {}


def update_alias(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    name = _alias_name(caller, params, "UpdateAlias")
    current = ctx.ring.aliases.get((caller.account, caller.region), {}).get(name)
    if current is None:
        raise AWSError(
            "NotFoundException",
            f"Alias arn:aws:kms:{caller.region}:{caller.account}:{name} is not found.",
        )
    if current["TargetKeyId"] in ctx.ring.keys:
        info.touch(ctx.ring.keys[current["TargetKeyId"]])
    key = _alias_target(ctx, caller, params, info, "UpdateAlias")
    old = ctx.ring.keys.get(current["TargetKeyId"])
    if old is not None and (old.key_spec, old.key_usage) != (key.key_spec, key.key_usage):
        raise AWSError(
            "ValidationException", f"{old.arn} key usage or key spec does not match {key.arn}."
        )
    ctx.ring.put_alias(caller.account, caller.region, name, key.key_id, create=False)
    return {}


def delete_alias(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    name = _alias_name(caller, params, "DeleteAlias")
    with ctx.ring.lock:
        names = ctx.ring.aliases.get((caller.account, caller.region), {})
        current = names.get(name)
        if current is None:
            raise AWSError(
                "NotFoundException",
                f"Alias arn:aws:kms:{caller.region}:{caller.account}:{name} is not found.",
            )
        key = ctx.ring.keys.get(current["TargetKeyId"])
        if key is not None:
            info.touch(key)
            ctx.authz.authorize(caller, key, "DeleteAlias")
        del names[name]
        ctx.ring.store.delete_alias(caller.account, caller.region, name)
    return {}


def list_aliases(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    names = ctx.ring.aliases.get((caller.account, caller.region), {})
    target = None
    if params.get("KeyId") is not None:
        key = ctx.authz.resolve(caller, params.get("KeyId"), info, "ListAliases")
        target = key.key_id
    entries = []
    for name, doc in sorted(names.items()):
        if target is not None and doc["TargetKeyId"] != target:
            continue
        entries.append(
            {
                "AliasName": name,
                "AliasArn": f"arn:aws:kms:{caller.region}:{caller.account}:{name}",
                "TargetKeyId": doc["TargetKeyId"],
                "CreationDate": doc["CreationDate"],
                "LastUpdatedDate": doc["LastUpdatedDate"],
            }
        )
    page, extra = prm.page(entries, params, 50, 100)
    return {"Aliases": page, **extra}



# -- tags ----------------------------------------------------------------------------------------------------

def tag_resource(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    if params.get("Tags") is None:
        raise prm.not_null("tags")
    tags = prm.tags(params)
    key = ctx.authz.resolve(caller, params.get("KeyId"), info, "TagResource")
    ctx.authz.authorize(caller, key, "TagResource")
    prm.require_state(key, allow_disabled=True)
    with ctx.ring.lock:
        new_keys = {t["TagKey"] for t in tags}
        merged = [t for t in key.tags if t["TagKey"] not in new_keys] + tags
        if len(merged) > pol.MAX_TAGS:  # the key's quota, counting the tags it already has
            raise pol.too_many_tags("LimitExceededException")
        key.tags = merged
        ctx.ring.save(key)
    return {}


def untag_resource(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    keys = params.get("TagKeys")
    if keys is None:
        raise prm.not_null("tagKeys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise AWSError("SerializationException", "Unexpected value type for tagKeys")
    key = ctx.authz.resolve(caller, params.get("KeyId"), info, "UntagResource")
    ctx.authz.authorize(caller, key, "UntagResource")
    prm.require_state(key, allow_disabled=True)
    with ctx.ring.lock:
        key.tags = [t for t in key.tags if t["TagKey"] not in set(keys)]
        ctx.ring.save(key)
    return {}


def list_resource_tags(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    key = ctx.authz.resolve(caller, params.get("KeyId"), info, "ListResourceTags")
    ctx.authz.authorize(caller, key, "ListResourceTags")
    page, extra = prm.page(list(key.tags), params, 50, 50)
    return {"Tags": page, **extra}


HANDLERS: Mapping[str, Handler] = MappingProxyType(
    {
        "CreateAlias": create_alias,
        "UpdateAlias": update_alias,
        "DeleteAlias": delete_alias,
        "ListAliases": list_aliases,
        "TagResource": tag_resource,
        "UntagResource": untag_resource,
        "ListResourceTags": list_resource_tags,
    }
)
