"""Losing a table's key and getting it back (sse-spec.md §1.4-§1.5): staged failure, the sweep, recovery,
archival, crypto-shredding."""

from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import ClientError

from tests.lifecycle import create_cmk_table, wait_status

ACCOUNT = "123456789012"
SDK = "com.amazonaws.services.kms.model."


def _items(n=5):
    return [{"pk": {"S": f"k{i}"}, "v": {"S": f"value-{i}"}} for i in range(n)]


def _wait_status(ddb, name, status, timeout=15.0):
    return wait_status(ddb, name, status, timeout)


def _deny_policy(account):
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "no dynamodb", "Effect": "Deny", "Principal": "*", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
         "Resource": "*", "Condition": {"StringEquals": {"kms:ViaService": "dynamodb.us-east-1.amazonaws.com"}}},
    ]})


def test_cached_keys_serve_until_refresh_then_fail_closed(start_server, unique_name):
    srv = start_server(allow_any_credentials=True, key_refresh_seconds=2, key_check_seconds=600)
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    create_cmk_table(ddb, unique_name, key["Arn"])
    item = _items(1)[0]
    ddb.put_item(TableName=unique_name, Item=item)  # caches the table key on this connection
    filled = time.monotonic()
    kms.disable_key(KeyId=key["KeyId"])
    assert ddb.get_item(TableName=unique_name, Key={"pk": item["pk"]})["Item"] == item  # cached
    time.sleep(max(0.0, filled + 2.3 - time.monotonic()))  # past key_refresh_seconds=2 since the entry was filled
    with pytest.raises(ClientError) as err:
        ddb.get_item(TableName=unique_name, Key={"pk": item["pk"]})
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert err.value.response["Error"]["Message"].startswith(
        f"KMS key disabled error: {SDK}DisabledException: {key['Arn']} is disabled. (Service: AWSKMS; "
        "Status Code: 400; Error Code: DisabledException; Request ID: ")
    # no sweep yet: the table still shows ACTIVE, as DynamoDB does before it notices
    assert ddb.describe_table(TableName=unique_name)["Table"]["TableStatus"] == "ACTIVE"
    kms.enable_key(KeyId=key["KeyId"])
    assert ddb.get_item(TableName=unique_name, Key={"pk": item["pk"]})["Item"] == item


# the module's server (conftest's ``srv``): its tests use tables and keys of their own
SERVER_SETTINGS = dict(allow_any_credentials=True, key_refresh_seconds=1, key_check_seconds=0.5, sse_update_seconds=1,
                       archive_after_seconds=600)


@pytest.mark.parametrize("cause", ["disable", "schedule_deletion", "revoke_grant", "deny_policy"])
def test_sweep_flags_inaccessible_and_recovery_returns_active(srv, unique_name, cause):
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    other_key = kms.create_key()["KeyMetadata"]
    other = unique_name + "-other"
    create_cmk_table(ddb, unique_name, key["Arn"])
    create_cmk_table(ddb, other, other_key["Arn"])
    items = _items()
    for item in items:
        ddb.put_item(TableName=unique_name, Item=item)
        ddb.put_item(TableName=other, Item=item)

    grant_id = kms.list_grants(KeyId=key["KeyId"])["Grants"][0]["GrantId"]
    if cause == "disable":
        kms.disable_key(KeyId=key["KeyId"])
    elif cause == "schedule_deletion":
        kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=30)
    elif cause == "revoke_grant":
        kms.revoke_grant(KeyId=key["KeyId"], GrantId=grant_id)
    else:
        original = kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"]
        kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=_deny_policy(ACCOUNT))

    table = _wait_status(ddb, unique_name, "INACCESSIBLE_ENCRYPTION_CREDENTIALS")
    sse = table["SSEDescription"]
    assert sse["Status"] == "ENABLED" and sse["KMSMasterKeyArn"] == key["Arn"]
    assert "InaccessibleEncryptionDateTime" in sse
    # data operations are refused with the wrapped KMS error naming the key
    with pytest.raises(ClientError) as err:
        ddb.get_item(TableName=unique_name, Key={"pk": items[0]["pk"]})
    expected = {"disable": ("ValidationException", "KMS key disabled error: "),
                "schedule_deletion": ("ValidationException", "KMS validation error: "),
                "revoke_grant": ("AccessDeniedException", "KMS key access denied error: "),
                "deny_policy": ("AccessDeniedException", "KMS key access denied error: ")}[cause]
    assert err.value.response["Error"]["Code"] == expected[0]
    assert err.value.response["Error"]["Message"].startswith(expected[1])
    if cause in ("disable", "schedule_deletion"):
        assert key["Arn"] in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError):
        ddb.put_item(TableName=unique_name, Item=items[0])
    with pytest.raises(ClientError):
        ddb.scan(TableName=unique_name)
    # control plane: describe, list, tags, deletion protection still work and the table stays flagged
    assert unique_name in ddb.list_tables()["TableNames"]
    arn = table["TableArn"]
    ddb.tag_resource(ResourceArn=arn, Tags=[{"Key": "k", "Value": "v"}])
    assert ddb.list_tags_of_resource(ResourceArn=arn)["Tags"] == [{"Key": "k", "Value": "v"}]
    out = ddb.update_table(TableName=unique_name, DeletionProtectionEnabled=False)["TableDescription"]
    assert out["TableStatus"] == "INACCESSIBLE_ENCRYPTION_CREDENTIALS"
    # tables under other keys are untouched
    assert ddb.describe_table(TableName=other)["Table"]["TableStatus"] == "ACTIVE"
    assert ddb.get_item(TableName=other, Key={"pk": items[1]["pk"]})["Item"] == items[1]

    # recovery
    if cause == "disable":
        kms.enable_key(KeyId=key["KeyId"])
    elif cause == "schedule_deletion":
        kms.cancel_key_deletion(KeyId=key["KeyId"])  # leaves the key Disabled: still inaccessible
        time.sleep(1.5)
        assert ddb.describe_table(TableName=unique_name)["Table"]["TableStatus"] == (
            "INACCESSIBLE_ENCRYPTION_CREDENTIALS")
        kms.enable_key(KeyId=key["KeyId"])
    elif cause == "revoke_grant":
        kms.create_grant(KeyId=key["KeyId"], GranteePrincipal="dynamodb.us-east-1.amazonaws.com",
                         RetiringPrincipal="dynamodb.us-east-1.amazonaws.com",
                         Operations=["DescribeKey", "GenerateDataKey", "Decrypt", "Encrypt", "ReEncryptFrom",
                                     "ReEncryptTo", "RetireGrant"],
                         Constraints={"EncryptionContextSubset": {"aws:dynamodb:tableName": unique_name,
                                                                  "aws:dynamodb:subscriberId": ACCOUNT}})
    else:
        kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=original)
    table = _wait_status(ddb, unique_name, "ACTIVE")
    assert table["SSEDescription"] == {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": key["Arn"]}
    fresh = srv.client("dynamodb", access_key=ACCOUNT)
    for item in items:
        assert fresh.get_item(TableName=unique_name, Key={"pk": item["pk"]})["Item"] == item
    # one log line per transition, naming table, key and states
    log = srv.log_text()
    assert f"table {unique_name}: key {key['Arn']}: ACTIVE -> INACCESSIBLE_ENCRYPTION_CREDENTIALS" in log
    assert f"table {unique_name}: key {key['Arn']}: INACCESSIBLE_ENCRYPTION_CREDENTIALS -> ACTIVE" in log


def test_delete_accepted_while_inaccessible(srv, unique_name):
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    create_cmk_table(ddb, unique_name, key["Arn"])
    kms.disable_key(KeyId=key["KeyId"])
    _wait_status(ddb, unique_name, "INACCESSIBLE_ENCRYPTION_CREDENTIALS")
    with pytest.raises(ClientError) as err:  # every SSE change fails with the KMS error naming the old key
        ddb.update_table(TableName=unique_name, SSESpecification={"Enabled": True})
    assert err.value.response["Error"]["Message"].startswith("KMS key disabled error: ")
    assert key["Arn"] in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:  # building an index needs the data: refused
        ddb.update_table(TableName=unique_name, AttributeDefinitions=[{"AttributeName": "g", "AttributeType": "S"}],
                         GlobalSecondaryIndexUpdates=[{"Create": {
                             "IndexName": "gsi", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                             "Projection": {"ProjectionType": "ALL"}}}])
    assert err.value.response["Error"]["Message"].startswith("KMS key disabled error: ")
    assert ddb.delete_table(TableName=unique_name)["TableDescription"]["TableStatus"] == "DELETING"
    assert unique_name not in ddb.list_tables()["TableNames"]


def test_switch_away_from_revoked_grant_heals(srv, unique_name):
    ddb = srv.client("dynamodb", access_key=ACCOUNT)
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    create_cmk_table(ddb, unique_name, key["Arn"])
    item = _items(1)[0]
    ddb.put_item(TableName=unique_name, Item=item)
    grant_id = kms.list_grants(KeyId=key["KeyId"])["Grants"][0]["GrantId"]
    kms.revoke_grant(KeyId=key["KeyId"], GrantId=grant_id)
    _wait_status(ddb, unique_name, "INACCESSIBLE_ENCRYPTION_CREDENTIALS")
    ddb.update_table(TableName=unique_name, SSESpecification={"Enabled": True})
    table = _wait_status(ddb, unique_name, "ACTIVE", timeout=60)
    assert "InaccessibleEncryptionDateTime" not in table.get("SSEDescription", {})
    deadline = time.time() + 60
    while ddb.describe_table(TableName=unique_name)["Table"]["SSEDescription"]["Status"] != "ENABLED":
        assert time.time() < deadline
        time.sleep(0.2)
    assert ddb.get_item(TableName=unique_name, Key={"pk": item["pk"]})["Item"] == item
