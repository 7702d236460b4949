"""``dynavault bench --stream``: the bench table gets a NEW_AND_OLD_IMAGES stream (so every write pays for
its stream record) and, after the workloads, the whole stream is read back the way a consumer reads it
(DescribeStream -> per-shard iterators -> GetRecords, 1000 records a call) to measure GetRecords
throughput."""

from __future__ import annotations

import time

from dynavault.bench.client import Connection, Endpoint

STREAM_SPEC = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
_TARGET = "DynamoDBStreams_20120810."


async def _must(conn: Connection, op: str, payload: dict) -> dict:
    resp = await conn.call(op, payload)
    if resp.status != 200:
        raise RuntimeError(f"{op} failed: {resp.status} {resp.body[:300]!r}")
    return resp.json()


async def read_stream(ep: Endpoint, table: str) -> dict:
    """Read every record of ``table``'s stream once; -> records, calls, seconds, records/s, MB/s."""
    streams_ep = Endpoint(ep.url)
    streams_ep.signer, streams_ep.target_prefix = ep.signer, _TARGET
    ddb, conn = Connection(ep), Connection(streams_ep)
    try:
        arn = (await _must(ddb, "DescribeTable", {"TableName": table}))["Table"]["LatestStreamArn"]
        t0 = time.perf_counter()
        shards, start = [], None
        while True:
            args = {"StreamArn": arn, **({"ExclusiveStartShardId": start} if start else {})}
            desc = (await _must(conn, "DescribeStream", args))["StreamDescription"]
            shards += desc["Shards"]
            start = desc.get("LastEvaluatedShardId")
            if not start:
                break
        records = calls = size = 0
        for shard in shards:
            it = (await _must(conn, "GetShardIterator", {"StreamArn": arn, "ShardId": shard["ShardId"],
                                                         "ShardIteratorType": "TRIM_HORIZON"}))["ShardIterator"]
            while it:
                page = await _must(conn, "GetRecords", {"ShardIterator": it, "Limit": 1000})
                calls += 1
                records += len(page["Records"])
                size += sum(r["dynamodb"]["SizeBytes"] for r in page["Records"])
                it = page.get("NextShardIterator") if page["Records"] else None
        secs = time.perf_counter() - t0
    finally:
        await ddb.close()
        await conn.close()
    return {"stream_arn": arn, "shards": len(shards), "records": records, "get_records_calls": calls,
            "seconds": round(secs, 3), "records_per_s": round(records / secs, 1) if secs else None,
            "mb_per_s": round(size / secs / 1e6, 2) if secs else None}
