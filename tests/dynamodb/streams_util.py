"""Stream test helpers: tables with streams, and a consumer that reads a stream the way the Kinesis adapter
does (DescribeStream -> per-shard iterators -> GetRecords until the shard closes -> its children)."""

from __future__ import annotations

KEYS = [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
DEFS = [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}]


def create_stream_table(ddb, name: str, view: str | None = "NEW_AND_OLD_IMAGES", **extra) -> dict:
    args = {"TableName": name, "KeySchema": KEYS, "AttributeDefinitions": DEFS, "BillingMode": "PAY_PER_REQUEST",
            **extra}
    if view is not None:
        args["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": view}
    return ddb.create_table(**args)["TableDescription"]


def all_shards(st, arn: str, page: int | None = None) -> list[dict]:
    shards, start = [], None
    while True:
        args = {"StreamArn": arn}
        if page:
            args["Limit"] = page
        if start:
            args["ExclusiveStartShardId"] = start
        desc = st.describe_stream(**args)["StreamDescription"]
        shards += desc["Shards"]
        start = desc.get("LastEvaluatedShardId")
        if not start:
            return shards


def in_lineage_order(shards: list[dict]) -> list[dict]:
    """Parents before children (a parent that was trimmed away counts as done)."""
    ids = {s["ShardId"] for s in shards}
    done: set[str] = set()
    out: list[dict] = []
    pending = list(shards)
    while pending:
        ready = [s for s in pending if s.get("ParentShardId") in (None, *done) or s["ParentShardId"] not in ids]
        assert ready, "shard lineage has a cycle"
        for s in ready:
            out.append(s)
            done.add(s["ShardId"])
            pending.remove(s)
    return out


def read_shard(st, arn: str, shard_id: str, kind: str = "TRIM_HORIZON", limit: int | None = None,
               **extra) -> tuple[list[dict], bool]:
    """-> (records, closed): reads until the shard is drained (no NextShardIterator) or a page comes back
    empty on an open shard."""
    it = st.get_shard_iterator(StreamArn=arn, ShardId=shard_id, ShardIteratorType=kind, **extra)["ShardIterator"]
    records: list[dict] = []
    while True:
        args = {"ShardIterator": it}
        if limit:
            args["Limit"] = limit
        page = st.get_records(**args)
        records += page["Records"]
        it = page.get("NextShardIterator")
        if it is None:
            return records, True
        if not page["Records"]:
            return records, False


def consume(st, arn: str, limit: int | None = None) -> list[dict]:
    """Every record of a stream, shard by shard in lineage order; each closed shard read to its end."""
    records: list[dict] = []
    for shard in in_lineage_order(all_shards(st, arn)):
        got, closed = read_shard(st, arn, shard["ShardId"], limit=limit)
        assert closed == ("EndingSequenceNumber" in shard["SequenceNumberRange"]), shard
        records += got
    return records


def summary(records: list[dict]) -> list[tuple]:
    """(event, key, new image, old image) per record: what a consumer learns."""
    return [(r["eventName"], _key(r["dynamodb"]["Keys"]), r["dynamodb"].get("NewImage"),
             r["dynamodb"].get("OldImage")) for r in records]


def _key(keys: dict) -> tuple:
    return tuple(sorted((k, v.get("S") or v.get("N")) for k, v in keys.items()))
