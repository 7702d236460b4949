"""A cluster's parameter group sets the cache TTLs of the listener it is served on (for its account and
region), seen by the official Python client's eventually consistent reads; without a cluster the listener
keeps the server's settings."""

from __future__ import annotations

import time

from tests.conftest import make_table
from tests.dax.conftest import dax_server
from tests.dax.daxclient import free_port

#: the parameter group's record TTL, seconds (long enough for a client's start under load)
TTL = 4
ROLE = "arn:aws:iam::123456789012:role/dax"
READ = '''
out("v", dax.get_item(TableName=TABLE, Key={"pk": {"S": "a"}})["Item"]["v"]["S"])
'''


def test_a_parameter_group_with_a_short_ttl_changes_what_an_eventual_read_sees(server_factory, dax_py, unique_name):
    # the settings' TTLs outlast the test: only the parameter group can make an entry expire
    srv = dax_server(server_factory(group="dax-ttls", dax_port=free_port(), dax_record_ttl_seconds=600,
                                    dax_query_ttl_seconds=600))
    http = srv.http()
    control = srv.srv.client("dax", access_key=srv.key, secret=srv.secret)
    make_table(http, unique_name)
    read = f"TABLE = {unique_name!r}\n" + READ

    def put(value: str) -> None:
        http.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "v": {"S": value}})

    put("one")
    assert srv.run(dax_py, read)["v"] == "one"  # cached for the settings' 600 s
    put("two")  # over HTTP: DAX does not see it until the entry expires
    time.sleep(TTL + 0.5)
    assert srv.run(dax_py, read)["v"] == "one"

    control.create_parameter_group(ParameterGroupName="short")
    control.update_parameter_group(ParameterGroupName="short", ParameterNameValues=[
        {"ParameterName": "record-ttl-millis", "ParameterValue": str(TTL * 1000)}])
    control.create_cluster(ClusterName="ttl", NodeType="dax.t3.small", ReplicationFactor=1, IamRoleArn=ROLE,
                           ParameterGroupName="short")
    # the cluster on this listener now sets the TTL: the entry stored before the sleep is past it
    stored_after = time.monotonic()
    assert srv.run(dax_py, read)["v"] == "two"
    put("three")
    seen = srv.run(dax_py, read)["v"]
    if time.monotonic() - stored_after < TTL:  # on a loaded machine the two client starts can outlast the TTL
        assert seen == "two"  # within the TTL: still the cache's
    else:
        assert seen in ("two", "three")
    time.sleep(TTL + 0.5)
    assert srv.run(dax_py, read)["v"] == "three"

    # with the cluster gone, the settings' TTLs again
    control.delete_cluster(ClusterName="ttl")
    deadline = time.monotonic() + 10
    while control.describe_clusters()["Clusters"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert srv.run(dax_py, read)["v"] == "three"
    put("four")
    time.sleep(TTL + 0.5)
    assert srv.run(dax_py, read)["v"] == "three"
