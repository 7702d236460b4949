"""Hostile input (DESIGN.md invariant 7) for the export and import operations on a server with
``--bucket-dir``: requests generated from botocore's model (as tests/invariants/test_hostile_input.py makes
them) never get a 500, kill the server or hang; and a bucket holding hostile objects fails or skips them."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings

from tests.dynamodb.exports_util import BUCKET, DAY, bucket_root, pitr_table
from tests.invariants.test_hostile_input import _STRATEGIES, Wire, _check

OPERATIONS = ["ExportTableToPointInTime", "DescribeExport", "ListExports", "ImportTable", "DescribeImport",
              "ListImports"]


@pytest.fixture(scope="module")
def hostile(server_factory, tmp_path_factory):
    buckets = bucket_root(tmp_path_factory)
    (buckets / BUCKET / "x").mkdir()
    (buckets / BUCKET / "x" / "d.json").write_bytes(b'{"Item":{"pk":{"S":"a"}}}\n\xff\xfe{{{\n')
    srv = server_factory("exports-hostile", bucket_dir=str(buckets), pitr_day_seconds=DAY)
    out = "".join(srv.stdout_lines)
    key = out.split("aws_access_key_id = ")[1].split()[0]
    secret = out.split("aws_secret_access_key = ")[1].split()[0]
    pitr_table(srv.client("dynamodb", access_key=key, secret=secret), "hostile-export")
    return srv, Wire(srv.endpoint, key, secret)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_generated_requests_never_get_a_500(hostile, operation):
    srv, wire = hostile

    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(_STRATEGIES["dynamodb"].for_operation(operation))
    def run(params):
        body = json.dumps(params).encode()
        status, data = wire.send("dynamodb", operation, body)
        _check(srv, status, data, f"{operation} {body[:500]!r}")

    run()
    assert "Traceback" not in srv.log_text(), srv.log_text()[-3000:]
