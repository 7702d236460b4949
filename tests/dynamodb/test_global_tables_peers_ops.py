"""Global tables across two and three servers, each with its own data dir, KMS and port: replica Update and
Delete of a member another server serves, DeleteTable of a member on its own server, an SSE change fanned out
across servers (each replica to its own region's key), one region's key lost on its server, writes in three
regions converging, a killed server catching up, and a replica Create that does not stall its server."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

from tests.conftest import aws_error, make_table
from tests.dynamodb.gt_util import EAST, EU, WEST, add_replica, converge, items, wait_replicas
from tests.dynamodb.test_global_tables_peers import free_port
from tests.lifecycle import wait_status
from tests.servers import ServerProcess

ACCOUNT = "210987654323"
REGIONS = (EAST, WEST, EU)
CMK = "INACCESSIBLE_ENCRYPTION_CREDENTIALS"
FAST_KEYS = dict(allow_any_credentials=True, key_refresh_seconds=1, key_check_seconds=0.5)


def until(check, what: str, timeout: float = 30.0):
    """``check()``'s first true answer within ``timeout`` seconds."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"never {what}: {last}")


def group(base, regions=REGIONS, **settings) -> dict[str, ServerProcess]:
    """One server per region, each naming every other as its peer."""
    ports = {r: free_port() for r in regions}
    out = {}
    for i, region in enumerate(regions):
        others = [r for r in regions if r != region]
        creds = base / f"{i}-peers.json"
        creds.write_text(json.dumps({r: {"aws_access_key_id": ACCOUNT, "aws_secret_access_key": "x"}
                                     for r in others}))
        os.chmod(creds, 0o600)
        out[region] = ServerProcess(base / str(i), port=ports[region], regions=region,
                                    replica_peer=",".join(f"{r}=http://127.0.0.1:{ports[r]}" for r in others),
                                    replica_peer_credentials=str(creds), **settings)
    return out


def clients(servers: dict, service: str = "dynamodb") -> dict:
    return {r: s.client(service, access_key=ACCOUNT, region=r) for r, s in servers.items()}


def replicas(ddb, name: str) -> dict:
    return {r["RegionName"]: r for r in ddb.describe_table(TableName=name)["Table"].get("Replicas", [])}


def all_replicas(c: dict, name: str, status: str = "ACTIVE") -> bool:
    """Every server shows every other region's replica with ``status``."""
    return all(set(replicas(ddb, name)) == set(c) - {r} and
               all(v["ReplicaStatus"] == status for v in replicas(ddb, name).values()) for r, ddb in c.items())


def global_table(c: dict, name: str) -> None:
    make_table(c[EAST], name)
    members = {EAST: c[EAST]}
    for region in [r for r in c if r != EAST]:
        add_replica(c[EAST], name, region)
        wait_replicas(c[EAST], name, timeout=30)
        members[region] = c[region]
        # the next Create is refused (ResourceInUseException) until every member is ACTIVE on every server
        until(lambda: all_replicas(members, name), "every server shows every replica ACTIVE")



def cmk_pair(servers: dict, name: str) -> tuple[dict, dict, dict]:
    """A table in us-east-1 under a customer managed key, with its us-west-2 replica (in the other server)
    under one of that region's, ACTIVE on both servers; -> (dynamodb clients, kms clients, the keys)."""
    c, kms = clients(servers), clients(servers, "kms")
    keys = {r: kms[r].create_key()["KeyMetadata"] for r in (EAST, WEST)}
    make_table(c[EAST], name, sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": keys[EAST]["Arn"]})
    add_replica(c[EAST], name, WEST, KMSMasterKeyId=keys[WEST]["KeyId"])
    until(lambda: all_replicas(c, name), "the replica ACTIVE on both servers")
    return c, kms, keys

@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    servers = group(tmp_path_factory.mktemp("trio"), **FAST_KEYS, sse_update_seconds=1.5)
    yield servers
    for s in servers.values():
        s.kill()


@pytest.fixture(scope="module")
def c3(trio):
    return clients(trio)


def test_three_servers_writes_in_every_region_converge_last_writer_wins(c3, unique_name):
    global_table(c3, unique_name)
    for region, ddb in c3.items():
        ddb.put_item(TableName=unique_name, Item={"pk": {"S": f"from-{region}"}})
    got = converge(list(c3.values()), unique_name, timeout=30)
    assert set(got) == {f"from-{r}" for r in REGIONS}

    def writer(ddb, region):
        for i in range(32):
            ddb.put_item(TableName=unique_name, Item={"pk": {"S": f"k{i % 4}"}, "by": {"S": f"{region}-{i}"}})

    threads = [threading.Thread(target=writer, args=(ddb, r)) for r, ddb in c3.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = converge(list(c3.values()), unique_name, timeout=30)
    # each key holds one of the last writes made to it, the same one in every region
    for i in range(4):
        assert got[f"k{i}"]["by"]["S"] in {f"{r}-{28 + i}" for r in REGIONS}


def test_replicas_in_other_servers_are_described_as_in_one_server(c3, unique_name):
    east = c3[EAST]
    east.create_table(
        TableName=unique_name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "v", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST", GlobalSecondaryIndexes=[{
            "IndexName": "byv", "KeySchema": [{"AttributeName": "v", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"}}])
    add_replica(east, unique_name, WEST)
    until(lambda: replicas(east, unique_name).get(WEST) == {
        "RegionName": WEST, "ReplicaStatus": "ACTIVE", "GlobalSecondaryIndexes": [{"IndexName": "byv"}]},
        "the replica described with its index")
    until(lambda: replicas(c3[WEST], unique_name).get(EAST) == {
        "RegionName": EAST, "ReplicaStatus": "ACTIVE", "GlobalSecondaryIndexes": [{"IndexName": "byv"}]},
        "the source described from the replica's server")
    east.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "v": {"S": "x"}})
    until(lambda: c3[WEST].query(TableName=unique_name, IndexName="byv", KeyConditionExpression="v = :v",
                                 ExpressionAttributeValues={":v": {"S": "x"}})["Count"] == 1, "the write in the index")


def test_replica_update_and_delete_of_a_member_of_another_server(c3, unique_name):
    global_table(c3, unique_name)
    east = c3[EAST]
    assert aws_error(east.update_table, TableName=unique_name, ReplicaUpdates=[{"Update": {
        "RegionName": WEST, "KMSMasterKeyId": "alias/aws/dynamodb"}}])[:2] == (
        "ValidationException", "One or more parameter values were invalid: KMSMasterKeyId must be specified for "
        "each replica.")
    east.update_table(TableName=unique_name, ReplicaUpdates=[{"Update": {
        "RegionName": WEST, "TableClassOverride": "STANDARD_INFREQUENT_ACCESS"}}])
    assert c3[WEST].describe_table(TableName=unique_name)["Table"]["TableClassSummary"]["TableClass"] == \
        "STANDARD_INFREQUENT_ACCESS"
    for region in (EAST, EU):  # the server that took it and the third one both show it
        until(lambda region=region: (replicas(c3[region], unique_name)[WEST].get("ReplicaTableClassSummary") or {})
              .get("TableClass") == "STANDARD_INFREQUENT_ACCESS", f"{region} showing the new class")
    east.put_item(TableName=unique_name, Item={"pk": {"S": "before-delete"}})
    converge(list(c3.values()), unique_name)
    east.update_table(TableName=unique_name, ReplicaUpdates=[{"Delete": {"RegionName": WEST}}])
    assert aws_error(c3[WEST].describe_table, TableName=unique_name)[0] == "ResourceNotFoundException"
    until(lambda: set(replicas(east, unique_name)) == {EU} and set(replicas(c3[EU], unique_name)) == {EAST},
          "the deleted replica gone from every server")
    c3[EU].put_item(TableName=unique_name, Item={"pk": {"S": "after-delete"}})
    assert set(converge([east, c3[EU]], unique_name)) == {"before-delete", "after-delete"}
    assert aws_error(east.update_table, TableName=unique_name, ReplicaUpdates=[{"Update": {
        "RegionName": WEST, "TableClassOverride": "STANDARD"}}])[0] == "ValidationException"


def test_delete_table_of_a_member_on_its_own_server_leaves_the_group_everywhere(c3, unique_name):
    global_table(c3, unique_name)
    c3[EU].delete_table(TableName=unique_name)
    until(lambda: set(replicas(c3[EAST], unique_name)) == {WEST} and set(replicas(c3[WEST], unique_name)) == {EAST},
          "every server agreeing the deleted member left")
    c3[WEST].put_item(TableName=unique_name, Item={"pk": {"S": "after"}})
    assert set(converge([c3[EAST], c3[WEST]], unique_name)) == {"after"}
    assert aws_error(c3[EU].describe_table, TableName=unique_name)[0] == "ResourceNotFoundException"


def test_an_sse_type_change_fans_out_to_every_server(trio, c3, unique_name):
    global_table(c3, unique_name)
    c3[WEST].put_item(TableName=unique_name, Item={"pk": {"S": "a"}})
    answer = c3[EAST].update_table(TableName=unique_name, SSESpecification={"Enabled": True})["TableDescription"]
    assert answer["SSEDescription"]["Status"] == "UPDATING"
    assert {r["RegionName"]: r["ReplicaStatus"] for r in answer["Replicas"]} == {WEST: "UPDATING", EU: "UPDATING"}
    assert c3[EU].describe_table(TableName=unique_name)["Table"]["SSEDescription"]["Status"] == "UPDATING"
    # a second change while the replicas of other servers switch is refused there too
    assert aws_error(c3[WEST].update_table, TableName=unique_name,
                     SSESpecification={"Enabled": False})[0] == "ResourceInUseException"
    until(lambda: all_replicas(c3, unique_name), "every replica ACTIVE again on every server")
    kms = clients(trio, "kms")
    managed = {r: kms[r].describe_key(KeyId="alias/aws/dynamodb")["KeyMetadata"]["Arn"] for r in REGIONS}
    assert len(set(managed.values())) == 3  # each server's own key, of its own region
    until(lambda: all(c3[r].describe_table(TableName=unique_name)["Table"]["SSEDescription"]["Status"] == "ENABLED"
                      for r in REGIONS), "every region's SSE ENABLED")
    for region, ddb in c3.items():
        assert ddb.describe_table(TableName=unique_name)["Table"]["SSEDescription"]["KMSMasterKeyArn"] == \
            managed[region]
        until(lambda ddb=ddb, region=region: {r: v.get("KMSMasterKeyId") for r, v in
                                              replicas(ddb, unique_name).items()} ==
              {r: managed[r] for r in REGIONS if r != region}, f"{region} showing every replica's own key")
    c3[EU].put_item(TableName=unique_name, Item={"pk": {"S": "b"}})
    assert set(converge(list(c3.values()), unique_name)) == {"a", "b"}


def test_losing_one_regions_key_on_its_server(trio, c3, unique_name):
    kms = clients(trio, "kms")
    keys = {r: kms[r].create_key()["KeyMetadata"] for r in REGIONS}
    make_table(c3[EAST], unique_name, sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": keys[EAST]["Arn"]})
    for region in (WEST, EU):
        add_replica(c3[EAST], unique_name, region, KMSMasterKeyId=keys[region]["KeyId"])
        wait_replicas(c3[EAST], unique_name, timeout=30)
    until(lambda: all_replicas(c3, unique_name), "every replica ACTIVE on every server")
    assert replicas(c3[EU], unique_name)[WEST]["KMSMasterKeyId"] == keys[WEST]["Arn"]
    c3[EAST].put_item(TableName=unique_name, Item={"pk": {"S": "a"}})
    converge(list(c3.values()), unique_name)
    kms[WEST].disable_key(KeyId=keys[WEST]["KeyId"])
    wait_status(c3[WEST], unique_name, CMK, 30)
    for region in (EAST, EU):  # every other server sees it, with the time it became inaccessible
        rep = until(lambda region=region: (lambda r: r if r["ReplicaStatus"] == CMK else None)(
            replicas(c3[region], unique_name)[WEST]), f"{region} showing {WEST} inaccessible")
        assert "ReplicaInaccessibleDateTime" in rep
        assert c3[region].describe_table(TableName=unique_name)["Table"]["TableStatus"] == "ACTIVE"
    # the others keep replicating between themselves; nothing reaches the lost one, nothing leaves it
    for i in range(10):
        c3[EAST].put_item(TableName=unique_name, Item={"pk": {"S": f"while-{i}"}})
    c3[EAST].delete_item(TableName=unique_name, Key={"pk": {"S": "a"}})
    converge([c3[EAST], c3[EU]], unique_name, timeout=30)
    kms[WEST].enable_key(KeyId=keys[WEST]["KeyId"])
    wait_status(c3[WEST], unique_name, "ACTIVE", 30)
    until(lambda: all_replicas(c3, unique_name), "every replica ACTIVE again on every server")
    got = converge(list(c3.values()), unique_name, timeout=30)
    assert set(got) == {f"while-{i}" for i in range(10)}
    c3[WEST].put_item(TableName=unique_name, Item={"pk": {"S": "from-west"}})
    assert "from-west" in converge(list(c3.values()), unique_name)


def test_a_replica_whose_key_stays_lost_leaves_the_group_on_every_server(tmp_path, unique_name):
    servers = group(tmp_path, (EAST, WEST), **FAST_KEYS, replica_inaccessible_seconds=2)
    try:
        c, kms, keys = cmk_pair(servers, unique_name)
        kms[WEST].disable_key(KeyId=keys[WEST]["KeyId"])
        until(lambda: all("Replicas" not in c[r].describe_table(TableName=unique_name)["Table"] for r in c),
              "the replica gone from the group on both servers", timeout=60)
        c[EAST].put_item(TableName=unique_name, Item={"pk": {"S": "after"}})  # the source keeps serving
        assert "left its replication group" in servers[WEST].log_text()
    finally:
        for s in servers.values():
            s.kill()


def test_three_servers_one_killed_under_load_catches_up(tmp_path, unique_name):
    servers = group(tmp_path, allow_any_credentials=True)
    try:
        c = clients(servers)
        global_table(c, unique_name)
        acked: dict[str, list[str]] = {r: [] for r in REGIONS}
        stop = threading.Event()

        def writer(ddb, region):
            i = 0
            while not stop.is_set():
                key = f"{region}-{i}"
                try:
                    ddb.put_item(TableName=unique_name, Item={"pk": {"S": key}, "v": {"S": "x" * 100}})
                except Exception:
                    if region != WEST:
                        raise
                    return  # its server was killed: what it acknowledged before counts
                acked[region].append(key)
                i += 1

        threads = {r: threading.Thread(target=writer, args=(c[r], r)) for r in REGIONS}
        for t in threads.values():
            t.start()
        until(lambda: all(len(v) >= 30 for v in acked.values()), "30 writes acknowledged in every region")
        servers[WEST].kill()
        before = {r: len(acked[r]) for r in (EAST, EU)}
        until(lambda: all(len(acked[r]) >= before[r] + 50 for r in before), "the others serving on")
        assert threads[EAST].is_alive() and threads[EU].is_alive()
        servers[WEST].start()
        c[WEST] = servers[WEST].client("dynamodb", access_key=ACCOUNT, region=WEST)
        stop.set()
        for t in threads.values():
            t.join()
        got = converge(list(c.values()), unique_name, timeout=90)
        assert set().union(*acked.values()) <= set(got)
        until(lambda: all_replicas(c, unique_name), "every replica ACTIVE on every server after the restart")
    finally:
        for s in servers.values():
            s.kill()


class HeldPeer:
    """A peer that takes a request and answers only when released (a slow network, a busy server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.received = threading.Event()
        self.release = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        # every connection is held (the server's background puller may reach the peer before the Create does)
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            self.received.set()
            self.release.wait(60)
            body = b'{"__type": "ValidationException", "message": "not now"}'
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.0\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)

    def close(self) -> None:
        self.release.set()
        self.sock.close()


def test_a_replica_create_waiting_on_its_peer_does_not_stall_the_server(tmp_path, unique_name):
    peer = HeldPeer()
    creds = tmp_path / "peers.json"
    creds.write_text(json.dumps({WEST: {"aws_access_key_id": ACCOUNT, "aws_secret_access_key": "x"}}))
    os.chmod(creds, 0o600)
    srv = ServerProcess(tmp_path / "a", regions=EAST, replica_peer=f"{WEST}=http://127.0.0.1:{peer.port}",
                        replica_peer_credentials=str(creds), allow_any_credentials=True)
    try:
        east = srv.client("dynamodb", access_key=ACCOUNT, region=EAST)
        make_table(east, unique_name)
        outcome: list = []
        creating = threading.Thread(target=lambda: outcome.append(aws_error(
            east.update_table, TableName=unique_name, ReplicaUpdates=[{"Create": {"RegionName": WEST}}])))
        creating.start()
        assert peer.received.wait(30)
        # while the peer holds the Create, the server answers everything else
        import boto3
        from botocore.config import Config

        quick = boto3.client("dynamodb", endpoint_url=srv.endpoint, region_name=EAST, aws_access_key_id=ACCOUNT,
                             aws_secret_access_key="x", config=Config(read_timeout=10, connect_timeout=10,
                                                                      retries={"total_max_attempts": 1}))
        quick.put_item(TableName=unique_name, Item={"pk": {"S": "meanwhile"}})
        assert set(items(quick, unique_name)) == {"meanwhile"}
        assert creating.is_alive()
        peer.release.set()
        creating.join(30)
        assert outcome and outcome[0][0] == "ValidationException"  # the peer's refusal (or, if slow, its absence)
        assert "Replicas" not in east.describe_table(TableName=unique_name)["Table"]
    finally:
        peer.close()
        srv.kill()


def test_a_local_replica_is_refused_in_a_group_with_members_in_other_servers(tmp_path, unique_name):
    ports = {"a": free_port(), "b": free_port()}
    files = {}
    for name, regions in (("a", (WEST,)), ("b", (EAST, EU))):
        files[name] = tmp_path / f"{name}-peers.json"
        files[name].write_text(json.dumps({r: {"aws_access_key_id": ACCOUNT, "aws_secret_access_key": "x"}
                                           for r in regions}))
        os.chmod(files[name], 0o600)
    a = ServerProcess(tmp_path / "a", port=ports["a"], regions=f"{EAST},{EU}", allow_any_credentials=True,
                      replica_peer=f"{WEST}=http://127.0.0.1:{ports['b']}", replica_peer_credentials=str(files["a"]))
    b = ServerProcess(tmp_path / "b", port=ports["b"], regions=WEST, allow_any_credentials=True,
                      replica_peer=f"{EAST}=http://127.0.0.1:{ports['a']},{EU}=http://127.0.0.1:{ports['a']}",
                      replica_peer_credentials=str(files["b"]))
    try:
        east = a.client("dynamodb", access_key=ACCOUNT, region=EAST)
        make_table(east, unique_name)
        add_replica(east, unique_name, WEST)
        wait_replicas(east, unique_name, timeout=30)
        code, message, _ = aws_error(east.update_table, TableName=unique_name,
                                     ReplicaUpdates=[{"Create": {"RegionName": EU}}])
        assert code == "ValidationException" and "served by this server" in message
        assert set(replicas(east, unique_name)) == {WEST}
        assert aws_error(a.client("dynamodb", access_key=ACCOUNT, region=EU).describe_table,
                         TableName=unique_name)[0] == "ResourceNotFoundException"
    finally:
        a.kill()
        b.kill()


def test_changes_needing_an_unreachable_server_are_refused_and_nothing_kept(tmp_path, unique_name):
    servers = group(tmp_path, allow_any_credentials=True)
    try:
        c = clients(servers)
        make_table(c[EAST], unique_name)
        add_replica(c[EAST], unique_name, WEST)
        until(lambda: all_replicas({r: c[r] for r in (EAST, WEST)}, unique_name), "the replica ACTIVE on both")
        servers[WEST].kill()
        for update in ({"Delete": {"RegionName": WEST}}, {"Create": {"RegionName": EU}},
                       {"Update": {"RegionName": WEST, "TableClassOverride": "STANDARD_INFREQUENT_ACCESS"}}):
            code, message, _ = aws_error(c[EAST].update_table, TableName=unique_name, ReplicaUpdates=[update])
            assert code == "ValidationException" and f"The replica in region {WEST} could not be reached" in message
        assert set(replicas(c[EAST], unique_name)) == {WEST}
        assert aws_error(c[EU].describe_table, TableName=unique_name)[0] == "ResourceNotFoundException"
        servers[WEST].start()
        c[WEST] = servers[WEST].client("dynamodb", access_key=ACCOUNT, region=WEST)
        until(lambda: "ReplicaStatusDescription" not in replicas(c[EAST], unique_name)[WEST], "the peer back")
        add_replica(c[EAST], unique_name, EU)
        until(lambda: all_replicas(c, unique_name), "three replicas ACTIVE on every server")
        c[WEST].put_item(TableName=unique_name, Item={"pk": {"S": "w"}})
        c[EU].put_item(TableName=unique_name, Item={"pk": {"S": "e"}})
        assert set(converge(list(c.values()), unique_name, timeout=30)) == {"w", "e"}
    finally:
        for s in servers.values():
            s.kill()
