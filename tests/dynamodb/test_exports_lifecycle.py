"""Exports and imports over their lifetime, against real servers with ``--bucket-dir``: a reset forgets their
descriptions (the files stay), two exports of one table to one place at once conflict, a failed export leaves
no data files, and with ``--workers`` a job whose process died is failed promptly by another worker."""

from __future__ import annotations

import gzip
import os
import signal
import time

import boto3
import orjson
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.dynamodb.exports_util import (
    ACCOUNT,
    BUCKET,
    DAY,
    bucket_root,
    export,
    pitr_table,
    wait_export,
    wait_import,
)
from tests.dynamodb.test_pitr import ms_client
from tests.server.test_workers import _wait_workers
from tests.server.test_workers_shared import _call_on_kept_connection
from tests.wire import signed_request


@pytest.fixture
def buckets(tmp_path_factory):
    return bucket_root(tmp_path_factory)


def _import_source(buckets, prefix: str, n: int = 3) -> None:
    folder = buckets / BUCKET / prefix
    folder.mkdir(parents=True)
    (folder / "items.json").write_bytes(b"".join(
        orjson.dumps({"Item": {"pk": {"S": f"i{i}"}}}) + b"\n" for i in range(n)))


def _import(ddb, prefix: str, table: str) -> dict:
    return ddb.import_table(
        S3BucketSource={"S3Bucket": BUCKET, "S3KeyPrefix": prefix}, InputFormat="DYNAMODB_JSON",
        TableCreationParameters={"TableName": table, "BillingMode": "PAY_PER_REQUEST",
                                 "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                                 "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]},
    )["ImportTableDescription"]


def test_reset_forgets_exports_and_imports_but_keeps_their_files(start_server, buckets):
    srv = start_server(allow_any_credentials=True, bucket_dir=str(buckets), pitr_day_seconds=DAY)
    ddb = ms_client(srv, ACCOUNT)
    other = ms_client(srv, "222222222222")
    arn = pitr_table(ddb, "reset-src")
    ddb.put_item(TableName="reset-src", Item={"pk": {"S": "a"}})
    assert export(ddb, arn)["ExportStatus"] == "COMPLETED"
    _import_source(buckets, "seed")
    assert wait_import(ddb, _import(ddb, "seed", "reset-imported")["ImportArn"])["ImportStatus"] == "COMPLETED"
    other_arn = pitr_table(other, "other-src")
    assert export(other, other_arn)["ExportStatus"] == "COMPLETED"
    files = sorted(p for p in buckets.rglob("*") if p.is_file())

    resp = signed_request(srv.endpoint, "DynavaultAdmin.Reset", {}, access_key=ACCOUNT)
    assert resp.status == 200, resp.body

    assert ddb.list_exports()["ExportSummaries"] == []
    assert ddb.list_imports()["ImportSummaryList"] == []
    assert sorted(p for p in buckets.rglob("*") if p.is_file()) == files  # S3 objects outlive a reset
    assert len(other.list_exports()["ExportSummaries"]) == 1  # another account keeps its own


# -- a table large enough that an export of it runs for a while ----------------------------------------------
BIG = 25_000
#: the access key _call_on_kept_connection signs with (the default account): the big table is in its account
KEY = "testing"


@pytest.fixture(scope="module")
def big(server_factory, tmp_path_factory):
    """Two workers over one store, and a PITR table of BIG items filled by an import (one request)."""
    root = bucket_root(tmp_path_factory)
    srv = server_factory("exports-workers", allow_any_credentials=True, bucket_dir=str(root),
                         pitr_day_seconds=DAY, workers=2)
    _wait_workers(srv, 2)
    folder = root / BUCKET / "seed-big"
    folder.mkdir(parents=True)
    (folder / "items.json.gz").write_bytes(gzip.compress(b"".join(
        orjson.dumps({"Item": {"pk": {"S": f"k{i:06d}"}, "v": {"S": "x" * 300}}}) + b"\n" for i in range(BIG))))
    ddb = ms_client(srv, KEY)
    d = ddb.import_table(
        S3BucketSource={"S3Bucket": BUCKET, "S3KeyPrefix": "seed-big/"}, InputFormat="DYNAMODB_JSON",
        InputCompressionType="GZIP",
        TableCreationParameters={"TableName": "big", "BillingMode": "PAY_PER_REQUEST",
                                 "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                                 "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]},
    )["ImportTableDescription"]
    assert wait_import(ddb, d["ImportArn"], timeout=240)["ImportStatus"] == "COMPLETED"
    ddb.update_continuous_backups(TableName="big", PointInTimeRecoverySpecification={
        "PointInTimeRecoveryEnabled": True})
    deadline = time.time() + 120
    while ddb.describe_continuous_backups(TableName="big")["ContinuousBackupsDescription"][
            "PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] != "ENABLED":
        assert time.time() < deadline
        time.sleep(0.1)
    arn = ddb.describe_table(TableName="big")["Table"]["TableArn"]
    return srv, root, arn


def _start_export(ddb, arn: str, **kw) -> dict:
    deadline = time.time() + 60
    while True:
        try:
            return ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=BUCKET, **kw)["ExportDescription"]
        except ddb.exceptions.PointInTimeRecoveryUnavailableException as err:
            if "being enabled" not in str(err) or time.time() > deadline:
                raise
            time.sleep(0.1)


def test_two_exports_of_a_table_to_one_bucket_and_prefix_at_once_conflict(big):
    srv, root, arn = big
    ddb = ms_client(srv, KEY)
    first = _start_export(ddb, arn, S3Prefix="same")
    assert first["ExportStatus"] == "IN_PROGRESS"
    with pytest.raises(ClientError) as err:
        ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=BUCKET, S3Prefix="same")
    if wait_export(ddb, first["ExportArn"], timeout=0)["ExportStatus"] == "COMPLETED":
        pytest.skip("the first export finished before the second request (machine too fast)")
    assert err.value.response["Error"]["Code"] == "ExportConflictException"
    assert err.value.response["Error"]["Message"].startswith(
        "There was a conflict when writing to the specified S3 bucket")
    # another prefix is another place: allowed meanwhile
    other = ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=BUCKET, S3Prefix="elsewhere")
    assert wait_export(ddb, first["ExportArn"], timeout=120)["ExportStatus"] == "COMPLETED"
    assert wait_export(ddb, other["ExportDescription"]["ExportArn"], timeout=120)["ExportStatus"] == "COMPLETED"
    # once the first is done, the same place takes a new export
    again = _start_export(ddb, arn, S3Prefix="same")
    assert wait_export(ddb, again["ExportArn"], timeout=120)["ExportStatus"] == "COMPLETED"


def test_an_export_whose_worker_dies_is_failed_promptly_and_its_data_files_removed(big):
    """kill -9 of the worker writing an export, once it wrote a data file: another worker fails the export
    when the dead one's lease expires (seconds, not the next start), and removes the files it wrote."""
    srv, root, arn = big
    ddb = ms_client(srv, KEY)
    answer, runner = _call_on_kept_connection(srv, "ExportTableToPointInTime", {
        "TableArn": arn, "S3Bucket": BUCKET, "S3Prefix": "killed"})
    export_arn = answer["ExportDescription"]["ExportArn"]
    folder = root / BUCKET / "killed" / "AWSDynamoDB" / export_arn.rsplit("/", 1)[1]
    deadline = time.time() + 60
    while not list((folder / "data").glob("*.json.gz")):
        assert time.time() < deadline, "the export wrote no data file"
        time.sleep(0.005)
    os.kill(runner, signal.SIGKILL)
    killed = time.time()
    # a connection the kernel queued on the killed worker is cut, as clients see when a process dies: retried
    ddb = boto3.client("dynamodb", endpoint_url=srv.endpoint, region_name="us-east-1", aws_access_key_id=KEY,
                       aws_secret_access_key="testing",
                       config=Config(retries={"mode": "standard", "total_max_attempts": 5}))
    if (folder / "manifest-summary.json").exists():
        pytest.skip("the export finished before it could be interrupted (machine too fast)")
    d = wait_export(ddb, export_arn, timeout=60)
    assert d["ExportStatus"] == "FAILED", d
    assert time.time() - killed < 30  # the lease's 5 s and a sweep, not the next start
    assert "stopped" in d["FailureMessage"]
    assert list((folder / "data").glob("*")) == []  # no partial data file is left
    assert not (folder / "manifest-files.json").exists()
    assert (folder / "_started").exists()
    # the table can be exported again there
    again = _start_export(ddb, arn, S3Prefix="killed")
    assert wait_export(ddb, again["ExportArn"], timeout=120)["ExportStatus"] == "COMPLETED"


def test_an_import_whose_worker_dies_is_failed_promptly_and_its_table_removed(big):
    """kill -9 of the worker filling an import: another worker fails it once the dead one's lease expires and
    removes the half-filled table (the supervisor restarts the killed worker; it takes nothing over)."""
    srv, root, _ = big
    _wait_workers(srv, 2)  # the worker an earlier test killed is back
    answer, runner = _call_on_kept_connection(srv, "ImportTable", {
        "S3BucketSource": {"S3Bucket": BUCKET, "S3KeyPrefix": "seed-big/"}, "InputFormat": "DYNAMODB_JSON",
        "InputCompressionType": "GZIP",
        "TableCreationParameters": {"TableName": "killed-import", "BillingMode": "PAY_PER_REQUEST",
                                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                                    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]}})
    os.kill(runner, signal.SIGKILL)
    killed = time.time()
    ddb = boto3.client("dynamodb", endpoint_url=srv.endpoint, region_name="us-east-1", aws_access_key_id=KEY,
                       aws_secret_access_key="testing",
                       config=Config(retries={"mode": "standard", "total_max_attempts": 5}))
    d = wait_import(ddb, answer["ImportTableDescription"]["ImportArn"], timeout=60)
    if d["ImportStatus"] == "COMPLETED":
        pytest.skip("the import finished before it could be interrupted (machine too fast)")
    assert d["ImportStatus"] == "FAILED", d
    assert time.time() - killed < 30
    assert "stopped" in d["FailureMessage"]
    with pytest.raises(ClientError) as err:
        ddb.describe_table(TableName="killed-import")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
