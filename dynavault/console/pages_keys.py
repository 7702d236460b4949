"""KMS key pages: the list, create, one key (state, policy, rotation, grants, tables it protects), actions."""

from __future__ import annotations

import re
from typing import Any

from dynavault.errors import AWSError
from dynavault.small_ints import small_int

from .app import Page
from .http import Response, redirect, url
from .tables_view import KeyDirectory, table_row

_KEY = r"(?P<key>[A-Za-z0-9-]{1,64})"
_DONE = {"enable": "Key enabled.", "disable": "Key disabled.", "schedule-deletion": "Key deletion scheduled.",
         "cancel-deletion": "Key deletion cancelled (the key stays disabled until you enable it).",
         "rotation-on": "Automatic rotation enabled.", "rotation-off": "Automatic rotation disabled."}


def keys(page: Page, _m: re.Match) -> Response:
    directory = KeyDirectory(page.calls)
    rows = []
    for entry in page.calls.key_ids():
        try:
            meta = page.calls.kms("DescribeKey", KeyId=entry["KeyId"])["KeyMetadata"]
        except AWSError as err:
            meta = {"KeyId": entry["KeyId"], "Arn": entry["KeyArn"], "KeyState": err.code}
        rows.append({"meta": meta, "aliases": directory.names.get(entry["KeyId"], [])})
    rows.sort(key=lambda r: (r["meta"].get("KeyManager") != "CUSTOMER", r["meta"].get("CreationDate") or 0))
    return page.render("keys.html", rows=rows)


def create_key(page: Page, _m: re.Match) -> Response:
    params: dict[str, Any] = {}
    description = page.form.get("description", "").strip()
    if description:
        params["Description"] = description
    try:
        meta = page.calls.kms("CreateKey", **params)["KeyMetadata"]
        alias = page.form.get("alias", "").strip()
        if alias:
            page.calls.kms("CreateAlias", AliasName=alias if alias.startswith("alias/") else "alias/" + alias,
                           TargetKeyId=meta["KeyId"])
    except AWSError as err:
        page.flash("error", f"{err.code}: {err.message or ''}")
        return redirect(url("/keys"))
    page.flash("ok", f"Key {meta['KeyId']} created.")
    return redirect(url("/keys/" + meta["KeyId"]))


def _optional(call, *args: Any, **kwargs: Any) -> tuple[dict, str]:
    try:
        return call(*args, **kwargs), ""
    except AWSError as err:
        return {}, f"{err.code}: {err.message or ''}"


def key(page: Page, m: re.Match) -> Response:
    calls = page.calls
    meta = calls.kms("DescribeKey", KeyId=m["key"])["KeyMetadata"]
    key_id = meta["KeyId"]
    policy, policy_error = _optional(calls.kms, "GetKeyPolicy", KeyId=key_id, PolicyName="default")
    rotation, rotation_error = _optional(calls.kms, "GetKeyRotationStatus", KeyId=key_id)
    grants, grants_error = _optional(calls.kms, "ListGrants", KeyId=key_id)
    directory = KeyDirectory(calls)
    protected = [row for row in (table_row(calls, n, directory, extras=False) for n in calls.table_names())
                 if row.key_arn == meta["Arn"]]
    return page.render("key.html", meta=meta, aliases=directory.names.get(key_id, []),
                       policy=policy.get("Policy", ""), policy_error=policy_error, rotation=rotation,
                       rotation_error=rotation_error, grants=grants.get("Grants", []), grants_error=grants_error,
                       tables=protected)


def key_action(page: Page, m: re.Match) -> Response:
    key_id, action = m["key"], m["action"]
    calls = page.calls
    try:
        if action == "enable":
            calls.kms("EnableKey", KeyId=key_id)
        elif action == "disable":
            calls.kms("DisableKey", KeyId=key_id)
        elif action == "schedule-deletion":
            days = page.form.get("days", "30")
            calls.kms("ScheduleKeyDeletion", KeyId=key_id, PendingWindowInDays=small_int(days, 3) or 30)
        elif action == "cancel-deletion":
            calls.kms("CancelKeyDeletion", KeyId=key_id)
        elif action == "rotation-on":
            calls.kms("EnableKeyRotation", KeyId=key_id)
        elif action == "rotation-off":
            calls.kms("DisableKeyRotation", KeyId=key_id)
    except AWSError as err:
        page.flash("error", f"{err.code}: {err.message or ''}")
    else:
        page.flash("ok", _DONE[action])
    return redirect(url("/keys/" + key_id))


ROUTES = [
    ("GET", r"/keys/?", keys),
    ("POST", r"/keys/new", create_key),
    ("POST", rf"/keys/{_KEY}/(?P<action>enable|disable|schedule-deletion|cancel-deletion|rotation-on|rotation-off)",
     key_action),
    ("GET", rf"/keys/{_KEY}", key),
]
