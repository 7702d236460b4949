"""DynavaultAdmin.Reset against a real server: tables, backups, streams and (optionally) KMS keys of the caller's
account and region go; other accounts stay; unsigned requests are refused. Also: region ``localhost``."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_table
from tests.wire import send, signed_request

ACCOUNT_A = "111111111111"
ACCOUNT_B = "222222222222"


def admin(srv, op: str, body: dict | None = None, access_key: str = ACCOUNT_A, region: str = "us-east-1"):
    return signed_request(srv.endpoint, f"DynavaultAdmin.{op}", body or {}, access_key=access_key, region=region)


def _populate(srv, key: str, prefix: str) -> dict:
    ddb = srv.client("dynamodb", access_key=key)
    kms = srv.client("kms", access_key=key)
    cmk = kms.create_key(Description="app key")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=f"alias/{prefix}-app", TargetKeyId=cmk)
    make_table(ddb, f"{prefix}-plain")
    make_table(ddb, f"{prefix}-protected", DeletionProtectionEnabled=True)
    make_table(ddb, f"{prefix}-stream", StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
               sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": cmk})
    ddb.put_item(TableName=f"{prefix}-stream", Item={"pk": {"S": "canary"}})
    ddb.create_backup(TableName=f"{prefix}-plain", BackupName="before-reset")
    ddb.update_continuous_backups(TableName=f"{prefix}-plain",
                                  PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    return {"ddb": ddb, "kms": kms, "streams": srv.client("dynamodbstreams", access_key=key), "cmk": cmk}


def _all_backups(ddb) -> list[dict]:
    return ddb.list_backups(BackupType="ALL")["BackupSummaries"]


@pytest.fixture
def srv(start_server):
    """A server of its own: a reset deletes every table of an account, which other modules' shared servers
    must keep (and which this module's assertions must not see)."""
    return start_server(allow_any_credentials=True)


def test_reset_deletes_tables_backups_and_streams_keeps_keys_and_other_accounts(srv):
    a = _populate(srv, ACCOUNT_A, "ra")
    b = _populate(srv, ACCOUNT_B, "rb")
    assert a["streams"].list_streams()["Streams"]

    resp = admin(srv, "Reset")
    assert resp.status == 200, resp.body
    assert resp.json() == {}

    assert a["ddb"].list_tables()["TableNames"] == []
    assert _all_backups(a["ddb"]) == []  # the user backup and the SYSTEM backup of the PITR table
    assert a["streams"].list_streams()["Streams"] == []
    # KeepKeys defaults to true: the customer managed key and its alias stay
    assert a["kms"].describe_key(KeyId=a["cmk"])["KeyMetadata"]["KeyState"] == "Enabled"
    assert any(x["AliasName"] == "alias/ra-app" for x in a["kms"].list_aliases()["Aliases"])
    # another account is untouched, its data readable
    assert sorted(b["ddb"].list_tables()["TableNames"]) == ["rb-plain", "rb-protected", "rb-stream"]
    assert b["ddb"].get_item(TableName="rb-stream", Key={"pk": {"S": "canary"}})["Item"]
    assert len(_all_backups(b["ddb"])) == 1
    assert b["streams"].list_streams()["Streams"]
    # the names are free again
    make_table(a["ddb"], "ra-plain")
    assert a["ddb"].list_tables()["TableNames"] == ["ra-plain"]


def test_reset_without_keep_keys_deletes_customer_keys_at_once(srv):
    key = "333333333333"
    a = _populate(srv, key, "rk")
    other = srv.client("kms", access_key=key, region="eu-west-1")
    kept = other.create_key()["KeyMetadata"]["KeyId"]  # another region of the same account

    resp = admin(srv, "Reset", {"KeepKeys": False}, access_key=key)
    assert resp.status == 200, resp.body

    with pytest.raises(ClientError) as err:
        a["kms"].describe_key(KeyId=a["cmk"])
    assert err.value.response["Error"]["Code"] == "NotFoundException"  # gone, not PendingDeletion
    assert [k for k in a["kms"].list_keys()["Keys"] if k["KeyId"] == a["cmk"]] == []
    assert not any(x["AliasName"] == "alias/rk-app" for x in a["kms"].list_aliases()["Aliases"])
    assert other.describe_key(KeyId=kept)["KeyMetadata"]["KeyState"] == "Enabled"
    assert a["ddb"].list_tables()["TableNames"] == []


def test_reset_refused_unsigned_and_with_a_bad_body(srv):
    ddb = srv.client("dynamodb", access_key="444444444444")
    make_table(ddb, "kept")
    resp = send(srv.endpoint, b"{}", {"Content-Type": "application/x-amz-json-1.0",
                                      "X-Amz-Target": "DynavaultAdmin.Reset"})
    assert resp.status == 400
    assert resp.json()["__type"].endswith("#MissingAuthenticationTokenException")
    resp = send(srv.endpoint, b"{}", {"Content-Type": "application/x-amz-json-1.0",
                                      "X-Amz-Target": "DynavaultAdmin.Reset",
                                      "Authorization": "AWS4-HMAC-SHA256 Credential=garbage"})
    assert resp.status == 400
    assert "Signature" in resp.json()["__type"] or "Token" in resp.json()["__type"]
    resp = admin(srv, "Reset", {"KeepKeys": "no"}, access_key="444444444444")
    assert resp.status == 400 and resp.json()["__type"].endswith("ValidationException")
    assert ddb.list_tables()["TableNames"] == ["kept"]


def test_reset_refused_with_a_wrong_secret(server_factory):
    """A server that checks secrets: the admin front answers a bad signature as DynamoDB does."""
    srv = server_factory("admin-creds")
    line = "".join(srv.stdout_lines)
    key_id = line.split("aws_access_key_id = ")[1].split()[0]
    secret = line.split("aws_secret_access_key = ")[1].split()[0]
    ok = signed_request(srv.endpoint, "DynavaultAdmin.Reset", {}, access_key=key_id, secret=secret)
    assert ok.status == 200, ok.body
    bad = signed_request(srv.endpoint, "DynavaultAdmin.Reset", {}, access_key=key_id, secret=secret + "x")
    assert bad.status == 400
    assert bad.json()["__type"].endswith("#InvalidSignatureException")


def test_reset_of_100_tables_under_a_second(srv):
    key = "555555555555"
    ddb = srv.client("dynamodb", access_key=key)
    for i in range(100):
        make_table(ddb, f"t{i:03d}")
    started = time.perf_counter()
    resp = admin(srv, "Reset", access_key=key)
    elapsed = time.perf_counter() - started
    assert resp.status == 200, resp.body
    print(f"reset of 100 tables: {elapsed * 1000:.0f} ms")
    assert ddb.list_tables()["TableNames"] == []
    assert elapsed < 1.0


def test_reset_with_shared_db_resets_the_whole_data_set(server_factory):
    srv = server_factory("admin-shared", allow_any_credentials=True, shared_db=True)
    one = srv.client("dynamodb", access_key=ACCOUNT_A, region="us-east-1")
    two = srv.client("dynamodb", access_key=ACCOUNT_B, region="eu-west-1")
    make_table(one, "shared-1")
    assert two.list_tables()["TableNames"] == ["shared-1"]
    workbench = srv.client("dynamodb", access_key="anything", region="localhost")
    assert workbench.list_tables()["TableNames"] == ["shared-1"]  # localhost joins the one data set too
    resp = admin(srv, "Reset", access_key=ACCOUNT_B, region="eu-west-1")
    assert resp.status == 200, resp.body
    assert one.list_tables()["TableNames"] == []


def test_region_localhost_is_a_region_of_its_own(srv):
    """NoSQL Workbench signs for region ``localhost`` when it talks to a local endpoint."""
    key = "666666666666"
    local = srv.client("dynamodb", access_key=key, region="localhost")
    east = srv.client("dynamodb", access_key=key, region="us-east-1")
    make_table(local, "workbench")
    assert local.list_tables()["TableNames"] == ["workbench"]
    assert local.describe_table(TableName="workbench")["Table"]["TableArn"].startswith(
        f"arn:aws:dynamodb:localhost:{key}:table/")
    assert east.list_tables()["TableNames"] == []
    resp = admin(srv, "Reset", access_key=key, region="localhost")
    assert resp.status == 200, resp.body
    assert local.list_tables()["TableNames"] == []


def _tables_in_store(srv) -> float:
    """Every table of the data set, whatever its account (the store-wide dynavault_tables gauge)."""
    text = urllib.request.urlopen(srv.endpoint + "/metrics").read().decode()
    return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith("dynavault_tables{"))


def test_shared_db_reset_includes_what_init_made_for_other_accounts(server_factory, tmp_path):
    seed = tmp_path / "seed"
    seed.mkdir()
    table = {"TableName": "seeded", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
             "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}], "BillingMode": "PAY_PER_REQUEST"}
    (seed / "a.json").write_text(json.dumps({"Account": "777777777777", "Region": "eu-west-2", "Tables": [table]}))
    (seed / "b.json").write_text(json.dumps({"Tables": [table]}))
    srv = server_factory("admin-shared-init", allow_any_credentials=True, shared_db=True, init=str(seed),
                         key_check_seconds=0.2)
    deadline = time.monotonic() + 10
    while _tables_in_store(srv) != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _tables_in_store(srv) == 2
    assert admin(srv, "Reset").status == 200
    deadline = time.monotonic() + 10
    while _tables_in_store(srv) != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _tables_in_store(srv) == 0


def test_reset_deletes_the_callers_dax_clusters_and_groups(start_server):
    from tests.dax.daxclient import free_port

    srv = start_server(allow_any_credentials=True, dax_port=free_port(), dax_cluster_seconds=30)
    role = "arn:aws:iam::111111111111:role/dax"
    mine, other = srv.client("dax", access_key=ACCOUNT_A), srv.client("dax", access_key=ACCOUNT_B)
    for dax in (mine, other):
        dax.create_parameter_group(ParameterGroupName="fast")
        dax.create_subnet_group(SubnetGroupName="mysubnets", SubnetIds=["subnet-1"])
        dax.create_cluster(ClusterName="c1", NodeType="dax.t3.small", ReplicationFactor=1, IamRoleArn=role,
                           ParameterGroupName="fast", SubnetGroupName="mysubnets")
    mine.create_cluster(ClusterName="c2", NodeType="dax.t3.small", ReplicationFactor=1, IamRoleArn=role)

    resp = admin(srv, "Reset")
    assert resp.status == 200, resp.body
    # at once, though a DeleteCluster would keep them DELETING for 30 s here
    assert mine.describe_clusters()["Clusters"] == []
    assert [g["ParameterGroupName"] for g in mine.describe_parameter_groups()["ParameterGroups"]] == [
        "default.dax1.0"]
    assert "mysubnets" not in [g["SubnetGroupName"] for g in mine.describe_subnet_groups()["SubnetGroups"]]
    events = [e["Message"] for e in mine.describe_events(SourceType="CLUSTER")["Events"]]
    assert events.count("Cluster deleted.") == 2
    # the names are free again
    mine.create_parameter_group(ParameterGroupName="fast")
    mine.create_cluster(ClusterName="c1", NodeType="dax.t3.small", ReplicationFactor=1, IamRoleArn=role)
    # another account's are untouched
    assert [c["ClusterName"] for c in other.describe_clusters()["Clusters"]] == ["c1"]
    assert "fast" in [g["ParameterGroupName"] for g in other.describe_parameter_groups()["ParameterGroups"]]
    assert "mysubnets" in [g["SubnetGroupName"] for g in other.describe_subnet_groups()["SubnetGroups"]]
