"""Exports and imports over their lifetime, against real servers with ``--bucket-dir``: a reset forgets their
descriptions (the files stay), two exports of one table to one place at once conflict, a failed export leaves
no data files, and with ``--workers`` a job whose process died is failed promptly by another worker."""

from __future__ import annotations

import orjson
import pytest

from tests.dynamodb.exports_util import ACCOUNT, BUCKET, DAY, bucket_root, export, pitr_table, wait_import
from tests.dynamodb.test_pitr import ms_client
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
