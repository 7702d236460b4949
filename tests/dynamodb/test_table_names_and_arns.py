"""Issue 12 item 10: table ARNs in TableName, every name validated, and log lines no input can forge."""

from __future__ import annotations

import os
import re
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.wire import signed_request

OWNER, OTHER = "111111111111", "222222222222"
PATTERN = "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
SCHEMA = {"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
          "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                   {"AttributeName": "sk", "AttributeType": "S"}],
          "BillingMode": "PAY_PER_REQUEST"}


def _error(call, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    err = info.value.response["Error"]
    return err["Code"], err["Message"]


def _arn(account: str, name: str, region: str = "us-east-1") -> str:
    return f"arn:aws:dynamodb:{region}:{account}:table/{name}"


@pytest.fixture
def owner_table(shared_server, unique_name):
    ddb = shared_server.client("dynamodb", access_key=OWNER)
    arn = ddb.create_table(TableName=unique_name, **SCHEMA)["TableDescription"]["TableArn"]
    assert arn == _arn(OWNER, unique_name)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "sk": {"S": "1"}, "v": {"S": "orig"}})
    return ddb, unique_name, arn


def test_own_table_arn_works_wherever_dynamodb_takes_it(owner_table):
    ddb, name, arn = owner_table
    key = {"pk": {"S": "a"}, "sk": {"S": "1"}}
    assert ddb.describe_table(TableName=arn)["Table"]["TableName"] == name
    assert ddb.get_item(TableName=arn, Key=key)["Item"]["v"] == {"S": "orig"}
    ddb.put_item(TableName=arn, Item={"pk": {"S": "a"}, "sk": {"S": "2"}, "v": {"S": "by-arn"}})
    assert ddb.get_item(TableName=name, Key={"pk": {"S": "a"}, "sk": {"S": "2"}})["Item"]["v"] == {"S": "by-arn"}
    got = ddb.query(TableName=arn, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}})
    assert [i["sk"]["S"] for i in got["Items"]] == ["1", "2"]
    assert ddb.scan(TableName=arn)["Count"] == 2
    ddb.update_item(TableName=arn, Key=key, UpdateExpression="SET v = :v",
                    ExpressionAttributeValues={":v": {"S": "updated"}})
    batch = ddb.batch_get_item(RequestItems={arn: {"Keys": [key]}})
    assert batch["Responses"][name][0]["v"] == {"S": "updated"}
    ddb.batch_write_item(RequestItems={arn: [{"PutRequest": {"Item": {"pk": {"S": "b"}, "sk": {"S": "1"}}}}]})
    ddb.transact_write_items(TransactItems=[{"Put": {"TableName": arn, "Item": {"pk": {"S": "c"}, "sk": {"S": "1"}}}}])
    got = ddb.transact_get_items(TransactItems=[{"Get": {"TableName": arn, "Key": {"pk": {"S": "c"}, "sk": {"S": "1"}}}}])
    assert got["Responses"][0]["Item"]["pk"] == {"S": "c"}
    ddb.delete_item(TableName=arn, Key={"pk": {"S": "b"}, "sk": {"S": "1"}})
    assert ddb.update_table(TableName=arn, DeletionProtectionEnabled=False)["TableDescription"]["TableName"] == name
    assert ddb.list_tags_of_resource(ResourceArn=arn)["Tags"] == []
    assert ddb.delete_table(TableName=arn)["TableDescription"]["TableName"] == name


def test_create_table_with_own_arn_creates_the_named_table(shared_server, unique_name):
    ddb = shared_server.client("dynamodb", access_key=OWNER)
    desc = ddb.create_table(TableName=_arn(OWNER, unique_name), **SCHEMA)["TableDescription"]
    assert desc["TableName"] == unique_name and desc["TableArn"] == _arn(OWNER, unique_name)
    assert unique_name in ddb.list_tables(Limit=100)["TableNames"]
    assert not [n for n in ddb.list_tables(Limit=100)["TableNames"] if n.startswith("arn:")]


def test_another_accounts_arn_is_refused(shared_server, owner_table):
    _, name, arn = owner_table
    other = shared_server.client("dynamodb", access_key=OTHER)
    key = {"pk": {"S": "a"}, "sk": {"S": "1"}}
    denied = (f"User: arn:aws:iam::{OTHER}:user/{OTHER} is not authorized to perform: dynamodb:GetItem on "
              f"resource: {arn} because no resource-based policy allows the dynamodb:GetItem action")
    assert _error(other.get_item, TableName=arn, Key=key) == ("AccessDeniedException", denied)
    calls = [
        (other.put_item, {"TableName": arn, "Item": {**key, "v": {"S": "stolen"}}}),
        (other.describe_table, {"TableName": arn}),
        (other.delete_table, {"TableName": arn}),
        (other.create_table, {"TableName": arn, **SCHEMA}),
        (other.batch_write_item, {"RequestItems": {arn: [{"DeleteRequest": {"Key": key}}]}}),
        (other.transact_write_items, {"TransactItems": [{"Delete": {"TableName": arn, "Key": key}}]}),
        (other.tag_resource, {"ResourceArn": arn, "Tags": [{"Key": "k", "Value": "v"}]}),
    ]
    for call, kwargs in calls:
        code, message = _error(call, **kwargs)
        assert code == "AccessDeniedException", (call, message)
        assert "because no resource-based policy allows" in message
    # the owner's table is untouched, and the other account got no table of that name
    owner = shared_server.client("dynamodb", access_key=OWNER)
    assert owner.get_item(TableName=name, Key=key)["Item"]["v"] == {"S": "orig"}
    assert owner.list_tags_of_resource(ResourceArn=arn)["Tags"] == []
    assert name not in other.list_tables(Limit=100)["TableNames"]


def test_other_region_and_index_arns_are_not_table_arns(shared_server, owner_table):
    ddb, name, arn = owner_table
    for value in (_arn(OWNER, name, "eu-west-1"), arn + "/index/gsi1", arn + "/stream/2024-01-01T00:00:00.000"):
        assert _error(ddb.describe_table, TableName=value) == (
            "ValidationException", f"Invalid TableArn: Invalid ResourceArn provided as input {value}")


HOSTILE = [
    "arn:/../../x",
    "arn:aws:dynamodb:us-east-1:111111111111:table/ok\nINFO forged-by-name",
    "arn:" + "x" * 1000 + "\x00" + "y" * 19,  # 1,024 characters with a NUL
    "arn:" + "n" * 1000 + "\nWARNING forged" + "z" * 5,
    "arn:aws:dynamodb:us-east-1:111111111111:table/abc\u202egpj.exe",
    "plain\nINFO forged-plain",
    "tbl\u202eexe.txt",
]


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_names_refused_with_dynamodbs_text(shared_server, name):
    account = f"3{uuid.uuid4().int % 10**11:011d}"  # an account of its own: ListTables must stay empty
    ddb = shared_server.client("dynamodb", access_key=account, validate=False)
    code, message = _error(ddb.create_table, TableName=name, **SCHEMA)
    assert code == "ValidationException"
    violation = f"Value '{name}' at 'tableName' failed to satisfy constraint: "
    if len(name) <= 255:
        assert message == "1 validation error detected: " + violation + PATTERN
    else:
        assert message == ("2 validation errors detected: " + violation + PATTERN + "; " + violation
                           + "Member must have length less than or equal to 255")
    for call, kwargs in [(ddb.describe_table, {"TableName": name}),
                         (ddb.get_item, {"TableName": name, "Key": {"pk": {"S": "a"}, "sk": {"S": "1"}}}),
                         (ddb.batch_get_item, {"RequestItems": {name: {"Keys": [{"pk": {"S": "a"}}]}}})]:
        code, message = _error(call, **kwargs)
        assert code == "ValidationException" and PATTERN in message, (call, message)
    assert ddb.list_tables()["TableNames"] == []
    assert "forged" not in "".join(line for line in shared_server.log_text().splitlines()
                                   if not line.startswith(("20", "  | ")))


def test_a_name_with_a_newline_in_a_log_line_stays_one_line(start_server, tmp_path):
    """A path with a newline reaches a log record (the audit failure report names the audit directory)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    data = tmp_path / "data\n2026-01-01 00:00:00,000 CRITICAL dynavault: forged\u2028\u202e"
    srv = start_server(allow_any_credentials=True, data_dir=data)
    srv.client("kms").create_key()
    srv.stop()
    segments = sorted((data / "audit").glob("*/*/events-*.jsonl"))
    segments[-1].unlink()
    segments[-1].symlink_to("/dev/full")
    srv.start()
    srv.client("kms").list_keys()
    # a request whose target carries a C1 control (NEL) and ESC: answered, never a log line of its own
    resp = signed_request(srv.endpoint, "TrentService.ListKeys\x85x\x1b[2J", {}, service="kms",
                          content_type="application/x-amz-json-1.1")
    assert resp.status == 400
    srv.stop()
    lines = srv.log_path.read_text().splitlines()
    reports = [ln for ln in lines if "cannot append an event" in ln]
    assert len(reports) == 1, lines
    assert "data\\n2026-01-01 00:00:00,000 CRITICAL dynavault: forged\\u2028\\u202e" in reports[0]
    assert not [ln for ln in lines if re.match(r"2026-01-01 00:00:00,000 CRITICAL", ln)]
    assert not [ln for ln in lines if "\x1b" in ln or "\x85" in ln or "\u2028" in ln or "\u202e" in ln]
