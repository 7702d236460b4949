"""Global tables across servers: two ``dynavault serve`` processes, each with its own data dir, KMS and port,
each serving one region (``--regions``), replicating over signed HTTP (``--replica-peer``)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

from tests.conftest import aws_error, make_table
from tests.dynamodb.gt_util import EAST, WEST, add_replica, converge, items, wait_replicas
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


def pair(base, creds_a: tuple, creds_b: tuple, ports: tuple[int, int] | None = None,
         peer_ports: tuple[int, int] | None = None, **settings) -> tuple[ServerProcess, ServerProcess]:
    """Server A serves us-east-1, server B us-west-2, each the other's peer (``peer_ports``: where each reaches
    the other, e.g. through a forwarder; default: directly)."""
    pa, pb = ports or (free_port(), free_port())
    to_b, to_a = peer_ports or (pb, pa)
    a = ServerProcess(base / "a", port=pa, regions=EAST, replica_peer=f"{WEST}=http://127.0.0.1:{to_b}",
                      replica_peer_credentials=peer_credentials(base / "a-peers.json", {WEST: creds_a}),
                      **settings)
    b = ServerProcess(base / "b", port=pb, regions=WEST, replica_peer=f"{EAST}=http://127.0.0.1:{to_a}",
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


def strict_pair(base, *, a_secret_ok: bool, b_secret_ok: bool):
    """A pair without --allow-any-credentials: one credential of the same account made in each data dir."""
    import subprocess
    import sys

    creds = {}
    for name in ("a", "b"):
        out = subprocess.run([sys.executable, "-m", "dynavault.cli", "credentials", "create", "--account",
                              ACCOUNT, "--data-dir", str(base / name / "data")], capture_output=True, text=True,
                             check=True).stdout
        fields = dict(line.split(" = ", 1) for line in out.splitlines() if " = " in line)
        creds[name] = (fields["aws_access_key_id"], fields["aws_secret_access_key"])
    # A signs at B with B's credential, B at A with A's: a wrong secret is what a peer must refuse
    to_b = creds["b"] if a_secret_ok else (creds["b"][0], "not-the-secret-" + "x" * 25)
    to_a = creds["a"] if b_secret_ok else (creds["a"][0], "not-the-secret-" + "y" * 25)
    a, b = pair(base, to_b, to_a)
    return a, b, creds


def test_a_peer_refusing_our_credential_refuses_the_replica_create(tmp_path, unique_name):
    a, b, creds = strict_pair(tmp_path, a_secret_ok=False, b_secret_ok=True)
    try:
        east = a.client("dynamodb", access_key=creds["a"][0], secret=creds["a"][1], region=EAST)
        west = b.client("dynamodb", access_key=creds["b"][0], secret=creds["b"][1], region=WEST)
        make_table(east, unique_name)
        code, message, status = aws_error(east.update_table, TableName=unique_name,
                                          ReplicaUpdates=[{"Create": {"RegionName": WEST}}])
        assert (code, status) == ("ValidationException", 400)
        assert "refused this server's replication credential" in message
        assert "Replicas" not in east.describe_table(TableName=unique_name)["Table"]
        assert west.list_tables()["TableNames"] == []
        for srv in (a, b):
            assert "not-the-secret" not in srv.log_text()
    finally:
        a.kill()
        b.kill()


def test_a_pull_refused_by_the_peer_shows_replication_not_authorized(tmp_path, unique_name):
    a, b, creds = strict_pair(tmp_path, a_secret_ok=True, b_secret_ok=False)
    try:
        east = a.client("dynamodb", access_key=creds["a"][0], secret=creds["a"][1], region=EAST)
        west = b.client("dynamodb", access_key=creds["b"][0], secret=creds["b"][1], region=WEST)
        make_table(east, unique_name)
        east.put_item(TableName=unique_name, Item={"pk": {"S": "k"}})
        add_replica(east, unique_name, WEST)
        deadline = time.time() + 20
        replicas: list = []
        while time.time() < deadline:
            replicas = west.describe_table(TableName=unique_name)["Table"].get("Replicas", [])
            if replicas and replicas[0]["ReplicaStatus"] == "REPLICATION_NOT_AUTHORIZED":
                break
            time.sleep(0.1)
        assert replicas[0]["RegionName"] == EAST
        assert replicas[0]["ReplicaStatus"] == "REPLICATION_NOT_AUTHORIZED"
        assert "refused this server's replication credential" in replicas[0]["ReplicaStatusDescription"]
        # the replica is never filled, so the source still sees it CREATING; nothing reached it
        assert east.describe_table(TableName=unique_name)["Table"]["Replicas"][0]["ReplicaStatus"] == "CREATING"
        assert west.describe_table(TableName=unique_name)["Table"]["TableStatus"] == "CREATING"
        for srv in (a, b):
            assert "not-the-secret" not in srv.log_text()
    finally:
        a.kill()
        b.kill()


def _replica_of(ddb, name: str, field: str, present: bool = True, timeout: float = 20.0):
    """The field of the table's only replica once it is there (``present``) or gone."""
    deadline = time.time() + timeout
    replica: dict = {}
    while time.time() < deadline:
        replica = ddb.describe_table(TableName=name)["Table"]["Replicas"][0]
        if (field in replica) == present:
            return replica.get(field)
        time.sleep(0.05)
    raise AssertionError(f"{field} never {'present' if present else 'gone'}: {replica}")


def test_a_killed_server_catches_up_with_no_acknowledged_write_lost(tmp_path, unique_name):
    a, b = pair(tmp_path, (ACCOUNT, "x"), (ACCOUNT, "x"), allow_any_credentials=True)
    try:
        east = a.client("dynamodb", access_key=ACCOUNT, region=EAST)
        west = b.client("dynamodb", access_key=ACCOUNT, region=WEST)
        make_table(east, unique_name)
        add_replica(east, unique_name, WEST)
        wait_replicas(east, unique_name)
        acked: dict[str, list[str]] = {EAST: [], WEST: []}
        stop = threading.Event()

        def writer(client, region):
            i = 0
            while not stop.is_set():
                key = f"{region}-{i}"
                try:
                    client.put_item(TableName=unique_name, Item={"pk": {"S": key}, "v": {"S": "x" * 100}})
                except Exception:
                    if region == EAST:
                        raise
                    return  # its server was killed: what it acknowledged before counts
                acked[region].append(key)
                i += 1

        threads = [threading.Thread(target=writer, args=(c, r)) for c, r in ((east, EAST), (west, WEST))]
        for t in threads:
            t.start()
        while len(acked[WEST]) < 50 or len(acked[EAST]) < 50:
            time.sleep(0.01)
        b.kill()
        before = len(acked[EAST])
        while len(acked[EAST]) < before + 100:  # the other server keeps serving its region
            time.sleep(0.01)
        assert threads[0].is_alive()
        assert "cannot be reached" in _replica_of(east, unique_name, "ReplicaStatusDescription")
        b.start()
        west = b.client("dynamodb", access_key=ACCOUNT, region=WEST)
        stop.set()
        for t in threads:
            t.join()
        got = converge([east, west], unique_name, timeout=60)
        assert set(acked[EAST]) | set(acked[WEST]) <= set(got)
        assert _replica_of(east, unique_name, "ReplicaStatusDescription", present=False) is None
    finally:
        a.kill()
        b.kill()


def test_canary_scan_covers_both_servers(tmp_path, unique_name):
    from tests.canary import rows_under, scan

    replication = b"\x00\x00replication\x00"
    a, b = pair(tmp_path, (ACCOUNT, "peer-secret-Wombat5521"), (ACCOUNT, "peer-secret-Wombat5521"),
                allow_any_credentials=True, access_log="-")
    try:
        c = {EAST: a.client("dynamodb", access_key=ACCOUNT, region=EAST),
             WEST: b.client("dynamodb", access_key=ACCOUNT, region=WEST)}
        make_table(c[EAST], unique_name)
        add_replica(c[EAST], unique_name, WEST)
        wait_replicas(c[EAST], unique_name)
        canaries = {EAST: "canary-gtp-east-Pangolin6612", WEST: "canary-gtp-west-Narwhal2287"}
        for region, canary in canaries.items():
            for i in range(5):
                c[region].put_item(TableName=unique_name, Item={
                    "pk": {"S": f"{canary}-key-{i}"}, "v": {"S": canary}, "b": {"B": canary.encode() + b"-bin"}})
        c[WEST].delete_item(TableName=unique_name, Key={"pk": {"S": f"{canaries[EAST]}-key-0"}})
        converge(list(c.values()), unique_name)
        assert a.stop() == 0 and b.stop() == 0
        for srv in (a, b):
            db = srv.data_dir / "tables.db"
            assert rows_under(db, replication + b"q") >= 1  # its queue
            assert rows_under(db, replication + b"c") >= 10  # every item's clock
            assert rows_under(db, replication + b"p") == 2  # its peer's checkpoint here, its own in the peer's queue
        needles = [*canaries.values(), *(v + "-key-1" for v in canaries.values()), "peer-secret-Wombat5521"]
        assert scan([a.data_dir, a.log_path, b.data_dir, b.log_path], needles) == []
        assert not any(n in line for n in needles for srv in (a, b) for line in srv.stdout_lines)
    finally:
        a.kill()
        b.kill()


def test_a_peer_credentials_file_readable_by_others_refuses_to_start(tmp_path):
    path = peer_credentials(tmp_path / "peers.json", {WEST: (ACCOUNT, "x")})
    os.chmod(path, 0o644)
    with pytest.raises(RuntimeError) as exc:
        ServerProcess(tmp_path / "a", regions=EAST, replica_peer=f"{WEST}=http://127.0.0.1:9",
                      replica_peer_credentials=path, allow_any_credentials=True)
    assert "is readable by others: chmod 600 it" in str(exc.value)


class Forwarder:
    """A TCP forwarder on loopback that can be cut (every connection closed, new ones refused) and healed:
    the network between two servers."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.cut_off = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self.cut_off.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.cut_off.set()
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def heal(self) -> None:
        self.cut_off.clear()

    def close(self) -> None:
        self.cut()
        self.sock.close()


def test_a_network_cut_keeps_both_sides_serving_and_converges_after(tmp_path, unique_name):
    pa, pb = free_port(), free_port()
    to_b, to_a = Forwarder(pb), Forwarder(pa)
    a, b = pair(tmp_path, (ACCOUNT, "x"), (ACCOUNT, "x"), ports=(pa, pb), peer_ports=(to_b.port, to_a.port),
                allow_any_credentials=True)
    try:
        c = {EAST: a.client("dynamodb", access_key=ACCOUNT, region=EAST),
             WEST: b.client("dynamodb", access_key=ACCOUNT, region=WEST)}
        make_table(c[EAST], unique_name)
        add_replica(c[EAST], unique_name, WEST)
        wait_replicas(c[EAST], unique_name)
        c[EAST].put_item(TableName=unique_name, Item={"pk": {"S": "before"}})
        converge(list(c.values()), unique_name)
        to_b.cut()
        to_a.cut()
        # both sides keep serving their regions, and write the same items meanwhile
        for i in range(10):
            c[EAST].put_item(TableName=unique_name, Item={"pk": {"S": f"k{i}"}, "by": {"S": "east"}})
        for i in range(5, 15):
            c[WEST].put_item(TableName=unique_name, Item={"pk": {"S": f"k{i}"}, "by": {"S": "west"}})
        c[WEST].delete_item(TableName=unique_name, Key={"pk": {"S": "before"}})
        assert "cannot be reached" in _replica_of(c[EAST], unique_name, "ReplicaStatusDescription")
        assert set(items(c[EAST], unique_name)) == {"before", *(f"k{i}" for i in range(10))}
        to_b.heal()
        to_a.heal()
        got = converge(list(c.values()), unique_name, timeout=60)
        # last writer wins: us-west-2 wrote k5..k9 after us-east-1 did
        assert {k: v["by"]["S"] for k, v in got.items()} == {
            **{f"k{i}": "east" for i in range(5)}, **{f"k{i}": "west" for i in range(5, 15)}}
    finally:
        a.kill()
        b.kill()
        to_b.close()
        to_a.close()


@pytest.mark.parametrize("target, body", [
    ("Pull", {"TableName": "TABLE", "Consumer": WEST, "After": None, "Limit": "abc"}),
    ("Pull", {"TableName": "TABLE", "Consumer": WEST, "After": "zz"}),
    ("Pull", {"TableName": "TABLE", "Consumer": "eu-west-1"}),
    ("Pull", {"TableName": "no-such-table", "Consumer": WEST}),
    ("Backfill", {"TableName": "TABLE", "After": ["zz", 1]}),
    ("CreateReplica", {"TableName": "TABLE", "Source": WEST, "Members": f"{EAST},{WEST}", "Table": {}}),
    ("Nope", {}),
    ("Pull", {"TableName": "TABLE", "Consumer": WEST, "State": {"status": "ACTIVE", "key_arn": 5}}),
    ("Pull", {"TableName": "TABLE", "Consumer": WEST, "State": {"status": "HACKED"}}),
    ("Pull", {"TableName": "TABLE", "Consumer": WEST, "State": {"status": "ACTIVE", "indexes": "byv"}}),
    ("Pull", {"TableName": "TABLE", "Consumer": WEST, "State": {"status": "ACTIVE", "class_since": "x"}}),
    ("AddMember", {"TableName": "TABLE", "Region": 5, "Source": WEST}),
    ("AddMember", {"TableName": "TABLE", "Region": "eu-west-1", "Source": WEST}),
    ("AddMember", {"TableName": "TABLE", "Region": "eu-west-1", "Source": EAST}),
    ("RemoveMember", {"TableName": "TABLE", "Region": ["x"]}),
    ("UpdateReplica", {"TableName": "TABLE", "Update": {"TableClassOverride": 5}}),
    ("UpdateReplica", {"TableName": "TABLE", "Update": {"ProvisionedThroughputOverride": {"ReadCapacityUnits": "1"}}}),
    ("UpdateReplica", {"TableName": "TABLE", "Update": "x"}),
    ("UpdateReplicaSSE", {"TableName": "TABLE", "SSESpecification": {"Enabled": "yes", "SSEType": 5}}),
    ("UpdateReplicaSSE", {"TableName": "TABLE", "SSESpecification": "x"}),
    ("UpdateReplicaSSE", {"TableName": "TABLE", "SSESpecification": {"KMSMasterKeyId": ["x"], "SSEType": "KMS"}}),
    ("DeleteReplica", {"TableName": "no-such-table"}),
])
def test_hostile_replication_requests_are_4xx(servers, c, unique_name, target, body):
    from tests.wire import signed_request

    a, _ = servers
    make_table(c[EAST], unique_name)
    add_replica(c[EAST], unique_name, WEST)
    wait_replicas(c[EAST], unique_name)
    body = {k: (unique_name if v == "TABLE" else v) for k, v in body.items()}
    resp = signed_request(a.endpoint, f"DynavaultReplication.{target}", body, access_key=ACCOUNT, region=EAST)
    assert 400 <= resp.status < 500, (resp.status, resp.body)
