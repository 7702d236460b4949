"""The access log (``--access-log PATH``, ``--log-format json|text``): one line per request with who, what and
how it went, and never item data, key values, parameters or secrets."""

from __future__ import annotations

import base64
import json
import re

import pytest
from botocore.exceptions import ClientError

from tests.canary import scan
from tests.conftest import make_table
from tests.wire import send, signed_request

PK = "acclog-pk-Periwinkle4471"
SK = "acclog-sk-Tamarind2290"
SECRET_ATTR = "acclog-attr-Quokka8812"
KMS_PLAINTEXT = b"acclog-kms-Fandango3306"
CONDITION_VALUE = "acclog-cond-Juniper5518"
FIELDS = {"time", "request_id", "principal", "account", "region", "service", "operation", "table", "status",
          "error", "duration_ms", "bytes_in", "bytes_out", "peer", "user_agent"}


def _root_credential(srv) -> tuple[str, str, str]:
    text = "".join(srv.stdout_lines)
    key = re.search(r"aws_access_key_id = (\S+)", text).group(1)
    secret = re.search(r"aws_secret_access_key = (\S+)", text).group(1)
    account = re.search(r"account = (\d{12})", text).group(1)
    return key, secret, account


def _traffic(srv, key: str, secret: str) -> dict:
    """Requests of every kind: writes and reads of canary data, batches, a transaction, a failed condition,
    an unknown table, KMS Encrypt of a canary, an unsigned request. -> request ids seen by the client."""
    ddb = srv.client("dynamodb", access_key=key, secret=secret)
    kms = srv.client("kms", access_key=key, secret=secret)
    make_table(ddb, "acclog-items", range_type="S")
    seen: dict = {}
    item = {"pk": {"S": PK}, "sk": {"S": SK}, "a": {"S": SECRET_ATTR}}
    seen["PutItem"] = ddb.put_item(TableName="acclog-items", Item=item)["ResponseMetadata"]["RequestId"]
    ddb.get_item(TableName="acclog-items", Key={"pk": {"S": PK}, "sk": {"S": SK}})
    ddb.query(TableName="acclog-items", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": PK}})
    ddb.batch_write_item(RequestItems={"acclog-items": [{"PutRequest": {"Item": {**item, "sk": {"S": SK + "2"}}}}]})
    ddb.transact_write_items(TransactItems=[{"Put": {"TableName": "acclog-items",
                                                      "Item": {**item, "sk": {"S": SK + "3"}}}}])
    with pytest.raises(ClientError) as failed:
        ddb.put_item(TableName="acclog-items", Item=item, ConditionExpression="a = :v",
                     ExpressionAttributeValues={":v": {"S": CONDITION_VALUE}})
    seen["ConditionalCheckFailedException"] = failed.value.response["ResponseMetadata"]["RequestId"]
    with pytest.raises(ClientError):
        ddb.get_item(TableName="acclog-missing", Key={"pk": {"S": PK}})
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=KMS_PLAINTEXT)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == KMS_PLAINTEXT
    unsigned = send(srv.endpoint, json.dumps({"TableName": "acclog-items"}).encode(),
                    {"X-Amz-Target": "DynamoDB_20120810.DescribeTable",
                     "Content-Type": "application/x-amz-json-1.0"})
    assert unsigned.status == 400
    return seen


def test_json_access_log_fields_and_no_secrets_or_item_data(start_server, tmp_path):
    path = tmp_path / "access.jsonl"
    srv = start_server(access_log=path, log_format="json")
    key, secret, account = _root_credential(srv)
    seen = _traffic(srv, key, secret)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert path.stat().st_mode & 0o077 == 0  # owner-only, as the data dir
    for entry in lines:
        assert set(entry) == FIELDS, entry
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
        assert entry["duration_ms"] >= 0 and entry["bytes_out"] > 0
    by_id = {e["request_id"]: e for e in lines}
    put = by_id[seen["PutItem"]]
    assert (put["operation"], put["table"], put["status"], put["error"]) == ("PutItem", "acclog-items", 200, "-")
    assert put["principal"] == f"arn:aws:iam::{account}:root" and put["account"] == account
    assert put["region"] == "us-east-1" and put["service"] == "dynamodb" and put["bytes_in"] > 0
    assert put["peer"] == "127.0.0.1" and "Botocore" in put["user_agent"]
    failed = by_id[seen["ConditionalCheckFailedException"]]
    assert (failed["status"], failed["error"]) == (400, "ConditionalCheckFailedException")
    ops = [(e["operation"], e["table"], e["status"], e["error"]) for e in lines]
    assert ("BatchWriteItem", "acclog-items", 200, "-") in ops
    assert ("TransactWriteItems", "acclog-items", 200, "-") in ops
    assert ("GetItem", "acclog-missing", 400, "ResourceNotFoundException") in ops
    assert ("Encrypt", "-", 200, "-") in ops and ("Decrypt", "-", 200, "-") in ops
    # refused before its signature was checked: no principal, no table, the front end's error
    unsigned = [e for e in lines if e["operation"] == "DescribeTable"]
    assert [(e["principal"], e["table"], e["error"]) for e in unsigned] == [
        ("-", "-", "MissingAuthenticationTokenException")]
    # never the data, the values in expressions, the KMS plaintext or the credential's secret
    assert scan([path], [PK, SK, SECRET_ATTR, CONDITION_VALUE, KMS_PLAINTEXT, secret]) == []
    assert base64.b64encode(KMS_PLAINTEXT).decode() not in path.read_text()


def test_text_access_log_is_combined_format_with_fields(start_server, tmp_path):
    path = tmp_path / "access.log"
    srv = start_server(allow_any_credentials=True, access_log=path, log_format="text")
    ddb = srv.client("dynamodb", access_key="111122223333")
    make_table(ddb, "acclog-text")
    ddb.put_item(TableName="acclog-text", Item={"pk": {"S": PK}, "a": {"S": SECRET_ATTR}})
    lines = path.read_text().splitlines()
    put = [line for line in lines if "DynamoDB_20120810.PutItem" not in line and ".PutItem" in line]
    assert len(put) == 1, lines
    m = re.fullmatch(r'127\.0\.0\.1 - (\S+) \[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000)\] "POST / dynamodb\.PutItem" '
                     r'200 (\d+) "-" "([^"]*)" request_id=([0-9A-F]{52}) account=(\d{12}) region=(\S+) '
                     r'table=(\S+) error=(\S+) duration_ms=([\d.]+) bytes_in=(\d+)', put[0])
    assert m, put[0]
    assert m.group(1) == "arn:aws:iam::111122223333:user/111122223333"
    assert (m.group(6), m.group(7), m.group(8), m.group(9)) == ("111122223333", "us-east-1", "acclog-text", "-")
    assert scan([path], [PK, SECRET_ATTR]) == []


def test_a_table_name_that_is_not_one_is_not_logged(start_server, tmp_path):
    """What a client types where a table name goes reaches the log only when the request passed validation
    (and then it is a valid table name or table ARN)."""
    path = tmp_path / "access.jsonl"
    srv = start_server(allow_any_credentials=True, access_log=path, log_format="json")
    resp = signed_request(srv.endpoint, "DynamoDB_20120810.DescribeTable", {"TableName": f"x {SECRET_ATTR} y"})
    assert resp.status == 400
    [entry] = [json.loads(line) for line in path.read_text().splitlines()]
    assert (entry["operation"], entry["table"], entry["error"]) == ("DescribeTable", "-", "ValidationException")
    assert scan([path], [SECRET_ATTR]) == []


def test_off_by_default(start_server):
    srv = start_server(allow_any_credentials=True)
    make_table(srv.client("dynamodb"), "acclog-off")
    assert srv.stop() == 0
    assert not [p for p in srv.base.rglob("*") if "access" in p.name]
    log = srv.log_text()
    assert "request_id" not in log and "CreateTable" not in log


def test_bad_log_format_refuses_to_start(start_server, tmp_path):
    with pytest.raises(RuntimeError, match="--log-format must be one of text, json, not 'xml'"):
        start_server(allow_any_credentials=True, access_log=tmp_path / "a.log", log_format="xml")
