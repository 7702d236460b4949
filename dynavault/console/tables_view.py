"""What the table pages show about a table, gathered through the principal's calls (no page logic here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dynavault.errors import AWSError

from .calls import Calls

OWNED, MANAGED, CUSTOMER = "AWS owned", "AWS managed", "customer managed"
#: table states where the table's key is the story, shown in the SSE column as the issue lists them
_KEY_STATES = ("INACCESSIBLE_ENCRYPTION_CREDENTIALS", "ARCHIVING", "ARCHIVED")


@dataclass
class TableRow:
    name: str
    status: str = ""
    items: int | None = None
    size: int | None = None
    key_type: str = ""
    key_arn: str = ""
    sse_status: str = ""
    streams: str = ""
    ttl: str = ""
    pitr: str = ""
    error: str = ""
    desc: dict = field(default_factory=dict)
    #: whether the server answered DescribeContinuousBackups (this build may not serve it)
    pitr_served: bool = True


class KeyDirectory:
    """The account's aliases, read once per page: which key ARNs are AWS managed, and names for the picker."""

    def __init__(self, calls: Calls) -> None:
        try:
            self.aliases = calls.aliases()
        except AWSError:  # no key service in this process (--kms-endpoint), or not allowed: key types unknown
            self.aliases = []
            self.available = False
        else:
            self.available = True
        self.managed_arns: set[str] = set()
        self.names: dict[str, list[str]] = {}  # key id -> alias names
        for alias in self.aliases:
            target = alias.get("TargetKeyId")
            if not target:
                continue
            self.names.setdefault(target, []).append(alias["AliasName"])
            if alias["AliasName"].startswith("alias/aws/"):
                prefix = alias.get("AliasArn", "").split(":alias/", 1)[0]
                self.managed_arns.add(f"{prefix}:key/{target}")

    def key_type(self, sse: dict | None) -> str:
        arn = (sse or {}).get("KMSMasterKeyArn")
        if not arn:
            return OWNED
        if not self.available:
            return "KMS key"
        return MANAGED if arn in self.managed_arns else CUSTOMER

    def label(self, key_id: str) -> str:
        names = self.names.get(key_id)
        return f"{', '.join(names)} ({key_id})" if names else key_id


def table_row(calls: Calls, name: str, keys: KeyDirectory, *, extras: bool = True,
              pitr: str | None = None) -> TableRow:
    """One table's row; ``pitr`` given: the PITR column without asking (the server does not serve it)."""
    row = TableRow(name)
    try:
        desc = calls.ddb("DescribeTable", TableName=name)["Table"]
    except AWSError as err:
        row.error = f"{err.code}: {err.message or ''}"
        return row
    row.desc = desc
    row.status = desc.get("TableStatus", "")
    row.items = desc.get("ItemCount")
    row.size = desc.get("TableSizeBytes")
    sse = desc.get("SSEDescription")
    row.key_type = keys.key_type(sse)
    row.key_arn = (sse or {}).get("KMSMasterKeyArn", "")
    if row.status in _KEY_STATES:
        row.sse_status = row.status
    else:
        row.sse_status = (sse or {}).get("Status", "ENABLED")
    spec = desc.get("StreamSpecification") or {}
    row.streams = spec.get("StreamViewType", "") if spec.get("StreamEnabled") else "off"
    if extras:
        try:
            ttl = calls.ddb("DescribeTimeToLive", TableName=name)["TimeToLiveDescription"]
            status = ttl.get("TimeToLiveStatus", "")
            row.ttl = f"{status} ({ttl['AttributeName']})" if ttl.get("AttributeName") else status
        except AWSError:
            row.ttl = "?"
        if pitr is not None:
            row.pitr = pitr
        else:
            try:
                cb = calls.ddb("DescribeContinuousBackups", TableName=name)["ContinuousBackupsDescription"]
                row.pitr = (cb.get("PointInTimeRecoveryDescription") or {}).get("PointInTimeRecoveryStatus", "")
            except AWSError as err:
                row.pitr = "DISABLED"  # no point-in-time recovery in this build: never enabled
                row.pitr_served = err.code != "UnknownOperationException"
    return row


def key_choices(calls: Calls, keys: KeyDirectory) -> list[tuple[str, str]]:
    """Customer managed keys for a picker: (key ARN, label)."""
    try:
        entries = calls.key_ids()
    except AWSError:
        return []
    return [(e["KeyArn"], keys.label(e["KeyId"])) for e in entries if e["KeyArn"] not in keys.managed_arns]


def key_history(calls: Calls, table: str) -> list[dict]:
    """The table keys made for this table: each GenerateDataKey the database made with the table's encryption
    context (at creation and at every key switch), newest first, as the audit trail recorded them."""
    out: list[dict] = []
    for event in calls.events(attribute=("EventName", "GenerateDataKey"), max_pages=20):
        detail = event_detail(event)
        if detail["table"] != table:
            continue
        out.append({"time": event.get("EventTime"), "key": detail["key"], "error": detail["error"],
                    "user": event.get("Username", "")})
    return out


def event_detail(event: dict) -> dict:
    """The fields of a LookupEvents ``Event`` the console shows: table (from the encryption context), key,
    error, user agent."""
    import orjson

    try:
        body = orjson.loads(event.get("CloudTrailEvent") or "{}")
    except orjson.JSONDecodeError:
        body = {}
    request = body.get("requestParameters") or {}
    context = request.get("encryptionContext") or {}
    table = context.get("aws:dynamodb:tableName", "") if isinstance(context, dict) else ""
    key = next((r.get("ResourceName", "") for r in event.get("Resources") or []), "")
    return {"table": table, "key": key, "error": body.get("errorCode", ""),
            "agent": body.get("userAgent", ""), "source_ip": body.get("sourceIPAddress", "")}
