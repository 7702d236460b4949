"""NoSQL Workbench's requests, as it sends them to a local endpoint: the AWS SDK for JavaScript v3 signing for
region ``localhost`` with its default local key ``fakeMyKeyId``, lowercase headers, ``amz-sdk-*`` headers and
``content-length`` among the signed ones, ``x-amz-content-sha256``, and a Host of ``localhost:PORT``. The request
below is such a request as recorded (headers, their order and the signed set); only its date and signature are
made anew, by a signer written here from the SigV4 specification (not botocore's), so the test does not lean on
the same code as the server's other clients."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import uuid

import pytest

from tests.wire import send

#: the recorded request's headers, in the order Workbench sent them (values refreshed per request below)
RECORDED = [
    ("host", "localhost:{port}"),
    ("accept", "*/*"),
    ("content-type", "application/x-amz-json-1.0"),
    ("x-amz-target", "DynamoDB_20120810.{operation}"),
    ("x-amz-user-agent", "aws-sdk-js/3.496.0"),
    ("user-agent", "aws-sdk-js/3.496.0 ua/2.0 os/darwin#23.2.0 lang/js md/nodejs#18.17.1 api/dynamodb#3.496.0 "
                   "NoSQLWorkbench/3.11.0"),
    ("amz-sdk-invocation-id", "{invocation}"),
    ("amz-sdk-request", "attempt=1; max=3"),
    ("x-amz-date", "{amz_date}"),
    ("x-amz-content-sha256", "{payload_hash}"),
    ("content-length", "{length}"),
    ("connection", "keep-alive"),
]
SIGNED = ["amz-sdk-invocation-id", "amz-sdk-request", "content-length", "content-type", "host",
          "x-amz-content-sha256", "x-amz-date", "x-amz-target", "x-amz-user-agent"]
ACCESS_KEY, SECRET = "fakeMyKeyId", "fakeSecretAccessKey"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def workbench_headers(srv, operation: str, body: dict) -> tuple[bytes, dict[str, str]]:
    payload = json.dumps(body, separators=(",", ":")).encode()
    now = datetime.datetime.now(datetime.UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    values = {"port": srv.port, "operation": operation, "invocation": str(uuid.uuid4()), "amz_date": amz_date,
              "payload_hash": hashlib.sha256(payload).hexdigest(), "length": str(len(payload))}
    headers = [(k, v.format(**values)) for k, v in RECORDED]
    lookup = dict(headers)
    canonical = "\n".join(["POST", "/", "", *(f"{h}:{lookup[h].strip()}" for h in SIGNED), "", ";".join(SIGNED),
                           values["payload_hash"]])
    scope = f"{day}/localhost/dynamodb/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + SECRET).encode(), day), "localhost"), "dynamodb"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers.append(("authorization", f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, "
                                     f"SignedHeaders={';'.join(SIGNED)}, Signature={signature}"))
    return payload, dict(headers)


def workbench_request(srv, operation: str, body: dict):
    payload, headers = workbench_headers(srv, operation, body)
    return send(srv.endpoint, payload, headers)


TABLE = {"TableName": "workbench-model", "BillingMode": "PAY_PER_REQUEST",
         "KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
         "AttributeDefinitions": [{"AttributeName": "PK", "AttributeType": "S"},
                                  {"AttributeName": "SK", "AttributeType": "S"}]}


@pytest.mark.parametrize("shared_db", [False, True], ids=["own-region", "shared-db"])
def test_a_recorded_workbench_request(server_factory, shared_db):
    srv = server_factory("workbench", allow_any_credentials=True, shared_db=shared_db)
    resp = workbench_request(srv, "CreateTable", TABLE)
    assert resp.status == 200, resp.body
    arn = resp.json()["TableDescription"]["TableArn"]
    put = workbench_request(srv, "PutItem", {"TableName": "workbench-model",
                                             "Item": {"PK": {"S": "USER#1"}, "SK": {"S": "PROFILE"}}})
    assert put.status == 200, put.body
    listed = workbench_request(srv, "ListTables", {})
    assert listed.status == 200 and "workbench-model" in listed.json()["TableNames"]
    sdk = srv.client("dynamodb", access_key="anything", region="us-east-1")
    if shared_db:  # one data set whatever the region and key
        assert arn.startswith("arn:aws:dynamodb:us-east-1:")
        assert sdk.get_item(TableName="workbench-model", Key={"PK": {"S": "USER#1"}, "SK": {"S": "PROFILE"}})["Item"]
    else:  # a region of its own
        assert arn.startswith("arn:aws:dynamodb:localhost:")
        assert "workbench-model" not in sdk.list_tables()["TableNames"]
