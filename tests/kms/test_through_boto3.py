"""The key service and the audit trail through boto3 against real ``dynavault serve`` and
``dynavault kms serve`` processes."""

from __future__ import annotations

import base64
import json
import random
import time

import pytest
from botocore.exceptions import ClientError


def account_key() -> tuple[str, str]:
    """A fresh account on the shared server: a 12-digit access key id names its account."""
    account = str(random.randrange(10**11, 10**12))
    return account, account


def code_message(exc: pytest.ExceptionInfo) -> tuple[str, str]:
    err = exc.value.response["Error"]
    return err["Code"], err.get("Message", "")


def test_kms_operations_and_errors_through_boto3(shared_server) -> None:
    account, ak = account_key()
    kms = shared_server.client("kms", access_key=ak)
    md = kms.create_key(Description="boto3 key", Tags=[{"TagKey": "t", "TagValue": "v"}])["KeyMetadata"]
    key_id, arn = md["KeyId"], md["Arn"]
    assert md["AWSAccountId"] == account and md["KeyState"] == "Enabled"
    kms.create_alias(AliasName="alias/boto", TargetKeyId=key_id)
    assert kms.describe_key(KeyId="alias/boto")["KeyMetadata"]["Arn"] == arn
    assert [k["KeyId"] for k in kms.list_keys()["Keys"]] == [key_id]
    assert [a["AliasName"] for a in kms.list_aliases()["Aliases"]] == ["alias/boto"]

    ctx = {"aws:dynamodb:tableName": "orders", "aws:dynamodb:subscriberId": account}
    blob = kms.encrypt(KeyId="alias/boto", Plaintext=b"hello", EncryptionContext=ctx)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"] == b"hello"
    with pytest.raises(ClientError) as exc:
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"aws:dynamodb:tableName": "other"})
    assert code_message(exc)[0] == "InvalidCiphertextException"
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(ClientError) as exc:
        kms.decrypt(CiphertextBlob=bytes(tampered), EncryptionContext=ctx)
    assert code_message(exc)[0] == "InvalidCiphertextException"

    dk = kms.generate_data_key(KeyId=arn, KeySpec="AES_256", EncryptionContext=ctx)
    assert len(dk["Plaintext"]) == 32
    assert (
        kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"]
        == dk["Plaintext"]
    )
    with pytest.raises(ClientError) as exc:
        kms.generate_data_key(KeyId=arn, NumberOfBytes=1025)
    assert code_message(exc) == (
        "ValidationException",
        "1 validation error detected: Value '1025' at "
        "'numberOfBytes' failed to satisfy constraint: Member must have value less than "
        "or equal to 1024",
    )

    kms.disable_key(KeyId=key_id)
    with pytest.raises(ClientError) as exc:
        kms.encrypt(KeyId=key_id, Plaintext=b"x")
    assert code_message(exc) == ("DisabledException", f"{arn} is disabled.")
    kms.enable_key(KeyId=key_id)

    kms.enable_key_rotation(KeyId=key_id)
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    kms.rotate_key_on_demand(KeyId=key_id)
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"] == b"hello"
    assert len(kms.list_key_rotations(KeyId=key_id)["Rotations"]) == 1

    out = kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert out["KeyState"] == "PendingDeletion" and out["PendingWindowInDays"] == 7
    with pytest.raises(ClientError) as exc:
        kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)
    assert code_message(exc) == ("KMSInvalidStateException", f"{arn} is pending deletion.")
    kms.cancel_key_deletion(KeyId=key_id)
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"

    with pytest.raises(ClientError) as exc:
        kms.describe_key(KeyId="alias/missing")
    assert code_message(exc) == (
        "NotFoundException",
        f"Alias arn:aws:kms:us-east-1:{account}:alias/missing is not found.",
    )
    assert json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])["Statement"]
    assert kms.list_key_policies(KeyId=key_id)["PolicyNames"] == ["default"]
    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "x", "TagValue": "y"}])
    kms.untag_resource(KeyId=key_id, TagKeys=["t"])
    assert kms.list_resource_tags(KeyId=key_id)["Tags"] == [{"TagKey": "x", "TagValue": "y"}]
    assert len(kms.generate_random(NumberOfBytes=16)["Plaintext"]) == 16

    managed = kms.describe_key(KeyId="alias/aws/dynamodb")["KeyMetadata"]
    assert managed["KeyManager"] == "AWS"
    with pytest.raises(ClientError) as exc:
        kms.disable_key(KeyId=managed["KeyId"])
    assert code_message(exc)[0] == "AccessDeniedException"


def test_cross_account_policy_and_grants_through_boto3(shared_server) -> None:
    owner, owner_ak = account_key()
    other, other_ak = account_key()
    kms = shared_server.client("kms", access_key=owner_ak)
    kms_other = shared_server.client("kms", access_key=other_ak)
    md = kms.create_key()["KeyMetadata"]
    blob = kms.encrypt(KeyId=md["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    with pytest.raises(ClientError) as exc:
        kms_other.decrypt(CiphertextBlob=blob)
    code, message = code_message(exc)
    assert code == "AccessDeniedException"
    assert message == (
        f"User: arn:aws:iam::{other}:user/{other_ak} is not authorized to perform: kms:Decrypt on "
        f"resource: {md['Arn']} because no resource-based policy allows the kms:Decrypt action"
    )
    grant = kms.create_grant(
        KeyId=md["KeyId"],
        GranteePrincipal=f"arn:aws:iam::{other}:user/{other_ak}",
        Operations=["Decrypt", "RetireGrant"],
        Name="g",
    )
    assert kms_other.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    assert [g["GrantId"] for g in kms.list_grants(KeyId=md["KeyId"])["Grants"]] == [grant["GrantId"]]
    kms_other.retire_grant(GrantToken=grant["GrantToken"])
    with pytest.raises(ClientError):
        kms_other.decrypt(CiphertextBlob=blob)
    policy = json.loads(kms.get_key_policy(KeyId=md["KeyId"], PolicyName="default")["Policy"])
    policy["Statement"].append(
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{other}:root"},
            "Action": "kms:Decrypt",
            "Resource": "*",
        }
    )
    kms.put_key_policy(KeyId=md["KeyId"], PolicyName="default", Policy=json.dumps(policy))
    assert kms_other.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"


def test_lookup_events_through_boto3(shared_server) -> None:
    account, ak = account_key()
    kms = shared_server.client("kms", access_key=ak)
    trail = shared_server.client("cloudtrail", access_key=ak)
    start = time.time() - 5
    md = kms.create_key()["KeyMetadata"]
    blobs = [
        kms.encrypt(KeyId=md["KeyId"], Plaintext=b"p", EncryptionContext={"n": str(i)})["CiphertextBlob"]
        for i in range(5)
    ]
    for i, blob in enumerate(blobs):
        kms.decrypt(CiphertextBlob=blob, EncryptionContext={"n": str(i)})
    with pytest.raises(ClientError):
        kms.decrypt(CiphertextBlob=blobs[0], EncryptionContext={"n": "wrong"})
    events = trail.lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "Decrypt"}], StartTime=start
    )["Events"]
    assert len(events) == 6
    newest = json.loads(events[0]["CloudTrailEvent"])
    assert newest["errorCode"] == "InvalidCiphertextException" and newest["recipientAccountId"] == account
    assert newest["requestParameters"] == {"encryptionContext": {"n": "wrong"}}
    assert newest["userIdentity"]["accountId"] == account
    by_resource = trail.lookup_events(
        LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": md["Arn"]}]
    )["Events"]
    assert {e["EventName"] for e in by_resource} == {"CreateKey", "Encrypt", "Decrypt"}
    pages = trail.get_paginator("lookup_events").paginate(
        LookupAttributes=[{"AttributeKey": "EventSource", "AttributeValue": "kms.amazonaws.com"}],
        PaginationConfig={"PageSize": 4},
    )
    ids = [e["EventId"] for page in pages for e in page["Events"]]
    assert len(ids) == len(set(ids)) == 12
    # another account sees none of these
    other = shared_server.client("cloudtrail", access_key=account_key()[1])
    assert other.lookup_events()["Events"] == []
    for event in by_resource:
        assert "Plaintext" not in event["CloudTrailEvent"]


def test_forwarded_for_header_does_not_rewrite_the_recorded_source_address(shared_server) -> None:
    """The trail records the TCP peer: a local client cannot claim another address with a proxy header."""
    _account, ak = account_key()
    kms = shared_server.client("kms", access_key=ak)

    def forge(request, **_kw) -> None:
        request.headers["X-Forwarded-For"] = "203.0.113.9"
        request.headers["X-Real-IP"] = "203.0.113.9"

    kms.meta.events.register_first("before-sign.kms.CreateKey", forge)
    kms.create_key(Description="forwarded")
    events = shared_server.client("cloudtrail", access_key=ak).lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "CreateKey"}]
    )["Events"]
    recorded = json.loads(events[0]["CloudTrailEvent"])
    assert recorded["requestParameters"]["description"] == "forwarded"
    assert recorded["sourceIPAddress"] == "127.0.0.1"


def test_deletion_sweep_and_canary_on_a_stopped_server(start_server) -> None:
    srv = start_server(allow_any_credentials=True, kms_day_seconds=0.05, key_deletion_check_seconds=0.1)
    kms = srv.client("kms", access_key="111122223333")
    canary = b"CANARY-boto3-5d1e0b"
    md = kms.create_key()["KeyMetadata"]
    dk = kms.generate_data_key(KeyId=md["KeyId"], KeySpec="AES_256")
    blob = kms.encrypt(KeyId=md["KeyId"], Plaintext=canary)["CiphertextBlob"]
    doomed = kms.create_key()["KeyMetadata"]
    doomed_blob = kms.encrypt(KeyId=doomed["KeyId"], Plaintext=b"gone")["CiphertextBlob"]
    kms.schedule_key_deletion(KeyId=doomed["KeyId"], PendingWindowInDays=7)  # 0.35 s here
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            kms.describe_key(KeyId=doomed["KeyId"])
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "NotFoundException"
            break
        time.sleep(0.1)
    else:
        pytest.fail("key was not deleted after its window")
    with pytest.raises(ClientError) as exc:
        kms.decrypt(CiphertextBlob=doomed_blob)
    assert exc.value.response["Error"]["Code"] == "AccessDeniedException"
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == canary
    assert srv.stop() == 0
    secrets = [canary, dk["Plaintext"], base64.b64encode(dk["Plaintext"]), base64.b64encode(canary)]
    files = [p for p in srv.data_dir.rglob("*") if p.is_file()]
    assert files
    for path in files:
        content = path.read_bytes()
        for secret in secrets:
            assert secret not in content, path


def test_kms_serve_on_its_own(start_server) -> None:
    srv = start_server("kms", kms_only=True, allow_any_credentials=True)
    kms = srv.client("kms", access_key="555566667777")
    md = kms.create_key(Description="standalone")["KeyMetadata"]
    blob = kms.encrypt(KeyId=md["KeyId"], Plaintext=b"solo", EncryptionContext={"a": "b"})["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})["Plaintext"] == b"solo"
    events = srv.client("cloudtrail", access_key="555566667777").lookup_events()["Events"]
    assert [e["EventName"] for e in events] == ["Decrypt", "Encrypt", "CreateKey"]
    srv.restart()
    kms = srv.client("kms", access_key="555566667777")
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})["Plaintext"] == b"solo"
