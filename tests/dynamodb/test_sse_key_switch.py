"""UpdateTable SSESpecification: switching owned <-> managed <-> customer keys (sse-spec.md §1.2-§1.4)."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid

import orjson
import pytest
from botocore.exceptions import ClientError

from tests.canary import scan
from tests.conftest import make_table

INVALID = "One or more parameter values were invalid: "
ACCOUNT = "123456789012"

def _wait_sse(ddb, name, timeout=20.0):
    """Poll until the switch finishes; returns every distinct SSEDescription seen (None = absent)."""
    seen = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        table = ddb.describe_table(TableName=name)["Table"]
        assert table["TableStatus"] == "ACTIVE"
        sse = table.get("SSEDescription")
        if not seen or seen[-1] != sse:
            seen.append(sse)
        if sse is None or sse.get("Status") == "ENABLED":
            return seen
        time.sleep(0.1)
    raise AssertionError(f"SSE switch did not finish: {seen}")


def _node_blobs(data_dir, table_id: str) -> dict[bytes, bytes]:
    prefix = b"T" + uuid.UUID(table_id).bytes
    con = sqlite3.connect(f"file:{data_dir / 'tables.db'}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT k, v FROM kv").fetchall()
    finally:
        con.close()
    return {bytes(k): bytes(v) for k, v in rows if bytes(k).startswith(prefix)}


def _catalog_sse(data_dir, name: str) -> dict:
    con = sqlite3.connect(f"file:{data_dir / 'tables.db'}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT k, v FROM kv").fetchall()
    finally:
        con.close()
    for k, v in rows:
        if bytes(k).startswith(b"\x00\x00catalog\x00") and bytes(k).endswith(name.encode()):
            return orjson.loads(bytes(v))
    raise AssertionError("no catalog row")


# the module's server (conftest's ``srv``): its tests use tables and keys of their own
SERVER_SETTINGS = dict(allow_any_credentials=True, sse_update_seconds=1.5, key_check_seconds=1)


def test_switch_cycle_keeps_blobs_and_data_under_live_traffic(start_server, unique_name):
    srv = start_server(**SERVER_SETTINGS)  # its own: stopped at the end for the canary scan
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    k1 = kms.create_key()["KeyMetadata"]
    k2 = kms.create_key()["KeyMetadata"]
    table = make_table(ddb, unique_name)
    canary = "canary-switch-Periwinkle5813"
    items = {f"item-{i}": {"pk": {"S": f"item-{i}"}, "v": {"N": str(i)}, "c": {"S": canary}} for i in range(40)}
    for item in items.values():
        ddb.put_item(TableName=unique_name, Item=item)
    before = _node_blobs(srv.data_dir, table["TableId"])
    assert before

    stop = threading.Event()
    failures: list[str] = []

    def reader():
        client = srv.client("dynamodb", access_key=ACCOUNT)
        while not stop.is_set():
            try:
                got = client.get_item(TableName=unique_name, Key={"pk": {"S": "item-7"}})["Item"]
                if got != items["item-7"]:
                    failures.append(f"wrong item {got}")
            except ClientError as err:
                failures.append(str(err))
            time.sleep(0.02)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        # owned -> customer: {UPDATING} first, then the new ARN, then ENABLED
        out = ddb.update_table(TableName=unique_name, SSESpecification={
            "Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": k1["KeyId"]})["TableDescription"]
        assert out["TableStatus"] == "ACTIVE"
        assert out["SSEDescription"] == {"Status": "UPDATING"}
        seen = _wait_sse(ddb, unique_name)
        assert {"Status": "UPDATING", "SSEType": "KMS", "KMSMasterKeyArn": k1["Arn"]} in seen
        assert seen[-1] == {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": k1["Arn"]}
        assert [g["GranteePrincipal"] for g in kms.list_grants(KeyId=k1["KeyId"])["Grants"]] == [
            "dynamodb.us-east-1.amazonaws.com"]

        # customer -> customer: old ARN while UPDATING first, then the new one; grant moves
        out = ddb.update_table(TableName=unique_name, SSESpecification={
            "Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": k2["Arn"]})["TableDescription"]
        assert out["SSEDescription"] == {"Status": "UPDATING", "SSEType": "KMS", "KMSMasterKeyArn": k1["Arn"]}
        with pytest.raises(ClientError) as err:  # a second change while UPDATING
            ddb.update_table(TableName=unique_name, SSESpecification={"Enabled": False})
        assert err.value.response["Error"]["Code"] == "ResourceInUseException"
        with pytest.raises(ClientError) as err:  # DeleteTable while UPDATING
            ddb.delete_table(TableName=unique_name)
        assert err.value.response["Error"]["Code"] == "ResourceInUseException"
        seen = _wait_sse(ddb, unique_name)
        assert {"Status": "UPDATING", "SSEType": "KMS", "KMSMasterKeyArn": k2["Arn"]} in seen
        assert seen[-1]["KMSMasterKeyArn"] == k2["Arn"]
        assert kms.list_grants(KeyId=k1["KeyId"])["Grants"] == []
        assert len(kms.list_grants(KeyId=k2["KeyId"])["Grants"]) == 1

        # customer -> managed
        ddb.update_table(TableName=unique_name, SSESpecification={"Enabled": True})
        managed = kms.describe_key(KeyId="alias/aws/dynamodb")["KeyMetadata"]
        seen = _wait_sse(ddb, unique_name)
        assert seen[-1] == {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": managed["Arn"]}
        assert kms.list_grants(KeyId=k2["KeyId"])["Grants"] == []

        # managed -> owned: {UPDATING, KMS, old} -> ... -> no SSEDescription
        out = ddb.update_table(TableName=unique_name, SSESpecification={"Enabled": False})["TableDescription"]
        assert out["SSEDescription"] == {"Status": "UPDATING", "SSEType": "KMS", "KMSMasterKeyArn": managed["Arn"]}
        seen = _wait_sse(ddb, unique_name)
        assert seen[-1] is None
    finally:
        stop.set()
        thread.join()
    assert failures == []
    # the switch re-wrapped keys only: every stored node blob is byte-identical
    assert _node_blobs(srv.data_dir, table["TableId"]) == before
    fresh = srv.client("dynamodb", access_key=ACCOUNT)
    for pk, item in items.items():
        assert fresh.get_item(TableName=unique_name, Key={"pk": {"S": pk}})["Item"] == item
    # and the data is no longer reachable through the old customer key: disabling it changes nothing
    kms.disable_key(KeyId=k2["KeyId"])
    assert srv.client("dynamodb", access_key=ACCOUNT).get_item(
        TableName=unique_name, Key={"pk": {"S": "item-3"}})["Item"] == items["item-3"]
    # nothing the switches persisted (pending records, re-wrapped keys, log lines) holds the data
    assert srv.stop() == 0
    assert scan([srv.data_dir, srv.log_path], [canary]) == []


def test_already_encrypted_rules_and_quota(srv, unique_name):
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    alias = f"alias/{unique_name}"
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    make_table(ddb, unique_name)
    with pytest.raises(ClientError) as err:
        ddb.update_table(TableName=unique_name, SSESpecification={"Enabled": False})
    assert err.value.response["Error"]["Message"] == INVALID + "Table is already encrypted by default"
    with pytest.raises(ClientError) as err:  # single-concern rule
        ddb.update_table(TableName=unique_name, SSESpecification={"Enabled": True}, DeletionProtectionEnabled=True)
    assert err.value.response["Error"]["Message"] == (
        INVALID + "Server-Side Encryption modification must be the only operation in the request")

    spec = {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key["Arn"]}
    ddb.update_table(TableName=unique_name, SSESpecification=spec)  # change 1
    _wait_sse(ddb, unique_name)
    with pytest.raises(ClientError) as err:  # the current key as ARN: rejected, not counted
        ddb.update_table(TableName=unique_name, SSESpecification=spec)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert err.value.response["Error"]["Message"] == (
        INVALID + "Table is already encrypted with given KMSMasterKeyId. Use KMSMasterKeyId parameter if you "
        "want to change Master Key")
    # as alias or key id: accepted (a full re-encryption under the same key), counts toward the quota
    for given in (alias, key["KeyId"], alias):  # changes 2, 3, 4
        out = ddb.update_table(TableName=unique_name, SSESpecification={**spec, "KMSMasterKeyId": given})
        assert out["TableDescription"]["SSEDescription"]["Status"] == "UPDATING"
        assert _wait_sse(ddb, unique_name)[-1]["KMSMasterKeyArn"] == key["Arn"]
        assert len(kms.list_grants(KeyId=key["KeyId"])["Grants"]) == 1
    with pytest.raises(ClientError) as err:
        ddb.update_table(TableName=unique_name, SSESpecification={"Enabled": False})
    assert err.value.response["Error"]["Code"] == "LimitExceededException"
    msg = err.value.response["Error"]["Message"]
    assert msg.startswith("Subscriber limit exceeded: Encryption mode changes are limited in the 24h window "
                          "ending at ")
    assert ("After the first 4 change, each subsequent change in the same window can be performed at most once "
            "every 21600 seconds. Number of updates today: 4. Last change at ") in msg
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "x"}})
    assert ddb.get_item(TableName=unique_name, Key={"pk": {"S": "x"}})["Item"] == {"pk": {"S": "x"}}


def test_invalid_targets_fail_synchronously_and_change_nothing(srv, unique_name):
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    disabled = kms.create_key()["KeyMetadata"]
    kms.disable_key(KeyId=disabled["KeyId"])
    pending = kms.create_key()["KeyMetadata"]
    kms.schedule_key_deletion(KeyId=pending["KeyId"], PendingWindowInDays=7)
    make_table(ddb, unique_name, sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key["Arn"]})
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "a"}})
    before = ddb.describe_table(TableName=unique_name)["Table"]["SSEDescription"]
    missing = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{uuid.uuid4()}"
    cases = [
        (disabled["Arn"], "ValidationException", f"KMS key disabled error: com.amazonaws.services.kms.model."
         f"DisabledException: {disabled['Arn']} is disabled."),
        (pending["Arn"], "ValidationException", "KMS validation error: com.amazonaws.services.kms.model."
         f"KMSInvalidStateException: {pending['Arn']} is pending deletion."),
        (missing, "ValidationException", "KMS validation error: com.amazonaws.services.kms.model."
         f"NotFoundException: Key '{missing}' does not exist"),
    ]
    for target, code, prefix in cases:
        with pytest.raises(ClientError) as err:
            ddb.update_table(TableName=unique_name, SSESpecification={
                "Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": target})
        assert err.value.response["Error"]["Code"] == code
        assert err.value.response["Error"]["Message"].startswith(prefix)
        assert ddb.describe_table(TableName=unique_name)["Table"]["SSEDescription"] == before
    assert kms.list_grants(KeyId=disabled["KeyId"])["Grants"] == []
    # rejected calls did not consume the quota: four real changes still go through
    ddb.update_table(TableName=unique_name, SSESpecification={"Enabled": True})
    _wait_sse(ddb, unique_name)
    assert ddb.get_item(TableName=unique_name, Key={"pk": {"S": "a"}})["Item"] == {"pk": {"S": "a"}}


def test_kill_during_switch_leaves_table_under_exactly_one_key(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, sse_update_seconds=3, key_check_seconds=1)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    k1 = kms.create_key()["KeyMetadata"]
    k2 = kms.create_key()["KeyMetadata"]
    make_table(ddb, unique_name, sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": k1["Arn"]})
    items = [{"pk": {"S": f"p{i}"}, "n": {"N": str(i)}} for i in range(10)]
    for item in items:
        ddb.put_item(TableName=unique_name, Item=item)
    ddb.update_table(TableName=unique_name, SSESpecification={
        "Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": k2["Arn"]})
    time.sleep(0.5)
    srv.kill()  # kill -9 in the middle of the UPDATING window
    in_force = _catalog_sse(srv.data_dir, unique_name)["sse"]["key_arn"]
    assert in_force in (k1["Arn"], k2["Arn"])
    srv.start()
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    for item in items:
        assert ddb.get_item(TableName=unique_name, Key={"pk": item["pk"]})["Item"] == item
    # the resumed switch completes; afterwards only the key the catalog names is needed
    assert _wait_sse(ddb, unique_name)[-1]["KMSMasterKeyArn"] == k2["Arn"]
    assert _catalog_sse(srv.data_dir, unique_name)["sse"]["key_arn"] == k2["Arn"]
    kms.disable_key(KeyId=k1["KeyId"])
    fresh = srv.client("dynamodb", access_key=ACCOUNT)
    for item in items:
        assert fresh.get_item(TableName=unique_name, Key={"pk": item["pk"]})["Item"] == item
