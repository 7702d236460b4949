"""DAX parameter groups, subnet groups, tags and events through boto3's ``dax`` client against a real server;
and the TTLs the data plane reads (``ClusterRecords.ttls_for``) over a real store, seen by another process's
records object through the shared change counter."""

from __future__ import annotations

import datetime
import socket

import pytest

from dynavault.caller import Caller
from dynavault.config import Settings
from dynavault.dax.clusters import ClusterRecords, Ttls
from dynavault.dax.control import ControlPlane
from dynavault.storage.kv.sqlite import SqliteKV
from dynavault.storage.signal import ChangeSignal
from tests.conftest import aws_error


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DAX_PORT = _free_port()
SERVER_SETTINGS = {"allow_any_credentials": True, "dax_port": DAX_PORT}
ROLE = "arn:aws:iam::123456789012:role/dax"
PARAMS = {"query-ttl-millis": "Duration in milliseconds for queries to remain cached",
          "record-ttl-millis": "Duration in milliseconds for records to remain valid in cache (Default: 0 = infinite)"}


@pytest.fixture
def dax(srv, request):
    return srv.client("dax", access_key=f"{abs(hash(request.node.nodeid)) % 10**12:012d}")


def _values(params: list[dict]) -> dict[str, str]:
    return {p["ParameterName"]: p["ParameterValue"] for p in params}


def test_default_parameters_and_parameter_group_lifecycle(dax):
    defaults = dax.describe_default_parameters()["Parameters"]
    assert [p["ParameterName"] for p in defaults] == ["query-ttl-millis", "record-ttl-millis"]
    for p in defaults:
        assert p == {"ParameterName": p["ParameterName"], "ParameterType": "DEFAULT", "ParameterValue": "300000",
                     "NodeTypeSpecificValues": [], "Description": PARAMS[p["ParameterName"]], "Source": "user",
                     "DataType": "integer", "AllowedValues": "0-", "IsModifiable": "TRUE", "ChangeType": "IMMEDIATE"}
    assert dax.describe_parameters(ParameterGroupName="default.dax1.0")["Parameters"] == defaults

    made = dax.create_parameter_group(ParameterGroupName="Fast", Description="short TTLs")["ParameterGroup"]
    assert made == {"ParameterGroupName": "fast", "Description": "short TTLs"}
    assert aws_error(dax.create_parameter_group, ParameterGroupName="fast") == (
        "ParameterGroupAlreadyExistsFault", "Parameter group fast already exists.", 400)
    names = [g["ParameterGroupName"] for g in dax.describe_parameter_groups()["ParameterGroups"]]
    assert names == ["default.dax1.0", "fast"]
    assert dax.describe_parameter_groups(ParameterGroupNames=["fast"])["ParameterGroups"] == [made]
    assert aws_error(dax.describe_parameter_groups, ParameterGroupNames=["nope"]) == (
        "ParameterGroupNotFoundFault", "Parameter group nope not found.", 400)

    out = dax.update_parameter_group(ParameterGroupName="fast", ParameterNameValues=[
        {"ParameterName": "record-ttl-millis", "ParameterValue": "1000"}])
    assert out["ParameterGroup"] == made
    assert _values(dax.describe_parameters(ParameterGroupName="fast")["Parameters"]) == {
        "query-ttl-millis": "300000", "record-ttl-millis": "1000"}
    assert dax.describe_parameters(ParameterGroupName="fast", Source="system")["Parameters"] == []
    for pairs, message in (
        ([{"ParameterName": "ttl", "ParameterValue": "1"}],
         "Unknown parameter: ttl. Supported parameters: query-ttl-millis, record-ttl-millis."),
        ([{"ParameterName": "query-ttl-millis", "ParameterValue": "-1"}],
         "Invalid value -1 for parameter query-ttl-millis: allowed values are 0-."),
        ([], "ParameterNameValues must name at least one parameter."),
    ):
        assert aws_error(dax.update_parameter_group, ParameterGroupName="fast", ParameterNameValues=pairs) == (
            "InvalidParameterValueException", message, 400)
    assert aws_error(dax.update_parameter_group, ParameterGroupName="default.dax1.0", ParameterNameValues=[
        {"ParameterName": "query-ttl-millis", "ParameterValue": "1"}]) == (
        "InvalidParameterGroupStateFault", "The default parameter group default.dax1.0 cannot be modified or deleted.",
        400)
    assert aws_error(dax.describe_parameters, ParameterGroupName="nope") == (
        "ParameterGroupNotFoundFault", "Parameter group nope not found.", 400)

    dax.create_cluster(ClusterName="user", NodeType="dax.t3.small", ReplicationFactor=1, IamRoleArn=ROLE,
                       ParameterGroupName="fast")
    assert aws_error(dax.delete_parameter_group, ParameterGroupName="fast") == (
        "InvalidParameterGroupStateFault", "Parameter group fast is in use by cluster(s): user.", 400)
    dax.delete_cluster(ClusterName="user")
    out = dax.delete_parameter_group(ParameterGroupName="fast")
    assert out["DeletionMessage"] == "Parameter group fast has been deleted."
    assert aws_error(dax.delete_parameter_group, ParameterGroupName="fast") == (
        "ParameterGroupNotFoundFault", "Parameter group fast not found.", 400)


def test_subnet_groups(dax):
    made = dax.create_subnet_group(SubnetGroupName="DaxSubnets", SubnetIds=["subnet-11111111", "subnet-22222222"],
                                   Description="two")["SubnetGroup"]
    assert made["SubnetGroupName"] == "daxsubnets" and made["Description"] == "two"
    assert made["VpcId"].startswith("vpc-")
    assert [(s["SubnetIdentifier"], s["SubnetAvailabilityZone"]) for s in made["Subnets"]] == [
        ("subnet-11111111", "us-east-1a"), ("subnet-22222222", "us-east-1b")]
    assert aws_error(dax.create_subnet_group, SubnetGroupName="daxsubnets", SubnetIds=["subnet-1"]) == (
        "SubnetGroupAlreadyExistsFault", "Subnet group daxsubnets already exists.", 400)
    assert aws_error(dax.create_subnet_group, SubnetGroupName="other", SubnetIds=["sn-1"]) == (
        "InvalidSubnet", "Invalid subnet: sn-1", 400)
    assert dax.describe_subnet_groups()["SubnetGroups"] == [made]
    assert aws_error(dax.describe_subnet_groups, SubnetGroupNames=["nope"]) == (
        "SubnetGroupNotFoundFault", "Subnet group nope not found.", 400)
    updated = dax.update_subnet_group(SubnetGroupName="daxsubnets", SubnetIds=["subnet-33333333"])["SubnetGroup"]
    assert [s["SubnetIdentifier"] for s in updated["Subnets"]] == ["subnet-33333333"]
    assert aws_error(dax.update_subnet_group, SubnetGroupName="nope", Description="x") == (
        "SubnetGroupNotFoundFault", "Subnet group nope not found.", 400)

    c = dax.create_cluster(ClusterName="insubnet", NodeType="dax.r5.large", ReplicationFactor=1, IamRoleArn=ROLE,
                           SubnetGroupName="daxsubnets")["Cluster"]
    assert c["SubnetGroup"] == "daxsubnets"
    assert aws_error(dax.delete_subnet_group, SubnetGroupName="daxsubnets") == (
        "SubnetGroupInUseFault", "Subnet group daxsubnets is in use by cluster(s): insubnet.", 400)
    dax.delete_cluster(ClusterName="insubnet")
    out = dax.delete_subnet_group(SubnetGroupName="daxsubnets")
    assert out["DeletionMessage"] == "Subnet group daxsubnets has been deleted."
    assert dax.describe_subnet_groups()["SubnetGroups"] == []


def test_tags(dax):
    arn = dax.create_cluster(ClusterName="tagged", NodeType="dax.r4.large", ReplicationFactor=1, IamRoleArn=ROLE,
                             Tags=[{"Key": "a", "Value": "1"}])["Cluster"]["ClusterArn"]
    assert dax.list_tags(ResourceName=arn)["Tags"] == [{"Key": "a", "Value": "1"}]
    out = dax.tag_resource(ResourceName=arn, Tags=[{"Key": "a", "Value": "2"}, {"Key": "b", "Value": "3"}])
    assert out["Tags"] == [{"Key": "a", "Value": "2"}, {"Key": "b", "Value": "3"}]
    assert dax.untag_resource(ResourceName=arn, TagKeys=["a"])["Tags"] == [{"Key": "b", "Value": "3"}]
    assert aws_error(dax.untag_resource, ResourceName=arn, TagKeys=["zz"]) == (
        "TagNotFoundFault", "Tag zz not found.", 400)
    assert aws_error(dax.list_tags, ResourceName="tagged") == ("InvalidARNFault", "Invalid ARN: tagged", 400)
    assert aws_error(dax.tag_resource, ResourceName=arn.replace("tagged", "ghost"), Tags=[{"Key": "k"}]) == (
        "ClusterNotFoundFault", "Cluster not found.", 400)
    many = [{"Key": f"k{i}", "Value": "v"} for i in range(50)]
    assert aws_error(dax.tag_resource, ResourceName=arn, Tags=many) == (
        "TagQuotaPerResourceExceeded", "A cluster may have at most 50 tags.", 400)
    assert dax.list_tags(ResourceName=arn)["Tags"] == [{"Key": "b", "Value": "3"}]  # nothing of a refused call


def test_events_filters_window_and_pages(dax):
    for i in range(3):
        dax.create_cluster(ClusterName=f"ev{i}", NodeType="dax.r4.large", ReplicationFactor=1, IamRoleArn=ROLE)
    for i in range(3):
        dax.delete_cluster(ClusterName=f"ev{i}")
    events = dax.describe_events()["Events"]
    assert [(e["SourceName"], e["Message"]) for e in events] == [
        ("ev2", "Cluster deleted."), ("ev1", "Cluster deleted."), ("ev0", "Cluster deleted."),
        ("ev2", "Cluster created."), ("ev1", "Cluster created."), ("ev0", "Cluster created.")]
    assert {e["SourceType"] for e in events} == {"CLUSTER"}
    assert [e["Message"] for e in dax.describe_events(SourceName="ev1", SourceType="CLUSTER")["Events"]] == [
        "Cluster deleted.", "Cluster created."]
    assert dax.describe_events(SourceType="PARAMETER_GROUP")["Events"] == []
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)
    assert dax.describe_events(EndTime=past)["Events"] == []
    assert len(dax.describe_events(Duration=5)["Events"]) == 6
    # pages of 20 over 24 events
    for i in range(20):
        dax.create_parameter_group(ParameterGroupName=f"pg{i:02d}")
    assert aws_error(dax.create_parameter_group, ParameterGroupName="pg20") == (
        "ParameterGroupQuotaExceededFault", "An account may have at most 20 parameter groups per region.", 400)
    for i in range(18):
        dax.create_cluster(ClusterName=f"p{i}", NodeType="dax.r4.large", ReplicationFactor=1, IamRoleArn=ROLE)
    first = dax.describe_events(MaxResults=20)
    second = dax.describe_events(MaxResults=20, NextToken=first["NextToken"])
    assert len(first["Events"]) == 20 and len(second["Events"]) == 4 and "NextToken" not in second
    groups = dax.describe_parameter_groups(MaxResults=20)
    rest = dax.describe_parameter_groups(MaxResults=20, NextToken=groups["NextToken"])
    assert [g["ParameterGroupName"] for g in groups["ParameterGroups"] + rest["ParameterGroups"]] == [
        "default.dax1.0", *(f"pg{i:02d}" for i in range(20))]
    assert "NextToken" not in rest
    assert aws_error(dax.describe_events, NextToken="x") == ("InvalidParameterValueException", "Invalid NextToken.",
                                                             400)


def test_ttls_for_a_listener_follow_the_parameter_group_in_every_process(tmp_path):
    signal_a = ChangeSignal(tmp_path / "changes")
    signal_b = ChangeSignal(tmp_path / "changes")
    store = SqliteKV(tmp_path / "tables.db")
    try:
        here = ClusterRecords(store, dax_port=8111, dax_tls_port=9111, signal=signal_a)
        other = ClusterRecords(store, dax_port=8111, dax_tls_port=9111, signal=signal_b)  # another worker
        plane = ControlPlane(here, Settings(dax_port=8111, dax_tls_port=9111))
        caller = Caller(account="123456789012", region="us-east-1", principal_arn="arn:aws:iam::123456789012:root")
        assert other.ttls_for(8111) == Ttls(300_000, 300_000) and not other.has_cluster(8111)
        plane.create_parameter_group(caller, {"ParameterGroupName": "short"})
        plane.create_cluster(caller, {"ClusterName": "c", "NodeType": "dax.r4.large", "ReplicationFactor": 1,
                                      "IamRoleArn": ROLE, "ParameterGroupName": "short",
                                      "ClusterEndpointEncryptionType": "TLS"})
        assert other.has_cluster(9111, "123456789012", "us-east-1") and not other.has_cluster(8111)
        assert other.ttls_for(9111) == Ttls(300_000, 300_000)
        plane.update_parameter_group(caller, {"ParameterGroupName": "short", "ParameterNameValues": [
            {"ParameterName": "record-ttl-millis", "ParameterValue": "1500"},
            {"ParameterName": "query-ttl-millis", "ParameterValue": "0"}]})
        assert other.ttls_for(9111) == Ttls(1500, 0) == here.ttls_for(9111, "123456789012", "us-east-1")
        assert other.ttls_for(9111, "999999999999") == Ttls()  # another account: DAX's defaults
        assert other.ttls_for(8111) == Ttls()
        plane.delete_cluster(caller, {"ClusterName": "c"})
        assert not other.has_cluster(9111) and other.ttls_for(9111) == Ttls()
    finally:
        store.close()
        signal_a.close()
        signal_b.close()


def test_out_of_range_event_times_are_refused_not_a_500(srv):
    from tests.wire import signed_request

    for body in ({"EndTime": 1e300}, {"StartTime": "-1e300"}, {"EndTime": "Infinity"}):
        r = signed_request(srv.endpoint, "AmazonDAXV3.DescribeEvents", body, service="dax",
                           access_key="888888888888", content_type="application/x-amz-json-1.1")
        member = next(iter(body))
        assert (r.status, r.json()) == (400, {"__type": "com.amazon.coral.service#InvalidParameterValueException",
                                              "message": f"{member} is out of range."}), body
