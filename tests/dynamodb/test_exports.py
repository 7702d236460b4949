"""ExportTableToPointInTime, DescribeExport and ListExports through boto3 against a real server with
``--bucket-dir``: AWS's documented export layout (manifests, file names, item lines), a point in time, the
incremental export, the errors, and the encryption of the exported objects (S3SseAlgorithm KMS and AES256)."""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
import json
import os
import re
import time

import orjson
import pytest
from botocore.exceptions import ClientError

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
    wait_export,
)
from tests.dynamodb.test_pitr import ms_client


@pytest.fixture(scope="module")
def buckets(tmp_path_factory):
    return bucket_root(tmp_path_factory)


@pytest.fixture(scope="module")
def srv(server_factory, buckets):
    return server_factory("exports", allow_any_credentials=True, bucket_dir=str(buckets), pitr_day_seconds=DAY)


@pytest.fixture
def ddb(srv):
    return ms_client(srv, ACCOUNT)


ITEMS = [{"pk": {"S": f"k{i}"}, "n": {"N": str(i)}, "b": {"B": b"\x00\x01"}, "ss": {"SS": ["x", "y"]},
          "m": {"M": {"l": {"L": [{"BOOL": True}, {"NULL": True}, {"N": "1.5"}]}}}} for i in range(7)]


def _put(ddb, name, items):
    for item in items:
        ddb.put_item(TableName=name, Item=item)


def _boto_items(lines: list[bytes]) -> list[dict]:
    """{"Item": ...} lines as boto3 would show the items (binary as bytes)."""
    out = []
    for line in lines:
        item = orjson.loads(line)["Item"]
        out.append(item)
    return out


def _as_wire(item: dict) -> dict:
    """An item as DynamoDB JSON on the wire (binary values base64), as an export line holds it."""
    def conv(v):
        (t, x), = v.items()
        if t == "B":
            return {"B": base64.b64encode(x).decode()}
        if t == "M":
            return {"M": {k: conv(y) for k, y in x.items()}}
        if t == "L":
            return {"L": [conv(y) for y in x]}
        return {t: x}
    return {k: conv(v) for k, v in item.items()}


# -- layout ------------------------------------------------------------------------------------------------------
def test_full_export_layout_matches_aws(srv, ddb, buckets, unique_name, tmp_path):
    arn = pitr_table(ddb, unique_name)
    _put(ddb, unique_name, ITEMS)
    d = export(ddb, arn, S3Prefix="team/exports", S3SseAlgorithm="AES256", ExportFormat="DYNAMODB_JSON")
    assert d["ExportStatus"] == "COMPLETED", d
    export_id = d["ExportArn"].rsplit("/", 1)[1]
    assert re.fullmatch(rf"{re.escape(arn)}/export/\d{{14}}-[0-9a-f]{{8}}", d["ExportArn"])
    assert d["ExportManifest"] == f"team/exports/AWSDynamoDB/{export_id}/manifest-summary.json"
    assert (d["ItemCount"], d["ExportFormat"], d["ExportType"], d["S3SseAlgorithm"]) == (
        7, "DYNAMODB_JSON", "FULL_EXPORT", "AES256")
    assert d["BilledSizeBytes"] > 0 and d["EndTime"] >= d["StartTime"]
    folder = export_dir(buckets, d)
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    data = [n for n in names if n.startswith("data/")]
    assert sorted(set(names) - set(data)) == ["_started", "manifest-files.checksum", "manifest-files.json",
                                              "manifest-summary.checksum", "manifest-summary.json"]
    assert data and all(re.fullmatch(r"data/[a-z2-7]{26}\.json\.gz", n) for n in data)
    assert (folder / "_started").read_bytes() == b""
    summary = json.loads((folder / "manifest-summary.json").read_text())
    assert set(summary) == {"version", "exportArn", "startTime", "endTime", "tableArn", "tableId", "exportTime",
                            "s3Bucket", "s3Prefix", "s3SseAlgorithm", "s3SseKmsKeyId", "manifestFilesS3Key",
                            "billedSizeBytes", "itemCount", "outputFormat"}
    assert summary["version"] == "2020-06-30"
    assert (summary["exportArn"], summary["tableArn"], summary["s3Bucket"], summary["s3Prefix"]) == (
        d["ExportArn"], arn, BUCKET, "team/exports")
    assert (summary["itemCount"], summary["outputFormat"], summary["s3SseAlgorithm"], summary["s3SseKmsKeyId"]) == (
        7, "DYNAMODB_JSON", "AES256", None)
    assert summary["manifestFilesS3Key"] == f"team/exports/AWSDynamoDB/{export_id}/manifest-files.json"
    for field in ("startTime", "endTime", "exportTime"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", summary[field])
    assert (folder / "manifest-summary.checksum").read_text() == hashlib.md5(
        (folder / "manifest-summary.json").read_bytes()).hexdigest()
    files = [json.loads(x) for x in (folder / "manifest-files.json").read_text().splitlines()]
    assert all(set(f) == {"itemCount", "md5Checksum", "etag", "dataFileS3Key"} for f in files)
    assert sum(f["itemCount"] for f in files) == 7
    assert sorted(f["dataFileS3Key"] for f in files) == sorted(f"team/exports/AWSDynamoDB/{export_id}/{n}"
                                                                for n in data)
    # the data files are sealed as S3 would hold them; decrypted they are AWS's plain files
    for n in data:  # an envelope, not a gzip stream
        raw = (folder / n).read_bytes()
        assert raw[:2] != b"\x1f\x8b" and raw.startswith(b"DVS3ENV1")
    plain = tmp_path / "plain"
    out = decrypt(srv, folder, plain)
    assert out.returncode == 0, out.stderr
    lines = data_lines(plain)
    assert all(line.startswith(b'{"Item":{') for line in lines)
    assert sorted(_boto_items(lines), key=lambda i: i["pk"]["S"]) == [_as_wire(i) for i in ITEMS]
    # SRC may be any folder above the export, the bucket dir itself included
    whole = tmp_path / "whole"
    assert decrypt(srv, buckets, whole).returncode == 0
    assert data_lines(whole / BUCKET / d["ExportManifest"].rsplit("/", 1)[0]) == lines
    for f in files:  # the manifest's checksums are those of the plain files
        body = (plain / "data" / f["dataFileS3Key"].rsplit("/", 1)[1]).read_bytes()
        assert f["md5Checksum"] == base64.b64encode(hashlib.md5(body).digest()).decode()
        assert f["etag"] == hashlib.md5(body).hexdigest()


def test_ion_export_lines(srv, ddb, buckets, unique_name, tmp_path):
    arn = pitr_table(ddb, unique_name)
    _put(ddb, unique_name, ITEMS[:2])
    d = export(ddb, arn, ExportFormat="ION")
    assert (d["ExportStatus"], d["ExportFormat"], d["ItemCount"]) == ("COMPLETED", "ION", 2)
    folder = export_dir(buckets, d)
    assert all(re.fullmatch(r"[a-z2-7]{26}\.ion\.gz", p.name) for p in (folder / "data").iterdir())
    assert json.loads((folder / "manifest-summary.json").read_text())["outputFormat"] == "ION"
    plain = tmp_path / "plain"
    assert decrypt(srv, folder, plain).returncode == 0
    (data,) = (plain / "data").iterdir()
    text = gzip.decompress(data.read_bytes()).decode()
    assert text.startswith("$ion_1_0 {Item:{")
    assert '{Item:{pk:"k0",n:0.,b:{{AAE=}},ss:$dynamodb_SS::["x","y"],m:{l:[true,null,1.5]}}}' in text


def test_export_reads_a_point_in_time(srv, ddb, buckets, unique_name, tmp_path):
    arn = pitr_table(ddb, unique_name)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "v": {"S": "before"}})
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "gone"}})
    time.sleep(0.05)
    moment = time.time()
    time.sleep(0.05)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "a"}, "v": {"S": "after"}})
    ddb.delete_item(TableName=unique_name, Key={"pk": {"S": "gone"}})
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "new"}})
    d = export(ddb, arn, ExportTime=datetime.datetime.fromtimestamp(moment, datetime.UTC))
    assert d["ExportStatus"] == "COMPLETED" and d["ItemCount"] == 2
    assert abs(d["ExportTime"].timestamp() - moment) < 0.01
    plain = tmp_path / "plain"
    assert decrypt(srv, export_dir(buckets, d), plain).returncode == 0
    assert sorted(_boto_items(data_lines(plain)), key=lambda i: i["pk"]["S"]) == [
        {"pk": {"S": "a"}, "v": {"S": "before"}}, {"pk": {"S": "gone"}}]
    now = export(ddb, arn)  # no ExportTime: the latest restorable time
    assert now["ItemCount"] == 2
    plain2 = tmp_path / "now"
    assert decrypt(srv, export_dir(buckets, now), plain2).returncode == 0
    assert sorted(_boto_items(data_lines(plain2)), key=lambda i: i["pk"]["S"]) == [
        {"pk": {"S": "a"}, "v": {"S": "after"}}, {"pk": {"S": "new"}}]


def test_incremental_export(srv, ddb, buckets, unique_name, tmp_path):
    arn = pitr_table(ddb, unique_name)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "upd"}, "v": {"N": "1"}})
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "del"}})
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "same"}})
    time.sleep(0.05)
    start = time.time()
    time.sleep(0.05)
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "upd"}, "v": {"N": "2"}})
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "upd"}, "v": {"N": "3"}})
    ddb.delete_item(TableName=unique_name, Key={"pk": {"S": "del"}})
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "ins"}})
    time.sleep(max(0.0, start + 0.95 - time.time()))  # at least 15 minutes of the test's PITR clock
    end = time.time()
    ddb.put_item(TableName=unique_name, Item={"pk": {"S": "later"}})  # after the period: not exported
    spec = {"ExportFromTime": datetime.datetime.fromtimestamp(start, datetime.UTC),
            "ExportToTime": datetime.datetime.fromtimestamp(end, datetime.UTC)}
    d = export(ddb, arn, ExportType="INCREMENTAL_EXPORT", IncrementalExportSpecification=spec)
    assert d["ExportStatus"] == "COMPLETED", d
    assert (d["ExportType"], d["ItemCount"]) == ("INCREMENTAL_EXPORT", 3)
    assert d["IncrementalExportSpecification"]["ExportViewType"] == "NEW_AND_OLD_IMAGES"
    folder = export_dir(buckets, d)
    summary = json.loads((folder / "manifest-summary.json").read_text())
    assert summary["exportType"] == "INCREMENTAL_EXPORT" and summary["outputView"] == "NEW_AND_OLD_IMAGES"
    assert "exportFromTime" in summary and "exportToTime" in summary and "exportTime" not in summary
    # AWS's incremental summary, member for member and in its order (a real one: MacHu-GWU/aws_dynamodb_io-project,
    # tests/test_export_table.py)
    assert (summary["version"], list(summary)) == ("2023-08-01", [
        "version", "exportArn", "startTime", "endTime", "tableArn", "tableId", "exportFromTime", "exportToTime",
        "s3Bucket", "s3Prefix", "s3SseAlgorithm", "s3SseKmsKeyId", "manifestFilesS3Key", "billedSizeBytes",
        "itemCount", "outputFormat", "outputView", "exportType"])
    files = [json.loads(x) for x in (folder / "manifest-files.json").read_text().splitlines()]
    # the data files of incremental exports are in the prefix's shared AWSDynamoDB/data folder
    assert all(re.fullmatch(r"AWSDynamoDB/data/[a-z2-7]{26}\.json\.gz", f["dataFileS3Key"]) for f in files)
    plain = tmp_path / "plain"
    assert decrypt(srv, buckets / BUCKET / "AWSDynamoDB", plain).returncode == 0
    lines = [orjson.loads(x) for x in data_lines(plain / folder.name)]
    by_key = {line["Keys"]["pk"]["S"]: line for line in lines}
    assert set(by_key) == {"upd", "del", "ins"}
    assert by_key["upd"]["NewImage"] == {"pk": {"S": "upd"}, "v": {"N": "3"}}
    assert by_key["upd"]["OldImage"] == {"pk": {"S": "upd"}, "v": {"N": "1"}}
    assert "NewImage" not in by_key["del"] and by_key["del"]["OldImage"] == {"pk": {"S": "del"}}
    assert "OldImage" not in by_key["ins"] and by_key["ins"]["NewImage"] == {"pk": {"S": "ins"}}
    for line in lines:
        micros = int(line["Metadata"]["WriteTimestampMicros"]["N"])
        assert start * 1e6 <= micros < end * 1e6
    new_only = export(ddb, arn, ExportType="INCREMENTAL_EXPORT",
                      IncrementalExportSpecification={**spec, "ExportViewType": "NEW_IMAGE"})
    assert new_only["ExportStatus"] == "COMPLETED" and new_only["ItemCount"] == 3
    ion = export(ddb, arn, ExportType="INCREMENTAL_EXPORT", ExportFormat="ION", IncrementalExportSpecification=spec)
    assert ion["ExportStatus"] == "COMPLETED" and ion["ItemCount"] == 3
    ion_plain = tmp_path / "ion"
    assert decrypt(srv, buckets / BUCKET / "AWSDynamoDB", ion_plain).returncode == 0
    text = b"".join(gzip.decompress(p.read_bytes()) for p in (ion_plain / "data").glob("*.ion.gz")).decode()
    assert '{Metadata:{WriteTimestampMicros:' in text and ',Keys:{pk:"upd"},NewImage:{pk:"upd",v:3.},' \
        'OldImage:{pk:"upd",v:1.}}' in text


# -- errors ------------------------------------------------------------------------------------------------------
def test_export_errors(srv, ddb, unique_name):
    no_pitr = ddb.create_table(TableName=unique_name + "-np", BillingMode="PAY_PER_REQUEST",
                               KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                               AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    code, msg, status = aws_error(ddb.export_table_to_point_in_time,
                                  TableArn=no_pitr["TableDescription"]["TableArn"], S3Bucket=BUCKET)
    assert (code, status) == ("PointInTimeRecoveryUnavailableException", 400)
    assert unique_name + "-np" in msg
    arn = pitr_table(ddb, unique_name)
    future = datetime.datetime.fromtimestamp(time.time() + 3600, datetime.UTC)
    assert aws_error(ddb.export_table_to_point_in_time, TableArn=arn, S3Bucket=BUCKET,
                     ExportTime=future)[0] == "InvalidExportTimeException"
    past = datetime.datetime.fromtimestamp(time.time() - 3600, datetime.UTC)  # before PITR was enabled
    assert aws_error(ddb.export_table_to_point_in_time, TableArn=arn, S3Bucket=BUCKET,
                     ExportTime=past)[0] == "InvalidExportTimeException"
    missing = arn.replace(unique_name, unique_name + "-missing")
    assert aws_error(ddb.export_table_to_point_in_time, TableArn=missing, S3Bucket=BUCKET)[0] == \
        "TableNotFoundException"
    # the same ClientToken: the same export again; with other parameters: ExportConflictException
    first = export(ddb, arn, ClientToken="token-1", S3Prefix="one")
    again = ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=BUCKET, ClientToken="token-1",
                                              S3Prefix="one")["ExportDescription"]
    assert again["ExportArn"] == first["ExportArn"]
    code, _, status = aws_error(ddb.export_table_to_point_in_time, TableArn=arn, S3Bucket=BUCKET,
                                ClientToken="token-1", S3Prefix="two")
    assert (code, status) == ("ExportConflictException", 400)
    moment = datetime.datetime.fromtimestamp(time.time() - 0.01, datetime.UTC)  # a timestamp member repeated
    timed = ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=BUCKET, ClientToken="token-2",
                                              ExportTime=moment)["ExportDescription"]
    assert ddb.export_table_to_point_in_time(TableArn=arn, S3Bucket=BUCKET, ClientToken="token-2",
                                             ExportTime=moment)["ExportDescription"]["ExportArn"] == timed["ExportArn"]
    code, _, _ = aws_error(ddb.describe_export, ExportArn=first["ExportArn"][:-8] + "00000000")
    assert code == "ExportNotFoundException"
    assert aws_error(ddb.export_table_to_point_in_time, TableArn=arn, S3Bucket=BUCKET,
                     S3SseAlgorithm="KMS")[0] == "ValidationException"
    assert aws_error(ddb.export_table_to_point_in_time, TableArn=arn, S3Bucket=BUCKET,
                     S3Prefix="a/../../etc")[0] == "ValidationException"
    # incremental: a period shorter than 15 minutes (0.9 s here), or ExportTime with it
    now = time.time()
    short = {"ExportFromTime": datetime.datetime.fromtimestamp(now - 0.3, datetime.UTC),
             "ExportToTime": datetime.datetime.fromtimestamp(now - 0.1, datetime.UTC)}
    assert aws_error(ddb.export_table_to_point_in_time, TableArn=arn, S3Bucket=BUCKET,
                     ExportType="INCREMENTAL_EXPORT", IncrementalExportSpecification=short)[0] in (
        "ValidationException", "InvalidExportTimeException")


def test_export_to_a_missing_bucket_fails(srv, ddb, buckets, unique_name):
    arn = pitr_table(ddb, unique_name)
    d = export(ddb, arn, S3Bucket="no-such-bucket")
    assert (d["ExportStatus"], d["FailureCode"]) == ("FAILED", "S3NoSuchBucket")
    assert not (buckets / "no-such-bucket").exists()


def test_list_exports(srv, ddb, unique_name):
    arn = pitr_table(ddb, unique_name)
    arns = [export(ddb, arn, S3Prefix=f"p{i}")["ExportArn"] for i in range(3)]
    seen, token = [], None
    while True:
        page = ddb.list_exports(TableArn=arn, MaxResults=2, **({"NextToken": token} if token else {}))
        assert len(page["ExportSummaries"]) <= 2
        seen += page["ExportSummaries"]
        token = page.get("NextToken")
        if not token:
            break
    assert [s["ExportArn"] for s in seen] == arns
    assert all(s["ExportStatus"] == "COMPLETED" and s["ExportType"] == "FULL_EXPORT" for s in seen)
    other = srv.client("dynamodb", access_key="210987654321")  # another account sees none of them
    assert other.list_exports()["ExportSummaries"] == []
    assert aws_error(other.describe_export, ExportArn=arns[0])[0] == "ExportNotFoundException"


# -- encryption --------------------------------------------------------------------------------------------------
def test_kms_export_uses_the_key_and_is_audited(srv, ddb, buckets, unique_name, tmp_path):
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key(Description=unique_name)["KeyMetadata"]
    arn = pitr_table(ddb, unique_name)
    _put(ddb, unique_name, ITEMS[:3])
    d = export(ddb, arn, S3SseAlgorithm="KMS", S3SseKmsKeyId=key["Arn"])
    assert (d["ExportStatus"], d["S3SseAlgorithm"], d["S3SseKmsKeyId"]) == ("COMPLETED", "KMS", key["Arn"])
    folder = export_dir(buckets, d)
    summary = json.loads((folder / "manifest-summary.json").read_text())
    assert (summary["s3SseAlgorithm"], summary["s3SseKmsKeyId"]) == ("KMS", key["Arn"])
    events = [json.loads(e["CloudTrailEvent"]) for e in srv.client("cloudtrail", access_key=ACCOUNT).lookup_events(
        LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": key["Arn"]}])["Events"]]
    gdk = [e for e in events if e["eventName"] == "GenerateDataKey"]
    assert len(gdk) == len(list((folder / "data").iterdir()))  # one data key per object
    assert gdk[0]["requestParameters"]["encryptionContext"]["aws:s3:arn"].startswith(f"arn:aws:s3:::{BUCKET}/")
    assert gdk[0]["userIdentity"].get("invokedBy") == "s3.amazonaws.com"
    # decrypted through the KMS API with the user's credentials
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCOUNT, AWS_SECRET_ACCESS_KEY="testing",
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    out = decrypt(srv, folder, tmp_path / "api", "--endpoint-url", srv.endpoint, "--region", "us-east-1", env=env)
    assert out.returncode == 0, out.stderr
    assert len(data_lines(tmp_path / "api")) == 3
    out = decrypt(srv, folder, tmp_path / "offline")  # or offline, with the data dir and root key
    assert out.returncode == 0, out.stderr
    assert data_lines(tmp_path / "offline") == data_lines(tmp_path / "api")
    # another account cannot: the key is not theirs
    env["AWS_ACCESS_KEY_ID"] = "210987654321"
    out = decrypt(srv, folder, tmp_path / "denied", "--endpoint-url", srv.endpoint, env=env)
    assert out.returncode == 1 and "refused" in out.stderr
    assert not (tmp_path / "denied" / "data").exists()
    # a disabled key: the export fails with KMS's error, no data file written
    kms.disable_key(KeyId=key["KeyId"])
    failed = export(ddb, arn, S3SseAlgorithm="KMS", S3SseKmsKeyId=key["Arn"], S3Prefix="disabled")
    assert failed["ExportStatus"] == "FAILED" and failed["FailureCode"]


def test_aes256_export_is_not_readable_through_the_api(srv, ddb, buckets, unique_name, tmp_path):
    arn = pitr_table(ddb, unique_name)
    _put(ddb, unique_name, ITEMS[:1])
    d = export(ddb, arn)  # no S3SseAlgorithm: AES256 (SSE-S3), as S3 encrypts every new object
    assert d["S3SseAlgorithm"] == "AES256"
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCOUNT, AWS_SECRET_ACCESS_KEY="testing")
    out = decrypt(srv, export_dir(buckets, d), tmp_path / "x", "--endpoint-url", srv.endpoint, env=env)
    assert out.returncode == 1 and "offline" in out.stderr


def test_description_wait_is_bounded(ddb):
    with pytest.raises(ClientError):
        wait_export(ddb, f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/nope/export/01234567890123-abcdef01")


def test_export_of_many_items(srv, ddb, buckets, unique_name, tmp_path):
    """Throughput of an export (numbers in the report): 10^4 items of ~100 bytes, one data file."""
    arn = pitr_table(ddb, unique_name)
    n = 10_000
    for start in range(0, n, 25):
        ddb.batch_write_item(RequestItems={unique_name: [
            {"PutRequest": {"Item": {"pk": {"S": f"k{i:05d}"}, "v": {"S": "x" * 90}}}} for i in range(start, start + 25)]})
    started = time.monotonic()
    d = export(ddb, arn)
    took = time.monotonic() - started
    assert (d["ExportStatus"], d["ItemCount"]) == ("COMPLETED", n)
    folder = export_dir(buckets, d)
    assert len(list((folder / "data").iterdir())) == 1  # 10,000 items per data file
    print(f"export of {n} items: {took:.2f} s to COMPLETED")
