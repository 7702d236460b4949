"""Operations clients call at start-up or from consoles that this server answers without the AWS service
behind them: Contributor Insights, Kinesis streaming destinations, replica auto scaling, resource-based
policies, exports and imports.

What each one keeps is catalog metadata (``TableMeta.extra``), as TTL's setting is: a flag per table or
GSI, a policy document. None of it is item data, and it goes with its table when the table is deleted.

- Contributor Insights: the flag (and mode) is stored per table and per GSI and reported back; no
  CloudWatch rules exist here, so the rule names are what DynamoDB would call them.
- Kinesis streaming destinations and replica auto scaling: there are none; the answers say so.
- Resource-based policies (table and stream ARNs): stored, validated and versioned as DynamoDB does, not
  enforced (this server authorizes by account). Texts from the "ack-api-quirks dynamodb" catalogue, probed
  on real DynamoDB in 2026-10 (DDB-TABLE-207/211/212/213/352/356), and moto's AWS-verified tests
  (tests/test_dynamodb/test_dynamodb_resource_policy.py): RevisionId is the change time in epoch
  milliseconds (13 digits, increasing); an equivalent document (whitespace, key order, a one-element list
  for a string, ``{"AWS": "<account>"}`` for its root ARN) is the same revision; whitespace is not kept.
  DynamoDB's 15-second window between two changes of one policy is not imitated.
- Exports and imports need S3, which this server does not have: listing answers empty, starting one
  answers a ValidationException that says so.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson

from dynavault.caller import Caller
from dynavault.errors import AWSError, validation
from dynavault.small_ints import small_int

from .describe import table_description
from .tables import table_name

if TYPE_CHECKING:
    from .catalog import TableMeta
    from .database import Database

_INVALID = "One or more parameter values were invalid: "
_POLICY_MAX_BYTES = 20480
_NO_POLICY = "NO_POLICY"
_ARN_RE = re.compile(r"arn:([^:]*):dynamodb:([^:]*):([^:]*):table/([^/]+)(?:/(.*))?", re.S)
_ACCOUNT_RE = re.compile(r"[0-9]{12}")
#: list members of a policy statement that may be one string or a list of them
_LISTY = ("Action", "NotAction", "Resource", "NotResource")


def _table(db: Database, caller: Caller, name: str) -> TableMeta:
    meta = db.catalog.get(caller.account, caller.region, name)
    if meta is None:
        raise AWSError("ResourceNotFoundException", f"Requested resource not found: Table: {name} not found")
    return meta


def _named_table(db: Database, caller: Caller, p: dict, operation: str) -> TableMeta:
    return _table(db, caller, table_name(caller, p["TableName"], operation))


# -- Contributor Insights -------------------------------------------------------------------------------
def _insights(meta: TableMeta) -> dict:
    state = meta.extra.get("contributor_insights")
    return state if isinstance(state, dict) else {}


def _insights_target(meta: TableMeta, index: str | None) -> str:
    """The key a table's ("") or a GSI's setting is kept under; only GSIs have Contributor Insights."""
    if index is None:
        return ""
    if not any(g.get("IndexName") == index for g in meta.global_indexes):
        raise AWSError("ResourceNotFoundException",
                       f"Requested resource not found: Index: {index} not found for table {meta.name}")
    return index


def _rules(meta: TableMeta, mode: str, since: float) -> list[str]:
    """The CloudWatch rule names DynamoDB creates (partition keys, and sort keys when the table has one;
    accessed and throttled, or throttled only)."""
    kinds = ["PKT"] if mode == "THROTTLED_KEYS" else ["PKC", "PKT"]
    if len(meta.key_schema) > 1:
        kinds += ["SKT"] if mode == "THROTTLED_KEYS" else ["SKC", "SKT"]
    return [f"DynamoDBContributorInsights-{kind}-{meta.name}-{int(since * 1000)}" for kind in kinds]


def describe_contributor_insights(db: Database, caller: Caller, p: dict) -> dict:
    meta = _named_table(db, caller, p, "DescribeContributorInsights")
    index = p.get("IndexName")
    setting = _insights(meta).get(_insights_target(meta, index)) or {}
    out: dict[str, Any] = {"TableName": meta.name}
    if index is not None:
        out["IndexName"] = index
    if setting.get("enabled"):
        mode = setting.get("mode", "ACCESSED_AND_THROTTLED_KEYS")
        out["ContributorInsightsRuleList"] = _rules(meta, mode, setting["since"])
        out["ContributorInsightsStatus"] = "ENABLED"
        out["ContributorInsightsMode"] = mode
    else:
        out["ContributorInsightsStatus"] = "DISABLED"
    if "changed" in setting:
        out["LastUpdateDateTime"] = setting["changed"]
    return out


def update_contributor_insights(db: Database, caller: Caller, p: dict) -> dict:
    enable = p["ContributorInsightsAction"] == "ENABLE"
    index = p.get("IndexName")
    with db.catalog.lock:
        meta = _named_table(db, caller, p, "UpdateContributorInsights")
        target = _insights_target(meta, index)
        state = dict(_insights(meta))
        now = db.clock()
        mode = p.get("ContributorInsightsMode", "ACCESSED_AND_THROTTLED_KEYS")
        previous = state.get(target) or {}
        since = previous["since"] if previous.get("enabled") and previous.get("mode") == mode else now
        state[target] = {"enabled": enable, "mode": mode, "since": since, "changed": now}
        meta.extra["contributor_insights"] = state
        db.catalog.save(meta)
    out: dict[str, Any] = {"TableName": meta.name}
    if index is not None:
        out["IndexName"] = index
    out["ContributorInsightsStatus"] = "ENABLING" if enable else "DISABLING"
    if enable:
        out["ContributorInsightsMode"] = mode
    return out


def list_contributor_insights(db: Database, caller: Caller, p: dict) -> dict:
    if "TableName" in p:
        tables = [_named_table(db, caller, p, "ListContributorInsights")]
    else:
        tables = db.catalog.list(caller.account, caller.region)
    summaries = []
    for meta in tables:
        state = _insights(meta)
        for index in [None] + [g["IndexName"] for g in meta.global_indexes]:
            setting = state.get(index or "") or {}
            summary: dict[str, Any] = {"TableName": meta.name}
            if index is not None:
                summary["IndexName"] = index
            summary["ContributorInsightsStatus"] = "ENABLED" if setting.get("enabled") else "DISABLED"
            if setting.get("enabled"):
                summary["ContributorInsightsMode"] = setting.get("mode", "ACCESSED_AND_THROTTLED_KEYS")
            summaries.append(summary)
    start = 0
    token = p.get("NextToken")
    if token is not None:
        start = small_int(token)
        if start is None or start > len(summaries):
            raise validation("Invalid NextToken")
    limit = p.get("MaxResults") or 100
    page = summaries[start:start + limit]
    out: dict[str, Any] = {"ContributorInsightsSummaries": page}
    if start + limit < len(summaries):
        out["NextToken"] = str(start + limit)
    return out


# -- Kinesis streaming, replica auto scaling -----------------------------------------------------------
def describe_kinesis_streaming_destination(db: Database, caller: Caller, p: dict) -> dict:
    meta = _named_table(db, caller, p, "DescribeKinesisStreamingDestination")
    return {"TableName": meta.name, "KinesisDataStreamDestinations": []}


def describe_table_replica_auto_scaling(db: Database, caller: Caller, p: dict) -> dict:
    """Every replica of a global table (this region's too), its status and its indexes'; no auto scaling
    settings, as there is no Application Auto Scaling. A table that is not global has no replicas."""
    meta = _named_table(db, caller, p, "DescribeTableReplicaAutoScaling")
    desc = table_description(db.catalog, meta, meta.status)
    replicas = []
    if "Replicas" in desc:
        here = {"RegionName": meta.region, "ReplicaStatus": meta.status,
                "GlobalSecondaryIndexes": [{"IndexName": g["IndexName"], "IndexStatus": g["IndexStatus"]}
                                           for g in desc.get("GlobalSecondaryIndexes", ())]}
        replicas.append(here)
        for r in desc["Replicas"]:
            indexes = [{"IndexName": g["IndexName"], "IndexStatus": "ACTIVE"}
                       for g in r.get("GlobalSecondaryIndexes", ())]
            replicas.append({"RegionName": r["RegionName"], "ReplicaStatus": r["ReplicaStatus"],
                             "GlobalSecondaryIndexes": indexes})
        replicas.sort(key=lambda r: r["RegionName"])
    return {"TableAutoScalingDescription": {"TableName": meta.name, "TableStatus": meta.status,
                                            "Replicas": replicas}}


# -- resource-based policies ----------------------------------------------------------------------------
def _policy_slot(db: Database, caller: Caller, arn: str) -> tuple[TableMeta, str]:
    """The table a ResourceArn names and which of its policies: "table" or "stream"."""
    if not arn.startswith("arn:"):
        raise validation(f"{_INVALID}ARNs must start with 'arn:': {arn}")
    m = _ARN_RE.fullmatch(arn)
    if m is None:
        raise validation(f"{_INVALID}Provided Arn is not a DynamoDB resource {arn}")
    partition, region, account, name, rest = m.groups()
    if partition == "aws" and region == caller.region and _ACCOUNT_RE.fullmatch(account) and account != caller.account:
        raise validation("This action is only supported by accounts that match the resource owner’s account.")
    if partition != "aws" or region != caller.region or account != caller.account:
        raise validation(f"{_INVALID}Invalid resource Arn: {arn}")
    if rest is not None and not rest.startswith("stream/"):
        if rest.startswith("index/"):
            raise validation(f"{_INVALID}Invalid resource arn provided, only table or stream is accepted. Provided "
                             f"resource arn: {arn}")
        raise validation(f"{_INVALID}Provided Arn is not a DynamoDB resource {arn}")
    meta = _table(db, caller, name)
    if rest is None:
        return meta, "table"
    label = rest[len("stream/"):]
    if not meta.stream or meta.stream.get("arn") != arn:
        raise AWSError("ResourceNotFoundException",
                       f"Requested resource not found: Stream: {label} not found for Table: {name}")
    return meta, "stream"


def _policies(meta: TableMeta) -> dict:
    state = meta.extra.get("resource_policy")
    return state if isinstance(state, dict) else {}


def _not_found(arn: str, detail: str | None = None) -> AWSError:
    return AWSError("PolicyNotFoundException",
                    f"Resource-based policy not found for the provided ResourceArn: {detail or arn}")


def _canonical(doc: Any) -> Any:
    """A policy in the form two equivalent documents share (key order, one-element lists, account ids)."""
    if isinstance(doc, dict):
        out = {}
        for key, value in doc.items():
            value = _canonical(value)
            if key in _LISTY and isinstance(value, list) and len(value) == 1:
                value = value[0]
            out[key] = value
        return dict(sorted(out.items()))
    if isinstance(doc, list):
        return [_canonical(v) for v in doc]
    return doc


def _principals(principal: Any) -> Any:
    """{"AWS": "<account id>"} reads back as the account's root ARN; a list naming one principal twice as
    one string (DDB-TABLE-352)."""
    if not isinstance(principal, dict) or "AWS" not in principal:
        return principal
    names = principal["AWS"] if isinstance(principal["AWS"], list) else [principal["AWS"]]
    expanded: list = []
    for name in names:
        if isinstance(name, str) and _ACCOUNT_RE.fullmatch(name):
            name = f"arn:aws:iam::{name}:root"
        if name not in expanded:
            expanded.append(name)
    return {**principal, "AWS": expanded[0] if len(expanded) == 1 else expanded}


def _parse_policy(text: str) -> dict:
    """The stored form of a policy document, after DynamoDB's checks (its texts, DDB-TABLE-211/352/356)."""
    if len(text.encode("utf-8", "surrogatepass")) > _POLICY_MAX_BYTES:
        raise validation(f"{_INVALID}Maximum policy size of {_POLICY_MAX_BYTES} bytes exceeded")
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        raise validation(f"{_INVALID}Invalid policy document: This policy contains invalid Json")
    statements = doc.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        raise validation(f"{_INVALID}Invalid policy document: Could not parse the policy: Statement is empty!")
    sids = [s.get("Sid") for s in statements if isinstance(s, dict) and s.get("Sid") is not None]
    if len(sids) != len(set(map(str, sids))):
        raise validation(f"{_INVALID}Invalid policy document: The Statement Ids in the policy are not unique")
    for statement in statements:
        if not isinstance(statement, dict):
            raise validation(f"{_INVALID}Invalid policy document: This policy contains invalid Json")
        if "Resource" not in statement and "NotResource" not in statement:
            raise validation(f"{_INVALID}Invalid policy document: Missing required field Resource")
        principal = statement.get("Principal")
        unbounded = principal == "*" or (isinstance(principal, dict) and principal.get("AWS") in ("*", ["*"]))
        if unbounded and statement.get("Effect") == "Allow" and "Condition" not in statement:
            raise validation("Resource-based policy grants unbounded access in one or more elements. Please revise "
                             "the policy to ensure least-privilege form of access")
    fixed = [{**s, "Principal": _principals(s["Principal"])} if "Principal" in s else s for s in statements]
    doc["Statement"] = fixed if isinstance(doc["Statement"], list) else fixed[0]
    return doc


def _revision(previous: str | None, now: float) -> str:
    """Epoch milliseconds of the change, above the previous revision's (ids increase, as DynamoDB's do)."""
    ms = int(now * 1000)
    last = small_int(previous)
    if last is not None:
        ms = max(ms, last + 1)
    return str(ms)


def put_resource_policy(db: Database, caller: Caller, p: dict) -> dict:
    arn = p["ResourceArn"]
    with db.catalog.lock:
        meta, slot = _policy_slot(db, caller, arn)
        doc = _parse_policy(p["Policy"])
        policies = dict(_policies(meta))
        current = policies.get(slot)
        expected = p.get("ExpectedRevisionId")
        if current is not None and expected == _NO_POLICY:
            raise _not_found(arn, f"Requested policy update expecting none to be present for table {meta.name}, "
                             f"but a policy exists with revision id {current['revision']}.")
        if current is not None and expected is not None and expected != current["revision"]:
            raise _not_found(arn, f"Requested update for policy with revision id {expected}, but the policy "
                             f"associated to target table {meta.name} has revision id {current['revision']}.")
        if current is None and expected is not None and expected != _NO_POLICY:
            raise _not_found(arn)
        if current is not None and _canonical(orjson.loads(current["policy"])) == _canonical(doc):
            return {"RevisionId": current["revision"]}  # the same policy: no change, the same revision
        revision = _revision(current["revision"] if current else None, db.clock())
        policies[slot] = {"policy": orjson.dumps(doc).decode(), "revision": revision, "arn": arn}
        meta.extra["resource_policy"] = policies
        db.catalog.save(meta)
    return {"RevisionId": revision}


def get_resource_policy(db: Database, caller: Caller, p: dict) -> dict:
    arn = p["ResourceArn"]
    meta, slot = _policy_slot(db, caller, arn)
    current = _policies(meta).get(slot)
    if current is None or current.get("arn") != arn:
        raise _not_found(arn)
    return {"Policy": current["policy"], "RevisionId": current["revision"]}


def delete_resource_policy(db: Database, caller: Caller, p: dict) -> dict:
    arn = p["ResourceArn"]
    with db.catalog.lock:
        meta, slot = _policy_slot(db, caller, arn)
        policies = dict(_policies(meta))
        current = policies.get(slot)
        if current is None or current.get("arn") != arn:
            raise _not_found(arn)
        expected = p.get("ExpectedRevisionId")
        if expected is not None and expected != current["revision"]:
            raise _not_found(arn, f"Requested update for policy with revision id {expected}, but the policy "
                             f"associated to target table {meta.name} has revision id {current['revision']}.")
        del policies[slot]
        meta.extra["resource_policy"] = policies
        db.catalog.save(meta)
    return {"RevisionId": current["revision"]}


# -- exports and imports ----------------------------------------------------------------------------------
def _no_s3(operation: str) -> AWSError:
    return validation(f"{operation} is not supported by this server: it reads or writes an Amazon S3 bucket, and "
                      "dynavault has no S3")


def list_exports(db: Database, caller: Caller, p: dict) -> dict:
    return {"ExportSummaries": []}


def list_imports(db: Database, caller: Caller, p: dict) -> dict:
    return {"ImportSummaryList": []}


def export_table_to_point_in_time(db: Database, caller: Caller, p: dict) -> dict:
    raise _no_s3("ExportTableToPointInTime")


def import_table(db: Database, caller: Caller, p: dict) -> dict:
    raise _no_s3("ImportTable")


HANDLERS = {
    "DescribeContributorInsights": describe_contributor_insights,
    "UpdateContributorInsights": update_contributor_insights,
    "ListContributorInsights": list_contributor_insights,
    "DescribeKinesisStreamingDestination": describe_kinesis_streaming_destination,
    "DescribeTableReplicaAutoScaling": describe_table_replica_auto_scaling,
    "PutResourcePolicy": put_resource_policy,
    "GetResourcePolicy": get_resource_policy,
    "DeleteResourcePolicy": delete_resource_policy,
    "ListExports": list_exports,
    "ListImports": list_imports,
    "ExportTableToPointInTime": export_table_to_point_in_time,
    "ImportTable": import_table,
}
