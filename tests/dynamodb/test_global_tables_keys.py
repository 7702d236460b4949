"""Global tables: every replica's data under a key of its own region (sse-spec.md §1.5–1.6): the replica key
rules and texts, per-region key loss (only that replica INACCESSIBLE_ENCRYPTION_CREDENTIALS, replication to and
from it paused, caught up when the key is back) and a replica leaving its group after
``--replica-inaccessible-seconds``."""

from __future__ import annotations

import time

from tests.conftest import aws_error, make_table
from tests.dynamodb.gt_util import EAST, WEST, add_replica, converge, items, wait_replicas
from tests.lifecycle import wait_status

ACCOUNT = "123456789012"
FAST_KEYS = dict(allow_any_credentials=True, key_refresh_seconds=1, key_check_seconds=0.5)
CMK = "INACCESSIBLE_ENCRYPTION_CREDENTIALS"


def _clients(srv):
    return ({r: srv.client("dynamodb", access_key=ACCOUNT, region=r) for r in (EAST, WEST)},
            {r: srv.client("kms", access_key=ACCOUNT, region=r) for r in (EAST, WEST)})


def _cmk_global(ddb, kms, name):
    keys = {r: kms[r].create_key()["KeyMetadata"] for r in (EAST, WEST)}
    make_table(ddb[EAST], name, sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": keys[EAST]["Arn"]})
    add_replica(ddb[EAST], name, WEST, KMSMasterKeyId=keys[WEST]["KeyId"])  # a bare id: resolved in the replica region
    wait_replicas(ddb[EAST], name)
    return keys


def test_customer_key_replica_rules(server_factory, unique_name):
    srv = server_factory(**FAST_KEYS)
    ddb, kms = _clients(srv)
    east_key = kms[EAST].create_key()["KeyMetadata"]
    west_key = kms[WEST].create_key()["KeyMetadata"]
    make_table(ddb[EAST], unique_name, sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": east_key["Arn"]})

    def create(**kw):
        return aws_error(ddb[EAST].update_table, TableName=unique_name,
                         ReplicaUpdates=[{"Create": {"RegionName": WEST, **kw}}])[:2]

    assert create() == ("ValidationException", "One or more parameter values were invalid: KMSMasterKeyId must be "
                                                "specified for each replica.")
    assert create(KMSMasterKeyId="alias/aws/dynamodb") == (
        "ValidationException", "One or more parameter values were invalid: All replica keys must either be Customer "
        "Managed CMK or AWS Managed CMK.")
    code, msg = create(KMSMasterKeyId=east_key["Arn"])  # another region's key
    assert code == "ValidationException"
    assert msg.startswith(f"KMS validation error for region {WEST}: "), msg
    code, msg = create(KMSMasterKeyId=east_key["KeyId"])  # a bare id is looked for in the replica's region
    assert msg.startswith(f"KMS validation error for region {WEST}: "), msg
    assert "Replicas" not in ddb[EAST].describe_table(TableName=unique_name)["Table"]
    assert aws_error(ddb[WEST].describe_table, TableName=unique_name)[0] == "ResourceNotFoundException"
    ddb[EAST].put_item(TableName=unique_name, Item={"pk": {"S": "before"}})
    add_replica(ddb[EAST], unique_name, WEST, KMSMasterKeyId=west_key["KeyId"])
    table = wait_replicas(ddb[EAST], unique_name)
    assert table["Replicas"][0]["KMSMasterKeyId"] == west_key["Arn"]  # the full ARN of that region's key
    there = ddb[WEST].describe_table(TableName=unique_name)["Table"]
    assert there["SSEDescription"]["KMSMasterKeyArn"] == west_key["Arn"]
    assert there["Replicas"][0]["KMSMasterKeyId"] == east_key["Arn"]
    assert set(items(ddb[WEST], unique_name)) == {"before"}
    # each region's data under its own key: the replica's table key came from the west key
    trail = srv.client("cloudtrail", access_key=ACCOUNT, region=WEST)
    events = trail.lookup_events(LookupAttributes=[{"AttributeKey": "EventName",
                                                    "AttributeValue": "GenerateDataKey"}])["Events"]
    assert any(west_key["Arn"] in e["CloudTrailEvent"] for e in events)


def test_managed_key_replica_uses_its_regions_managed_key(server_factory, unique_name):
    srv = server_factory(**FAST_KEYS)
    ddb, kms = _clients(srv)
    make_table(ddb[EAST], unique_name, sse={"Enabled": True, "SSEType": "KMS"})
    add_replica(ddb[EAST], unique_name, WEST)
    table = wait_replicas(ddb[EAST], unique_name)
    managed = kms[WEST].describe_key(KeyId="alias/aws/dynamodb")["KeyMetadata"]["Arn"]
    assert table["Replicas"][0]["KMSMasterKeyId"] == managed
    assert f":{WEST}:" in managed
    assert ddb[WEST].describe_table(TableName=unique_name)["Table"]["SSEDescription"]["KMSMasterKeyArn"] == managed
    custom = kms[WEST].create_key()["KeyMetadata"]
    add = aws_error(ddb[EAST].update_table, TableName=unique_name, ReplicaUpdates=[{"Create": {
        "RegionName": "eu-west-1", "KMSMasterKeyId": custom["Arn"]}}])
    assert add[0] == "ValidationException"


def test_losing_one_regions_key_pauses_only_that_replica(server_factory, unique_name):
    srv = server_factory(**FAST_KEYS)
    ddb, kms = _clients(srv)
    keys = _cmk_global(ddb, kms, unique_name)
    ddb[EAST].put_item(TableName=unique_name, Item={"pk": {"S": "a"}})
    converge([ddb[EAST], ddb[WEST]], unique_name)
    kms[WEST].disable_key(KeyId=keys[WEST]["KeyId"])
    wait_status(ddb[WEST], unique_name, CMK, 20)
    rep = wait_replicas(ddb[EAST], unique_name, CMK)["Replicas"][0]
    assert rep["RegionName"] == WEST and "ReplicaInaccessibleDateTime" in rep
    assert ddb[EAST].describe_table(TableName=unique_name)["Table"]["TableStatus"] == "ACTIVE"
    # the other region keeps serving writes while replication to the lost one waits
    for i in range(20):
        ddb[EAST].put_item(TableName=unique_name, Item={"pk": {"S": f"while-{i}"}})
    ddb[EAST].delete_item(TableName=unique_name, Key={"pk": {"S": "a"}})
    assert aws_error(ddb[WEST].get_item, TableName=unique_name, Key={"pk": {"S": "a"}})[0] in (
        "ValidationException", "AccessDeniedException")
    kms[WEST].enable_key(KeyId=keys[WEST]["KeyId"])
    wait_status(ddb[WEST], unique_name, "ACTIVE", 20)
    wait_replicas(ddb[EAST], unique_name)
    got = converge([ddb[EAST], ddb[WEST]], unique_name, timeout=20)
    assert set(got) == {f"while-{i}" for i in range(20)}
    # and the other way too, once it is back
    ddb[WEST].put_item(TableName=unique_name, Item={"pk": {"S": "from-west"}})
    assert "from-west" in converge([ddb[EAST], ddb[WEST]], unique_name)


def test_replica_inaccessible_too_long_leaves_the_group(start_server, unique_name):
    srv = start_server(**FAST_KEYS, replica_inaccessible_seconds=2)
    ddb, kms = _clients(srv)
    keys = _cmk_global(ddb, kms, unique_name)
    kms[WEST].disable_key(KeyId=keys[WEST]["KeyId"])
    wait_status(ddb[WEST], unique_name, CMK, 20)
    deadline = time.time() + 20
    while "Replicas" in ddb[EAST].describe_table(TableName=unique_name)["Table"]:
        assert time.time() < deadline, "the replica never left its group"
        time.sleep(0.2)
    # the replica's table stays (regional now); the source keeps serving
    assert "Replicas" not in ddb[WEST].describe_table(TableName=unique_name)["Table"]
    ddb[EAST].put_item(TableName=unique_name, Item={"pk": {"S": "after"}})
    assert "left its replication group" in srv.log_text()


def test_an_sse_type_change_fans_out_to_every_replica(server_factory, unique_name):
    srv = server_factory(**FAST_KEYS, sse_update_seconds=1.5)
    ddb, kms = _clients(srv)
    make_table(ddb[EAST], unique_name)
    add_replica(ddb[EAST], unique_name, WEST)
    wait_replicas(ddb[EAST], unique_name)
    ddb[EAST].put_item(TableName=unique_name, Item={"pk": {"S": "a"}})
    answer = ddb[EAST].update_table(TableName=unique_name, SSESpecification={"Enabled": True})["TableDescription"]
    assert answer["SSEDescription"]["Status"] == "UPDATING"
    assert answer["Replicas"][0]["ReplicaStatus"] == "UPDATING"
    assert ddb[WEST].describe_table(TableName=unique_name)["Table"]["SSEDescription"]["Status"] == "UPDATING"
    # a second change while the replicas switch is refused
    assert aws_error(ddb[WEST].update_table, TableName=unique_name,
                     SSESpecification={"Enabled": False})[0] == "ResourceInUseException"
    table = wait_replicas(ddb[EAST], unique_name, timeout=30)
    managed = {r: kms[r].describe_key(KeyId="alias/aws/dynamodb")["KeyMetadata"]["Arn"] for r in (EAST, WEST)}
    assert table["Replicas"][0]["KMSMasterKeyId"] == managed[WEST]
    deadline = time.time() + 20
    while True:
        views = {r: ddb[r].describe_table(TableName=unique_name)["Table"]["SSEDescription"] for r in (EAST, WEST)}
        if all(v["Status"] == "ENABLED" for v in views.values()) or time.time() > deadline:
            break
        time.sleep(0.2)
    assert {r: (v["Status"], v["KMSMasterKeyArn"]) for r, v in views.items()} == {
        r: ("ENABLED", managed[r]) for r in (EAST, WEST)}
    ddb[WEST].put_item(TableName=unique_name, Item={"pk": {"S": "b"}})
    assert set(converge([ddb[EAST], ddb[WEST]], unique_name)) == {"a", "b"}
    # a customer key is regional: it changes only the replica of the region it is in
    west_key = kms[WEST].create_key()["KeyMetadata"]
    assert aws_error(ddb[WEST].update_table, TableName=unique_name, SSESpecification={
        "Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": west_key["Arn"]})[1].endswith(
        "All replica keys must either be Customer Managed CMK or AWS Managed CMK.")


def test_while_a_replica_is_created_its_group_takes_no_other_change(server_factory, unique_name):
    from tests.wire import signed_request

    srv = server_factory(**FAST_KEYS)
    ddb, _ = _clients(srv)
    make_table(ddb[EAST], unique_name)
    ddb[EAST].put_item(TableName=unique_name, Item={"pk": {"S": "a"}})
    # the source's region cannot reach its key: the replica stays CREATING until the outage ends
    fault = signed_request(srv.endpoint, "DynavaultAdmin.PutFault", {"TableName": unique_name, "KmsUnavailable": True},
                           access_key=ACCOUNT, region=EAST)
    assert fault.status == 200, fault.body
    add_replica(ddb[EAST], unique_name, WEST)
    time.sleep(0.5)
    assert ddb[EAST].describe_table(TableName=unique_name)["Table"]["Replicas"][0]["ReplicaStatus"] == "CREATING"
    assert ddb[WEST].describe_table(TableName=unique_name)["Table"]["TableStatus"] == "CREATING"
    assert aws_error(ddb[WEST].get_item, TableName=unique_name, Key={"pk": {"S": "a"}})[0] == \
        "ResourceNotFoundException"
    for call, kw in ((ddb[EAST].delete_table, {}), (ddb[WEST].delete_table, {}),
                     (ddb[EAST].update_table, {"ReplicaUpdates": [{"Delete": {"RegionName": WEST}}]})):
        assert aws_error(call, TableName=unique_name, **kw)[0] == "ResourceInUseException"
    signed_request(srv.endpoint, "DynavaultAdmin.DeleteFault", {"FaultId": fault.json()["FaultId"]},
                   access_key=ACCOUNT, region=EAST)
    wait_replicas(ddb[EAST], unique_name, timeout=30)
    assert set(items(ddb[WEST], unique_name)) == {"a"}
