"""The three key types exactly as DynamoDB exposes them (sse-spec.md §1.2-§1.4, §3)."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_table

INVALID = "One or more parameter values were invalid: "

@pytest.mark.parametrize("spec", [None, {}, {"Enabled": False}])
def test_owned_key_has_no_sse_description(srv, unique_name, spec):
    ddb = srv.client("dynamodb", access_key="111111111111")
    desc = make_table(ddb, unique_name, sse=spec)
    assert "SSEDescription" not in desc
    assert "SSEDescription" not in ddb.describe_table(TableName=unique_name)["Table"]
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "a"}})
    assert ddb.get_item(TableName=unique_name, Key={"pk": {"S": "a"}})["Item"] == {"pk": {"S": "a"}}
    # nothing of the owned key reaches the account's trail
    events = srv.client("cloudtrail", access_key="111111111111").lookup_events()["Events"]
    assert not [e for e in events if unique_name in e["CloudTrailEvent"]]


@pytest.mark.parametrize("spec", [{"Enabled": True}, {"Enabled": True, "SSEType": "KMS"}, {"SSEType": "KMS"}])
def test_aws_managed_key(srv, unique_name, spec):
    account = "222222222222"
    ddb = srv.client("dynamodb", access_key=account)
    kms = srv.client("kms", access_key=account)
    desc = make_table(ddb, unique_name, sse=spec)
    managed = kms.describe_key(KeyId="alias/aws/dynamodb")["KeyMetadata"]
    assert managed["KeyManager"] == "AWS"
    assert managed["Description"] == "Default key that protects my DynamoDB data when no other key is defined"
    assert desc["SSEDescription"] == {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": managed["Arn"]}
    assert desc["TableStatus"] == "CREATING"
    table = ddb.describe_table(TableName=unique_name)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["SSEDescription"]["KMSMasterKeyArn"] == managed["Arn"]
    policy = json.loads(kms.get_key_policy(KeyId=managed["KeyId"], PolicyName="default")["Policy"])
    assert policy["Id"] == "auto-dynamodb-1"


@pytest.mark.parametrize("form", ["id", "arn", "alias", "alias_arn"])
def test_customer_key_in_any_form_resolves_to_arn(srv, unique_name, form):
    account = "333333333333"
    ddb = srv.client("dynamodb", access_key=account)
    kms = srv.client("kms", access_key=account)
    key = kms.create_key()["KeyMetadata"]
    alias = f"alias/{unique_name}"
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    given = {"id": key["KeyId"], "arn": key["Arn"], "alias": alias,
             "alias_arn": f"arn:aws:kms:us-east-1:{account}:{alias}"}[form]
    desc = make_table(ddb, unique_name, sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": given})
    assert desc["SSEDescription"] == {"Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": key["Arn"]}
    # the grant DynamoDB makes for the table
    grants = kms.list_grants(KeyId=key["KeyId"])["Grants"]
    assert len(grants) == 1
    grant = grants[0]
    assert grant["GranteePrincipal"] == "dynamodb.us-east-1.amazonaws.com"
    assert grant["RetiringPrincipal"] == "dynamodb.us-east-1.amazonaws.com"
    assert set(grant["Operations"]) == {"DescribeKey", "GenerateDataKey", "Decrypt", "Encrypt", "ReEncryptFrom",
                                        "ReEncryptTo", "RetireGrant"}
    assert grant["Constraints"]["EncryptionContextSubset"] == {"aws:dynamodb:tableName": unique_name,
                                                               "aws:dynamodb:subscriberId": account}
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "v": {"N": "7"}})
    assert ddb.get_item(TableName=unique_name, Key={"pk": {"S": "a"}})["Item"]["v"] == {"N": "7"}
    # the database's calls are in the account's trail with DynamoDB's shapes
    events = [json.loads(e["CloudTrailEvent"]) for e in
              srv.client("cloudtrail", access_key=account).lookup_events(MaxResults=50)["Events"]]
    mine = [e for e in events if unique_name in json.dumps(e)]
    names = {e["eventName"] for e in mine}
    assert {"CreateGrant", "GenerateDataKey", "Decrypt"} <= names
    gdk = next(e for e in mine if e["eventName"] == "GenerateDataKey")
    assert gdk["userIdentity"]["type"] == "AWSService"
    assert gdk["userIdentity"]["invokedBy"] == "dynamodb.amazonaws.com"
    assert gdk["requestParameters"]["keySpec"] == "AES_256"
    decrypt = next(e for e in mine if e["eventName"] == "Decrypt")
    assert decrypt["userIdentity"]["invokedBy"] == "dynamodb.amazonaws.com"
    assert decrypt["requestParameters"]["encryptionContext"]["aws:dynamodb:tableName"] == unique_name
    # DeleteTable retires the grant
    ddb.delete_table(TableName=unique_name)
    assert kms.list_grants(KeyId=key["KeyId"])["Grants"] == []


@pytest.mark.parametrize("spec, message", [
    ({"Enabled": True, "KMSMasterKeyId": "alias/x"}, INVALID + "SSEType KMS is required if KMSMasterKeyId is specified"),
    ({"Enabled": False, "SSEType": "KMS"}, INVALID + "SSEType can not be specified if Enabled is false"),
    ({"Enabled": False, "KMSMasterKeyId": "alias/x"}, INVALID + "KMSMasterKeyId can not be specified if Enabled is false"),
    ({"Enabled": True, "SSEType": "AES256"}, INVALID + "SSEType AES256 is not supported"),
    ({"Enabled": True, "SSEType": "kms"}, "1 validation error detected: Value 'kms' at 'sSESpecification.sSEType' "
     "failed to satisfy constraint: Member must satisfy enum value set: [AES256, KMS]"),
])
def test_sse_specification_validation(srv, unique_name, spec, message):
    ddb = srv.client("dynamodb", access_key="444444444444", validate=False)
    with pytest.raises(ClientError) as err:
        make_table(ddb, unique_name, sse=spec)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert err.value.response["Error"]["Message"] == message
    assert unique_name not in ddb.list_tables()["TableNames"]


def test_unusable_customer_keys_fail_synchronously(srv, unique_name):
    account = "555555555555"
    ddb = srv.client("dynamodb", access_key=account)
    kms = srv.client("kms", access_key=account)
    disabled = kms.create_key()["KeyMetadata"]
    kms.disable_key(KeyId=disabled["KeyId"])
    pending = kms.create_key()["KeyMetadata"]
    kms.schedule_key_deletion(KeyId=pending["KeyId"], PendingWindowInDays=7)
    cases = [
        (disabled["Arn"], "ValidationException",
         f"KMS key disabled error: com.amazonaws.services.kms.model.DisabledException: {disabled['Arn']} is disabled."),
        (pending["Arn"], "ValidationException",
         "KMS validation error: com.amazonaws.services.kms.model.KMSInvalidStateException: "
         f"{pending['Arn']} is pending deletion."),
        (f"arn:aws:kms:us-east-1:{account}:key/00000000-0000-0000-0000-000000000000", "ValidationException",
         "KMS validation error: com.amazonaws.services.kms.model.NotFoundException: Key "),
        ("alias/does-not-exist", "ValidationException",
         f"KMS validation error: com.amazonaws.services.kms.model.NotFoundException: Alias "
         f"arn:aws:kms:us-east-1:{account}:alias/does-not-exist is not found."),
    ]
    for key_id, code, prefix in cases:
        with pytest.raises(ClientError) as err:
            make_table(ddb, unique_name, sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_id})
        assert err.value.response["Error"]["Code"] == code
        assert err.value.response["Error"]["Message"].startswith(prefix), err.value.response["Error"]["Message"]
        assert "(Service: AWSKMS; Status Code: 400; Error Code: " in err.value.response["Error"]["Message"]
        assert unique_name not in ddb.list_tables()["TableNames"]
    assert kms.list_grants(KeyId=disabled["KeyId"])["Grants"] == []


def test_another_accounts_key_is_denied(srv, unique_name):
    owner = srv.client("kms", access_key="666666666666")
    key = owner.create_key()["KeyMetadata"]
    ddb = srv.client("dynamodb", access_key="777777777777")
    with pytest.raises(ClientError) as err:
        make_table(ddb, unique_name, sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key["Arn"]})
    assert err.value.response["Error"]["Code"] in ("AccessDeniedException", "ValidationException")
    assert err.value.response["Error"]["Message"].startswith(("KMS key access denied error: ", "KMS validation error"))
    assert unique_name not in ddb.list_tables()["TableNames"]
