"""UpdateTimeToLive and DescribeTimeToLive against a real server: answers, DynamoDB's errors (code, message,
HTTP status and the wire's __type), the cooldown, and the AWS CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from tests.wire import signed_request

COOLDOWN = 1.5
PREFIX = "com.amazonaws.dynamodb.v20120810#"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.servers import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("ttl-api"), allow_any_credentials=True,
                        ttl_cooldown_seconds=COOLDOWN, ttl_sweep_seconds=3600)
    yield srv
    srv.stop()


def _table(ddb, name: str) -> None:
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])


def _error(call, **kw) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as err:
        call(**kw)
    r = err.value.response
    return r["Error"]["Code"], r["Error"]["Message"], r["ResponseMetadata"]["HTTPStatusCode"]


def _update(ddb, name, enabled, attr):
    return ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": enabled, "AttributeName": attr})


def test_enable_describe_disable_round_trip(server, unique_name):
    ddb = server.client("dynamodb")
    _table(ddb, unique_name)
    # never configured: DISABLED and no AttributeName
    assert ddb.describe_time_to_live(TableName=unique_name)["TimeToLiveDescription"] == {"TimeToLiveStatus": "DISABLED"}
    out = _update(ddb, unique_name, True, "expires")
    assert out["TimeToLiveSpecification"] == {"Enabled": True, "AttributeName": "expires"}
    assert ddb.describe_time_to_live(TableName=unique_name)["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED", "AttributeName": "expires"}
    # DescribeTable does not show TTL, as in DynamoDB
    assert "TimeToLive" not in json.dumps(ddb.describe_table(TableName=unique_name)["Table"], default=str)
    time.sleep(COOLDOWN + 0.2)
    out = _update(ddb, unique_name, False, "expires")
    assert out["TimeToLiveSpecification"] == {"Enabled": False, "AttributeName": "expires"}
    # disabled: the previous attribute is not shown
    assert ddb.describe_time_to_live(TableName=unique_name)["TimeToLiveDescription"] == {"TimeToLiveStatus": "DISABLED"}
    # the table's ARN works as its name
    arn = ddb.describe_table(TableName=unique_name)["Table"]["TableArn"]
    assert ddb.describe_time_to_live(TableName=arn)["TimeToLiveDescription"]["TimeToLiveStatus"] == "DISABLED"


def test_content_errors_come_before_the_cooldown(server, unique_name):
    ddb = server.client("dynamodb")
    _table(ddb, unique_name)
    # never configured: disabling (with any attribute) is "already disabled"
    assert _error(_update, ddb=ddb, name=unique_name, enabled=False, attr="x") == (
        "ValidationException", "TimeToLive is already disabled", 400)
    _update(ddb, unique_name, True, "ttl_a")
    # right after the enable (inside the cooldown) the content errors still win
    assert _error(_update, ddb=ddb, name=unique_name, enabled=True, attr="ttl_a") == (
        "ValidationException", "TimeToLive is already enabled", 400)
    assert _error(_update, ddb=ddb, name=unique_name, enabled=True, attr="ttl_b") == (
        "ValidationException", "TimeToLive is active on a different AttributeName: current AttributeName is ttl_a", 400)
    assert _error(_update, ddb=ddb, name=unique_name, enabled=False, attr="ttl_b") == (
        "ValidationException", "TimeToLive is active on a different AttributeName: current AttributeName is ttl_a", 400)
    # a valid change inside the cooldown
    assert _error(_update, ddb=ddb, name=unique_name, enabled=False, attr="ttl_a") == (
        "ValidationException", "Time to live has been modified multiple times within a fixed interval", 400)
    assert ddb.describe_time_to_live(TableName=unique_name)["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED", "AttributeName": "ttl_a"}
    time.sleep(COOLDOWN + 0.2)
    _update(ddb, unique_name, False, "ttl_a")
    # each successful change starts a new cooldown: re-enabling at once is refused
    assert _error(_update, ddb=ddb, name=unique_name, enabled=True, attr="ttl_b") == (
        "ValidationException", "Time to live has been modified multiple times within a fixed interval", 400)
    assert _error(_update, ddb=ddb, name=unique_name, enabled=False, attr="ttl_a") == (
        "ValidationException", "TimeToLive is already disabled", 400)
    time.sleep(COOLDOWN + 0.2)
    # a rename is disable -> cooldown -> enable; TTL on the partition key is accepted too
    _update(ddb, unique_name, True, "pk")
    assert ddb.describe_time_to_live(TableName=unique_name)["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED", "AttributeName": "pk"}


def test_missing_table(server):
    ddb = server.client("dynamodb")
    assert _error(ddb.describe_time_to_live, TableName="no-such-table") == (
        "ResourceNotFoundException", "Requested resource not found: Table: no-such-table not found", 400)
    assert _error(_update, ddb=ddb, name="no-such-table", enabled=True, attr="t") == (
        "ResourceNotFoundException", "Requested resource not found: Table: no-such-table not found", 400)


def test_wire_type_of_errors(server, unique_name):
    ddb = server.client("dynamodb")
    _table(ddb, unique_name)
    resp = signed_request(server.endpoint, "DynamoDB_20120810.UpdateTimeToLive",
                          {"TableName": unique_name, "TimeToLiveSpecification": {"Enabled": False,
                                                                                 "AttributeName": "t"}})
    assert resp.status == 400
    # DynamoDB's validation errors carry Coral's type, its other errors the service's
    assert resp.json() == {"__type": "com.amazon.coral.validate#ValidationException",
                           "message": "TimeToLive is already disabled"}
    resp = signed_request(server.endpoint, "DynamoDB_20120810.DescribeTimeToLive", {"TableName": "absent-table"})
    assert resp.status == 400
    assert resp.json()["__type"] == PREFIX + "ResourceNotFoundException"


@pytest.mark.parametrize("spec, message", [
    ({"Enabled": True},
     "1 validation error detected: Value null at 'timeToLiveSpecification.attributeName' failed to satisfy "
     "constraint: Member must not be null"),
    ({"AttributeName": "t"},
     "1 validation error detected: Value null at 'timeToLiveSpecification.enabled' failed to satisfy constraint: "
     "Member must not be null"),
    ({"Enabled": True, "AttributeName": "x" * 256},
     "1 validation error detected: Value '" + "x" * 256 + "' at 'timeToLiveSpecification.attributeName' failed to "
     "satisfy constraint: Member must have length less than or equal to 255"),
    ({"Enabled": True, "AttributeName": ""},
     "1 validation error detected: Value '' at 'timeToLiveSpecification.attributeName' failed to satisfy "
     "constraint: Member must have length greater than or equal to 1"),
])
def test_shape_errors(server, unique_name, spec, message):
    ddb = server.client("dynamodb", validate=False)
    _table(ddb, unique_name)
    code, text, status = _error(ddb.update_time_to_live, TableName=unique_name, TimeToLiveSpecification=spec)
    assert (code, status) == ("ValidationException", 400)
    assert text == message
    assert ddb.describe_time_to_live(TableName=unique_name)["TimeToLiveDescription"] == {"TimeToLiveStatus": "DISABLED"}


def test_missing_specification(server, unique_name):
    ddb = server.client("dynamodb", validate=False)
    _table(ddb, unique_name)
    code, text, status = _error(ddb.update_time_to_live, TableName=unique_name)
    assert (code, status) == ("ValidationException", 400)
    assert text == ("1 validation error detected: Value null at 'timeToLiveSpecification' failed to satisfy "
                    "constraint: Member must not be null")


def test_aws_cli(server, unique_name, tmp_path):
    aws = shutil.which("aws")
    if aws is None:
        pytest.skip("AWS CLI not installed")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))

    def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run([aws, "--endpoint-url", server.endpoint, "--output", "json", "dynamodb", *args],
                             env=env, capture_output=True, text=True, timeout=60)
        assert (out.returncode == 0) == ok, out.stderr
        return out

    _table(server.client("dynamodb"), unique_name)
    out = cli("update-time-to-live", "--table-name", unique_name, "--time-to-live-specification",
              "Enabled=true,AttributeName=expires")
    assert json.loads(out.stdout) == {"TimeToLiveSpecification": {"Enabled": True, "AttributeName": "expires"}}
    out = cli("describe-time-to-live", "--table-name", unique_name)
    assert json.loads(out.stdout) == {"TimeToLiveDescription": {"TimeToLiveStatus": "ENABLED",
                                                                "AttributeName": "expires"}}
    out = cli("update-time-to-live", "--table-name", unique_name, "--time-to-live-specification",
              "Enabled=true,AttributeName=expires", ok=False)
    assert "(ValidationException) when calling the UpdateTimeToLive operation: TimeToLive is already enabled" in out.stderr


def test_expired_items_are_returned_until_the_sweeper_deletes_them(server, unique_name):
    # this server's sweeper runs once an hour: an expired item stays, and reads return it, as in DynamoDB
    ddb = server.client("dynamodb")
    _table(ddb, unique_name)
    _update(ddb, unique_name, True, "exp")
    item = {"pk": {"S": "old"}, "exp": {"N": str(int(time.time()) - 3600)}}
    ddb.put_item(TableName=unique_name, Item=item)
    assert ddb.get_item(TableName=unique_name, Key={"pk": item["pk"]})["Item"] == item
    assert ddb.query(TableName=unique_name, KeyConditionExpression="pk = :p",
                     ExpressionAttributeValues={":p": item["pk"]})["Items"] == [item]
    assert ddb.scan(TableName=unique_name)["Items"] == [item]
