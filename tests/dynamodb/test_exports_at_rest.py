"""Exported objects at rest: no item data in plaintext anywhere under the bucket dir (the canary scan, gzip
content included), whatever the format and encryption; a changed byte or a moved object is refused by
``dynavault export decrypt`` and by ImportTable (which then removes its table)."""

from __future__ import annotations

import shutil

import pytest

from tests.canary import scan
from tests.conftest import aws_error
from tests.dynamodb.exports_util import (
    ACCOUNT,
    BUCKET,
    DAY,
    bucket_root,
    data_lines,
    decrypt,
    export,
    export_dir,
    pitr_table,
    wait_import,
)
from tests.dynamodb.test_pitr import ms_client


@pytest.fixture
def setup(start_server, tmp_path_factory):
    buckets = bucket_root(tmp_path_factory)
    srv = start_server(allow_any_credentials=True, bucket_dir=str(buckets), pitr_day_seconds=DAY)
    return srv, ms_client(srv, ACCOUNT), buckets


def _import(ddb, prefix: str, name: str) -> dict:
    d = ddb.import_table(S3BucketSource={"S3Bucket": BUCKET, "S3KeyPrefix": prefix}, InputFormat="DYNAMODB_JSON",
                         InputCompressionType="GZIP", TableCreationParameters={
                             "TableName": name, "BillingMode": "PAY_PER_REQUEST",
                             "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                             "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]})
    return wait_import(ddb, d["ImportTableDescription"]["ImportArn"])


def test_canary_scan_of_the_bucket_dir(setup, tmp_path):
    srv, ddb, buckets = setup
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]["Arn"]
    canaries = ["CANARY-pk-7c1d9e", "CANARY-value-5b2f8a", "CANARY-nested-93e4d1"]
    arn = pitr_table(ddb, "canary-table")
    for i in range(20):
        ddb.put_item(TableName="canary-table", Item={
            "pk": {"S": f"{canaries[0]}-{i}"}, "v": {"S": canaries[1]},
            "m": {"M": {"deep": {"L": [{"S": canaries[2]}]}}}})
    descs = []
    for fmt in ("DYNAMODB_JSON", "ION"):
        for sse in ({"S3SseAlgorithm": "AES256"}, {"S3SseAlgorithm": "KMS", "S3SseKmsKeyId": key}, {}):
            d = export(ddb, arn, ExportFormat=fmt, S3Prefix=f"{fmt}-{sse.get('S3SseAlgorithm', 'default')}", **sse)
            assert d["ExportStatus"] == "COMPLETED" and d["ItemCount"] == 20
            descs.append(d)
    srv.stop()
    assert scan([buckets, srv.data_dir], canaries) == []
    # not blind: the same scan finds every canary in a decrypted copy (the plaintext the user asked for)
    plain = tmp_path / "plain"
    out = decrypt(srv, export_dir(buckets, descs[0]), plain)
    assert out.returncode == 0, out.stderr
    assert {c for c, _ in scan([plain], canaries)} == {repr(c) for c in canaries}
    assert len(data_lines(plain)) == 20


def _data_file(folder):
    return next((folder / "data").iterdir())


@pytest.mark.parametrize("where", ["data", "wrapped key"])
def test_a_flipped_byte_is_refused(setup, tmp_path, where):
    srv, ddb, buckets = setup
    arn = pitr_table(ddb, "tamper-table")
    for i in range(5):
        ddb.put_item(TableName="tamper-table", Item={"pk": {"S": f"k{i}"}})
    d = export(ddb, arn, S3Prefix="orig")
    folder = export_dir(buckets, d)
    victim = _data_file(folder)
    data = bytearray(victim.read_bytes())
    # in the sealed body, or in the KMS ciphertext of the object's data key (its last base64 characters)
    key_end = data.index(b'"', data.index(b'"dataKey":"') + 11)
    if where == "data":
        data[len(data) - 20] ^= 0x01
    else:  # another base64 character: still well formed, a different ciphertext
        at = key_end - 6
        data[at] = ord("A") if data[at] != ord("A") else ord("B")
    victim.write_bytes(bytes(data))
    out = decrypt(srv, folder, tmp_path / "plain")
    assert out.returncode == 1 and "failed authentication" in out.stderr, out.stderr
    assert not (tmp_path / "plain" / "data").exists()
    failed = _import(ddb, folder.relative_to(buckets / BUCKET).as_posix(), "tamper-in")
    assert (failed["ImportStatus"], failed["FailureCode"]) == ("FAILED", "InvalidEncryptedObject")
    assert aws_error(ddb.describe_table, TableName="tamper-in")[0] == "ResourceNotFoundException"


def test_an_object_moved_elsewhere_is_refused(setup, tmp_path):
    srv, ddb, buckets = setup
    arn = pitr_table(ddb, "moved-table")
    ddb.put_item(TableName="moved-table", Item={"pk": {"S": "a"}})
    first = export_dir(buckets, export(ddb, arn, S3Prefix="one"))
    second = export_dir(buckets, export(ddb, arn, S3Prefix="two"))
    # the first export's data file put in place of the second's: intact bytes, wrong place
    shutil.copy(_data_file(first), _data_file(second))
    out = decrypt(srv, second, tmp_path / "plain")
    assert out.returncode == 1 and "sealed for another place" in out.stderr, out.stderr
    failed = _import(ddb, second.relative_to(buckets / BUCKET).as_posix(), "moved-in")
    assert failed["ImportStatus"] == "FAILED"
