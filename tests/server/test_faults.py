"""Fault injection (DynavaultAdmin.PutFault / ListFaults / DeleteFault, --faults FILE) against a real server."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import make_table
from tests.wire import signed_request

#: error -> (status, __type, message) as DynamoDB answers them
EXPECTED = {
    "InternalServerError": (500, "com.amazonaws.dynamodb.v20120810#InternalServerError", "Internal server error"),
    "ServiceUnavailable": (503, "com.amazonaws.dynamodb.v20120810#ServiceUnavailable",
                           "The service is currently unavailable or busy."),
    "ThrottlingException": (400, "com.amazon.coral.availability#ThrottlingException",
                            "Rate of requests exceeds the allowed throughput."),
    "ProvisionedThroughputExceededException": (
        400, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded. Consider increasing your "
        "provisioning level with the UpdateTable API."),
    "TransactionConflictException": (400, "com.amazonaws.dynamodb.v20120810#TransactionConflictException",
                                     "Transaction is ongoing for the item"),
    "RequestLimitExceeded": (
        400, "com.amazonaws.dynamodb.v20120810#RequestLimitExceeded",
        "Throughput exceeds the current throughput limit for your account. Please contact AWS Support at "
        "https://aws.amazon.com/support request a limit increase"),
}


def admin(srv, op: str, body: dict | None = None, access_key: str = "100000000000"):
    return signed_request(srv.endpoint, f"DynavaultAdmin.{op}", body or {}, access_key=access_key)


def put_fault(srv, key: str, **fault) -> str:
    resp = admin(srv, "PutFault", fault, access_key=key)
    assert resp.status == 200, resp.body
    return resp.json()["FaultId"]


def get(srv, key: str, table: str):
    return signed_request(srv.endpoint, "DynamoDB_20120810.GetItem",
                          {"TableName": table, "Key": {"pk": {"S": "a"}}}, access_key=key)


@pytest.mark.parametrize("error", sorted(EXPECTED))
def test_each_error_with_probability_one_and_nothing_written(srv, error):
    key = f"1{abs(hash(error)) % 10**11:011d}"
    ddb = srv.client("dynamodb", access_key=key)
    make_table(ddb, "fff")
    make_table(ddb, "other")
    fid = put_fault(srv, key, Operation="PutItem", TableName="fff", Error=error, Probability=1)

    status, type_, message = EXPECTED[error]
    resp = signed_request(srv.endpoint, "DynamoDB_20120810.PutItem",
                          {"TableName": "fff", "Item": {"pk": {"S": "a"}}}, access_key=key)
    assert resp.status == status
    # a throttle also names the table's capacity it stands for (ThrottlingReasons: test_throttling_reasons.py)
    assert {k: v for k, v in resp.json().items() if k.lower() != "throttlingreasons"} == {
        "__type": type_, "message": message}
    with pytest.raises(ClientError) as err:
        ddb.put_item(TableName="fff", Item={"pk": {"S": "a"}})
    assert err.value.response["Error"]["Code"] == error
    # nothing was written; other operations and tables are not affected
    assert "Item" not in ddb.get_item(TableName="fff", Key={"pk": {"S": "a"}})
    ddb.put_item(TableName="other", Item={"pk": {"S": "a"}})
    # another account is not affected by this account's fault
    other = srv.client("dynamodb", access_key=f"9{key[1:]}")
    make_table(other, "fff")
    other.put_item(TableName="fff", Item={"pk": {"S": "a"}})

    assert admin(srv, "DeleteFault", {"FaultId": fid}, access_key=key).status == 200
    ddb.put_item(TableName="fff", Item={"pk": {"S": "a"}})
    assert admin(srv, "ListFaults", access_key=key).json() == {"Faults": []}


@pytest.mark.parametrize("error", sorted(EXPECTED))
def test_each_error_with_a_count(srv, error):
    key = f"2{abs(hash(error)) % 10**11:011d}"
    make_table(srv.client("dynamodb", access_key=key), "ccc")
    put_fault(srv, key, Operation="*", TableName="ccc", Error=error, Count=2)
    assert get(srv, key, "ccc").status == EXPECTED[error][0]
    faults = admin(srv, "ListFaults", access_key=key).json()["Faults"]
    assert [(f["Count"], f["Injected"]) for f in faults] == [(1, 1)]
    assert get(srv, key, "ccc").status == EXPECTED[error][0]
    assert get(srv, key, "ccc").status == 200  # the (n+1)th call succeeds
    assert admin(srv, "ListFaults", access_key=key).json() == {"Faults": []}


def test_standard_retries_succeed_after_a_count_fault(srv):
    key = "300000000001"
    make_table(srv.client("dynamodb", access_key=key), "rrr")
    put_fault(srv, key, Operation="PutItem", TableName="*", Error="ProvisionedThroughputExceededException", Count=2)
    ddb = boto3.session.Session().client(
        "dynamodb", endpoint_url=srv.endpoint, region_name="us-east-1", aws_access_key_id=key,
        aws_secret_access_key="testing", config=Config(retries={"mode": "standard", "max_attempts": 5}))
    out = ddb.put_item(TableName="rrr", Item={"pk": {"S": "a"}})
    assert out["ResponseMetadata"]["RetryAttempts"] == 2
    assert ddb.get_item(TableName="rrr", Key={"pk": {"S": "a"}})["Item"]


def test_latency_delays_only_the_matching_requests(srv):
    key = "300000000002"
    ddb = srv.client("dynamodb", access_key=key)
    make_table(ddb, "slow")
    make_table(ddb, "fast")
    put_fault(srv, key, Operation="GetItem", TableName="slow", LatencyMs=1500)
    done: list[str] = []

    def call(table: str) -> None:
        assert get(srv, key, table).status == 200
        done.append(table)

    slow = threading.Thread(target=call, args=("slow",))
    started = time.monotonic()
    slow.start()
    time.sleep(0.2)
    call("fast")  # the event loop is not blocked by the sleeping request
    slow.join()
    assert done == ["fast", "slow"]
    assert time.monotonic() - started >= 1.5


def test_kms_unavailable_for_one_table_while_another_works(srv):
    key = "300000000003"
    ddb = srv.client("dynamodb", access_key=key)
    kms = srv.client("kms", access_key=key)
    cmk = kms.create_key()["KeyMetadata"]["KeyId"]
    make_table(ddb, "down", sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": cmk})
    make_table(ddb, "upp", sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": cmk})
    ddb.put_item(TableName="down", Item={"pk": {"S": "a"}})  # its key is cached now
    fid = put_fault(srv, key, TableName="down", KmsUnavailable=True)

    with pytest.raises(ClientError) as err:
        ddb.get_item(TableName="down", Key={"pk": {"S": "a"}})
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert err.value.response["Error"]["Code"] == "InternalServerError"
    assert err.value.response["Error"]["Message"].startswith("KMS unavailable error: KMS endpoint unreachable")
    ddb.put_item(TableName="upp", Item={"pk": {"S": "a"}})
    assert ddb.get_item(TableName="upp", Key={"pk": {"S": "a"}})["Item"]
    # control-plane calls keep working, as in a real outage
    assert ddb.describe_table(TableName="down")["Table"]["TableName"] == "down"

    admin(srv, "DeleteFault", {"FaultId": fid}, access_key=key)
    assert ddb.get_item(TableName="down", Key={"pk": {"S": "a"}})["Item"]


def test_injected_faults_are_counted_in_metrics_and_logged(srv):
    key = "300000000004"
    make_table(srv.client("dynamodb", access_key=key), "mmm")
    put_fault(srv, key, Operation="GetItem", TableName="mmm", Error="ThrottlingException", Count=1)
    assert get(srv, key, "mmm").status == 400
    text = urllib.request.urlopen(srv.endpoint + "/metrics").read().decode()
    line = [x for x in text.splitlines() if x.startswith("dynavault_faults_injected_total")
            and 'error="ThrottlingException"' in x and 'operation="GetItem"' in x]
    assert line and float(line[0].rsplit(" ", 1)[1]) >= 1
    assert "ThrottlingException on GetItem" in srv.log_text()


@pytest.mark.parametrize("body, text", [
    ({"Operation": "GetItem", "TableName": "t"}, "needs an Error"),
    ({"Error": "Boom"}, "Error must be one of"),
    ({"Error": "InternalServerError", "Probability": 2}, "Probability must be a number from 0 to 1"),
    ({"Error": "InternalServerError", "Count": 0}, "Count must be a whole number"),
    ({"Error": "InternalServerError", "Count": 1, "Probability": 1}, "not both"),
    ({"Error": "InternalServerError", "LatencyMs": -1}, "LatencyMs must be"),
    ({"Error": "InternalServerError", "Table": "t"}, "Unknown fault member(s): Table"),
    ({"KmsUnavailable": True, "Operation": "GetItem"}, "Operation must be '*'"),
    ({"Error": "InternalServerError", "TableName": "bad name!"}, "TableName must be"),
])
def test_bad_fault_bodies_are_refused(srv, body, text):
    resp = admin(srv, "PutFault", body, access_key="300000000005")
    assert resp.status == 400
    assert resp.json()["__type"].endswith("ValidationException")
    assert text in resp.json()["message"]
    missing = admin(srv, "DeleteFault", {"FaultId": "nope"}, access_key="300000000005")
    assert missing.status == 400 and missing.json()["__type"].endswith("ResourceNotFoundException")


def test_fault_registry_is_bounded(server_factory):
    srv = server_factory("faults-bounded", allow_any_credentials=True)
    for _ in range(1000):
        put_fault(srv, "300000000006", Error="InternalServerError", TableName="nothing-here")
    resp = admin(srv, "PutFault", {"Error": "InternalServerError"}, access_key="300000000006")
    assert resp.status == 400 and resp.json()["__type"].endswith("LimitExceededException")


def test_faults_file_at_start(server_factory, tmp_path):
    path = tmp_path / "faults.json"
    path.write_text(json.dumps([
        {"Operation": "PutItem", "TableName": "*", "Error": "InternalServerError", "Count": 1},
        {"Operation": "GetItem", "TableName": "boot", "Error": "ThrottlingException", "Probability": 1},
    ]))
    srv = server_factory("faults-file", allow_any_credentials=True, faults=str(path))
    ddb = srv.client("dynamodb", access_key="300000000007")
    make_table(ddb, "boot")
    with pytest.raises(ClientError) as err:
        ddb.put_item(TableName="boot", Item={"pk": {"S": "a"}})
    assert err.value.response["Error"]["Code"] == "InternalServerError"
    ddb.put_item(TableName="boot", Item={"pk": {"S": "a"}})
    with pytest.raises(ClientError) as err:
        ddb.get_item(TableName="boot", Key={"pk": {"S": "a"}})
    assert err.value.response["Error"]["Code"] == "ThrottlingException"
    listed = admin(srv, "ListFaults", access_key="300000000007").json()["Faults"]
    assert [f["Operation"] for f in listed] == ["GetItem"]


def test_bad_faults_file_refuses_the_start(tmp_path):
    from tests.servers import ServerProcess

    path = tmp_path / "faults.json"
    path.write_text(json.dumps([{"Error": "Nope"}]))
    with pytest.raises(RuntimeError, match=r"--faults .*\[0\]: Error must be one of"):
        ServerProcess(tmp_path / "s", allow_any_credentials=True, faults=str(path))



def test_a_table_fault_matches_batch_parts_and_table_arns(srv):
    key = "300000000008"
    ddb = srv.client("dynamodb", access_key=key)
    arn = make_table(ddb, "bat")["TableArn"]
    make_table(ddb, "free")
    put_fault(srv, key, TableName="bat", Error="InternalServerError")
    with pytest.raises(ClientError):
        ddb.batch_write_item(RequestItems={"bat": [{"PutRequest": {"Item": {"pk": {"S": "a"}}}}]})
    with pytest.raises(ClientError):
        ddb.get_item(TableName=arn, Key={"pk": {"S": "a"}})
    ddb.batch_write_item(RequestItems={"free": [{"PutRequest": {"Item": {"pk": {"S": "a"}}}}]})
