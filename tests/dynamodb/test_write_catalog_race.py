"""A write checks, inside its store transaction, that the table definition it looked up is still the stored one.

With several workers, a write looks its table up in its worker's catalog mirror, which hears of another worker's
change only after that change committed. Without the check, a write racing a stream enable in the other worker
could commit after the enable without a stream record. The tests run two real workers: writers on new
connections (spread over both) increment one item while the stream is switched on and off; every enabled
stream must then hold an unbroken chain of the item's changes (each record's old image is the one before's new
image) up to the item's final value.
"""

from __future__ import annotations

import threading
import time

from tests.server.test_workers import _call, _ok, _table, _wait_workers
from tests.wire import signed_request

HOT = {"pk": {"S": "hot"}}


def _records(srv, arn: str) -> list[dict]:
    def streams(target: str, body: dict) -> dict:
        r = signed_request(srv.endpoint, f"DynamoDBStreams_20120810.{target}", body)
        assert r.status == 200, r.body
        return r.json()

    out: list[dict] = []
    for shard in streams("DescribeStream", {"StreamArn": arn})["StreamDescription"]["Shards"]:
        it = streams("GetShardIterator", {"StreamArn": arn, "ShardId": shard["ShardId"],
                                          "ShardIteratorType": "TRIM_HORIZON"})["ShardIterator"]
        while it:
            page = streams("GetRecords", {"ShardIterator": it})
            out += page["Records"]
            it = page.get("NextShardIterator") if page["Records"] else None
    return out


def _count(image: dict | None) -> int:
    return int(image["c"]["N"]) if image and "c" in image else 0


def _stream(srv, name: str, on: bool) -> str | None:
    spec = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"} if on else {"StreamEnabled": False}
    out = _ok(srv, "UpdateTable", {"TableName": name, "StreamSpecification": spec})
    return out["TableDescription"].get("LatestStreamArn") if on else None


def test_writes_racing_a_stream_enable_in_another_worker_are_never_missing_from_the_stream(start_server):
    srv = start_server(allow_any_credentials=True, workers=2)
    _wait_workers(srv, 2)
    _table(srv, "race")
    acked = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            status, out = _call(srv, "UpdateItem", {"TableName": "race", "Key": HOT, "UpdateExpression": "ADD c :one",
                                                    "ExpressionAttributeValues": {":one": {"N": "1"}}})
            assert status == 200, out
            with lock:
                acked[0] += 1

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for t in threads:
        t.start()
    arns: list[str] = []
    try:
        deadline = time.monotonic() + 15  # bounded: rounds of enable / disable under the writers
        while time.monotonic() < deadline:
            time.sleep(0.05)
            arns.append(_stream(srv, "race", True))
            time.sleep(0.1)
            _stream(srv, "race", False)
    finally:
        stop.set()
        for t in threads:
            t.join()
    final = _count(_ok(srv, "GetItem", {"TableName": "race", "Key": HOT, "ConsistentRead": True}).get("Item"))
    assert final == acked[0], "an acknowledged increment was lost"
    assert len(arns) > 5
    broken = []
    for arn in arns:
        recs = _records(srv, arn)
        assert recs, "each stream was enabled while the writers ran"
        for a, b in zip(recs, recs[1:], strict=False):
            if _count(b["dynamodb"].get("OldImage")) != _count(a["dynamodb"].get("NewImage")):
                broken.append((arn[-23:], _count(a["dynamodb"].get("NewImage")),
                               _count(b["dynamodb"].get("OldImage"))))
    assert not broken, f"writes committed while a stream was enabled but missing from it: {broken}"
