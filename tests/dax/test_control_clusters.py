"""The DAX control plane's clusters through boto3's ``dax`` client against a real server: CreateCluster,
DescribeClusters, UpdateCluster, Increase/DecreaseReplicationFactor, RebootNode, DeleteCluster, their errors
(exact code, message and status), the discovery endpoint naming this server's dax:// / daxs:// listeners,
signatures, and the audit trail."""

from __future__ import annotations

import socket
import time

import pytest

from tests.conftest import aws_error
from tests.wire import send, signed_request


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DAX_PORT, DAX_TLS_PORT = _free_port(), _free_port()
SERVER_SETTINGS = {"allow_any_credentials": True, "dax_port": DAX_PORT, "dax_tls_port": DAX_TLS_PORT}
ROLE = "arn:aws:iam::123456789012:role/DAXServiceRoleForDynamoDBAccess"


@pytest.fixture
def dax(srv, request):
    # an account of the test's own: clusters of other tests never show up in its DescribeClusters
    account = f"{abs(hash(request.node.nodeid)) % 10**12:012d}"
    return srv.client("dax", access_key=account)


def _create(dax, name: str = "daxcluster", **kwargs) -> dict:
    args = dict(ClusterName=name, NodeType="dax.r4.large", ReplicationFactor=3, IamRoleArn=ROLE)
    args.update(kwargs)
    return dax.create_cluster(**args)["Cluster"]


def test_create_cluster_answers_creating_then_describe_shows_nodes_and_dax_url(dax):
    created = _create(dax, "DaxCluster", SSESpecification={"Enabled": True}, Description="d",
                      Tags=[{"Key": "team", "Value": "db"}])
    assert created["ClusterName"] == "daxcluster"  # stored lowercase, as DAX does
    assert created["Status"] == "creating" and created["ActiveNodes"] == 0 and created["TotalNodes"] == 3
    assert created["ClusterDiscoveryEndpoint"] == {"Port": DAX_PORT}
    assert "Nodes" not in created
    assert created["ClusterArn"].startswith("arn:aws:dax:us-east-1:") and created["ClusterArn"].endswith(
        ":cache/daxcluster")
    assert created["SSEDescription"] == {"Status": "ENABLED"}
    assert created["ClusterEndpointEncryptionType"] == "NONE"
    assert created["ParameterGroup"] == {"ParameterGroupName": "default.dax1.0", "ParameterApplyStatus": "in-sync",
                                         "NodeIdsToReboot": []}
    assert created["SubnetGroup"] == "default" and created["IamRoleArn"] == ROLE and created["Description"] == "d"

    (c,) = dax.describe_clusters()["Clusters"]
    assert c["Status"] == "available" and c["ActiveNodes"] == 3
    assert c["ClusterDiscoveryEndpoint"] == {"Address": "127.0.0.1", "Port": DAX_PORT,
                                             "URL": f"dax://127.0.0.1:{DAX_PORT}"}
    assert [n["NodeId"] for n in c["Nodes"]] == ["daxcluster-a", "daxcluster-b", "daxcluster-c"]
    for node in c["Nodes"]:
        assert node["Endpoint"] == {"Address": "127.0.0.1", "Port": DAX_PORT}
        assert node["NodeStatus"] == "available" and node["ParameterGroupStatus"] == "in-sync"
        assert node["AvailabilityZone"] == "us-east-1a"
    assert dax.describe_clusters(ClusterNames=["DAXCLUSTER"])["Clusters"][0]["ClusterName"] == "daxcluster"


def test_tls_cluster_is_served_on_the_tls_listener_with_daxs_url(dax):
    created = _create(dax, "tlscluster", ClusterEndpointEncryptionType="TLS")
    assert created["ClusterDiscoveryEndpoint"] == {"Port": DAX_TLS_PORT}
    (c,) = dax.describe_clusters(ClusterNames=["tlscluster"])["Clusters"]
    assert c["ClusterEndpointEncryptionType"] == "TLS"
    assert c["ClusterDiscoveryEndpoint"]["URL"] == f"daxs://127.0.0.1:{DAX_TLS_PORT}"
    assert c["SSEDescription"] == {"Status": "DISABLED"}  # SSESpecification left out
    assert {n["Endpoint"]["Port"] for n in c["Nodes"]} == {DAX_TLS_PORT}


def test_cluster_whose_listener_is_not_configured_is_refused(server_factory):
    srv = server_factory(allow_any_credentials=True, dax_port=_free_port())  # no --dax-tls-port
    dax = srv.client("dax", access_key="555555555555")
    code, message, status = aws_error(dax.create_cluster, ClusterName="c1", NodeType="dax.r4.large",
                                      ReplicationFactor=1, IamRoleArn=ROLE, ClusterEndpointEncryptionType="TLS")
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert message == ("This server has no daxs:// listener for a cluster with ClusterEndpointEncryptionType TLS: "
                       "start it with --dax-tls-port PORT.")
    assert dax.describe_clusters()["Clusters"] == []


def test_cluster_name_and_parameter_rules(dax):
    bad_name = ("Cluster ID specified is not a valid identifier. Identifiers must begin with a letter; must contain "
                "only ASCII letters, digits, and hyphens; and must not end with a hyphen or contain two consecutive "
                "hyphens.")
    for name in ("1abc", "ab-", "a--b", "a_b", "a" * 21):
        assert aws_error(_create, dax=dax, name=name) == ("InvalidParameterValueException", bad_name, 400)
    assert aws_error(_create, dax=dax, name="x1", IamRoleArn="role") == (
        "InvalidParameterValueException", "ARNs must start with 'arn:': role", 400)
    assert aws_error(_create, dax=dax, name="x1", IamRoleArn="arn:aws:iam") == (
        "InvalidParameterValueException", "Third colon vendor not found: arn:aws:iam", 400)
    assert aws_error(_create, dax=dax, name="x1", NodeType="m5.large") == (
        "InvalidParameterValueException", "Invalid node type: m5.large", 400)
    assert aws_error(_create, dax=dax, name="x1", ReplicationFactor=0) == (
        "InvalidParameterValueException", "ReplicationFactor must be at least 1.", 400)
    assert aws_error(_create, dax=dax, name="x1", ReplicationFactor=12) == (
        "NodeQuotaForClusterExceededFault", "A cluster may have at most 11 nodes (ReplicationFactor 12).", 400)
    assert aws_error(_create, dax=dax, name="x1", ParameterGroupName="nope") == (
        "ParameterGroupNotFoundFault", "Parameter group nope not found.", 400)
    assert aws_error(_create, dax=dax, name="x1", SubnetGroupName="nope") == (
        "SubnetGroupNotFoundFault", "Subnet group nope not found.", 400)
    assert aws_error(_create, dax=dax, name="x1", Tags=[{"Key": "aws:x", "Value": "y"}]) == (
        "InvalidParameterValueException", "Tag keys starting with 'aws:' are reserved for AWS use.", 400)
    assert dax.describe_clusters()["Clusters"] == []  # nothing refused was made
    _create(dax, "x1")
    assert aws_error(_create, dax=dax, name="X1") == ("ClusterAlreadyExistsFault", "Cluster x1 already exists.", 400)


def test_not_found_errors_and_model_validation(dax, srv):
    assert aws_error(dax.describe_clusters, ClusterNames=["ghost"]) == (
        "ClusterNotFoundFault", "Cluster ghost not found.", 400)
    for call, args in ((dax.delete_cluster, {}), (dax.update_cluster, {}),
                       (dax.increase_replication_factor, {"NewReplicationFactor": 4}),
                       (dax.decrease_replication_factor, {"NewReplicationFactor": 1}),
                       (dax.reboot_node, {"NodeId": "ghost-a"})):
        assert aws_error(call, ClusterName="ghost", **args) == ("ClusterNotFoundFault", "Cluster not found.", 400)
    # the model's rules, checked by the server as for every other front (botocore's own check switched off)
    raw = srv.client("dax", access_key="444444444444", validate=False)
    code, message, status = aws_error(raw.create_cluster, ClusterName="x", NodeType="dax.r4.large",
                                      ReplicationFactor=1)
    assert (code, status) == ("ValidationException", 400)
    assert message == ("1 validation error detected: Value null at 'iamRoleArn' failed to satisfy constraint: "
                       "Member must not be null")
    assert aws_error(raw.describe_clusters, MaxResults=5) == (
        "InvalidParameterValueException", "The value for MaxResults must be between 20 and 100.", 400)


def test_error_body_type_and_unsigned_request_refused(srv):
    r = signed_request(srv.endpoint, "AmazonDAXV3.DescribeClusters", {"ClusterNames": ["ghost"]}, service="dax",
                       access_key="666666666666", content_type="application/x-amz-json-1.1")
    assert r.status == 400
    # DAX's namespaces (an early generated @aws-sdk/client-dax lists them): its faults elmo.admin#, its two
    # generic exceptions Coral's
    assert r.json() == {"__type": "elmo.admin#ClusterNotFoundFault", "message": "Cluster ghost not found."}
    r = signed_request(srv.endpoint, "AmazonDAXV3.DescribeClusters", {"MaxResults": 1}, service="dax",
                       access_key="666666666666", content_type="application/x-amz-json-1.1")
    assert (r.status, r.json()) == (400, {"__type": "com.amazon.coral.service#InvalidParameterValueException",
                                          "message": "The value for MaxResults must be between 20 and 100."})
    assert r.headers["content-type"] == "application/x-amz-json-1.1"
    unsigned = send(srv.endpoint, b"{}", {"Content-Type": "application/x-amz-json-1.1",
                                           "X-Amz-Target": "AmazonDAXV3.DescribeClusters"})
    assert unsigned.status == 400 and unsigned.json()["__type"].endswith("MissingAuthenticationTokenException")
    # signed for another service: the credential scope must name dax
    wrong = signed_request(srv.endpoint, "AmazonDAXV3.DescribeClusters", {}, service="dynamodb",
                           content_type="application/x-amz-json-1.1")
    assert wrong.status in (400, 403) and "Signature" in wrong.json()["__type"] + wrong.json().get("message", "")


def test_update_increase_decrease_reboot_delete(dax):
    _create(dax, "c2", ReplicationFactor=2)
    dax.create_parameter_group(ParameterGroupName="fast")
    up = dax.update_cluster(ClusterName="c2", Description="new", ParameterGroupName="fast",
                            PreferredMaintenanceWindow="mon:01:00-mon:02:00",
                            NotificationTopicArn="arn:aws:sns:us-east-1:123456789012:t")["Cluster"]
    assert up["Description"] == "new" and up["ParameterGroup"]["ParameterGroupName"] == "fast"
    assert up["PreferredMaintenanceWindow"] == "mon:01:00-mon:02:00"
    assert up["NotificationConfiguration"] == {"TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
                                               "TopicStatus": "active"}
    assert aws_error(dax.update_cluster, ClusterName="c2", ParameterGroupName="nope") == (
        "ParameterGroupNotFoundFault", "Parameter group nope not found.", 400)

    inc = dax.increase_replication_factor(ClusterName="c2", NewReplicationFactor=4)["Cluster"]
    assert [n["NodeId"] for n in inc["Nodes"]] == ["c2-a", "c2-b", "c2-c", "c2-d"] and inc["TotalNodes"] == 4
    assert aws_error(dax.increase_replication_factor, ClusterName="c2", NewReplicationFactor=4) == (
        "InvalidParameterValueException",
        "NewReplicationFactor 4 must be greater than the current replication factor 4.", 400)
    assert aws_error(dax.increase_replication_factor, ClusterName="c2", NewReplicationFactor=12)[0] == \
        "NodeQuotaForClusterExceededFault"
    assert aws_error(dax.decrease_replication_factor, ClusterName="c2", NewReplicationFactor=2,
                     NodeIdsToRemove=["c2-z", "c2-a"]) == ("NodeNotFoundFault", "Node c2-z not found.", 400)
    dec = dax.decrease_replication_factor(ClusterName="c2", NewReplicationFactor=2,
                                          NodeIdsToRemove=["c2-a", "c2-c"])["Cluster"]
    assert [n["NodeId"] for n in dec["Nodes"]] == ["c2-b", "c2-d"]
    dec = dax.decrease_replication_factor(ClusterName="c2", NewReplicationFactor=1)["Cluster"]
    assert [n["NodeId"] for n in dec["Nodes"]] == ["c2-b"]
    assert aws_error(dax.decrease_replication_factor, ClusterName="c2", NewReplicationFactor=1)[0] == \
        "InvalidParameterValueException"

    rebooted = dax.reboot_node(ClusterName="c2", NodeId="c2-b")["Cluster"]
    assert rebooted["Nodes"][0]["NodeId"] == "c2-b"
    assert aws_error(dax.reboot_node, ClusterName="c2", NodeId="c2-a") == (
        "NodeNotFoundFault", "Node c2-a not found.", 400)

    gone = dax.delete_cluster(ClusterName="c2")["Cluster"]
    assert gone["Status"] == "deleting" and "Nodes" not in gone
    assert aws_error(dax.describe_clusters, ClusterNames=["c2"]) == ("ClusterNotFoundFault",
                                                                     "Cluster c2 not found.", 400)
    assert aws_error(dax.delete_cluster, ClusterName="c2") == ("ClusterNotFoundFault", "Cluster not found.", 400)
    _create(dax, "c2", ReplicationFactor=1)  # the name is free again
    messages = [e["Message"] for e in dax.describe_events(SourceName="c2")["Events"]]
    assert messages[:2] == ["Cluster created.", "Cluster deleted."]
    assert {"Added node c2-c.", "Added node c2-d.", "Removed node c2-a.", "Removed node c2-c.",
            "Removed node c2-d.", "Rebooting node c2-b."} <= set(messages)


def test_transitions_take_the_configured_time(server_factory):
    srv = server_factory(allow_any_credentials=True, dax_port=_free_port(), dax_cluster_seconds=1.5)
    dax = srv.client("dax", access_key="777777777777")
    _create(dax, "slow", ReplicationFactor=1)
    (c,) = dax.describe_clusters()["Clusters"]
    assert c["Status"] == "creating" and "Nodes" not in c
    assert aws_error(dax.increase_replication_factor, ClusterName="slow", NewReplicationFactor=2) == (
        "InvalidClusterStateFault", "Cluster slow is creating: it must be available for this request.", 400)
    time.sleep(1.6)
    assert dax.describe_clusters()["Clusters"][0]["Status"] == "available"
    inc = dax.increase_replication_factor(ClusterName="slow", NewReplicationFactor=2)["Cluster"]
    assert inc["Status"] == "modifying"
    assert inc["Nodes"][1] == {"NodeId": "slow-b", "NodeStatus": "creating"}  # no endpoint until ready
    assert inc["ActiveNodes"] == 1
    time.sleep(1.6)
    assert dax.update_cluster(ClusterName="slow", Description="x")["Cluster"]["Status"] == "modifying"
    assert aws_error(dax.reboot_node, ClusterName="slow", NodeId="slow-a")[0] == "InvalidClusterStateFault"
    time.sleep(1.6)
    assert dax.reboot_node(ClusterName="slow", NodeId="slow-a")["Cluster"]["Nodes"][0]["NodeStatus"] == "rebooting"
    deleting = dax.delete_cluster(ClusterName="slow")["Cluster"]
    assert deleting["Status"] == "deleting"
    assert dax.describe_clusters()["Clusters"][0]["Status"] == "deleting"
    assert aws_error(dax.delete_cluster, ClusterName="slow") == (
        "InvalidClusterStateFault", "Cluster slow is already being deleted.", 400)
    assert aws_error(_create, dax=dax, name="slow")[0] == "ClusterAlreadyExistsFault"
    time.sleep(1.6)
    assert dax.describe_clusters()["Clusters"] == []


def test_clusters_are_per_account_and_region(srv):
    one = srv.client("dax", access_key="111111111111")
    _create(one, "mine", ReplicationFactor=1)
    other = srv.client("dax", access_key="222222222222")
    assert other.describe_clusters()["Clusters"] == []
    assert srv.client("dax", access_key="111111111111", region="eu-west-1").describe_clusters()["Clusters"] == []
    _create(other, "mine", ReplicationFactor=1)  # the same name in another account is another cluster
    arn = one.describe_clusters()["Clusters"][0]["ClusterArn"]
    assert aws_error(other.list_tags, ResourceName=arn) == ("ClusterNotFoundFault", "Cluster not found.", 400)


def test_calls_appear_in_the_audit_trail(srv):
    dax = srv.client("dax", access_key="333333333333")
    _create(dax, "audited", ReplicationFactor=1)
    aws_error(_create, dax=dax, name="audited")
    dax.describe_clusters()
    events = srv.client("cloudtrail", access_key="333333333333").lookup_events(
        LookupAttributes=[{"AttributeKey": "EventSource", "AttributeValue": "dax.amazonaws.com"}])["Events"]
    names = [(e["EventName"], e["ReadOnly"]) for e in events]
    assert names == [("DescribeClusters", "true"), ("CreateCluster", "false"), ("CreateCluster", "false")]
    import json

    failed, ok = (json.loads(e["CloudTrailEvent"]) for e in events[1:])
    assert failed["errorCode"] == "ClusterAlreadyExistsFault" and failed["responseElements"] is None
    assert ok["responseElements"]["cluster"]["clusterName"] == "audited"
    assert ok["requestParameters"]["clusterName"] == "audited"
    assert ok["resources"] == [{"accountId": "333333333333", "type": "AWS::DAX::Cluster",
                                "ARN": "arn:aws:dax:us-east-1:333333333333:cache/audited"}]
    assert ok["userIdentity"]["accountId"] == "333333333333" and ok["eventSource"] == "dax.amazonaws.com"
