"""daxs://: the official Python client over TLS to the listener on --dax-tls-port, trusting the server's own CA
(SSL_CERT_FILE, as the server prints at start), and the control plane's TLS cluster naming that listener."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import make_table
from tests.dax.conftest import dax_server
from tests.dax.daxclient import free_port, run_client


def test_the_official_client_reads_and_writes_over_daxs(server_factory, dax_py, unique_name):
    tls_port = free_port()
    srv = server_factory(group="dax-tls", dax_port=free_port(), dax_tls_port=tls_port)
    dax = dax_server(srv)
    assert any(line.startswith(f"dynavault DAX listening on daxs://127.0.0.1:{tls_port}") for line in srv.stdout_lines)
    ca = Path(srv.data_dir) / "dax-tls" / "ca.pem"
    assert ca.exists() and str(ca) in "".join(srv.stdout_lines)
    make_table(dax.http(), unique_name)
    body = f'''
        dax.put_item(TableName={unique_name!r}, Item={{"pk": {{"S": "a"}}, "v": {{"N": "1"}}}})
        out("item", dax.get_item(TableName={unique_name!r}, Key={{"pk": {{"S": "a"}}}}, ConsistentRead=True)["Item"])
    '''
    res = run_client(dax_py, f"daxs://127.0.0.1:{tls_port}", dax.key, dax.secret, body,
                     extra_env={"SSL_CERT_FILE": str(ca)})
    assert res["item"] == {"pk": {"S": "a"}, "v": {"N": "1"}}
    # without trusting the CA the client refuses the server's certificate
    try:
        run_client(dax_py, f"daxs://127.0.0.1:{tls_port}", dax.key, dax.secret, body, timeout=60)
    except AssertionError as failed:
        assert "certificate verif" in str(failed).lower(), str(failed)[-500:]
    else:
        raise AssertionError("an untrusted certificate was accepted")
    control = srv.client("dax", access_key=dax.key, secret=dax.secret)
    cluster = control.create_cluster(ClusterName="tls-one", NodeType="dax.r5.large", ReplicationFactor=1,
                                     IamRoleArn="arn:aws:iam::123456789012:role/dax",
                                     ClusterEndpointEncryptionType="TLS")["Cluster"]
    described = control.describe_clusters(ClusterNames=[cluster["ClusterName"]])["Clusters"][0]
    assert described["ClusterDiscoveryEndpoint"]["URL"] == f"daxs://127.0.0.1:{tls_port}"
