"""Global tables across servers: two ``dynavault serve`` processes, each with its own data dir, KMS and port,
each serving one region (``--regions``), replicating over signed HTTP (``--replica-peer``)."""

from __future__ import annotations

import json
import os
import socket
import threading

import pytest

from tests.conftest import aws_error, make_table
from tests.dynamodb.gt_util import EAST, WEST, add_replica, converge, wait_replicas
from tests.servers import ServerProcess

ACCOUNT = "210987654322"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peer_credentials(path, entries: dict) -> str:
    path.write_text(json.dumps({r: {"aws_access_key_id": k, "aws_secret_access_key": s}
                                for r, (k, s) in entries.items()}))
    os.chmod(path, 0o600)
    return str(path)


def pair(base, creds_a: dict, creds_b: dict, **settings) -> tuple[ServerProcess, ServerProcess]:
    """Server A serves us-east-1, server B us-west-2, each the other's peer."""
    pa, pb = free_port(), free_port()
    a = ServerProcess(base / "a", port=pa, regions=EAST, replica_peer=f"{WEST}=http://127.0.0.1:{pb}",
                      replica_peer_credentials=peer_credentials(base / "a-peers.json", {WEST: creds_a}),
                      **settings)
    b = ServerProcess(base / "b", port=pb, regions=WEST, replica_peer=f"{EAST}=http://127.0.0.1:{pa}",
                      replica_peer_credentials=peer_credentials(base / "b-peers.json", {EAST: creds_b}),
                      **settings)
    return a, b


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    base = tmp_path_factory.mktemp("peers")
    a, b = pair(base, (ACCOUNT, "x"), (ACCOUNT, "x"), allow_any_credentials=True)
    yield a, b
    a.kill()
    b.kill()


@pytest.fixture(scope="module")
def c(servers):
    a, b = servers
    return {EAST: a.client("dynamodb", access_key=ACCOUNT, region=EAST),
            WEST: b.client("dynamodb", access_key=ACCOUNT, region=WEST)}


def test_a_region_not_served_is_refused_as_another_endpoint(servers):
    a, _ = servers
    assert aws_error(a.client("dynamodb", access_key=ACCOUNT, region=WEST).list_tables) == (
        "InvalidSignatureException", f"Credential should be scoped to a valid region, not '{WEST}'. ", 400)


def test_replica_created_in_the_other_server_with_backfill(c, unique_name):
    east, west = c[EAST], c[WEST]
    make_table(east, unique_name)
    for i in range(300):
        east.put_item(TableName=unique_name, Item={"pk": {"S": f"k{i}"}, "v": {"S": f"v{i}"}})
    desc = add_replica(east, unique_name, WEST)
    assert desc["Replicas"][0]["RegionName"] == WEST
    table = wait_replicas(east, unique_name)
    assert table["Replicas"] == [{"RegionName": WEST, "ReplicaStatus": "ACTIVE"}]
    there = west.describe_table(TableName=unique_name)["Table"]
    assert there["TableArn"] == f"arn:aws:dynamodb:{WEST}:{ACCOUNT}:table/{unique_name}"
    assert there["GlobalTableVersion"] == "2019.11.21"
    assert there["Replicas"] == [{"RegionName": EAST, "ReplicaStatus": "ACTIVE"}]
    assert len(converge([east, west], unique_name)) == 300


def test_writes_in_either_region_reach_the_other(c, unique_name):
    east, west = c[EAST], c[WEST]
    make_table(east, unique_name)
    add_replica(east, unique_name, WEST)
    wait_replicas(east, unique_name)
    east.put_item(TableName=unique_name, Item={"pk": {"S": "from-east"}, "v": {"S": "1"}})
    west.put_item(TableName=unique_name, Item={"pk": {"S": "from-west"}, "v": {"S": "2"}})
    got = converge([east, west], unique_name, timeout=20)
    assert set(got) == {"from-east", "from-west"}
    west.delete_item(TableName=unique_name, Key={"pk": {"S": "from-east"}})
    east.update_item(TableName=unique_name, Key={"pk": {"S": "from-west"}}, UpdateExpression="SET v = :v",
                     ExpressionAttributeValues={":v": {"S": "3"}})
    got = converge([east, west], unique_name, timeout=20)
    assert got == {"from-west": {"pk": {"S": "from-west"}, "v": {"S": "3"}}}


def test_concurrent_writes_to_one_item_converge_last_writer_wins(c, unique_name):
    east, west = c[EAST], c[WEST]
    make_table(east, unique_name)
    add_replica(east, unique_name, WEST)
    wait_replicas(east, unique_name)

    def writer(client, region):
        for i in range(40):
            client.put_item(TableName=unique_name, Item={"pk": {"S": f"k{i % 5}"}, "by": {"S": f"{region}-{i}"}})

    threads = [threading.Thread(target=writer, args=(c[r], r)) for r in (EAST, WEST)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = converge([east, west], unique_name, timeout=30)
    assert set(got) == {f"k{i}" for i in range(5)}
    # every item is one of the two last writes of its key: nothing older survived on either side
    for i in range(5):
        assert got[f"k{i}"]["by"]["S"] in {f"{EAST}-{35 + i}", f"{WEST}-{35 + i}"}
