"""Issue 12 items 6, 7, 8, 15, 17b against real servers: the root key check at startup, key policy
conditions and limits, the table-key cache per principal, the AWS owned key's invisibility, tag limits."""

from __future__ import annotations

import http.client
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

KEYS = [{"AttributeName": "pk", "KeyType": "HASH"}]
DEFS = [{"AttributeName": "pk", "AttributeType": "S"}]
OWNED_ACCOUNT = "000000000042"


def _err(call, *args, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    return info.value.response["Error"]["Code"], info.value.response["Error"].get("Message", "")


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dynavault.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


# -- item 6: the root key is checked before the server starts ----------------------------------------------


def _snapshot(data_dir: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(data_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(data_dir.rglob("*")) if p.is_file()}


def _refused(srv, *, kms_only: bool = False) -> str:
    """Start ``srv``'s command line as it stands; it must refuse: exit 2, one line on stderr, nothing written."""
    before = _snapshot(srv.data_dir)
    cmd = ["kms", "serve"] if kms_only else ["serve"]
    done = _cli(*cmd, "--host", "127.0.0.1", "--port", "0", "--data-dir", str(srv.data_dir),
                "--root-key-file", str(srv.root_key_file), "--allow-any-credentials")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and str(srv.root_key_file) in lines[0], done.stderr
    assert "listening" not in done.stdout
    assert _snapshot(srv.data_dir) == before
    return lines[0]


def test_wrong_missing_or_exposed_root_key_refuses_to_start(start_server):
    srv = start_server(allow_any_credentials=True)
    kms = srv.client("kms")
    key = kms.create_key()["KeyMetadata"]["Arn"]
    ddb = srv.client("dynamodb")
    ddb.create_table(TableName="sealed", KeySchema=KEYS, AttributeDefinitions=DEFS, BillingMode="PAY_PER_REQUEST",
                     SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key})
    ddb.put_item(TableName="sealed", Item={"pk": {"S": "k"}, "v": {"S": "kept"}})
    srv.stop()
    root = srv.root_key_file
    good = root.read_bytes()

    # (a) the root key file is gone: refuse, and create no new root key next to the existing material
    root.unlink()
    for kms_only in (False, True):
        line = _refused(srv, kms_only=kms_only)
        assert "is missing" in line and "restore" in line
        assert not root.exists()

    # (b) another valid-looking root key: it cannot open the key material
    fd = os.open(root, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, os.urandom(32))
    os.close(fd)
    assert "cannot open the key material" in _refused(srv)
    assert "cannot open the key material" in _refused(srv, kms_only=True)

    # (c) the right key, readable by others
    root.write_bytes(good)
    os.chmod(root, 0o644)
    line = _refused(srv)
    assert "permissions 0644" in line and "too open" in line
    os.chmod(root, 0o640)
    assert "permissions 0640" in _refused(srv)

    # (d) restored: the server starts and the item reads back
    os.chmod(root, 0o600)
    srv.start()
    item = srv.client("dynamodb").get_item(TableName="sealed", Key={"pk": {"S": "k"}})["Item"]
    assert item["v"]["S"] == "kept"
    assert stat.S_IMODE(root.stat().st_mode) == 0o600 and root.read_bytes() == good


def test_fresh_data_dir_creates_its_root_key_and_a_check_value(start_server):
    # a fresh data dir gets a root key (0600) before any key material exists; a key store holding material
    # but made before the check value existed is checked against one sealed material instead
    srv = start_server(allow_any_credentials=True)
    assert stat.S_IMODE(srv.root_key_file.stat().st_mode) == 0o600
    srv.client("kms").create_key()
    srv.stop()
    import sqlite3

    db = sqlite3.connect(srv.data_dir / "kms" / "keys.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM root_check").fetchone() == (1,)
    db.execute("DROP TABLE root_check")
    db.commit()
    db.close()
    srv.root_key_file.write_bytes(os.urandom(32))
    assert "cannot open the key material" in _refused(srv)


# -- item 7: key policy conditions and limits --------------------------------------------------------------


def _policy(account: str, deny_condition: dict | None, action: str = "kms:DescribeKey") -> str:
    deny: dict = {"Sid": "deny", "Effect": "Deny", "Principal": "*", "Action": action, "Resource": "*"}
    if deny_condition is not None:
        deny["Condition"] = deny_condition
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
         "Action": "kms:*", "Resource": "*"},
        deny,
    ]})


#: operator family -> (condition that holds for a direct boto3 call, one that does not)
FAMILIES = {
    "StringLike": ({"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/*"}},
                   {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/*"}}),
    "StringNotEquals": ({"StringNotEquals": {"kms:CallerAccount": "999999999999"}},
                        {"StringNotEquals": {"kms:CallerAccount": "{account}"}}),
    "StringEqualsIgnoreCase": ({"StringEqualsIgnoreCase": {"aws:PrincipalArn": "{ARN}"}},
                               {"StringEqualsIgnoreCase": {"aws:PrincipalArn": "arn:aws:iam::1:user/x"}}),
    "ArnLike": ({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/*"}},
                {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/*"}}),
    "ArnEquals": ({"ArnEquals": {"aws:PrincipalArn": "{arn}"}},
                  {"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::111111111111:user/x"}}),
    "ArnNotEquals": ({"ArnNotEquals": {"aws:PrincipalArn": "arn:aws:iam::111111111111:user/x"}},
                     {"ArnNotEquals": {"aws:PrincipalArn": "{arn}"}}),
    "ArnNotLike": ({"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/*"}},
                   {"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/*"}}),
    "DateGreaterThan": ({"DateGreaterThan": {"aws:CurrentTime": "2000-01-01T00:00:00Z"}},
                        {"DateGreaterThan": {"aws:CurrentTime": "2999-01-01T00:00:00Z"}}),
    "DateLessThanEquals": ({"DateLessThanEquals": {"aws:CurrentTime": "2999-01-01"}},
                           {"DateLessThanEquals": {"aws:CurrentTime": "946684800"}}),
    "NumericGreaterThan": ({"NumericGreaterThan": {"aws:EpochTime": 0}},
                           {"NumericGreaterThan": {"aws:EpochTime": "99999999999"}}),
    "NumericLessThan": ({"NumericLessThan": {"aws:EpochTime": "99999999999"}},
                        {"NumericLessThan": {"aws:EpochTime": 1}}),
    "Bool": ({"Bool": {"aws:SecureTransport": False}}, {"Bool": {"aws:SecureTransport": "true"}}),
    "IpAddress": ({"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "127.0.0.0/8"]}},
                  {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
    "NotIpAddress": ({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
                     {"NotIpAddress": {"aws:SourceIp": "127.0.0.1/32"}}),
    "Null": ({"Null": {"kms:ViaService": "true"}}, {"Null": {"kms:ViaService": "false"}}),
    "IfExists": ({"StringEqualsIfExists": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}},
                 {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}),
    "ForAnyValue": ({"ForAnyValue:StringLike": {"aws:PrincipalArn": ["*:role/*", "*:user/*"]}},
                    {"ForAnyValue:StringLike": {"aws:PrincipalArn": ["*:role/*"]}}),
    "ForAllValues": ({"ForAllValues:StringLike": {"aws:PrincipalArn": ["*:user/*"]}},
                     {"ForAllValues:StringLike": {"aws:PrincipalArn": ["*:role/*"]}}),
}


def _fill(condition: dict, account: str, arn: str) -> dict:
    text = json.dumps(condition).replace("{account}", account).replace("{arn}", arn).replace("{ARN}", arn.upper())
    return json.loads(text)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_deny_with_each_operator_family_takes_effect(shared_server, family):
    kms = shared_server.client("kms")
    md = kms.create_key()["KeyMetadata"]
    account = md["AWSAccountId"]
    arn = f"arn:aws:iam::{account}:user/testing"  # the principal --allow-any-credentials gives key "testing"
    holds, misses = (_fill(c, account, arn) for c in FAMILIES[family])
    kms.put_key_policy(KeyId=md["KeyId"], PolicyName="default", Policy=_policy(account, misses))
    assert kms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]["KeyId"] == md["KeyId"]
    kms.put_key_policy(KeyId=md["KeyId"], PolicyName="default", Policy=_policy(account, holds))
    code, message = _err(kms.describe_key, KeyId=md["KeyId"])
    assert code == "AccessDeniedException" and "with an explicit deny" in message
    kms.put_key_policy(KeyId=md["KeyId"], PolicyName="default", Policy=_policy(account, misses))
    assert kms.describe_key(KeyId=md["KeyId"])["KeyMetadata"]["KeyId"] == md["KeyId"]


def test_null_condition_on_encryption_context(shared_server):
    kms = shared_server.client("kms")
    md = kms.create_key()["KeyMetadata"]
    policy = _policy(md["AWSAccountId"], {"Null": {"kms:EncryptionContext:tenant": "true"}}, "kms:Encrypt")
    kms.put_key_policy(KeyId=md["KeyId"], PolicyName="default", Policy=policy)
    assert _err(kms.encrypt, KeyId=md["KeyId"], Plaintext=b"x")[0] == "AccessDeniedException"
    assert kms.encrypt(KeyId=md["KeyId"], Plaintext=b"x", EncryptionContext={"tenant": "a"})["CiphertextBlob"]


BAD_POLICIES = {
    "unknown operator": {"StringEqualz": {"aws:PrincipalArn": "x"}},
    "unknown set prefix": {"ForSomeValues:StringEquals": {"aws:PrincipalArn": "x"}},
    "Null with IfExists": {"NullIfExists": {"kms:ViaService": "true"}},
    "date that is no date": {"DateGreaterThan": {"aws:CurrentTime": "yesterday"}},
    "address that is no address": {"IpAddress": {"aws:SourceIp": "300.1.1.1/8"}},
    "number that is no number": {"NumericLessThan": {"aws:EpochTime": "soon"}},
    "condition not an object": {"StringEquals": "x"},
    "resource tag key": {"StringEquals": {"aws:ResourceTag/team": "x"}},
}


@pytest.mark.parametrize("case", sorted(BAD_POLICIES))
def test_policy_kms_cannot_evaluate_is_refused(shared_server, case):
    kms = shared_server.client("kms")
    md = kms.create_key()["KeyMetadata"]
    before = kms.get_key_policy(KeyId=md["KeyId"], PolicyName="default")["Policy"]
    policy = _policy(md["AWSAccountId"], BAD_POLICIES[case])
    assert _err(kms.put_key_policy, KeyId=md["KeyId"], PolicyName="default", Policy=policy)[0] == \
        "MalformedPolicyDocumentException"
    assert kms.get_key_policy(KeyId=md["KeyId"], PolicyName="default")["Policy"] == before
    count = len(kms.list_keys(Limit=1000)["Keys"])
    assert _err(kms.create_key, Policy=policy)[0] == "MalformedPolicyDocumentException"
    assert len(kms.list_keys(Limit=1000)["Keys"]) == count


def test_policy_elements_and_size_limit(shared_server):
    kms = shared_server.client("kms")
    md = kms.create_key()["KeyMetadata"]
    account = md["AWSAccountId"]
    good = json.loads(_policy(account, None))
    for broken in (
        {**good, "Comment": "x"},                                            # no such top-level element
        {**good, "Version": "2020-01-01"},
        {**good, "Statement": [{**good["Statement"][0], "Effect": "Maybe"}]},
        {**good, "Statement": [{**good["Statement"][0], "Action": 5}]},
        {**good, "Statement": [{**good["Statement"][0], "Resources": "*"}]},  # misspelt element
        {**good, "Statement": [{**good["Statement"][0], "Principal": {"AWS": "bob"}}]},
        {**good, "Statement": [good["Statement"][0], good["Statement"][0]]},  # duplicate Sid
    ):
        code, _ = _err(kms.put_key_policy, KeyId=md["KeyId"], PolicyName="default", Policy=json.dumps(broken))
        assert code == "MalformedPolicyDocumentException", broken
    # 32 KB is KMS's key policy quota: LimitExceededException past it (33 KB here), accepted up to it
    padded = json.dumps({**good, "Id": ""})
    at_limit = json.dumps({**good, "Id": "x" * (32768 - len(padded))})
    assert len(at_limit.encode()) == 32768
    kms.put_key_policy(KeyId=md["KeyId"], PolicyName="default", Policy=at_limit)
    big = json.dumps({**good, "Id": "x" * 33 * 1024})
    assert _err(kms.put_key_policy, KeyId=md["KeyId"], PolicyName="default", Policy=big)[0] == \
        "LimitExceededException"
    assert _err(kms.create_key, Policy=big)[0] == "LimitExceededException"
    assert kms.get_key_policy(KeyId=md["KeyId"], PolicyName="default")["Policy"] == at_limit


# -- item 17b: tags ----------------------------------------------------------------------------------------


def test_tag_limits(shared_server):
    kms = shared_server.client("kms")
    count = len(kms.list_keys(Limit=1000)["Keys"])
    tags = [{"TagKey": f"k{i}", "TagValue": "v"} for i in range(51)]
    code, message = _err(kms.create_key, Tags=tags)
    assert code == "TagException" and "50" in message
    assert _err(kms.create_key, Tags=[{"TagKey": f"k{i}", "TagValue": ""} for i in range(10_000)])[0] == \
        "TagException"
    assert len(kms.list_keys(Limit=1000)["Keys"]) == count
    md = kms.create_key(Tags=tags[:50])["KeyMetadata"]
    # replacing a value keeps the count at 50; one more key goes past the quota and changes nothing
    kms.tag_resource(KeyId=md["KeyId"], Tags=[{"TagKey": "k0", "TagValue": "new"}])
    code, message = _err(kms.tag_resource, KeyId=md["KeyId"], Tags=[{"TagKey": "k50", "TagValue": "v"}])
    assert code == "LimitExceededException" and "50" in message
    listed = kms.list_resource_tags(KeyId=md["KeyId"], Limit=50)["Tags"]
    assert len(listed) == 50 and {"TagKey": "k0", "TagValue": "new"} in listed
    bad = shared_server.client("kms", validate=False)
    for tag, field in (({"TagKey": "", "TagValue": "v"}, "tagKey"), ({"TagKey": "k" * 129, "TagValue": "v"}, "tagKey"),
                       ({"TagKey": "k", "TagValue": "v" * 257}, "tagValue")):
        code, message = _err(bad.create_key, Tags=[tag])
        assert code == "ValidationException" and f"tags.1.member.{field}" in message


# -- item 15: the AWS owned key is an unknown key to customers ---------------------------------------------


def test_owned_key_alias_is_not_found_for_customers(shared_server, unique_name):
    ddb = shared_server.client("dynamodb")
    ddb.create_table(TableName=unique_name, KeySchema=KEYS, AttributeDefinitions=DEFS,
                     BillingMode="PAY_PER_REQUEST")  # an owned-key table: the owned key exists now
    kms = shared_server.client("kms")
    alias_arn = f"arn:aws:kms:us-east-1:{OWNED_ACCOUNT}:alias/aws/dynamodb-owned"
    code, message = _err(kms.describe_key, KeyId=alias_arn)
    assert (code, message) == ("NotFoundException", f"Alias {alias_arn} is not found.")
    # exactly as for an alias that does not exist
    other = f"arn:aws:kms:us-east-1:{OWNED_ACCOUNT}:alias/nothing-here"
    assert _err(kms.describe_key, KeyId=other) == ("NotFoundException", f"Alias {other} is not found.")
    for op in (kms.get_key_policy, kms.list_grants):
        kwargs = {"KeyId": alias_arn, **({"PolicyName": "default"} if op == kms.get_key_policy else {})}
        code, message = _err(op, **kwargs)
        assert code == "NotFoundException" and ":key/" not in message
    assert ddb.get_item(TableName=unique_name, Key={"pk": {"S": "x"}}).get("Item") is None


# -- item 8: the table-key cache is per connection AND principal -------------------------------------------


class SignedConnection:
    """One keep-alive HTTP connection; each request signed (SigV4) with the credentials given to it."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        host, port = endpoint.split("//", 1)[1].rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.sock = None

    def call(self, creds: Credentials, op: str, params: dict) -> tuple[int, dict]:
        body = json.dumps(params).encode()
        req = AWSRequest("POST", self.endpoint + "/", data=body, headers={
            "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": f"DynamoDB_20120810.{op}"})
        SigV4Auth(creds, "dynamodb", "us-east-1").add_auth(req)
        self.conn.request("POST", "/", body=body, headers=dict(req.headers.items()))
        if self.sock is None:
            self.sock = self.conn.sock
        assert self.conn.sock is self.sock  # still the same TCP connection
        resp = self.conn.getresponse()
        data = json.loads(resp.read() or b"{}")
        assert resp.getheader("Connection", "").lower() != "close"
        return resp.status, data


def _credential(data_dir: Path, account: str, user: str | None = None) -> Credentials:
    args = ["credentials", "create", "--data-dir", str(data_dir), "--account", account]
    done = _cli(*args, *(["--user", user] if user else []))
    assert done.returncode == 0, done.stderr
    kv = dict(line.split(" = ", 1) for line in done.stdout.strip().splitlines())
    return Credentials(kv["aws_access_key_id"], kv["aws_secret_access_key"])


def test_cache_entry_of_one_principal_does_not_serve_another(start_server, tmp_path):
    account = "111122223333"
    data_dir = tmp_path / "cache-data"
    root = _credential(data_dir, account)
    alice = _credential(data_dir, account, "alice")
    srv = start_server(data_dir=data_dir)
    kms = srv.client("kms", access_key=root.access_key, secret=root.secret_key)
    alice_arn = f"arn:aws:iam::{account}:user/alice"
    key = kms.create_key(Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "no alice", "Effect": "Deny", "Principal": {"AWS": alice_arn}, "Action": "kms:Decrypt",
         "Resource": "*"},
    ]}))["KeyMetadata"]["Arn"]
    ddb = srv.client("dynamodb", access_key=root.access_key, secret=root.secret_key)
    ddb.create_table(TableName="guarded", KeySchema=KEYS, AttributeDefinitions=DEFS, BillingMode="PAY_PER_REQUEST",
                     SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key})
    ddb.put_item(TableName="guarded", Item={"pk": {"S": "k"}, "v": {"S": "secret"}})

    conn = SignedConnection(srv.endpoint)
    get = {"TableName": "guarded", "Key": {"pk": {"S": "k"}}}
    status, body = conn.call(root, "GetItem", get)
    assert status == 200 and body["Item"]["v"]["S"] == "secret"
    # the same keep-alive connection, now as alice, whom the key policy denies kms:Decrypt
    for op, params in (("GetItem", get),
                       ("PutItem", {"TableName": "guarded", "Item": {"pk": {"S": "k"}, "v": {"S": "alice"}}})):
        status, body = conn.call(alice, op, params)
        assert status == 400, (op, body)
        assert body["__type"].endswith("AccessDeniedException")
        assert body["message"].startswith("KMS key access denied error: ")
    # root's own entry is untouched, and alice's PutItem changed nothing
    status, body = conn.call(root, "GetItem", get)
    assert status == 200 and body["Item"]["v"]["S"] == "secret"
