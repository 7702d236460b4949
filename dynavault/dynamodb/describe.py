"""A table as DynamoDB describes it: TableDescription with its indexes, key and stream summaries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import on_demand as on_demand_rules
from .index_model import stats_id
from .on_demand import INDEX_MEMBER, ON_DEMAND
from .replication.group import describe_into as describe_replicas
from .sse_spec import sse_description

if TYPE_CHECKING:
    from .catalog import Catalog, TableMeta


def table_description(catalog: Catalog, meta: TableMeta, status: str | None = None) -> dict:
    """DescribeTable's TableDescription (also the answer of CreateTable, UpdateTable, DeleteTable)."""
    count, size = catalog.stats(meta.table_id)
    desc: dict = {
        "AttributeDefinitions": _key_definitions(meta),
        "TableName": meta.name,
        "KeySchema": meta.key_schema,
        "TableStatus": status or meta.status,
        "CreationDateTime": meta.created,
        "ProvisionedThroughput": {
            "NumberOfDecreasesToday": 0,
            "ReadCapacityUnits": meta.read_capacity,
            "WriteCapacityUnits": meta.write_capacity,
        },
        "TableSizeBytes": size,
        "ItemCount": count,
        "TableArn": meta.arn,
        "TableId": meta.table_id,
        "DeletionProtectionEnabled": meta.deletion_protection,
    }
    if meta.billing_mode == "PAY_PER_REQUEST":
        desc["BillingModeSummary"] = {
            "BillingMode": "PAY_PER_REQUEST",
            "LastUpdateToPayPerRequestDateTime": meta.last_pay_per_request or meta.created,
        }
    on_demand = on_demand_rules.describe(meta.extra.get(ON_DEMAND))
    if meta.billing_mode == "PAY_PER_REQUEST" and on_demand:
        desc["OnDemandThroughput"] = on_demand
    if meta.table_class:
        desc["TableClassSummary"] = {"TableClass": meta.table_class}
    sse = sse_description(meta.sse, meta.sse_state)
    if sse is not None:
        desc["SSEDescription"] = sse
    if meta.stream:
        if meta.stream.get("spec"):  # absent once disabled; the latest ARN and label linger (as in DynamoDB)
            desc["StreamSpecification"] = meta.stream["spec"]
        if meta.stream.get("arn"):
            desc["LatestStreamArn"] = meta.stream["arn"]
            desc["LatestStreamLabel"] = meta.stream["label"]
    restored = meta.extra.get("restore_summary")
    if restored:
        desc["RestoreSummary"] = {**restored, "RestoreInProgress": meta.status == "CREATING"}
    archival = meta.sse_state.get("archival")
    if archival:
        desc["ArchivalSummary"] = archival
    describe_indexes(catalog, meta, desc)
    describe_replicas(catalog, meta, desc)
    return desc


def deleted_description(catalog: Catalog, meta: TableMeta) -> dict:
    """DeleteTable's TableDescription: DynamoDB answers the table's identity, status DELETING, throughput,
    size and settings, without its key schema, attribute definitions, creation time or index lists."""
    desc = table_description(catalog, meta, "DELETING")
    for member in ("AttributeDefinitions", "KeySchema", "CreationDateTime", "LocalSecondaryIndexes",
                   "GlobalSecondaryIndexes"):
        desc.pop(member, None)
    return desc


def _key_definitions(meta: TableMeta) -> list[dict]:
    """The attribute definitions of the attributes some key uses: the table's, its LSIs' and the GSIs it
    still lists (a deleted index's attributes leave the list with it, as in DynamoDB)."""
    used = {k["AttributeName"] for k in meta.key_schema}
    for d in meta.local_indexes + meta.global_indexes:
        used.update(k["AttributeName"] for k in d.get("KeySchema") or ())
    return [d for d in meta.attribute_definitions if d["AttributeName"] in used]


def describe_indexes(catalog: Catalog, meta: TableMeta, desc: dict) -> None:
    creating = desc.get("TableStatus") == "CREATING"
    lsis, gsis = [], []
    for d in meta.local_indexes:
        count, size = catalog.stats(stats_id(meta, d["IndexId"]))
        lsis.append({"IndexName": d["IndexName"], "KeySchema": d["KeySchema"], "Projection": d["Projection"],
                     "IndexSizeBytes": size, "ItemCount": count, "IndexArn": f"{meta.arn}/index/{d['IndexName']}"})
    for d in meta.global_indexes:
        count, size = catalog.stats(stats_id(meta, d["IndexId"]))
        pt = d.get("ProvisionedThroughput") or {}
        g = {"IndexName": d["IndexName"], "KeySchema": d["KeySchema"], "Projection": d["Projection"],
             "IndexStatus": "CREATING" if creating else d.get("IndexStatus", "ACTIVE"),
             "ProvisionedThroughput": {"NumberOfDecreasesToday": 0,
                                       "ReadCapacityUnits": pt.get("ReadCapacityUnits", 0),
                                       "WriteCapacityUnits": pt.get("WriteCapacityUnits", 0)},
             "IndexSizeBytes": size, "ItemCount": count, "IndexArn": f"{meta.arn}/index/{d['IndexName']}"}
        on_demand = on_demand_rules.describe(d.get(INDEX_MEMBER))
        if meta.billing_mode == "PAY_PER_REQUEST" and on_demand:
            g["OnDemandThroughput"] = on_demand
        if "Backfilling" in d and g["IndexStatus"] == "CREATING":
            # only an index UpdateTable is adding shows it, and only until it is ACTIVE (DynamoDB's rule)
            g["Backfilling"] = d["Backfilling"]
        gsis.append(g)
    if lsis:
        desc["LocalSecondaryIndexes"] = lsis
    if gsis:
        desc["GlobalSecondaryIndexes"] = gsis
