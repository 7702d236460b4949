"""Operations clients call at start-up (issue 17, item 24), through boto3 against a real server: none is
unknown; Contributor Insights flags per table and GSI, resource policies with DynamoDB's validation and
RevisionIds (texts from the ack-api-quirks catalogue and moto's AWS-verified tests; see dynamodb/auxiliary.py),
Kinesis / auto scaling / exports / imports as this server has none of them."""

from __future__ import annotations

import json
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_table
from tests.wire import signed_request

ACCOUNT = "000000000000"  # --allow-any-credentials: the default account
INVALID = "One or more parameter values were invalid: "


def _error(excinfo) -> tuple[str, str]:
    err = excinfo.value.response["Error"]
    return err["Code"], err["Message"]


@pytest.fixture(scope="module")
def ddb(srv):
    return srv.client("dynamodb")


@pytest.fixture(scope="module")
def table(ddb) -> str:
    name = f"startup-{uuid.uuid4().hex[:8]}"
    ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"},
                              {"AttributeName": "g", "AttributeType": "S"}],
        GlobalSecondaryIndexes=[{"IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
    )
    return name


def _arn(table: str) -> str:
    return f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{table}"


OPERATIONS = {
    "DescribeContributorInsights": {"TableName": "t-none"},
    "UpdateContributorInsights": {"TableName": "t-none", "ContributorInsightsAction": "ENABLE"},
    "ListContributorInsights": {},
    "DescribeKinesisStreamingDestination": {"TableName": "t-none"},
    "DescribeTableReplicaAutoScaling": {"TableName": "t-none"},
    "GetResourcePolicy": {"ResourceArn": _arn("t-none")},
    "PutResourcePolicy": {"ResourceArn": _arn("t-none"), "Policy": "{}"},
    "DeleteResourcePolicy": {"ResourceArn": _arn("t-none")},
    "ListExports": {},
    "ListImports": {},
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_no_startup_operation_is_unknown(srv, operation):
    resp = signed_request(srv.endpoint, f"DynamoDB_20120810.{operation}", OPERATIONS[operation])
    assert "UnknownOperationException" not in resp.body.decode(), resp.body
    assert resp.status in (200, 400), resp.body


# --- Contributor Insights ----------------------------------------------------------------------------------------

def test_contributor_insights_flag_per_table_and_index(ddb, table):
    assert ddb.describe_contributor_insights(TableName=table)["ContributorInsightsStatus"] == "DISABLED"
    out = ddb.update_contributor_insights(TableName=table, ContributorInsightsAction="ENABLE")
    out.pop("ResponseMetadata")
    assert out == {"TableName": table, "ContributorInsightsStatus": "ENABLING",
                   "ContributorInsightsMode": "ACCESSED_AND_THROTTLED_KEYS"}
    desc = ddb.describe_contributor_insights(TableName=table)
    assert desc["ContributorInsightsStatus"] == "ENABLED"
    assert desc["ContributorInsightsMode"] == "ACCESSED_AND_THROTTLED_KEYS"
    assert [r.rsplit("-", 1)[0] for r in desc["ContributorInsightsRuleList"]] == [
        f"DynamoDBContributorInsights-{kind}-{table}" for kind in ("PKC", "PKT", "SKC", "SKT")]
    assert "LastUpdateDateTime" in desc
    # the index keeps its own flag
    gsi = ddb.describe_contributor_insights(TableName=table, IndexName="by-g")
    assert (gsi["IndexName"], gsi["ContributorInsightsStatus"]) == ("by-g", "DISABLED")
    out = ddb.update_contributor_insights(TableName=table, IndexName="by-g", ContributorInsightsAction="ENABLE",
                                          ContributorInsightsMode="THROTTLED_KEYS")
    assert (out["IndexName"], out["ContributorInsightsStatus"]) == ("by-g", "ENABLING")
    summaries = ddb.list_contributor_insights(TableName=table)["ContributorInsightsSummaries"]
    assert summaries == [
        {"TableName": table, "ContributorInsightsStatus": "ENABLED",
         "ContributorInsightsMode": "ACCESSED_AND_THROTTLED_KEYS"},
        {"TableName": table, "IndexName": "by-g", "ContributorInsightsStatus": "ENABLED",
         "ContributorInsightsMode": "THROTTLED_KEYS"},
    ]
    out = ddb.update_contributor_insights(TableName=_arn(table), ContributorInsightsAction="DISABLE")
    assert out["ContributorInsightsStatus"] == "DISABLING"
    assert ddb.describe_contributor_insights(TableName=table)["ContributorInsightsStatus"] == "DISABLED"
    assert ddb.describe_contributor_insights(TableName=table, IndexName="by-g")["ContributorInsightsStatus"] == \
        "ENABLED"


def test_contributor_insights_errors(ddb, table):
    with pytest.raises(ClientError) as e:
        ddb.describe_contributor_insights(TableName="no-such-table-ci")
    assert _error(e) == ("ResourceNotFoundException", "Requested resource not found: Table: no-such-table-ci not found")
    with pytest.raises(ClientError) as e:
        ddb.update_contributor_insights(TableName=table, IndexName="nope", ContributorInsightsAction="ENABLE")
    assert _error(e) == ("ResourceNotFoundException",
                         f"Requested resource not found: Index: nope not found for table {table}")


def test_contributor_insights_list_pages(ddb):
    names = sorted(f"cilist-{uuid.uuid4().hex[:6]}-{i}" for i in range(3))
    for name in names:
        make_table(ddb, name)
    seen, token = [], None
    while True:
        kwargs = {"MaxResults": 2}
        if token:
            kwargs["NextToken"] = token
        page = ddb.list_contributor_insights(**kwargs)
        assert len(page["ContributorInsightsSummaries"]) <= 2
        seen += [s["TableName"] for s in page["ContributorInsightsSummaries"]]
        token = page.get("NextToken")
        if not token:
            break
    assert set(names) <= set(seen)


# --- Kinesis, replica auto scaling -------------------------------------------------------------------------------

def test_kinesis_and_replica_auto_scaling_answer_none(ddb, table):
    out = ddb.describe_kinesis_streaming_destination(TableName=table)
    assert (out["TableName"], out["KinesisDataStreamDestinations"]) == (table, [])
    scaling = ddb.describe_table_replica_auto_scaling(TableName=table)["TableAutoScalingDescription"]
    assert scaling == {"TableName": table, "TableStatus": "ACTIVE", "Replicas": []}
    for call in (ddb.describe_kinesis_streaming_destination, ddb.describe_table_replica_auto_scaling):
        with pytest.raises(ClientError) as e:
            call(TableName="no-such-table-k")
        assert _error(e) == ("ResourceNotFoundException", "Requested resource not found: Table: no-such-table-k not found")


# --- resource-based policies -------------------------------------------------------------------------------------

def _policy(action: str = "dynamodb:*", **extra) -> dict:
    statement = {"Sid": "a", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                 "Action": [action], "Resource": "*", **extra}
    return {"Version": "2012-10-17", "Statement": [statement]}


@pytest.fixture
def policy_table(ddb) -> str:
    name = f"policy-{uuid.uuid4().hex[:8]}"
    make_table(ddb, name, StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})
    return name


def test_put_get_delete_resource_policy(ddb, policy_table):
    arn = _arn(policy_table)
    with pytest.raises(ClientError) as e:
        ddb.get_resource_policy(ResourceArn=arn)
    assert _error(e) == ("PolicyNotFoundException", f"Resource-based policy not found for the provided ResourceArn: {arn}")
    pretty = json.dumps(_policy(), indent=4)
    rev1 = ddb.put_resource_policy(ResourceArn=arn, Policy=pretty)["RevisionId"]
    assert len(rev1) == 13 and rev1.isdigit()
    got = ddb.get_resource_policy(ResourceArn=arn)
    assert got["RevisionId"] == rev1
    assert json.loads(got["Policy"]) == _policy()
    assert " " not in got["Policy"]  # whitespace is not kept
    # equivalent documents are the same revision
    assert ddb.put_resource_policy(ResourceArn=arn, Policy=json.dumps(_policy()))["RevisionId"] == rev1
    reordered = {"Statement": [dict(reversed(list(_policy()["Statement"][0].items())))], "Version": "2012-10-17"}
    assert ddb.put_resource_policy(ResourceArn=arn, Policy=json.dumps(reordered))["RevisionId"] == rev1
    as_string = _policy()
    as_string["Statement"][0]["Action"] = "dynamodb:*"
    as_string["Statement"][0]["Principal"] = {"AWS": ACCOUNT}
    assert ddb.put_resource_policy(ResourceArn=arn, Policy=json.dumps(as_string))["RevisionId"] == rev1
    # a different one is a later revision
    rev2 = ddb.put_resource_policy(ResourceArn=arn, Policy=json.dumps(_policy("dynamodb:GetItem")),
                                   ExpectedRevisionId=rev1)["RevisionId"]
    assert rev2 > rev1
    with pytest.raises(ClientError) as e:
        ddb.put_resource_policy(ResourceArn=arn, Policy=json.dumps(_policy("dynamodb:PutItem")), ExpectedRevisionId=rev1)
    assert _error(e) == ("PolicyNotFoundException",
                         f"Resource-based policy not found for the provided ResourceArn: Requested update for policy "
                         f"with revision id {rev1}, but the policy associated to target table {policy_table} has "
                         f"revision id {rev2}.")
    with pytest.raises(ClientError) as e:
        ddb.put_resource_policy(ResourceArn=arn, Policy=json.dumps(_policy()), ExpectedRevisionId="NO_POLICY")
    assert _error(e) == ("PolicyNotFoundException",
                         f"Resource-based policy not found for the provided ResourceArn: Requested policy update "
                         f"expecting none to be present for table {policy_table}, but a policy exists with revision "
                         f"id {rev2}.")
    with pytest.raises(ClientError) as e:
        ddb.delete_resource_policy(ResourceArn=arn, ExpectedRevisionId="unknown")
    assert _error(e) == ("PolicyNotFoundException",
                         f"Resource-based policy not found for the provided ResourceArn: Requested update for policy "
                         f"with revision id unknown, but the policy associated to target table {policy_table} has "
                         f"revision id {rev2}.")
    assert ddb.delete_resource_policy(ResourceArn=arn, ExpectedRevisionId=rev2)["RevisionId"] == rev2
    with pytest.raises(ClientError) as e:
        ddb.get_resource_policy(ResourceArn=arn)
    assert _error(e)[0] == "PolicyNotFoundException"
    rev3 = ddb.put_resource_policy(ResourceArn=arn, Policy=json.dumps(_policy()),
                                   ExpectedRevisionId="NO_POLICY")["RevisionId"]
    assert rev3 > rev2


def test_stream_policy_is_its_own_slot(ddb, policy_table):
    arn = _arn(policy_table)
    stream_arn = ddb.describe_table(TableName=policy_table)["Table"]["LatestStreamArn"]
    rev = ddb.put_resource_policy(ResourceArn=stream_arn, Policy=json.dumps(_policy("dynamodb:GetRecords")))
    assert ddb.get_resource_policy(ResourceArn=stream_arn)["RevisionId"] == rev["RevisionId"]
    with pytest.raises(ClientError) as e:
        ddb.get_resource_policy(ResourceArn=arn)
    assert _error(e) == ("PolicyNotFoundException", f"Resource-based policy not found for the provided ResourceArn: {arn}")
    with pytest.raises(ClientError) as e:
        ddb.get_resource_policy(ResourceArn=f"{arn}/stream/2000-01-01T00:00:00.000")
    assert _error(e) == ("ResourceNotFoundException", "Requested resource not found: Stream: 2000-01-01T00:00:00.000 "
                         f"not found for Table: {policy_table}")


def test_policy_goes_with_its_table(ddb):
    name = f"policy-gone-{uuid.uuid4().hex[:8]}"
    make_table(ddb, name)
    ddb.put_resource_policy(ResourceArn=_arn(name), Policy=json.dumps(_policy()))
    ddb.delete_table(TableName=name)
    make_table(ddb, name)
    with pytest.raises(ClientError) as e:
        ddb.get_resource_policy(ResourceArn=_arn(name))
    assert _error(e)[0] == "PolicyNotFoundException"


@pytest.mark.parametrize("policy,message", [
    ("{not json", INVALID + "Invalid policy document: This policy contains invalid Json"),
    ("", INVALID + "Invalid policy document: This policy contains invalid Json"),
    (json.dumps({"Version": "2012-10-17", "Statement": []}),
     INVALID + "Invalid policy document: Could not parse the policy: Statement is empty!"),
    (json.dumps({"Version": "2012-10-17", "Statement": [
        {k: v for k, v in _policy()["Statement"][0].items() if k != "Resource"}]}),
     INVALID + "Invalid policy document: Missing required field Resource"),
    (json.dumps({"Version": "2012-10-17", "Statement": _policy()["Statement"] * 2}),
     INVALID + "Invalid policy document: The Statement Ids in the policy are not unique"),
    (json.dumps(_policy(Principal="*")),
     "Resource-based policy grants unbounded access in one or more elements. Please revise the policy to ensure "
     "least-privilege form of access"),
    (json.dumps(_policy(Principal={"AWS": "*"})),
     "Resource-based policy grants unbounded access in one or more elements. Please revise the policy to ensure "
     "least-privilege form of access"),
    (json.dumps(_policy()) + " " * 20480, INVALID + "Maximum policy size of 20480 bytes exceeded"),
])
def test_policy_document_validation(ddb, policy_table, policy, message):
    with pytest.raises(ClientError) as e:
        ddb.put_resource_policy(ResourceArn=_arn(policy_table), Policy=policy)
    assert _error(e) == ("ValidationException", message)
    with pytest.raises(ClientError) as e:
        ddb.get_resource_policy(ResourceArn=_arn(policy_table))
    assert _error(e)[0] == "PolicyNotFoundException"  # nothing was stored


def test_resource_arn_forms(ddb, table):
    index_arn = f"{_arn(table)}/index/by-g"
    backup_arn = f"{_arn(table)}/backup/0170"
    cases = [
        (table, "ValidationException", f"{INVALID}ARNs must start with 'arn:': {table}"),
        (_arn("no-such-table-p"), "ResourceNotFoundException", "Requested resource not found: Table: no-such-table-p "
                                                                "not found"),
        (_arn(table).replace(ACCOUNT, "111122223333"), "ValidationException",
         "This action is only supported by accounts that match the resource owner’s account."),
        (_arn(table).replace("us-east-1", "eu-west-1"), "ValidationException",
         f"{INVALID}Invalid resource Arn: {_arn(table).replace('us-east-1', 'eu-west-1')}"),
        (_arn(table).replace("arn:aws:", "arn:aws-cn:"), "ValidationException",
         f"{INVALID}Invalid resource Arn: {_arn(table).replace('arn:aws:', 'arn:aws-cn:')}"),
        (index_arn, "ValidationException", f"{INVALID}Invalid resource arn provided, only table or stream is "
                                           f"accepted. Provided resource arn: {index_arn}"),
        (backup_arn, "ValidationException", f"{INVALID}Provided Arn is not a DynamoDB resource {backup_arn}"),
    ]
    for arn, code, message in cases:
        for call in (lambda a: ddb.get_resource_policy(ResourceArn=a),
                     lambda a: ddb.delete_resource_policy(ResourceArn=a),
                     lambda a: ddb.put_resource_policy(ResourceArn=a, Policy=json.dumps(_policy()))):
            with pytest.raises(ClientError) as e:
                call(arn)
            assert _error(e) == (code, message), arn


# --- exports and imports -----------------------------------------------------------------------------------------

def test_exports_and_imports(ddb, table):
    out = ddb.list_exports()
    assert out["ExportSummaries"] == []
    assert ddb.list_imports()["ImportSummaryList"] == []
    with pytest.raises(ClientError) as e:
        ddb.export_table_to_point_in_time(TableArn=_arn(table), S3Bucket="bucket")
    assert _error(e) == ("ValidationException", "ExportTableToPointInTime is not supported by this server: it reads "
                         "or writes an Amazon S3 bucket, and dynavault has no S3")
    with pytest.raises(ClientError) as e:
        ddb.import_table(S3BucketSource={"S3Bucket": "bucket"}, InputFormat="DYNAMODB_JSON",
                         TableCreationParameters={"TableName": "imported", "BillingMode": "PAY_PER_REQUEST",
                                                  "AttributeDefinitions": [{"AttributeName": "pk",
                                                                            "AttributeType": "S"}],
                                                  "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]})
    assert _error(e) == ("ValidationException", "ImportTable is not supported by this server: it reads or writes an "
                         "Amazon S3 bucket, and dynavault has no S3")
