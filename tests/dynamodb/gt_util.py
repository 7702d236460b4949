"""Helpers of the global-table tests: make a table global, wait for replicas and for convergence."""

from __future__ import annotations

import time
import urllib.request
import uuid

from tests.conftest import make_table

EAST, WEST, EU = "us-east-1", "us-west-2", "eu-west-1"


def add_replica(ddb, name: str, region: str, **create) -> dict:
    return ddb.update_table(TableName=name, ReplicaUpdates=[{"Create": {"RegionName": region, **create}}])[
        "TableDescription"]


def wait_replicas(ddb, name: str, status: str = "ACTIVE", timeout: float = 20.0) -> dict:
    """The table once every replica it lists has ``status``."""
    deadline = time.time() + timeout
    table: dict = {}
    while time.time() < deadline:
        table = ddb.describe_table(TableName=name)["Table"]
        if table.get("Replicas") and all(r["ReplicaStatus"] == status for r in table["Replicas"]):
            return table
        time.sleep(0.1)
    raise AssertionError(f"replicas of {name} never all {status}: {table.get('Replicas')}")


def global_table(clients: dict, name: str, regions: list[str], **kw) -> None:
    """A table in the first region's client, with replicas in the others, every replica ACTIVE."""
    first = clients[regions[0]]
    make_table(first, name, **kw)
    for region in regions[1:]:
        add_replica(first, name, region)
        wait_replicas(first, name)


def items(ddb, name: str) -> dict:
    """pk -> item, by a consistent Scan."""
    out = {}
    kwargs: dict = {"TableName": name, "ConsistentRead": True}
    while True:
        page = ddb.scan(**kwargs)
        out.update({i["pk"]["S"]: i for i in page["Items"]})
        if "LastEvaluatedKey" not in page:
            return out
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def converge(clients: list, name: str, expected: dict | None = None, timeout: float = 15.0) -> dict:
    """Wait until every region holds the same items (and ``expected``, if given); -> those items."""
    deadline = time.time() + timeout
    views: list[dict] = []
    while time.time() < deadline:
        views = [items(c, name) for c in clients]
        if all(v == views[0] for v in views) and (expected is None or views[0] == expected):
            return views[0]
        time.sleep(0.1)
    raise AssertionError(f"{name} did not converge: {views} (expected {expected})")


def pair_clients(srv, account: str) -> dict:
    """One server's DynamoDB clients for us-east-1 and us-west-2, by region."""
    return {r: srv.client("dynamodb", access_key=account, region=r) for r in (EAST, WEST)}


def table_id(ddb, name: str) -> bytes:
    return uuid.UUID(ddb.describe_table(TableName=name)["Table"]["TableId"]).bytes


def stopped_pair_with_one_item(start_server, name: str, account: str):
    """A global table in one server (us-east-1 and us-west-2) whose item "a" reached both regions, the server
    then stopped -> (server, clients by region, the us-west-2 replica's table id, the store's path)."""
    srv = start_server(allow_any_credentials=True)
    c = pair_clients(srv, account)
    global_table(c, name, [EAST, WEST])
    c[EAST].put_item(TableName=name, Item={"pk": {"S": "a"}, "v": {"S": "one"}})
    converge(list(c.values()), name)
    west_id = table_id(c[WEST], name)
    assert srv.stop() == 0
    return srv, c, west_id, srv.data_dir / "tables.db"


def latency_count(srv, source: str, target: str) -> float:
    """The server's ReplicationLatency sample count from ``source`` to ``target`` (its /metrics)."""
    text = urllib.request.urlopen(srv.endpoint + "/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith("dynavault_replication_latency_seconds_count{") and f'source_region="{source}"' in line \
                and f'target_region="{target}"' in line:
            return float(line.split()[-1])
    return 0.0
