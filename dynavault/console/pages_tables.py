"""Table pages: the list, create and delete, one table (items, indexes, its key), one item."""

from __future__ import annotations

import re
from typing import Any

import orjson

from dynavault.errors import AWSError

from . import format as fmt
from .app import Page
from .http import Response, redirect, url
from .tables_view import KeyDirectory, key_choices, key_history, table_row

PAGE_SIZE = 50
TABLES_PER_PAGE = 100
_NAME = r"(?P<name>arn:aws:dynamodb:[^/]+:table/[^/]+|[^/]+)"
_TYPES = ("S", "N", "B")
_SK_OPS = {"=": "=", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "begins_with": "begins_with"}


def tables(page: Page, _m: re.Match) -> Response:
    """All table names (ListTables), filtered by a substring; the rows of one page of them described."""
    keys = KeyDirectory(page.calls)
    names = page.calls.table_names()
    total = len(names)
    needle = page.request.arg("q").strip()
    if needle:
        names = [n for n in names if needle.lower() in n.lower()]
    start = page.request.arg("start")
    first = next((i for i, n in enumerate(names) if n > start), len(names)) if start else 0
    shown = names[first:first + TABLES_PER_PAGE]
    pitr = None  # asked once per page: a build without point-in-time recovery answers every table the same
    rows = []
    for name in shown:
        row = table_row(page.calls, name, keys, pitr=pitr)
        pitr = pitr if row.pitr_served else "DISABLED"
        rows.append(row)
    following = shown[-1] if first + TABLES_PER_PAGE < len(names) else ""
    return page.render("tables.html", rows=rows, total=total, matched=len(names), first=first, q=needle,
                       next_start=following)


def new_table(page: Page, _m: re.Match) -> Response:
    keys = KeyDirectory(page.calls)
    return page.render("table_new.html", key_choices=key_choices(page.calls, keys), form={})


def _sse_spec(choice: str, key_arn: str) -> dict:
    if choice == "managed":
        return {"Enabled": True, "SSEType": "KMS"}
    if choice == "customer":
        return {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn}
    return {"Enabled": False}


def create_table(page: Page, _m: re.Match) -> Response:
    form = page.form
    name = form.get("name", "").strip()
    schema = [{"AttributeName": form.get("pk", "").strip(), "KeyType": "HASH"}]
    defs = {form.get("pk", "").strip(): form.get("pk_type", "S")}
    if form.get("sk", "").strip():
        schema.append({"AttributeName": form["sk"].strip(), "KeyType": "RANGE"})
        defs[form["sk"].strip()] = form.get("sk_type", "S")
    params: dict[str, Any] = {"TableName": name, "KeySchema": schema, "BillingMode": "PAY_PER_REQUEST"}
    if form.get("gsi", "").strip():
        gsi_schema = [{"AttributeName": form.get("gsi_pk", "").strip(), "KeyType": "HASH"}]
        defs.setdefault(form.get("gsi_pk", "").strip(), form.get("gsi_pk_type", "S"))
        if form.get("gsi_sk", "").strip():
            gsi_schema.append({"AttributeName": form["gsi_sk"].strip(), "KeyType": "RANGE"})
            defs.setdefault(form["gsi_sk"].strip(), form.get("gsi_sk_type", "S"))
        params["GlobalSecondaryIndexes"] = [{"IndexName": form["gsi"].strip(), "KeySchema": gsi_schema,
                                             "Projection": {"ProjectionType": "ALL"}}]
    params["AttributeDefinitions"] = [{"AttributeName": k, "AttributeType": v} for k, v in defs.items()]
    choice = form.get("encryption", "owned")
    if choice != "owned":
        params["SSESpecification"] = _sse_spec(choice, form.get("key_arn", ""))
    if form.get("deletion_protection"):
        params["DeletionProtectionEnabled"] = True
    try:
        page.calls.ddb("CreateTable", **params)
    except AWSError as err:
        keys = KeyDirectory(page.calls)
        return page.render("table_new.html", 400, key_choices=key_choices(page.calls, keys), form=form,
                           error=f"{err.code}: {err.message or ''}")
    page.flash("ok", f"Table {name} created.")
    return redirect(url("/tables/" + name))


def _find(page: Page) -> dict:
    """The items query of this URL (index, key values), sealed like item keys: key values are user data."""
    found = fmt.parse_key_token(page.request.arg("find"), page.session.url_key) or {}
    return {k: v for k, v in found.items() if k in ("index", "pk", "sk_op", "sk") and isinstance(v, str)}


def query_form(page: Page, m: re.Match) -> Response:
    fields = {k: page.form.get(k, "")[:2048] for k in ("index", "pk", "sk_op", "sk")}
    token = fmt.key_token(fields, page.session.url_key) if any(fields[k] for k in ("index", "pk")) else None
    return redirect(url("/tables/" + m["name"], find=token))


def _scan_or_query(page: Page, desc: dict) -> dict:
    """One page of items (Scan, or Query when a partition key value is given) -> template context."""
    args = _find(page)
    index = args.get("index", "")
    schema = desc["KeySchema"]
    if index:
        for group in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            for ix in desc.get(group, []):
                if ix["IndexName"] == index:
                    schema = ix["KeySchema"]
    types = {d["AttributeName"]: d["AttributeType"] for d in desc["AttributeDefinitions"]}
    params: dict[str, Any] = {"TableName": desc["TableName"], "Limit": PAGE_SIZE}
    if index:
        params["IndexName"] = index
    start = fmt.parse_key_token(page.request.arg("start"), page.session.url_key)
    if start:
        params["ExclusiveStartKey"] = start
    pk_value = args.get("pk", "")
    operation = "Scan"
    if pk_value:
        operation = "Query"
        pk = schema[0]["AttributeName"]
        names = {"#pk": pk}
        values = {":pk": {types.get(pk, "S"): pk_value}}
        condition = "#pk = :pk"
        sk_value, sk_op = args.get("sk", ""), _SK_OPS.get(args.get("sk_op", "="), "=")
        if sk_value and len(schema) > 1:
            sk = schema[1]["AttributeName"]
            names["#sk"] = sk
            values[":sk"] = {types.get(sk, "S"): sk_value}
            condition += " AND begins_with(#sk, :sk)" if sk_op == "begins_with" else f" AND #sk {sk_op} :sk"
        params.update(KeyConditionExpression=condition, ExpressionAttributeNames=names,
                      ExpressionAttributeValues=values)
    try:
        result = page.calls.ddb(operation, **params)
    except AWSError as err:
        return {"items": [], "columns": [], "next": "", "items_error": f"{err.code}: {err.message or ''}"}
    items = result.get("Items", [])
    base_keys = [k["AttributeName"] for k in desc["KeySchema"]]
    columns = list(dict.fromkeys([k["AttributeName"] for k in schema] + base_keys))
    for item in items:
        for name in item:
            if name not in columns and len(columns) < 12:
                columns.append(name)
    secret = page.session.url_key
    rows = [{"key": fmt.key_token({k: item[k] for k in base_keys if k in item}, secret), "item": item}
            for item in items]
    last = result.get("LastEvaluatedKey")
    return {"items": rows, "columns": columns, "next": fmt.key_token(last, secret) if last else "", "items_error": ""}


def table(page: Page, m: re.Match) -> Response:
    desc = page.calls.ddb("DescribeTable", TableName=m["name"])["Table"]
    name = desc["TableName"]
    keys = KeyDirectory(page.calls)
    row = table_row(page.calls, name, keys)
    indexes = [dict(ix, kind="global") for ix in desc.get("GlobalSecondaryIndexes", [])]
    indexes += [dict(ix, kind="local") for ix in desc.get("LocalSecondaryIndexes", [])]
    # While a switch or an index build is under way the page refreshes itself: UPDATING shown live, no script.
    busy = (row.sse_status == "UPDATING" or desc.get("TableStatus") in ("CREATING", "UPDATING", "DELETING")
            or any(ix.get("IndexStatus") not in (None, "ACTIVE") for ix in indexes))
    return page.render("table.html", row=row, desc=desc, indexes=indexes, refresh=busy,
                       key_choices=key_choices(page.calls, keys),
                       query=_find(page), find=page.request.arg("find"), paged=bool(page.request.arg("start")),
                       **_scan_or_query(page, desc))


def history(page: Page, m: re.Match) -> Response:
    """The table's key history from the audit trail: its own page, as it reads the trail (the table page stays
    fast whatever the trail's size)."""
    desc = page.calls.ddb("DescribeTable", TableName=m["name"])["Table"]
    keys = KeyDirectory(page.calls)
    return page.render("history.html", row=table_row(page.calls, desc["TableName"], keys, extras=False),
                       history=key_history(page.calls, desc["TableName"]))


def delete_table(page: Page, m: re.Match) -> Response:
    name = m["name"]
    if page.form.get("confirm") != name:
        page.flash("error", "Type the table's name to confirm its deletion.")
        return redirect(url("/tables/" + name))
    try:
        page.calls.ddb("DeleteTable", TableName=name)
    except AWSError as err:
        page.flash("error", f"{err.code}: {err.message or ''}")
        return redirect(url("/tables/" + name))
    page.flash("ok", f"Table {name} is being deleted.")
    return redirect(url("/tables"))


def switch_key(page: Page, m: re.Match) -> Response:
    name = m["name"]
    spec = _sse_spec(page.form.get("encryption", "owned"), page.form.get("key_arn", ""))
    try:
        page.calls.ddb("UpdateTable", TableName=name, SSESpecification=spec)
    except AWSError as err:
        page.flash("error", f"{err.code}: {err.message or ''}")
    else:
        page.flash("ok", "Encryption key switch requested.")
    return redirect(url("/tables/" + name))


def protection(page: Page, m: re.Match) -> Response:
    name = m["name"]
    enabled = page.form.get("enabled") == "true"
    try:
        page.calls.ddb("UpdateTable", TableName=name, DeletionProtectionEnabled=enabled)
    except AWSError as err:
        page.flash("error", f"{err.code}: {err.message or ''}")
    return redirect(url("/tables/" + name))


def item(page: Page, m: re.Match) -> Response:
    desc = page.calls.ddb("DescribeTable", TableName=m["name"])["Table"]
    token = page.request.arg("key")
    key = fmt.parse_key_token(token, page.session.url_key)
    if token and key is None:
        page.flash("error", "That item link is not from this session (links to items end with their session).")
        return redirect(url("/tables/" + desc["TableName"]))
    if key is None:  # a new item: its key attributes, empty
        types = {d["AttributeName"]: d["AttributeType"] for d in desc["AttributeDefinitions"]}
        skeleton = {k["AttributeName"]: {types[k["AttributeName"]]: ""} for k in desc["KeySchema"]}
        return page.render("item.html", desc=desc, key="", text=fmt.pretty(skeleton), error="")
    found = page.calls.ddb("GetItem", TableName=desc["TableName"], Key=key, ConsistentRead=True).get("Item")
    if found is None:
        page.flash("error", "No such item (deleted meanwhile?).")
        return redirect(url("/tables/" + desc["TableName"]))
    return page.render("item.html", desc=desc, key=page.request.arg("key"), text=fmt.pretty(found), error="")


def save_item(page: Page, m: re.Match) -> Response:
    desc = page.calls.ddb("DescribeTable", TableName=m["name"])["Table"]
    name = desc["TableName"]
    text = page.form.get("item", "")
    error = ""
    try:
        value = orjson.loads(text)
        if not isinstance(value, dict):
            raise ValueError("an item is a JSON object of attribute name -> DynamoDB JSON value")
        page.calls.ddb("PutItem", TableName=name, Item=value)
    except (orjson.JSONDecodeError, ValueError) as exc:
        error = f"Not DynamoDB JSON: {exc}"
    except AWSError as err:
        error = f"{err.code}: {err.message or ''}"
    if error:
        return page.render("item.html", 400, desc=desc, key=page.form.get("key", ""), text=text, error=error)
    key = {k["AttributeName"]: value[k["AttributeName"]] for k in desc["KeySchema"]}
    page.flash("ok", "Item saved.")
    return redirect(url("/tables/" + name + "/item", key=fmt.key_token(key, page.session.url_key)))


def delete_item(page: Page, m: re.Match) -> Response:
    name = m["name"]
    key = fmt.parse_key_token(page.form.get("key", ""), page.session.url_key)
    if key is None:
        page.flash("error", "No item key given.")
        return redirect(url("/tables/" + name))
    try:
        page.calls.ddb("DeleteItem", TableName=name, Key=key)
    except AWSError as err:
        page.flash("error", f"{err.code}: {err.message or ''}")
    else:
        page.flash("ok", "Item deleted.")
    return redirect(url("/tables/" + name))


ROUTES = [
    ("GET", r"/tables/?", tables),
    ("GET", r"/tables/new", new_table),
    ("POST", r"/tables/new", create_table),
    ("GET", rf"/tables/{_NAME}/item", item),
    ("GET", rf"/tables/{_NAME}/history", history),
    ("POST", rf"/tables/{_NAME}/item", save_item),
    ("POST", rf"/tables/{_NAME}/item/delete", delete_item),
    ("POST", rf"/tables/{_NAME}/query", query_form),
    ("POST", rf"/tables/{_NAME}/delete", delete_table),
    ("POST", rf"/tables/{_NAME}/sse", switch_key),
    ("POST", rf"/tables/{_NAME}/protection", protection),
    ("GET", rf"/tables/{_NAME}", table),
]
