"""Table control plane: CreateTable, DescribeTable, ListTables, UpdateTable, DeleteTable, tags, limits."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import TYPE_CHECKING

from dynavault.caller import Caller
from dynavault.errors import AWSError, validation
from dynavault.small_ints import small_int
from dynavault.sse.table_keys import MANAGED_ALIAS

from . import on_demand as on_demand_rules
from .catalog import TableMeta
from .describe import deleted_description, table_description
from .indexes import attach_indexes, prepare_indexes, update_indexes
from .on_demand import ON_DEMAND
from .sse_spec import inaccessible_error, parse_sse_specification
from .streams import control as stream_control
from .table_states import STATE_UNTIL, TableStates

if TYPE_CHECKING:
    from .database import Database

log = logging.getLogger("dynavault.dynamodb")

_INVALID = "One or more parameter values were invalid: "
_ARN_RE = re.compile(r"arn:aws:dynamodb:([a-z0-9-]{1,64}):([0-9]{12}):table/([a-zA-Z0-9_.-]{3,255})(/.*)?", re.S)
_NAME_RE = re.compile(r"[a-zA-Z0-9_.-]{3,255}")
MAX_TAGS = 50
_CORAL = "com.amazon.coral.service#"
#: operations whose TableName may be the table's ARN (DynamoDB's "table name overloading")
_TABLE_NAME_OPERATIONS = frozenset({
    "CreateTable", "DescribeTable", "UpdateTable", "DeleteTable", "GetItem", "PutItem", "UpdateItem",
    "DeleteItem", "Query", "Scan", "DescribeTimeToLive", "UpdateTimeToLive", "DescribeContinuousBackups",
    "UpdateContinuousBackups", "CreateBackup", "ListBackups",
    # not served yet; named so that they take an ARN too once they are
    "DescribeContributorInsights", "UpdateContributorInsights", "DescribeKinesisStreamingDestination",
    "EnableKinesisStreamingDestination", "DisableKinesisStreamingDestination",
    "UpdateKinesisStreamingDestination", "DescribeTableReplicaAutoScaling", "UpdateTableReplicaAutoScaling",
})
_TRANSACT_PARTS = ("Get", "ConditionCheck", "Put", "Delete", "Update")


def not_found(message: str = "Requested resource not found") -> AWSError:
    return AWSError("ResourceNotFoundException", message)


def in_use(what: str) -> AWSError:
    return AWSError("ResourceInUseException", f"Attempt to change a resource which is still in use: {what}")


def _being_updated(meta: TableMeta) -> bool:
    """In the UPDATING window an UpdateTable opened (not an SSE key switch, which has its own phases)."""
    return meta.status == "UPDATING" and STATE_UNTIL in meta.extra


# -- validation ------------------------------------------------------------------------------
def _key_schema_length(key_schema: list[dict]) -> None:
    """A member constraint, so reported before any other CreateTable check. (The model's KeySchema shape also
    serves multi-attribute GSI keys, which may have up to 8 elements: the table's own limit is checked here.)"""
    if len(key_schema) > 2:
        raise validation("1 validation error detected: Value '[" + ", ".join(
            f"KeySchemaElement(attributeName={k.get('AttributeName')}, keyType={k.get('KeyType')})"
            for k in key_schema) + "]' at 'keySchema' failed to satisfy constraint: Member must have length less "
            "than or equal to 2")


def _validate_key_schema(key_schema: list[dict], definitions: list[dict]) -> None:
    """The table's KeySchema against its AttributeDefinitions, in DynamoDB's order and texts as dynalite's suite
    recorded them: definitions for every key attribute (a two-element schema, or one with more keys than
    definitions, gets the short text), distinct names, HASH then RANGE."""
    defined = [d["AttributeName"] for d in definitions]
    keys = [k["AttributeName"] for k in key_schema]
    if not key_schema:
        raise validation("Invalid KeySchema: Some index key attributes are not defined in AttributeDefinitions")
    missing = any(k not in defined for k in keys)
    if len(keys) > len(defined) or (len(keys) == 2 and missing):
        raise validation("Invalid KeySchema: Some index key attribute have no definition")
    if missing:
        raise validation(
            _INVALID + "Some index key attributes are not defined in AttributeDefinitions. "
            f"Keys: [{', '.join(keys)}], AttributeDefinitions: [{', '.join(defined)}]"
        )
    if len(keys) > 1 and keys[0] == keys[1]:
        raise validation("Both the Hash Key and the Range Key element in the KeySchema have the same name")
    if key_schema[0].get("KeyType") != "HASH":
        raise validation("Invalid KeySchema: The first KeySchemaElement is not a HASH key type")
    if len(key_schema) > 1 and key_schema[1].get("KeyType") != "RANGE":
        raise validation("Invalid KeySchema: The second KeySchemaElement is not a RANGE key type")
    if len(set(defined)) != len(defined):
        raise validation(_INVALID + "Duplicate AttributeName in AttributeDefinitions")


def _validate_billing(p: dict) -> tuple[str, int, int]:
    mode = p.get("BillingMode") or "PROVISIONED"
    pt = p.get("ProvisionedThroughput")
    if mode == "PAY_PER_REQUEST":
        if pt is not None:
            raise validation(_INVALID + "Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when "
                             "BillingMode is PAY_PER_REQUEST")
        return mode, 0, 0
    if pt is None:
        raise validation(_INVALID + "ReadCapacityUnits and WriteCapacityUnits must both be specified when "
                         "BillingMode is PROVISIONED")
    rcu, wcu = int(pt.get("ReadCapacityUnits", 0)), int(pt.get("WriteCapacityUnits", 0))
    if rcu < 1 or wcu < 1:
        raise validation(_INVALID + "ReadCapacityUnits and WriteCapacityUnits must both be specified when "
                         "BillingMode is PROVISIONED")
    return mode, rcu, wcu


#: DynamoDB's documented tag alphabet: letters, whitespace, numbers and + - = . _ : /
_TAG_CHARS = re.compile(r"[\w\s+\-=.:/]*")
_TAG_PATTERN = r"[\p{L}\p{Z}\p{N}_.:/=+\-]*"


def _tag_character_errors(tags: list[dict]) -> list[str]:
    """Tag keys and values outside DynamoDB's alphabet, as constraint violations. No recorded DynamoDB answer
    for this was found; the form is the AWS validation framework's, with the documented alphabet as pattern."""
    errors = []
    for i, tag in enumerate(tags, 1):
        for member in ("Value", "Key"):  # the order the service reports a Tag's members (server/shapes.py)
            text = tag.get(member)
            # \w also takes "_" and every Unicode letter and digit, as the documented rule does
            if isinstance(text, str) and not _TAG_CHARS.fullmatch(text):
                errors.append(f"Value '{text}' at 'tags.{i}.member.{member.lower()}' failed to satisfy constraint: "
                              f"Member must satisfy regular expression pattern: {_TAG_PATTERN}")
    return errors


def _check_tag_characters(tags: list[dict]) -> None:
    errors = _tag_character_errors(tags)
    if errors:
        count = f"{len(errors)} validation error{'s' if len(errors) > 1 else ''} detected: "
        raise validation(count + "; ".join(errors))


def _validate_tags(tags: list[dict]) -> None:
    _check_tag_characters(tags)
    if len(tags) > MAX_TAGS:
        raise validation("The number of tags exceeds the limit of 50")
    seen = set()
    for tag in tags:
        key = tag.get("Key")
        if key in seen:
            raise validation("Duplicate tag keys found. Please remove duplicate tags")
        seen.add(key)
        if str(key).startswith("aws:"):
            raise validation("Reserved tag key prefix: aws:")


def index_trees(meta: TableMeta) -> list[tuple[int, str]]:
    """(tree id, label) of the base table (0) and of every secondary index: each has its own partitions."""
    return [(0, "base table")] + [(int(d["IndexId"]), f"index {d['IndexName']}")
                                  for d in meta.local_indexes + meta.global_indexes]


def index_ids(meta: TableMeta) -> list[int]:
    return [index_id for index_id, _ in index_trees(meta)]


# -- operations ------------------------------------------------------------------------------
def create_table(db: Database, caller: Caller, p: dict, *, status: str = "ACTIVE",
                 extra: dict | None = None) -> dict:
    """CreateTable; a restore makes its table here too (``status`` CREATING and its progress in ``extra``,
    written with the catalog entry, so the table never shows ACTIVE before it is filled)."""
    name = p["TableName"]
    key_schema = p.get("KeySchema") or []
    definitions = p.get("AttributeDefinitions") or []
    # DynamoDB's order: the constraint list, then throughput, then the key schema, then the indexes
    _key_schema_length(key_schema)
    _check_tag_characters(p.get("Tags") or [])
    mode_billing, rcu, wcu = _validate_billing(p)
    on_demand = on_demand_rules.merge(p.get("OnDemandThroughput"), {}, mode_billing)
    _validate_key_schema(key_schema, definitions)
    key_names = {k["AttributeName"] for k in key_schema}
    index_names = set()
    for idx in (p.get("LocalSecondaryIndexes") or []) + (p.get("GlobalSecondaryIndexes") or []):
        for k in idx.get("KeySchema") or []:
            index_names.add(k["AttributeName"])
    defined = {d["AttributeName"] for d in definitions}
    if not (p.get("LocalSecondaryIndexes") or p.get("GlobalSecondaryIndexes")) and defined != key_names:
        raise validation(_INVALID + "Number of attributes in KeySchema does not exactly match number of attributes "
                         "defined in AttributeDefinitions")
    tags = p.get("Tags") or []
    _validate_tags(tags)
    sse_mode, key_id = parse_sse_specification(p.get("SSESpecification"))
    stream_view = stream_control.check_create_spec(p.get("StreamSpecification"))
    indexes = prepare_indexes(p, key_schema, definitions)
    with db.catalog.lock:
        existing = db.catalog.get(caller.account, caller.region, name)
        if existing is not None and existing.status == "CREATING":
            raise in_use(f"Table is being created: {name}")
        if existing is not None or db.table_states.deleting(db, caller.account, caller.region, name) is not None:
            raise AWSError("ResourceInUseException", f"Table already exists: {name}")
        table_id = str(uuid.uuid4())
        key_arn, sse_mode = db.keys.resolve(caller, sse_mode, key_id)
        sse = db.keys.create_table_keys(caller, name, uuid.UUID(table_id).bytes, sse_mode, key_arn)
        meta = TableMeta(
            table_id=table_id,
            name=name,
            account=caller.account,
            region=caller.region,
            key_schema=key_schema,
            attribute_definitions=definitions,
            billing_mode=mode_billing,
            read_capacity=rcu,
            write_capacity=wcu,
            last_pay_per_request=time.time() if mode_billing == "PAY_PER_REQUEST" else None,
            deletion_protection=bool(p.get("DeletionProtectionEnabled", False)),
            table_class=p.get("TableClass"),
            tags=tags,
            sse=sse,
            status=status,
            extra={**(extra or {}), **({ON_DEMAND: on_demand} if on_demand else {})},
        )
        attach_indexes(meta, indexes)
        if status == "ACTIVE":  # a restore shows CREATING until it is filled, whatever this setting says
            TableStates.begin(db, meta, "CREATING", db.settings.create_table_seconds)
        codec = db.keys.live_crypto(sse["table_key_blob"]).codec
        with db.items.write() as w:
            # the partition directories (DESIGN.md invariant 4) exist from the start, with the catalog entry
            for index_id in index_ids(meta):
                w.create_partitions(meta, codec, index_id)
            if stream_view is not None and db.streams is not None:
                stream_control.enable(db.streams, w.tx, meta, stream_view, meta.created)
            db.catalog.put(w.tx, meta)
        db.catalog.remember(meta)
    log.info("table created: %s (account %s, region %s, key %s)", name, caller.account, caller.region,
             sse.get("key_arn") if sse_mode != "OWNED" else "AWS owned")
    return {"TableDescription": table_description(db.catalog, meta, "CREATING")}


def describe_table(db: Database, caller: Caller, p: dict) -> dict:
    name = p["TableName"]
    meta = db.catalog.get(caller.account, caller.region, name)
    if meta is None:
        gone = db.table_states.deleting(db, caller.account, caller.region, name)
        if gone is not None:
            return {"Table": gone.description}
        raise not_found(f"Requested resource not found: Table: {name} not found")
    db.table_states.settle(db, meta)
    return {"Table": table_description(db.catalog, meta)}


def list_tables(db: Database, caller: Caller, p: dict) -> dict:
    limit = p.get("Limit", 100)
    start = p.get("ExclusiveStartTableName")
    names = sorted([t.name for t in db.catalog.list(caller.account, caller.region)]
                   + db.table_states.deleting_names(db, caller.account, caller.region))
    if start is not None:
        names = [n for n in names if n > start]
    out: dict = {"TableNames": names[:limit]}
    if len(names) > limit:
        out["LastEvaluatedTableName"] = names[limit - 1]
    return out


def _settled_table(db: Database, caller: Caller, name: str) -> TableMeta:
    """The table, in the state its timers put it in by now; DynamoDB's answers for one being deleted or absent."""
    meta = db.catalog.get(caller.account, caller.region, name)
    if meta is None:
        if db.table_states.deleting(db, caller.account, caller.region, name) is not None:
            raise in_use(f"Table is being deleted: {name}")
        raise not_found(f"Requested resource not found: Table: {name} not found")
    db.table_states.settle(db, meta)
    return meta


def update_table(db: Database, caller: Caller, p: dict) -> dict:
    name = p["TableName"]
    # what the request alone shows is answered before the table is looked up
    changes = [k for k in ("ProvisionedThroughput", "BillingMode", "StreamSpecification", "GlobalSecondaryIndexUpdates",
                           "SSESpecification", "ReplicaUpdates", "TableClass", "DeletionProtectionEnabled",
                           "AttributeDefinitions", "OnDemandThroughput", "WarmThroughput") if k in p]
    if not changes or changes == ["AttributeDefinitions"]:
        raise validation("At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, "
                         "GlobalSecondaryIndexUpdates or SSESpecification or ReplicaUpdates is required")
    if "SSESpecification" in p and len([c for c in changes if c != "AttributeDefinitions"]) > 1:
        raise validation(_INVALID + "Server-Side Encryption modification must be the only operation in the request")
    if "ReplicaUpdates" in p and db.replication is not None:
        db.replication.check_request(p, changes)
    meta = _settled_table(db, caller, name)
    if STATE_UNTIL in meta.extra and meta.status == "CREATING":
        raise in_use(f"Table is being created: {name}")
    if _being_updated(meta):
        raise in_use(f"Table: {name} is in the process of being updated.")
    if "SSESpecification" in p:
        if db.replication is not None and meta.extra.get("replication"):  # the group's type fans out
            return db.replication.update_sse(caller, meta, p["SSESpecification"])
        return db.sse.update_sse(caller, meta, p["SSESpecification"])
    if "ReplicaUpdates" in p and db.replication is not None:
        if meta.status == "CREATING":
            raise in_use(f"Table is being created: {name}")
        return db.replication.update(caller, meta, p)
    if meta.status == "CREATING":  # being restored
        raise in_use(f"Table is being created: {name}")
    # sse-spec §1.5: index builds need the data; an archiving or archived table takes no change at all
    if meta.status in ("ARCHIVING", "ARCHIVED") or (
            meta.status == "INACCESSIBLE_ENCRYPTION_CREDENTIALS" and "GlobalSecondaryIndexUpdates" in p):
        raise inaccessible_error(meta)
    _refuse_unchanged_throughput(meta, p)
    if "StreamSpecification" in p and db.replication is not None:
        db.replication.refuse_stream_change(meta, p["StreamSpecification"])
    if "StreamSpecification" in p:
        if "GlobalSecondaryIndexUpdates" in p:
            raise validation(_INVALID + "You cannot create or delete index while changing stream status")
        stream_view = stream_control.check_update_spec(meta, p["StreamSpecification"])
    # checked before anything changes: a refusal must leave the cached table as it was
    on_demand = on_demand_rules.merge(p.get("OnDemandThroughput"), meta.extra.get(ON_DEMAND) or {},
                                      p.get("BillingMode", meta.billing_mode), update=True)
    with db.catalog.lock:
        if "BillingMode" in p or "ProvisionedThroughput" in p:
            merged = {"BillingMode": p.get("BillingMode", meta.billing_mode)}
            if "ProvisionedThroughput" in p:
                merged["ProvisionedThroughput"] = p["ProvisionedThroughput"]
            elif merged["BillingMode"] == "PROVISIONED":
                if meta.billing_mode == "PAY_PER_REQUEST":
                    raise validation(_INVALID + "ProvisionedThroughput must be specified when BillingMode is "
                                     "PROVISIONED")
                merged["ProvisionedThroughput"] = {"ReadCapacityUnits": meta.read_capacity,
                                                   "WriteCapacityUnits": meta.write_capacity}
            mode, rcu, wcu = _validate_billing(merged)
            if mode == "PAY_PER_REQUEST" and meta.billing_mode != "PAY_PER_REQUEST":
                meta.last_pay_per_request = time.time()
            meta.billing_mode, meta.read_capacity, meta.write_capacity = mode, rcu, wcu
        if "OnDemandThroughput" in p:
            meta.extra = {k: v for k, v in meta.extra.items() if k != ON_DEMAND}
            if on_demand:
                meta.extra[ON_DEMAND] = on_demand
        if "DeletionProtectionEnabled" in p:
            meta.deletion_protection = bool(p["DeletionProtectionEnabled"])
        if "TableClass" in p:
            meta.table_class = p["TableClass"]
        if "GlobalSecondaryIndexUpdates" in p:
            update_indexes(db, caller, meta, p)
        TableStates.begin(db, meta, "UPDATING", db.settings.update_table_seconds)
        with db.catalog.transaction() as tx:  # the stream's rows and the table's record commit together
            if "StreamSpecification" in p and db.streams is not None:
                if stream_view is not None:
                    stream_control.enable(db.streams, tx, meta, stream_view, time.time())
                else:
                    stream_control.disable(db.streams, tx, meta, time.time())
            db.catalog.put(tx, meta)
        db.catalog.remember(meta)
    return {"TableDescription": table_description(db.catalog, meta)}


def _refuse_unchanged_throughput(meta: TableMeta, p: dict) -> None:
    """DynamoDB refuses an UpdateTable that asks a provisioned table for the throughput it already has."""
    pt = p.get("ProvisionedThroughput")
    if pt is None or meta.billing_mode != "PROVISIONED" or p.get("BillingMode", "PROVISIONED") != "PROVISIONED":
        return
    rcu, wcu = pt.get("ReadCapacityUnits"), pt.get("WriteCapacityUnits")
    if rcu == meta.read_capacity and wcu == meta.write_capacity:
        raise validation(
            "The provisioned throughput for the table will not change. The requested value equals the current value. "
            f"Current ReadCapacityUnits provisioned for the table: {meta.read_capacity}. Requested ReadCapacityUnits: "
            f"{rcu}. Current WriteCapacityUnits provisioned for the table: {meta.write_capacity}. Requested "
            f"WriteCapacityUnits: {wcu}. Refer to the Amazon DynamoDB Developer Guide for current limits and how to "
            "request higher limits.")


def delete_table(db: Database, caller: Caller, p: dict) -> dict:
    name = p["TableName"]
    with db.catalog.lock:
        meta = _settled_table(db, caller, name)
        if meta.deletion_protection:
            raise validation("Resource cannot be deleted as it is currently protected against deletion. Disable "
                             "deletion protection first.")
        if meta.sse_state.get("phase"):
            raise AWSError("ResourceInUseException", "Attempt to change a resource which is still in use: Table: "
                           f"{name} is in the process of being updated.")
        if _being_updated(meta):
            raise in_use(f"Table: {name} is in the process of being updated.")
        if meta.status == "CREATING":  # being created or restored
            raise in_use(f"Table is being created: {name}")
        if db.replication is not None:
            db.replication.check_delete(meta)
        # DescribeTable shows the whole table while it is DELETING; DeleteTable's own answer is shorter
        desc = table_description(db.catalog, meta, "DELETING")
        answer = deleted_description(db.catalog, meta)
        with db.items.write() as w:
            for hook in db.drop_hooks:
                hook(w.tx, meta)
            w.drop(meta)
            if db.streams is not None:  # stream records go with the table's keys (crypto-shredded)
                db.streams.drop_table(w.tx, meta.id_bytes)
            db.catalog.remove(w.tx, meta)
            db.table_states.deleted(db, meta, desc, w.tx)  # every worker shows it DELETING for the window
        db.catalog.forget(meta)
    if db.replication is not None:  # a member's region leaves its global table
        db.replication.table_deleted(meta)
    db.keys.retire(meta.key_ref())
    log.info("table deleted: %s (account %s, region %s)", name, caller.account, caller.region)
    return {"TableDescription": answer}


# -- table ARNs ------------------------------------------------------------------------------
def _arn_table(caller: Caller, arn: str, operation: str) -> str:
    """The name in a table ARN of the caller's account and region (the only tables it can reach here).

    Another account's table is refused as DynamoDB refuses it without a resource-based policy (the account
    is checked first, so the answer says nothing about that account's regions); an index or stream ARN, or
    another region, is not a table ARN this endpoint serves."""
    m = _ARN_RE.fullmatch(arn)
    if m is None:
        raise validation(f"Invalid TableArn: Invalid ResourceArn provided as input {arn}")
    region, account, name, rest = m.groups()
    if account != caller.account:
        raise AWSError(
            "AccessDeniedException",
            f"User: {caller.principal_arn} is not authorized to perform: dynamodb:{operation} on resource: "
            f"{arn} because no resource-based policy allows the dynamodb:{operation} action",
            type_prefix=_CORAL,
        )
    if rest or region != caller.region:
        raise validation(f"Invalid TableArn: Invalid ResourceArn provided as input {arn}")
    return name


def table_name(caller: Caller, value: str, operation: str) -> str:
    """A TableName as given (a name, or the table's ARN) -> the table's name, validated."""
    if _NAME_RE.fullmatch(value):
        return value
    if value.startswith("arn:aws:dynamodb:"):
        return _arn_table(caller, value, operation)
    # The front end's shape check refuses these first; this keeps every caller of the service safe too.
    raise validation(f"1 validation error detected: Value '{value}' at 'tableName' failed to satisfy constraint: "
                     "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+")


def named_tables(params: object) -> list[str]:
    """The table names (or ARNs) a request names, as sent, in order and each once: TableName, the keys of a
    batch's RequestItems, each transaction part's TableName (the first 100 parts: DynamoDB's limit)."""
    if type(params) is not dict:
        return []
    name = params.get("TableName")
    if type(name) is str:
        return [name]
    names: list[str] = []
    items = params.get("RequestItems")
    if isinstance(items, dict):
        names.extend(k for k in items if isinstance(k, str))
    parts = params.get("TransactItems")
    if isinstance(parts, list):
        for part in parts[:100]:
            if isinstance(part, dict):
                names.extend(body["TableName"] for body in part.values()
                             if isinstance(body, dict) and isinstance(body.get("TableName"), str))
    return list(dict.fromkeys(names))


def resolve_table_names(operation: str, caller: Caller, params: dict) -> dict:
    """The request with every table ARN replaced by the table's name (TableName, batch RequestItems keys,
    transaction parts), so handlers, echoed names and errors only ever see names."""
    if not isinstance(params, dict):
        return params
    if operation in _TABLE_NAME_OPERATIONS:
        value = params.get("TableName")
        if isinstance(value, str):
            name = table_name(caller, value, operation)
            if name != value:
                params = {**params, "TableName": name}
    elif operation in ("BatchGetItem", "BatchWriteItem"):
        items = params.get("RequestItems")
        if isinstance(items, dict):
            resolved: dict = {}
            for key, value in items.items():
                name = table_name(caller, key, operation) if isinstance(key, str) else key
                if name in resolved:
                    raise validation(f"{_INVALID}Table {name} is named more than once in RequestItems "
                                     "(by name and by ARN)")
                resolved[name] = value
            params = {**params, "RequestItems": resolved}
    elif operation in ("TransactGetItems", "TransactWriteItems"):
        parts = params.get("TransactItems")
        if isinstance(parts, list):
            params = {**params, "TransactItems": [_resolve_part(caller, part, operation) for part in parts]}
    return params


def _resolve_part(caller: Caller, part: object, operation: str) -> object:
    if not isinstance(part, dict):
        return part
    out = part
    for kind in _TRANSACT_PARTS:
        body = part.get(kind)
        if isinstance(body, dict) and isinstance(body.get("TableName"), str):
            name = table_name(caller, body["TableName"], operation)
            if name != body["TableName"]:
                out = {**out, kind: {**body, "TableName": name}}
    return out


def _table_for_arn(db: Database, caller: Caller, arn: str, operation: str) -> TableMeta:
    if not isinstance(arn, str):  # _arn_table refuses any other malformed ARN with the same text
        raise validation(f"Invalid TableArn: Invalid ResourceArn provided as input {arn}")
    m = _ARN_RE.fullmatch(arn)
    if m is not None and m.group(2) == caller.account and (m.group(4) or "").startswith("/index/"):
        # An index has its own ARN but no tags of its own. Today's text; DynamoDB answered
        # "Invalid TableArn: Invalid ResourceArn provided as input <arn>" until late 2025.
        raise validation(f"{_INVALID}Invalid resource arn provided, only table or stream is accepted. Provided "
                         f"resource arn: {arn}")
    name = _arn_table(caller, arn, operation)
    meta = db.catalog.get(caller.account, caller.region, name)
    # a table still being created is not yet known to tagging (DynamoDB answers not found then too)
    if meta is None or (meta.status == "CREATING" and STATE_UNTIL in meta.extra):
        raise not_found(f"Requested resource not found: ResourcArn: {arn} not found")
    return meta


def tag_resource(db: Database, caller: Caller, p: dict) -> dict:
    meta = _table_for_arn(db, caller, p["ResourceArn"], "TagResource")
    with db.catalog.lock:
        merged = {t["Key"]: t["Value"] for t in meta.tags}
        _validate_tags(p.get("Tags") or [])
        for tag in p.get("Tags") or []:
            merged[tag["Key"]] = tag["Value"]
        if len(merged) > MAX_TAGS:
            raise validation("The number of tags exceeds the limit of 50")
        meta.tags = [{"Key": k, "Value": v} for k, v in merged.items()]
        db.catalog.save(meta)
    return {}


def untag_resource(db: Database, caller: Caller, p: dict) -> dict:
    meta = _table_for_arn(db, caller, p["ResourceArn"], "UntagResource")
    with db.catalog.lock:
        drop = set(p.get("TagKeys") or [])
        meta.tags = [t for t in meta.tags if t["Key"] not in drop]
        db.catalog.save(meta)
    return {}


def list_tags_of_resource(db: Database, caller: Caller, p: dict) -> dict:
    meta = _table_for_arn(db, caller, p["ResourceArn"], "ListTagsOfResource")
    tags = meta.tags
    start = small_int(p.get("NextToken")) or 0
    page = tags[start:start + 10]
    out: dict = {"Tags": page}
    if start + 10 < len(tags):
        out["NextToken"] = str(start + 10)
    return out


def describe_limits(db: Database, caller: Caller, p: dict) -> dict:
    return {"AccountMaxReadCapacityUnits": 80000, "AccountMaxWriteCapacityUnits": 80000,
            "TableMaxReadCapacityUnits": 40000, "TableMaxWriteCapacityUnits": 40000}


def describe_endpoints(db: Database, caller: Caller, p: dict) -> dict:
    # This server's own address (DynamoDB names its regional endpoint, dynamodb.<region>.amazonaws.com).
    address = caller.endpoint or f"dynamodb.{caller.region}.amazonaws.com"
    return {"Endpoints": [{"Address": address, "CachePeriodInMinutes": 1440}]}


HANDLERS = {
    "CreateTable": create_table,
    "DescribeTable": describe_table,
    "ListTables": list_tables,
    "UpdateTable": update_table,
    "DeleteTable": delete_table,
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
    "ListTagsOfResource": list_tags_of_resource,
    "DescribeLimits": describe_limits,
    "DescribeEndpoints": describe_endpoints,
}

__all__ = ["HANDLERS", "not_found", "resolve_table_names", "table_name", "MANAGED_ALIAS"]
