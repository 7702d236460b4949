"""KeyService + AuditTrail driven in-process: every operation, its errors, and its audit events."""

from __future__ import annotations

import base64
import json
import pathlib
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynavault.audit.trail import AuditTrail
from dynavault.caller import Caller
from dynavault.config import Settings
from dynavault.errors import AWSError, StartupError
from dynavault.kms.root import FileRoot
from dynavault.kms.service import AWS_OWNED_ACCOUNT, KeyService

REGION = "us-east-1"
A = "111122223333"
B = "444455556666"
DDB = f"dynamodb.{REGION}.amazonaws.com"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def user(account: str = A, name: str = "alice", region: str = REGION, **kw) -> Caller:
    return Caller(
        account, region, f"arn:aws:iam::{account}:user/{name}", access_key=f"AKIA{name.upper()}", **kw
    )


def service(account: str = A) -> Caller:
    return Caller(account, REGION, DDB, is_service=True, via_service=DDB)


class Env:
    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.clock = Clock()
        self.settings = Settings(
            data_dir=str(root / "data"), root_key_file=str(root / "secret" / "root.key"), kms_day_seconds=10.0
        )
        self.open()

    def open(self) -> None:
        self.trail = AuditTrail(self.root / "data" / "audit")
        self.kms = KeyService(self.settings, self.trail, clock=self.clock)

    def close(self) -> None:
        self.kms.close()
        self.trail.close()

    def __call__(self, caller: Caller, op: str, **params) -> dict:
        return self.kms.invoke(caller, op, params)

    def error(self, caller: Caller, op: str, **params) -> AWSError:
        with pytest.raises(AWSError) as info:
            self.kms.invoke(caller, op, params)
        return info.value

    def key(self, caller: Caller | None = None, **params) -> dict:
        return self(caller or user(), "CreateKey", **params)["KeyMetadata"]

    def last_event(self, account: str = A) -> dict:
        return self.trail.events(account, REGION)[-1]


@pytest.fixture
def env(tmp_path: pathlib.Path):
    e = Env(tmp_path)
    yield e
    e.close()


# -- keys, ids, aliases ------------------------------------------------------------------------------------


def test_create_describe_list_and_key_forms(env: Env) -> None:
    md = env.key(Description="orders", Tags=[{"TagKey": "team", "TagValue": "db"}])
    assert md["AWSAccountId"] == A and md["KeyState"] == "Enabled" and md["Enabled"] is True
    assert md["Arn"] == f"arn:aws:kms:{REGION}:{A}:key/{md['KeyId']}"
    assert md["KeyManager"] == "CUSTOMER" and md["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert md["CreationDate"] == env.clock.now
    env(user(), "CreateAlias", AliasName="alias/orders", TargetKeyId=md["KeyId"])
    for ref in (md["KeyId"], md["Arn"], "alias/orders", f"arn:aws:kms:{REGION}:{A}:alias/orders"):
        assert env(user(), "DescribeKey", KeyId=ref)["KeyMetadata"]["KeyId"] == md["KeyId"]
    listed = env(user(), "ListKeys")
    assert [k["KeyId"] for k in listed["Keys"]] == [md["KeyId"]] and listed["Truncated"] is False
    assert env(user(B, "bob"), "ListKeys")["Keys"] == []
    assert env(user(), "ListResourceTags", KeyId=md["KeyId"])["Tags"] == [
        {"TagKey": "team", "TagValue": "db"}
    ]
    policy = json.loads(env(user(), "GetKeyPolicy", KeyId=md["KeyId"])["Policy"])
    assert policy["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{A}:root"}
    assert policy["Statement"][0]["Action"] == "kms:*"


def test_not_found_texts(env: Env) -> None:
    missing = "1234abcd-12ab-34cd-56ef-1234567890ab"
    err = env.error(user(), "DescribeKey", KeyId=missing)
    assert (err.code, err.message) == (
        "NotFoundException",
        f"Key 'arn:aws:kms:{REGION}:{A}:key/{missing}' does not exist",
    )
    err = env.error(user(), "DescribeKey", KeyId="not-a-key")
    assert (err.code, err.message) == ("NotFoundException", "Invalid keyId 'not-a-key'")
    err = env.error(user(), "DescribeKey", KeyId="alias/nope")
    assert err.message == f"Alias arn:aws:kms:{REGION}:{A}:alias/nope is not found."
    md = env.key()
    other_region = md["Arn"].replace(REGION, "eu-west-1")
    err = env.error(user(), "DescribeKey", KeyId=other_region)
    assert (err.code, err.message) == ("NotFoundException", "Invalid arn eu-west-1")
    err = env.error(user(), "DescribeKey")
    assert err.code == "ValidationException" and "Member must not be null" in err.message


def test_aliases_lifecycle_and_validation(env: Env) -> None:
    k1, k2 = env.key(), env.key()
    env(user(), "CreateAlias", AliasName="alias/app", TargetKeyId=k1["KeyId"])
    err = env.error(user(), "CreateAlias", AliasName="alias/app", TargetKeyId=k2["KeyId"])
    assert err.code == "AlreadyExistsException"
    assert err.message == f"An alias with the name arn:aws:kms:{REGION}:{A}:alias/app already exists"
    err = env.error(user(), "CreateAlias", AliasName="app", TargetKeyId=k1["KeyId"])
    assert err.code == "ValidationException" and err.message.startswith(
        'Alias must start with the prefix "alias/"'
    )
    err = env.error(user(), "CreateAlias", AliasName="alias/bad name", TargetKeyId=k1["KeyId"])
    assert err.code == "ValidationException" and "regular expression" in err.message
    env.clock.now += 5
    env(user(), "UpdateAlias", AliasName="alias/app", TargetKeyId=k2["Arn"])
    aliases = env(user(), "ListAliases")["Aliases"]
    assert [(a["AliasName"], a["TargetKeyId"]) for a in aliases] == [("alias/app", k2["KeyId"])]
    assert aliases[0]["LastUpdatedDate"] == aliases[0]["CreationDate"] + 5
    assert env(user(), "ListAliases", KeyId=k1["KeyId"])["Aliases"] == []
    env(user(), "DeleteAlias", AliasName="alias/app")
    err = env.error(user(), "DeleteAlias", AliasName="alias/app")
    assert err.code == "NotFoundException"
    err = env.error(user(), "UpdateAlias", AliasName="alias/app", TargetKeyId=k1["KeyId"])
    assert err.code == "NotFoundException"


def test_list_pagination(env: Env) -> None:
    ids = [env.key()["KeyId"] for _ in range(5)]
    env.clock.now += 1
    seen, marker = [], None
    while True:
        params = {"Limit": 2} | ({"Marker": marker} if marker else {})
        page = env(user(), "ListKeys", **params)
        seen += [k["KeyId"] for k in page["Keys"]]
        if not page["Truncated"]:
            break
        marker = page["NextMarker"]
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    err = env.error(user(), "ListKeys", Limit=0)
    assert err.code == "ValidationException" and "greater than or equal to 1" in err.message


# -- cryptography ------------------------------------------------------------------------------------------


def test_encrypt_decrypt_context_and_tamper(env: Env) -> None:
    md = env.key()
    ctx = {"aws:dynamodb:tableName": "orders", "aws:dynamodb:subscriberId": A}
    out = env(user(), "Encrypt", KeyId=md["KeyId"], Plaintext=b64(b"secret"), EncryptionContext=ctx)
    assert out["KeyId"] == md["Arn"] and out["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    blob = unb64(out["CiphertextBlob"])
    reordered = dict(reversed(list(ctx.items())))
    back = env(user(), "Decrypt", CiphertextBlob=b64(blob), EncryptionContext=reordered)
    assert unb64(back["Plaintext"]) == b"secret" and back["KeyId"] == md["Arn"]
    for bad_ctx in ({}, {**ctx, "extra": "x"}, {**ctx, "aws:dynamodb:tableName": "Orders"}):
        err = env.error(user(), "Decrypt", CiphertextBlob=b64(blob), EncryptionContext=bad_ctx)
        assert (err.code, err.message) == ("InvalidCiphertextException", "")
    for position in range(len(blob)):
        for bit in (0x01, 0x80):
            tampered = bytearray(blob)
            tampered[position] ^= bit
            err = env.error(user(), "Decrypt", CiphertextBlob=b64(bytes(tampered)), EncryptionContext=ctx)
            assert (err.code, err.message) == ("InvalidCiphertextException", ""), position
    err = env.error(user(), "Decrypt", CiphertextBlob=b64(blob[:20]), EncryptionContext=ctx)
    assert err.code == "InvalidCiphertextException"
    # Decrypt with a KeyId that is not the blob's key
    other = env.key()
    err = env.error(user(), "Decrypt", CiphertextBlob=b64(blob), EncryptionContext=ctx, KeyId=other["KeyId"])
    assert err.code == "IncorrectKeyException"
    assert err.message == "The key ID in the request does not identify a CMK that can perform this operation."
    assert env(user(), "Decrypt", CiphertextBlob=b64(blob), EncryptionContext=ctx, KeyId=md["Arn"])[
        "Plaintext"
    ]


def test_generate_data_key_variants_and_validation(env: Env) -> None:
    md = env.key()
    out = env(user(), "GenerateDataKey", KeyId=md["KeyId"], KeySpec="AES_256", EncryptionContext={"t": "1"})
    plain = unb64(out["Plaintext"])
    assert len(plain) == 32
    back = env(user(), "Decrypt", CiphertextBlob=out["CiphertextBlob"], EncryptionContext={"t": "1"})
    assert unb64(back["Plaintext"]) == plain
    assert len(unb64(env(user(), "GenerateDataKey", KeyId=md["KeyId"], KeySpec="AES_128")["Plaintext"])) == 16
    assert len(unb64(env(user(), "GenerateDataKey", KeyId=md["KeyId"], NumberOfBytes=7)["Plaintext"])) == 7
    wo = env(user(), "GenerateDataKeyWithoutPlaintext", KeyId=md["KeyId"], KeySpec="AES_256")
    assert "Plaintext" not in wo
    assert len(unb64(env(user(), "Decrypt", CiphertextBlob=wo["CiphertextBlob"])["Plaintext"])) == 32
    err = env.error(user(), "GenerateDataKey", KeyId=md["KeyId"], NumberOfBytes=1025)
    assert err.message == (
        "1 validation error detected: Value '1025' at 'numberOfBytes' failed to satisfy "
        "constraint: Member must have value less than or equal to 1024"
    )
    err = env.error(user(), "GenerateDataKey", KeyId=md["KeyId"])
    assert err.code == "ValidationException"
    err = env.error(user(), "GenerateDataKey", KeyId=md["KeyId"], KeySpec="AES_512")
    assert "enum value set: [AES_256, AES_128]" in err.message
    err = env.error(user(), "Encrypt", KeyId=md["KeyId"], Plaintext=b64(b"x" * 4097))
    assert err.code == "ValidationException" and "4096" in err.message
    assert len(unb64(env(user(), "GenerateRandom", NumberOfBytes=64)["Plaintext"])) == 64
    assert env.error(user(), "GenerateRandom", NumberOfBytes=0).code == "ValidationException"


def test_reencrypt_between_keys(env: Env) -> None:
    k1, k2 = env.key(), env.key()
    blob = env(user(), "Encrypt", KeyId=k1["KeyId"], Plaintext=b64(b"move me"), EncryptionContext={"a": "1"})
    out = env(
        user(),
        "ReEncrypt",
        CiphertextBlob=blob["CiphertextBlob"],
        SourceEncryptionContext={"a": "1"},
        DestinationKeyId=k2["KeyId"],
        DestinationEncryptionContext={"b": "2"},
    )
    assert out["SourceKeyId"] == k1["Arn"] and out["KeyId"] == k2["Arn"]
    back = env(user(), "Decrypt", CiphertextBlob=out["CiphertextBlob"], EncryptionContext={"b": "2"})
    assert unb64(back["Plaintext"]) == b"move me" and back["KeyId"] == k2["Arn"]
    err = env.error(user(), "ReEncrypt", CiphertextBlob=blob["CiphertextBlob"], DestinationKeyId=k2["KeyId"])
    assert err.code == "InvalidCiphertextException"
    err = env.error(
        user(),
        "ReEncrypt",
        CiphertextBlob=blob["CiphertextBlob"],
        SourceEncryptionContext={"a": "1"},
        SourceKeyId=k2["KeyId"],
        DestinationKeyId=k2["KeyId"],
    )
    assert err.code == "IncorrectKeyException"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    plaintext=st.binary(min_size=1, max_size=512),
    context=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=4),
)
def test_roundtrip_property(env: Env, plaintext: bytes, context: dict) -> None:
    if not hasattr(env, "pkey"):
        env.pkey = env.key()["KeyId"]
    out = env(user(), "Encrypt", KeyId=env.pkey, Plaintext=b64(plaintext), EncryptionContext=context)
    back = env(user(), "Decrypt", CiphertextBlob=out["CiphertextBlob"], EncryptionContext=context)
    assert unb64(back["Plaintext"]) == plaintext
    if context:
        changed = {k: v + "x" for k, v in context.items()}
        assert (
            env.error(user(), "Decrypt", CiphertextBlob=out["CiphertextBlob"], EncryptionContext=changed).code
            == "InvalidCiphertextException"
        )


# -- key states --------------------------------------------------------------------------------------------


def test_disabled_key(env: Env) -> None:
    md = env.key()
    blob = env(user(), "Encrypt", KeyId=md["KeyId"], Plaintext=b64(b"x"))["CiphertextBlob"]
    env(user(), "DisableKey", KeyId=md["KeyId"])
    assert env(user(), "DescribeKey", KeyId=md["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"
    for op, params in (
        ("Encrypt", {"KeyId": md["KeyId"], "Plaintext": b64(b"x")}),
        ("Decrypt", {"CiphertextBlob": blob}),
        ("GenerateDataKey", {"KeyId": md["KeyId"], "KeySpec": "AES_256"}),
        ("CreateGrant", {"KeyId": md["KeyId"], "GranteePrincipal": DDB, "Operations": ["Decrypt"]}),
    ):
        err = env.error(user(), op, **params)
        assert (err.code, err.message) == ("DisabledException", f"{md['Arn']} is disabled."), op
    assert env.last_event()["errorCode"] == "DisabledException"
    env(user(), "EnableKey", KeyId=md["KeyId"])
    assert unb64(env(user(), "Decrypt", CiphertextBlob=blob)["Plaintext"]) == b"x"


def test_pending_deletion_cancel_and_real_deletion(env: Env) -> None:
    md = env.key()
    env(user(), "CreateAlias", AliasName="alias/doomed", TargetKeyId=md["KeyId"])
    blob = env(user(), "Encrypt", KeyId=md["KeyId"], Plaintext=b64(b"shred me"))["CiphertextBlob"]
    err = env.error(user(), "ScheduleKeyDeletion", KeyId=md["KeyId"], PendingWindowInDays=6)
    assert (err.code, err.message) == (
        "ValidationException",
        "PendingWindowInDays should be between 7 and 30, but it is 6",
    )
    out = env(user(), "ScheduleKeyDeletion", KeyId=md["KeyId"], PendingWindowInDays=7)
    assert out == {
        "KeyId": md["Arn"],
        "DeletionDate": env.clock.now + 70.0,
        "KeyState": "PendingDeletion",
        "PendingWindowInDays": 7,
    }
    pending = f"{md['Arn']} is pending deletion."
    for op, params in (
        ("Encrypt", {"KeyId": md["KeyId"], "Plaintext": b64(b"x")}),
        ("Decrypt", {"CiphertextBlob": blob}),
        ("EnableKey", {"KeyId": md["KeyId"]}),
        ("ScheduleKeyDeletion", {"KeyId": md["KeyId"]}),
        ("TagResource", {"KeyId": md["KeyId"], "Tags": [{"TagKey": "a", "TagValue": "b"}]}),
    ):
        err = env.error(user(), op, **params)
        assert (err.code, err.message) == ("KMSInvalidStateException", pending), op
    described = env(user(), "DescribeKey", KeyId=md["KeyId"])["KeyMetadata"]
    assert described["KeyState"] == "PendingDeletion" and described["DeletionDate"] == out["DeletionDate"]
    assert env(user(), "CancelKeyDeletion", KeyId=md["KeyId"]) == {"KeyId": md["Arn"]}
    assert env(user(), "DescribeKey", KeyId=md["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"
    err = env.error(user(), "CancelKeyDeletion", KeyId=md["KeyId"])
    assert (err.code, err.message) == ("KMSInvalidStateException", f"{md['Arn']} is not pending deletion.")

    sealed = env.kms._store.sealed_material(md["KeyId"], 0)
    assert sealed
    env(user(), "ScheduleKeyDeletion", KeyId=md["KeyId"], PendingWindowInDays=7)
    env.clock.now += 69
    env.kms.sweep()
    assert env(user(), "DescribeKey", KeyId=md["KeyId"])["KeyMetadata"]["KeyState"] == "PendingDeletion"
    env.clock.now += 2
    env.kms.sweep()
    err = env.error(user(), "DescribeKey", KeyId=md["KeyId"])
    assert err.code == "NotFoundException"
    assert env.error(user(), "DescribeKey", KeyId="alias/doomed").code == "NotFoundException"
    err = env.error(user(), "Decrypt", CiphertextBlob=blob)
    assert err.code == "AccessDeniedException" and "does not exist" in err.message
    assert env.kms._store.sealed_material(md["KeyId"], 0) is None
    assert sealed not in (env.root / "data" / "kms" / "keys.sqlite3").read_bytes()
    assert any(e["eventName"] == "DeleteKey" for e in env.trail.events(A, REGION))
    # and after a restart the material is still gone: crypto-shredding is permanent
    env.close()
    env.open()
    assert env.error(user(), "Decrypt", CiphertextBlob=blob).code == "AccessDeniedException"


# -- rotation ----------------------------------------------------------------------------------------------


def test_rotation_on_demand_and_automatic(env: Env) -> None:
    md = env.key()
    old = env(user(), "Encrypt", KeyId=md["KeyId"], Plaintext=b64(b"v1"))
    status = env(user(), "GetKeyRotationStatus", KeyId=md["KeyId"])
    assert status == {"KeyRotationEnabled": False, "KeyId": md["Arn"]}
    err = env.error(user(), "EnableKeyRotation", KeyId=md["KeyId"], RotationPeriodInDays=89)
    assert err.code == "ValidationException" and "greater than or equal to 90" in err.message
    env(user(), "EnableKeyRotation", KeyId=md["KeyId"], RotationPeriodInDays=90)
    status = env(user(), "GetKeyRotationStatus", KeyId=md["KeyId"])
    assert status["KeyRotationEnabled"] and status["RotationPeriodInDays"] == 90
    assert status["NextRotationDate"] == env.clock.now + 900
    first_material = env(user(), "Decrypt", CiphertextBlob=old["CiphertextBlob"])["KeyMaterialId"]
    assert env(user(), "RotateKeyOnDemand", KeyId=md["KeyId"]) == {"KeyId": md["KeyId"]}
    new = env(user(), "Encrypt", KeyId=md["KeyId"], Plaintext=b64(b"v2"))
    new_back = env(user(), "Decrypt", CiphertextBlob=new["CiphertextBlob"])
    old_back = env(user(), "Decrypt", CiphertextBlob=old["CiphertextBlob"])
    assert unb64(old_back["Plaintext"]) == b"v1" and unb64(new_back["Plaintext"]) == b"v2"
    assert old_back["KeyMaterialId"] == first_material != new_back["KeyMaterialId"]
    assert (
        env(user(), "DescribeKey", KeyId=md["KeyId"])["KeyMetadata"]["CurrentKeyMaterialId"]
        == new_back["KeyMaterialId"]
    )
    env.clock.now += 901
    env.kms.sweep()
    rotations = env(user(), "ListKeyRotations", KeyId=md["KeyId"])["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["ON_DEMAND", "AUTOMATIC"]
    assert env(user(), "GetKeyRotationStatus", KeyId=md["KeyId"])["NextRotationDate"] == env.clock.now + 900
    # both old blobs survive a restart (sealed materials are reloaded from the store)
    env.close()
    env.open()
    assert unb64(env(user(), "Decrypt", CiphertextBlob=old["CiphertextBlob"])["Plaintext"]) == b"v1"
    assert unb64(env(user(), "Decrypt", CiphertextBlob=new["CiphertextBlob"])["Plaintext"]) == b"v2"
    env(user(), "DisableKeyRotation", KeyId=md["KeyId"])
    assert env(user(), "GetKeyRotationStatus", KeyId=md["KeyId"])["KeyRotationEnabled"] is False


# -- cross-account, policies, grants -----------------------------------------------------------------------


def test_cross_account_denied_then_allowed_by_policy(env: Env) -> None:
    md = env.key()
    bob = user(B, "bob")
    blob = env(user(), "Encrypt", KeyId=md["KeyId"], Plaintext=b64(b"x"))["CiphertextBlob"]
    err = env.error(bob, "Decrypt", CiphertextBlob=blob)
    assert err.code == "AccessDeniedException"
    assert err.message == (
        f"User: arn:aws:iam::{B}:user/bob is not authorized to perform: kms:Decrypt on "
        f"resource: {md['Arn']} because no resource-based policy allows the kms:Decrypt action"
    )
    assert env.error(bob, "DescribeKey", KeyId=md["KeyId"]).code == "NotFoundException"
    assert env.error(bob, "DescribeKey", KeyId=md["Arn"]).code == "AccessDeniedException"
    assert env.error(bob, "DisableKey", KeyId=md["Arn"]).code == "AccessDeniedException"
    policy = json.loads(env(user(), "GetKeyPolicy", KeyId=md["KeyId"])["Policy"])
    policy["Statement"].append(
        {
            "Sid": "bob",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{B}:root"},
            "Action": ["kms:Decrypt", "kms:Describe*"],
            "Resource": "*",
        }
    )
    env(user(), "PutKeyPolicy", KeyId=md["KeyId"], PolicyName="default", Policy=json.dumps(policy))
    assert unb64(env(bob, "Decrypt", CiphertextBlob=blob)["Plaintext"]) == b"x"
    assert env(bob, "DescribeKey", KeyId=md["Arn"])["KeyMetadata"]["KeyId"] == md["KeyId"]
    assert env.error(bob, "Encrypt", KeyId=md["Arn"], Plaintext=b64(b"x")).code == "AccessDeniedException"
    # a cross-account call lands in both trails
    mine = [
        e
        for e in env.trail.events(A, REGION)
        if e["eventName"] == "Decrypt" and e["userIdentity"].get("accountId") == B
    ]
    theirs = [e for e in env.trail.events(B, REGION) if e["eventName"] == "Decrypt"]
    assert mine and theirs and mine[-1]["sharedEventID"] == theirs[-1]["sharedEventID"]
    err = env.error(user(), "PutKeyPolicy", KeyId=md["KeyId"], Policy="{not json")
    assert err.code == "MalformedPolicyDocumentException"


def test_policy_conditions_and_explicit_deny(env: Env) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{A}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "blocked"}},
            },
            {
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": "kms:GenerateDataKey*",
                "Resource": "*",
                "Condition": {"StringEquals": {"kms:ViaService": DDB, "kms:CallerAccount": B}},
            },
            {
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": "kms:Encrypt",
                "Resource": "*",
                "Condition": {
                    "ForAllValues:StringLike": {"kms:EncryptionContextKeys": ["app:*"]},
                    "StringLike": {"kms:CallerAccount": "4444*"},
                },
            },
        ],
    }
    md = env.key(Policy=json.dumps(policy))
    blob = env(
        user(), "Encrypt", KeyId=md["KeyId"], Plaintext=b64(b"x"), EncryptionContext={"tenant": "blocked"}
    )
    err = env.error(
        user(), "Decrypt", CiphertextBlob=blob["CiphertextBlob"], EncryptionContext={"tenant": "blocked"}
    )
    assert err.code == "AccessDeniedException" and "explicit deny" in err.message
    bob = user(B, "bob")
    assert (
        env.error(bob, "GenerateDataKey", KeyId=md["Arn"], KeySpec="AES_256").code == "AccessDeniedException"
    )
    assert env(bob.on_behalf(DDB), "GenerateDataKey", KeyId=md["Arn"], KeySpec="AES_256")["Plaintext"]
    assert env(bob, "Encrypt", KeyId=md["Arn"], Plaintext=b64(b"x"), EncryptionContext={"app:x": "1"})
    err = env.error(bob, "Encrypt", KeyId=md["Arn"], Plaintext=b64(b"x"), EncryptionContext={"other": "1"})
    assert err.code == "AccessDeniedException"


def test_grants_for_another_account(env: Env) -> None:
    md = env.key()
    bob = user(B, "bob")
    carol = user(B, "carol")
    params = dict(
        KeyId=md["KeyId"],
        GranteePrincipal=bob.principal_arn,
        RetiringPrincipal=carol.principal_arn,
        Operations=["Encrypt", "Decrypt"],
        Constraints={"EncryptionContextSubset": {"app": "orders"}},
        Name="orders",
    )
    g1 = env(user(), "CreateGrant", **params)
    g2 = env(user(), "CreateGrant", **params)
    assert g1["GrantId"] == g2["GrantId"] and len(g1["GrantId"]) == 64
    assert env(user(), "CreateGrant", **{**params, "Operations": ["Decrypt"]})["GrantId"] != g1["GrantId"]
    ok = env(
        bob, "Encrypt", KeyId=md["Arn"], Plaintext=b64(b"x"), EncryptionContext={"app": "orders", "n": "1"}
    )
    assert (
        unb64(
            env(
                bob,
                "Decrypt",
                CiphertextBlob=ok["CiphertextBlob"],
                EncryptionContext={"app": "orders", "n": "1"},
            )["Plaintext"]
        )
        == b"x"
    )
    err = env.error(
        bob, "Encrypt", KeyId=md["Arn"], Plaintext=b64(b"x"), EncryptionContext={"app": "billing"}
    )
    assert err.code == "AccessDeniedException"
    err = env.error(
        bob, "GenerateDataKey", KeyId=md["Arn"], KeySpec="AES_256", EncryptionContext={"app": "orders"}
    )
    assert err.code == "AccessDeniedException"
    grants = env(user(), "ListGrants", KeyId=md["KeyId"])["Grants"]
    assert len(grants) == 2 and grants[0]["GranteePrincipal"] == bob.principal_arn
    assert grants[0]["IssuingAccount"] == f"arn:aws:iam::{A}:root"
    assert grants[0]["Constraints"] == {"EncryptionContextSubset": {"app": "orders"}}
    retirable = env(user(), "ListRetirableGrants", RetiringPrincipal=carol.principal_arn)["Grants"]
    assert {g["GrantId"] for g in retirable} == {g["GrantId"] for g in grants}
    # the grantee has no RetireGrant operation: it cannot retire; the retiring principal can
    err = env.error(bob, "RetireGrant", GrantToken=g1["GrantToken"])
    assert err.code == "AccessDeniedException"
    env(carol, "RetireGrant", GrantToken=g1["GrantToken"])
    assert (
        env.error(
            bob, "Encrypt", KeyId=md["Arn"], Plaintext=b64(b"x"), EncryptionContext={"app": "orders"}
        ).code
        == "AccessDeniedException"
    )
    other = [g for g in env(user(), "ListGrants", KeyId=md["KeyId"])["Grants"]]
    env(user(), "RevokeGrant", KeyId=md["KeyId"], GrantId=other[0]["GrantId"])
    assert env(user(), "ListGrants", KeyId=md["KeyId"])["Grants"] == []
    assert env.error(user(), "RevokeGrant", KeyId=md["KeyId"], GrantId="f" * 64).code == "NotFoundException"
    assert env.error(carol, "RetireGrant", GrantToken="garbage").code == "InvalidGrantTokenException"
    err = env.error(
        user(), "CreateGrant", KeyId=md["KeyId"], GranteePrincipal=bob.principal_arn, Operations=["Fly"]
    )
    assert err.code == "ValidationException" and "enum value set" in err.message


def test_database_flow_via_service_and_audit_shapes(env: Env) -> None:
    md = env.key()
    alice = user()
    ctx = {"aws:dynamodb:tableName": "orders", "aws:dynamodb:subscriberId": A}
    via = alice.on_behalf(DDB)
    assert env(via, "DescribeKey", KeyId=md["Arn"])["KeyMetadata"]["KeyId"] == md["KeyId"]
    # without a grant the database (as itself) cannot use a customer key
    err = env.error(service(), "GenerateDataKey", KeyId=md["Arn"], KeySpec="AES_256", EncryptionContext=ctx)
    assert err.code == "AccessDeniedException" and err.message.startswith(f"User: {DDB} is not authorized")
    grant = env(
        via,
        "CreateGrant",
        KeyId=md["Arn"],
        GranteePrincipal=DDB,
        RetiringPrincipal=DDB,
        Operations=[
            "DescribeKey",
            "GenerateDataKey",
            "Decrypt",
            "Encrypt",
            "ReEncryptFrom",
            "ReEncryptTo",
            "RetireGrant",
        ],
        Constraints={"EncryptionContextSubset": ctx},
    )
    ev = env.last_event()
    assert ev["eventName"] == "CreateGrant" and ev["userIdentity"]["invokedBy"] == "dynamodb.amazonaws.com"
    assert ev["userIdentity"]["arn"] == alice.principal_arn
    assert ev["sourceIPAddress"] == ev["userAgent"] == "dynamodb.amazonaws.com"
    assert ev["responseElements"] == {"grantId": grant["GrantId"]}
    assert ev["requestParameters"]["granteePrincipal"] == DDB
    assert ev["requestParameters"]["constraints"] == {"encryptionContextSubset": ctx}
    table_key = env(service(), "GenerateDataKey", KeyId=md["Arn"], KeySpec="AES_256", EncryptionContext=ctx)
    ev = env.last_event()
    assert ev["userIdentity"] == {"type": "AWSService", "invokedBy": "dynamodb.amazonaws.com"}
    assert ev["requestParameters"] == {"keyId": md["Arn"], "keySpec": "AES_256", "encryptionContext": ctx}
    assert ev["resources"] == [{"accountId": A, "type": "AWS::KMS::Key", "ARN": md["Arn"]}]
    assert (
        ev["readOnly"] is True and ev["eventSource"] == "kms.amazonaws.com" and ev["recipientAccountId"] == A
    )
    assert table_key["Plaintext"] not in json.dumps(ev)
    # the grant's context constraint binds the service to this table
    assert (
        env.error(
            service(),
            "GenerateDataKey",
            KeyId=md["Arn"],
            KeySpec="AES_256",
            EncryptionContext={**ctx, "aws:dynamodb:tableName": "other"},
        ).code
        == "AccessDeniedException"
    )
    back = env(via, "Decrypt", CiphertextBlob=table_key["CiphertextBlob"], EncryptionContext=ctx)
    assert back["Plaintext"] == table_key["Plaintext"]
    ev = env.last_event()
    assert ev["eventName"] == "Decrypt" and ev["requestParameters"] == {"encryptionContext": ctx}
    assert ev["userIdentity"]["invokedBy"] == "dynamodb.amazonaws.com"
    assert back["Plaintext"] not in json.dumps(ev)
    env(service(), "RetireGrant", KeyId=md["Arn"], GrantId=grant["GrantId"])
    assert env.last_event()["userIdentity"]["type"] == "AWSService"
    assert env(alice, "ListGrants", KeyId=md["KeyId"])["Grants"] == []
    # revoked grant bites
    assert (
        env.error(
            service(), "Decrypt", CiphertextBlob=table_key["CiphertextBlob"], EncryptionContext=ctx
        ).code
        == "AccessDeniedException"
    )


def test_error_events_are_recorded(env: Env) -> None:
    env.error(user(), "DescribeKey", KeyId="alias/missing")
    ev = env.last_event()
    assert ev["errorCode"] == "NotFoundException" and ev["eventName"] == "DescribeKey"
    assert ev["errorMessage"] == f"Alias arn:aws:kms:{REGION}:{A}:alias/missing is not found."
    assert ev["requestParameters"] == {"keyId": "alias/missing"}


# -- AWS managed and AWS owned keys ------------------------------------------------------------------------


def test_aws_managed_dynamodb_key(env: Env) -> None:
    assert env(user(), "ListAliases")["Aliases"] == []
    md = env(user(), "DescribeKey", KeyId="alias/aws/dynamodb")["KeyMetadata"]
    assert md["KeyManager"] == "AWS"
    assert md["Description"] == "Default key that protects my DynamoDB data when no other key is defined"
    assert env(user(), "DescribeKey", KeyId="alias/aws/dynamodb")["KeyMetadata"]["KeyId"] == md["KeyId"]
    aliases = env(user(), "ListAliases")["Aliases"]
    assert [(a["AliasName"], a["TargetKeyId"]) for a in aliases] == [("alias/aws/dynamodb", md["KeyId"])]
    policy = json.loads(env(user(), "GetKeyPolicy", KeyId=md["KeyId"], PolicyName="default")["Policy"])
    assert policy["Id"] == "auto-dynamodb-1"
    assert env(user(), "GetKeyRotationStatus", KeyId=md["KeyId"])["KeyRotationEnabled"] is True
    for op, extra in (
        ("PutKeyPolicy", {"Policy": json.dumps(policy)}),
        ("DisableKey", {}),
        ("EnableKey", {}),
        ("ScheduleKeyDeletion", {}),
        ("EnableKeyRotation", {}),
        ("DisableKeyRotation", {}),
    ):
        err = env.error(user(), op, KeyId=md["KeyId"], **extra)
        assert err.code == "AccessDeniedException", op
        assert f"kms:{op} on resource: {md['Arn']}" in err.message
    for op in ("CreateAlias", "UpdateAlias"):
        other = env.key()
        assert (
            env.error(user(), op, AliasName="alias/aws/dynamodb", TargetKeyId=other["KeyId"]).code
            == "AccessDeniedException"
        )
    assert env.error(user(), "DeleteAlias", AliasName="alias/aws/dynamodb").code == "AccessDeniedException"
    assert (
        env.error(user(), "CreateAlias", AliasName="alias/aws/mine", TargetKeyId=env.key()["KeyId"]).code
        == "AccessDeniedException"
    )
    # usable only through DynamoDB, by principals of the account
    ctx = {"aws:dynamodb:tableName": "t", "aws:dynamodb:subscriberId": A}
    assert (
        env.error(
            user(), "GenerateDataKey", KeyId="alias/aws/dynamodb", KeySpec="AES_256", EncryptionContext=ctx
        ).code
        == "AccessDeniedException"
    )
    dk = env(
        user().on_behalf(DDB),
        "GenerateDataKey",
        KeyId="alias/aws/dynamodb",
        KeySpec="AES_256",
        EncryptionContext=ctx,
    )
    assert dk["KeyId"] == md["Arn"]
    # the database as itself (new table key) is allowed by statement (a) through kms:ViaService
    assert (
        env(
            service(), "GenerateDataKey", KeyId="alias/aws/dynamodb", KeySpec="AES_256", EncryptionContext=ctx
        )["KeyId"]
        == md["Arn"]
    )
    bob_via = user(B, "bob").on_behalf(DDB)
    assert (
        env.error(bob_via, "Decrypt", CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx).code
        == "AccessDeniedException"
    )
    # each account gets its own managed key
    assert (
        env(user(B, "bob"), "DescribeKey", KeyId="alias/aws/dynamodb")["KeyMetadata"]["KeyId"] != md["KeyId"]
    )


def test_aws_owned_key_is_invisible_to_customers(env: Env) -> None:
    arn = env.kms.owned_key_arn(REGION)
    assert env.kms.owned_key_arn(REGION) == arn and f":{AWS_OWNED_ACCOUNT}:" in arn
    ctx = {"aws:dynamodb:tableName": "t", "aws:dynamodb:subscriberId": A}
    dk = env(service(A), "GenerateDataKey", KeyId=arn, KeySpec="AES_256", EncryptionContext=ctx)
    assert (
        env(service(A), "Decrypt", CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"]
        == dk["Plaintext"]
    )
    # the database refreshing a table key on a user's behalf may decrypt; the user directly may not
    via = env(user().on_behalf(DDB), "Decrypt", CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)
    assert via["Plaintext"] == dk["Plaintext"]
    # to the customer's own calls the owned key is an unknown key (issue 12 item 15): no ARN in the answer
    err = env.error(user(), "DescribeKey", KeyId=arn)
    assert (err.code, err.message) == ("NotFoundException", f"Key '{arn}' does not exist")
    err = env.error(user(), "Decrypt", CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)
    assert err.code == "AccessDeniedException" and arn not in err.message
    assert env(user(), "ListKeys")["Keys"] == []
    # the customer's failed calls are theirs to see; they name no owned-key resource
    customer = env.trail.events(A, REGION)
    assert [e["eventName"] for e in customer] == ["DescribeKey", "Decrypt", "ListKeys"]
    assert all(e["resources"] == [] for e in customer)
    owned_events = env.trail.events(AWS_OWNED_ACCOUNT, REGION)
    assert [e["eventName"] for e in owned_events] == ["GenerateDataKey", "Decrypt", "Decrypt"]
    assert env.kms.owned_key_arn("eu-west-1") != arn


# -- persistence, root of trust, canary --------------------------------------------------------------------


def test_state_survives_restart(env: Env) -> None:
    md = env.key()
    env(user(), "CreateAlias", AliasName="alias/keep", TargetKeyId=md["KeyId"])
    g = env(
        user(),
        "CreateGrant",
        KeyId=md["KeyId"],
        GranteePrincipal=user(B, "bob").principal_arn,
        Operations=["Decrypt"],
    )
    blob = env(user(), "Encrypt", KeyId="alias/keep", Plaintext=b64(b"persist"))["CiphertextBlob"]
    env(user(), "DisableKey", KeyId=md["KeyId"])
    env.close()
    env.open()
    assert env(user(), "DescribeKey", KeyId="alias/keep")["KeyMetadata"]["KeyState"] == "Disabled"
    env(user(), "EnableKey", KeyId=md["KeyId"])
    assert unb64(env(user(B, "bob"), "Decrypt", CiphertextBlob=blob)["Plaintext"]) == b"persist"
    assert [x["GrantId"] for x in env(user(), "ListGrants", KeyId=md["KeyId"])["Grants"]] == [g["GrantId"]]


def test_root_key_file_permissions_and_wrong_root(env: Env, tmp_path: pathlib.Path) -> None:
    path = pathlib.Path(env.settings.root_key_file)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(path.read_bytes()) == 32
    md = env.key()
    blob = env(user(), "Encrypt", KeyId=md["KeyId"], Plaintext=b64(b"x"))["CiphertextBlob"]
    assert repr(env.kms._root).startswith("FileRoot(") and "key" not in repr(env.kms._root).split("path=")[0]
    env.close()
    # another root key cannot open the store's material: the data dir alone is useless, and the service
    # refuses to start rather than seal new keys under the wrong root (issue 12 item 6)
    other = tmp_path / "other" / "root.key"
    env.settings.root_key_file = str(other)
    with pytest.raises(StartupError, match="is missing"):
        env.open()
    assert not other.exists()
    FileRoot.create(other)
    with pytest.raises(StartupError, match="cannot open the key material"):
        env.open()
    env.settings.root_key_file = str(path)
    env.open()
    assert unb64(env(user(), "Decrypt", CiphertextBlob=blob)["Plaintext"]) == b"x"


def test_canary_no_key_material_or_plaintext_at_rest(env: Env) -> None:
    canary = b"CANARY-7f3a9c-plaintext"
    secrets: list[bytes] = [canary]
    for i in range(3):
        md = env.key(Description=f"canary key {i}")
        ctx = {"purpose": "canary"}
        for _ in range(3):
            dk = env(user(), "GenerateDataKey", KeyId=md["KeyId"], KeySpec="AES_256", EncryptionContext=ctx)
            secrets.append(unb64(dk["Plaintext"]))
        blob = env(user(), "Encrypt", KeyId=md["KeyId"], Plaintext=b64(canary))["CiphertextBlob"]
        assert unb64(env(user(), "Decrypt", CiphertextBlob=blob)["Plaintext"]) == canary
        env(user(), "RotateKeyOnDemand", KeyId=md["KeyId"])
    # the key material itself, unsealed through the real root of trust
    materials = []
    for key in env.kms._keys.values():
        for m in key.materials:
            sealed = env.kms._store.sealed_material(key.key_id, m.index)
            materials.append(env.kms._root.unseal(sealed, env.kms._material_aad(key, m.index)))
    assert len(materials) == 6 and all(len(m) == 32 for m in materials)
    secrets += materials
    root_key = pathlib.Path(env.settings.root_key_file).read_bytes()
    secrets.append(root_key)
    env.close()
    data = env.root / "data"
    blobs = [p.read_bytes() for p in data.rglob("*") if p.is_file()]
    assert blobs
    for secret in secrets:
        needles = {secret, base64.b64encode(secret), secret.hex().encode()}
        for needle in needles:
            assert all(needle not in content for content in blobs)


def test_concurrent_use_with_rotations(env: Env) -> None:
    import threading

    md = env.key()
    ctx = {"aws:dynamodb:tableName": "t", "aws:dynamodb:subscriberId": A}
    dk = env(
        user(),
        "GenerateDataKey",
        KeyId=md["KeyId"],
        KeySpec="AES_256",
        EncryptionContext=ctx,
        GrantTokens=["ignored-token"],
    )
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(100):
                if n == 0 and i % 20 == 0:  # rotations race with encrypts and decrypts
                    env(user(), "RotateKeyOnDemand", KeyId=md["KeyId"])
                out = env(
                    user(), "GenerateDataKey", KeyId=md["KeyId"], KeySpec="AES_256", EncryptionContext=ctx
                )
                back = env(user(), "Decrypt", CiphertextBlob=out["CiphertextBlob"], EncryptionContext=ctx)
                assert back["Plaintext"] == out["Plaintext"]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len([e for e in env.trail.events(A, REGION) if e["eventName"] == "Decrypt"]) == 400
    # the data key made before the rotations still decrypts (speed is the benchmark's business, not a test's)
    env(user(), "Decrypt", CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)
