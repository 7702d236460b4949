"""DAX encryption at rest through boto3's ``dax``, ``kms`` and ``cloudtrail`` clients against a real server: an
encrypted cluster makes the account's AWS managed key ``alias/aws/dax`` on first use, its key is a data key under
it (GenerateDataKey in the trail, invoked by dax.amazonaws.com), decrypted by DAX itself when a server process
starts serving the cluster; an unencrypted cluster uses no key; the record keeps only the KMS ciphertext, and an
altered one is refused by KMS (in the trail) without stopping the server."""

from __future__ import annotations

import json
import socket
import sqlite3

from dynavault.dynamodb.layout import DAX_CONTROL_PREFIX

ROLE = "arn:aws:iam::123456789012:role/DAXServiceRoleForDynamoDBAccess"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(server_factory):
    return server_factory(allow_any_credentials=True, dax_port=_free_port())


def _create(dax, name: str, sse: bool) -> dict:
    return dax.create_cluster(ClusterName=name, NodeType="dax.r4.large", ReplicationFactor=1, IamRoleArn=ROLE,
                              SSESpecification={"Enabled": sse})["Cluster"]


def _kms_events(srv, account: str, name: str) -> list[dict]:
    trail = srv.client("cloudtrail", access_key=account)
    events = trail.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": name}],
                                 MaxResults=50)["Events"]
    return [json.loads(e["CloudTrailEvent"]) for e in events]


def _by_dax(events: list[dict]) -> list[dict]:
    return [e for e in events if e["userIdentity"].get("invokedBy") == "dax.amazonaws.com"]


def _aliases(srv, account: str) -> set[str]:
    return {a["AliasName"] for a in srv.client("kms", access_key=account).list_aliases()["Aliases"]}


def test_encrypted_cluster_makes_aws_dax_key_and_its_kms_calls_are_in_the_trail(server_factory):
    srv = _server(server_factory)
    account = "710000000001"
    dax = srv.client("dax", access_key=account)
    assert "alias/aws/dax" not in _aliases(srv, account)

    created = _create(dax, "secure", sse=True)
    assert created["SSEDescription"] == {"Status": "ENABLED"}
    assert "alias/aws/dax" in _aliases(srv, account)
    meta = srv.client("kms", access_key=account).describe_key(KeyId="alias/aws/dax")["KeyMetadata"]
    assert meta["KeyManager"] == "AWS" and meta["KeyState"] == "Enabled"
    assert meta["Description"] == "Default key that protects my DAX data when no other key is defined"

    (gen,) = _by_dax(_kms_events(srv, account, "GenerateDataKey"))
    assert gen["eventSource"] == "kms.amazonaws.com" and gen["sourceIPAddress"] == "dax.amazonaws.com"
    assert gen["userIdentity"]["accountId"] == account  # the user's CreateCluster, through DAX
    assert gen["requestParameters"]["keyId"] == "alias/aws/dax"
    assert gen["requestParameters"]["encryptionContext"] == {"aws:dax:subscriberId": account,
                                                            "aws:dax:clusterArn": created["ClusterArn"]}
    assert gen["resources"][0]["ARN"] == meta["Arn"]
    assert "plaintext" not in json.dumps(gen["responseElements"] or {}).lower()
    # the creating process holds the key: no Decrypt until a process starts serving the cluster
    assert _by_dax(_kms_events(srv, account, "Decrypt")) == []

    srv.restart()
    (dec,) = _by_dax(_kms_events(srv, account, "Decrypt"))
    assert dec["userIdentity"] == {"type": "AWSService", "invokedBy": "dax.amazonaws.com"}
    assert dec["sourceIPAddress"] == "dax.amazonaws.com" and "errorCode" not in dec
    assert dec["requestParameters"]["encryptionContext"]["aws:dax:clusterArn"] == created["ClusterArn"]
    assert dec["resources"][0]["ARN"] == meta["Arn"]
    # a second encrypted cluster uses the same service default key
    _create(dax, "secure2", sse=True)
    gens = _by_dax(_kms_events(srv, account, "GenerateDataKey"))
    assert len(gens) == 2 and {g["resources"][0]["ARN"] for g in gens} == {meta["Arn"]}


def test_unencrypted_cluster_uses_no_kms_key(server_factory):
    srv = _server(server_factory)
    account = "710000000002"
    _create(srv.client("dax", access_key=account), "plain", sse=False)
    srv.restart()
    assert "alias/aws/dax" not in _aliases(srv, account)
    for name in ("GenerateDataKey", "Decrypt"):
        assert _by_dax(_kms_events(srv, account, name)) == []


def test_cluster_record_keeps_only_the_ciphertext_and_an_altered_one_is_refused(server_factory):
    srv = _server(server_factory)
    account = "710000000003"
    _create(srv.client("dax", access_key=account), "tampered", sse=True)
    srv.stop()
    store = srv.data_dir / "tables.db"
    con = sqlite3.connect(store)
    try:
        (key, value), = con.execute("SELECT k, v FROM kv WHERE k >= ? AND k < ? AND instr(k, ?) > 0",
                                    (DAX_CONTROL_PREFIX, DAX_CONTROL_PREFIX + b"\xff", b"tampered")).fetchall()
        raw = bytes(value)
        start = raw.index(b'"KeyBlob":"') + len(b'"KeyBlob":"')
        # no plaintext key or other member names a key: the record holds the KMS ciphertext blob only
        assert raw.count(b"Key") == 1
        blob = raw[start:raw.index(b'"', start)]
        flipped = blob[:20] + (b"A" if blob[20:21] != b"A" else b"B") + blob[21:]
        con.execute("UPDATE kv SET v = ? WHERE k = ?", (raw.replace(blob, flipped), key))
        con.commit()
    finally:
        con.close()
    srv.start()
    (dec,) = _by_dax(_kms_events(srv, account, "Decrypt"))
    assert dec["errorCode"] == "InvalidCiphertextException"
    # the server serves on: the cluster is described as before
    (c,) = srv.client("dax", access_key=account).describe_clusters()["Clusters"]
    assert c["ClusterName"] == "tampered" and c["SSEDescription"] == {"Status": "ENABLED"}
    assert "cannot be opened" in srv.log_path.read_text()


def test_encrypted_cluster_under_a_remote_kms(start_server):
    kms_srv = start_server("kms", kms_only=True, allow_any_credentials=True, trusted_service_keys="db-service")
    db = start_server("db", allow_any_credentials=True, kms_endpoint=kms_srv.endpoint, dax_port=_free_port(),
                      kms_access_key_id="db-service", kms_secret_access_key="unused")
    account = "710000000004"
    created = _create(db.client("dax", access_key=account), "remote", sse=True)
    assert created["SSEDescription"] == {"Status": "ENABLED"}
    (gen,) = _by_dax(_kms_events(kms_srv, account, "GenerateDataKey"))
    assert gen["requestParameters"]["keyId"] == "alias/aws/dax" and gen["sourceIPAddress"] == "dax.amazonaws.com"
    assert "alias/aws/dax" in _aliases(kms_srv, account)
    db.restart()
    (dec,) = _by_dax(_kms_events(kms_srv, account, "Decrypt"))
    assert dec["userIdentity"] == {"type": "AWSService", "invokedBy": "dax.amazonaws.com"} and "errorCode" not in dec
