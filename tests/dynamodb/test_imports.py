"""ImportTable, DescribeImport and ListImports through boto3 against a real server with ``--bucket-dir``: round
trips of exports made here (every format and encryption), a plain AWS export, CSV and compression options,
bad lines counted, the created table's parameters, and DynamoDB's errors."""

from __future__ import annotations

import gzip
import shutil
import time
from pathlib import Path

import pytest
import zstandard

from tests.conftest import aws_error
from tests.dynamodb.exports_util import (
    ACCOUNT,
    BUCKET,
    DAY,
    bucket_root,
    decrypt,
    export,
    export_dir,
    pitr_table,
    wait_import,
)
from tests.dynamodb.test_pitr import ms_client

FIXTURE = Path(__file__).parent.parent / "fixtures" / "aws-export"


@pytest.fixture(scope="module")
def buckets(tmp_path_factory):
    return bucket_root(tmp_path_factory)


@pytest.fixture(scope="module")
def srv(server_factory, buckets):
    return server_factory("imports", allow_any_credentials=True, bucket_dir=str(buckets), pitr_day_seconds=DAY)


@pytest.fixture
def ddb(srv):
    return ms_client(srv, ACCOUNT)


def _params(name: str, hash_type: str = "S", hash_key: str = "pk", **extra) -> dict:
    return {"TableName": name, "KeySchema": [{"AttributeName": hash_key, "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": hash_key, "AttributeType": hash_type}],
            "BillingMode": "PAY_PER_REQUEST", **extra}


def _import(ddb, prefix: str, fmt: str, params: dict, **kw) -> dict:
    d = ddb.import_table(S3BucketSource={"S3Bucket": kw.pop("bucket", BUCKET), "S3KeyPrefix": prefix},
                         InputFormat=fmt, TableCreationParameters=params, **kw)["ImportTableDescription"]
    assert d["ImportStatus"] == "IN_PROGRESS"
    return wait_import(ddb, d["ImportArn"])


def _scan(ddb, name: str) -> list[dict]:
    return sorted(ddb.scan(TableName=name, ConsistentRead=True)["Items"], key=lambda i: repr(i["pk"]))


ITEMS = [{"pk": {"S": f"k{i}"}, "n": {"N": f"{i}.25"}, "b": {"B": bytes([i, 0, 255])}, "ns": {"NS": ["1", "2e3"]},
          "bs": {"BS": [b"\x01"]}, "ss": {"SS": ["a", "quote \" and ' and \\ and \n"]},
          "m": {"M": {"deep": {"L": [{"NULL": True}, {"BOOL": False}, {"M": {"x y": {"S": "ü"}}}]}}},
          "g": {"S": f"group-{i % 2}"}} for i in range(12)]


# -- round trips -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["DYNAMODB_JSON", "ION"])
@pytest.mark.parametrize("alg", ["AES256", "KMS"])
def test_round_trip(srv, ddb, buckets, unique_name, fmt, alg):
    kms = srv.client("kms", access_key=ACCOUNT)
    arn = pitr_table(ddb, unique_name)
    for item in ITEMS:
        ddb.put_item(TableName=unique_name, Item=item)
    sse = {"S3SseAlgorithm": alg}
    if alg == "KMS":
        sse["S3SseKmsKeyId"] = kms.create_key()["KeyMetadata"]["Arn"]
    d = export(ddb, arn, ExportFormat=fmt, S3Prefix=unique_name, **sse)
    assert d["ExportStatus"] == "COMPLETED"
    folder = d["ExportManifest"].rsplit("/", 1)[0]
    target = unique_name + "-in"
    gsi = {"IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
           "Projection": {"ProjectionType": "ALL"}}
    params = _params(target, GlobalSecondaryIndexes=[gsi])
    params["AttributeDefinitions"].append({"AttributeName": "g", "AttributeType": "S"})
    imp = _import(ddb, folder, fmt, params, InputCompressionType="GZIP")
    assert imp["ImportStatus"] == "COMPLETED", imp
    assert (imp["ImportedItemCount"], imp["ErrorCount"], imp["ProcessedItemCount"]) == (12, 0, 12)
    assert _scan(ddb, target) == _scan(ddb, unique_name)
    got = ddb.query(TableName=target, IndexName="by-g", KeyConditionExpression="g = :g",
                    ExpressionAttributeValues={":g": {"S": "group-1"}})["Items"]
    assert len(got) == 6
    assert ddb.describe_table(TableName=target)["Table"]["ItemCount"] == 12


def test_plain_aws_export_imports(srv, ddb, buckets, unique_name):
    """A real export's files, as `aws s3 cp --recursive` gives them (tests/fixtures/aws-export), import."""
    shutil.copytree(FIXTURE / "AWSDynamoDB", buckets / BUCKET / unique_name / "AWSDynamoDB")
    folder = f"{unique_name}/AWSDynamoDB/01700000000000-abcd1234/"
    imp = _import(ddb, folder, "DYNAMODB_JSON", _params(unique_name, "N", "Id"), InputCompressionType="GZIP")
    assert imp["ImportStatus"] == "COMPLETED", imp
    assert (imp["ImportedItemCount"], imp["ErrorCount"]) == (4, 0)
    item = ddb.get_item(TableName=unique_name, Key={"Id": {"N": "201"}})["Item"]
    assert item["Color"] == {"SS": ["Black", "Red"]} or item["Color"] == {"SS": ["Red", "Black"]}
    assert item["Image"] == {"B": b"hello"}
    # the data folder alone imports the same
    again = _import(ddb, folder + "data/", "DYNAMODB_JSON", _params(unique_name + "-2", "N", "Id"),
                    InputCompressionType="GZIP")
    assert again["ImportedItemCount"] == 4


def test_decrypted_export_imports_as_plain_files(srv, ddb, buckets, unique_name, tmp_path):
    """``dynavault export decrypt`` gives files that import as a user's own (AWS-format) files."""
    arn = pitr_table(ddb, unique_name)
    for item in ITEMS[:3]:
        ddb.put_item(TableName=unique_name, Item=item)
    d = export(ddb, arn, S3Prefix=unique_name)
    src = export_dir(buckets, d)
    dst = buckets / BUCKET / (unique_name + "-plain") / src.name
    assert decrypt(srv, src, dst).returncode == 0
    imp = _import(ddb, f"{unique_name}-plain/", "DYNAMODB_JSON", _params(unique_name + "-in"),
                  InputCompressionType="GZIP")
    assert imp["ImportedItemCount"] == 3 and _scan(ddb, unique_name + "-in") == _scan(ddb, unique_name)


# -- formats and options -----------------------------------------------------------------------------------------
def test_csv_import(srv, ddb, buckets, unique_name):
    base = buckets / BUCKET / unique_name
    base.mkdir()
    (base / "a.csv").write_text("pk,name,empty\n1,one,\n2,\"two, quoted\",x\n3,too,many,fields\n")
    imp = _import(ddb, unique_name + "/a", "CSV", _params(unique_name, "N"))
    assert imp["ImportStatus"] == "COMPLETED", imp
    assert (imp["ImportedItemCount"], imp["ErrorCount"]) == (2, 1)
    assert ddb.get_item(TableName=unique_name, Key={"pk": {"N": "2"}})["Item"] == {
        "pk": {"N": "2"}, "name": {"S": "two, quoted"}, "empty": {"S": "x"}}
    assert ddb.get_item(TableName=unique_name, Key={"pk": {"N": "1"}})["Item"] == {
        "pk": {"N": "1"}, "name": {"S": "one"}}
    # a delimiter and a header list of one's own
    (base / "b.psv").write_bytes(gzip.compress(b"x|first\ny|second\n"))
    imp = _import(ddb, unique_name + "/b", "CSV", _params(unique_name + "-b"), InputCompressionType="GZIP",
                  InputFormatOptions={"Csv": {"Delimiter": "|", "HeaderList": ["pk", "v"]}})
    assert imp["ImportedItemCount"] == 2
    assert ddb.get_item(TableName=unique_name + "-b", Key={"pk": {"S": "y"}})["Item"]["v"] == {"S": "second"}


def test_zstd_input(srv, ddb, buckets, unique_name):
    base = buckets / BUCKET / unique_name
    base.mkdir()
    raw = b'{"Item":{"pk":{"S":"z1"}}}\n{"Item":{"pk":{"S":"z2"}}}\n'
    (base / "d.json.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    imp = _import(ddb, unique_name, "DYNAMODB_JSON", _params(unique_name), InputCompressionType="ZSTD")
    assert (imp["ImportStatus"], imp["ImportedItemCount"]) == ("COMPLETED", 2)


def test_bad_lines_are_counted_and_logged_without_their_content(srv, ddb, buckets, unique_name):
    base = buckets / BUCKET / unique_name
    base.mkdir()
    canary = "secret-" + unique_name
    (base / "d.json").write_text("\n".join([
        '{"Item":{"pk":{"S":"good"}}}',
        '{"Item":{"pk":{"S":"' + canary + '"},"x":{"Q":"1"}}}',  # not an attribute value
        'not json ' + canary,
        '{"Item":{"other":{"S":"' + canary + '"}}}',  # no key
        '{"Item":{"pk":{"N":"1"}}}',  # the key of another type
        '{"Items":{"pk":{"S":"' + canary + '"}}}',
    ]) + "\n")
    imp = _import(ddb, unique_name, "DYNAMODB_JSON", _params(unique_name))
    assert (imp["ImportStatus"], imp["ImportedItemCount"], imp["ErrorCount"], imp["ProcessedItemCount"]) == (
        "COMPLETED", 1, 5, 6)
    assert imp["CloudWatchLogGroupArn"] == f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws-dynamodb/imports:*"
    log = srv.log_path.read_text()
    assert f"object {unique_name}/d.json line 3 skipped" in log
    assert canary not in log


def test_created_table_takes_the_creation_parameters(srv, ddb, buckets, unique_name):
    kms = srv.client("kms", access_key=ACCOUNT)
    key = kms.create_key()["KeyMetadata"]
    base = buckets / BUCKET / unique_name
    base.mkdir()
    (base / "d.json").write_text('{"Item":{"pk":{"S":"a"},"g":{"N":"5"}}}\n')
    params = _params(unique_name, BillingMode="PROVISIONED",
                     ProvisionedThroughput={"ReadCapacityUnits": 3, "WriteCapacityUnits": 4},
                     SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key["Arn"]},
                     GlobalSecondaryIndexes=[{"IndexName": "by-g", "KeySchema": [{"AttributeName": "g",
                                                                                  "KeyType": "HASH"}],
                                              "Projection": {"ProjectionType": "KEYS_ONLY"},
                                              "ProvisionedThroughput": {"ReadCapacityUnits": 1,
                                                                        "WriteCapacityUnits": 1}}])
    params["AttributeDefinitions"].append({"AttributeName": "g", "AttributeType": "N"})
    imp = _import(ddb, unique_name, "DYNAMODB_JSON", params)
    assert imp["ImportStatus"] == "COMPLETED"
    table = ddb.describe_table(TableName=unique_name)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["SSEDescription"]["KMSMasterKeyArn"] == key["Arn"]
    assert table["ProvisionedThroughput"]["WriteCapacityUnits"] == 4
    assert table["GlobalSecondaryIndexes"][0]["IndexName"] == "by-g"
    assert table["GlobalSecondaryIndexes"][0]["ItemCount"] == 1


# -- errors ------------------------------------------------------------------------------------------------------
def test_import_errors(srv, ddb, buckets, unique_name):
    base = buckets / BUCKET / unique_name
    base.mkdir()
    (base / "d.json").write_text('{"Item":{"pk":{"S":"a"}}}\n')
    ddb.create_table(**_params(unique_name + "-exists"))
    code, msg, status = aws_error(ddb.import_table, S3BucketSource={"S3Bucket": BUCKET, "S3KeyPrefix": unique_name},
                                  InputFormat="DYNAMODB_JSON", TableCreationParameters=_params(unique_name + "-exists"))
    assert (code, status) == ("ResourceInUseException", 400) and "exists" in msg
    first = _import(ddb, unique_name, "DYNAMODB_JSON", _params(unique_name), ClientToken="imp-1")
    again = ddb.import_table(S3BucketSource={"S3Bucket": BUCKET, "S3KeyPrefix": unique_name},
                             InputFormat="DYNAMODB_JSON", TableCreationParameters=_params(unique_name),
                             ClientToken="imp-1")["ImportTableDescription"]
    assert again["ImportArn"] == first["ImportArn"]
    assert aws_error(ddb.import_table, S3BucketSource={"S3Bucket": BUCKET, "S3KeyPrefix": unique_name},
                     InputFormat="ION", TableCreationParameters=_params(unique_name),
                     ClientToken="imp-1")[0] == "ImportConflictException"
    assert aws_error(ddb.describe_import, ImportArn=first["ImportArn"][:-8] + "00000000")[0] == \
        "ImportNotFoundException"
    assert aws_error(ddb.import_table, S3BucketSource={"S3Bucket": BUCKET, "S3KeyPrefix": "../../etc"},
                     InputFormat="DYNAMODB_JSON", TableCreationParameters=_params(unique_name + "-x"))[0] == \
        "ValidationException"
    # a missing bucket, and a prefix with no object: FAILED, and the table is removed
    for bucket, prefix, failure in (("no-such-bucket", "", "S3NoSuchBucket"), (BUCKET, "nothing/here", "S3NoSuchKey")):
        name = f"{unique_name}-{failure}"
        failed = _import(ddb, prefix, "DYNAMODB_JSON", _params(name), bucket=bucket)
        assert (failed["ImportStatus"], failed["FailureCode"]) == ("FAILED", failure)
        assert aws_error(ddb.describe_table, TableName=name)[0] == "ResourceNotFoundException"


def test_list_imports(srv, ddb, buckets, unique_name):
    other = srv.client("dynamodb", access_key="345678901234")
    base = buckets / BUCKET / unique_name
    base.mkdir()
    (base / "d.json").write_text('{"Item":{"pk":{"S":"a"}}}\n')
    arns = [_import(other, unique_name, "DYNAMODB_JSON", _params(f"{unique_name}-{i}"))["ImportArn"]
            for i in range(3)]
    seen, token = [], None
    while True:
        page = other.list_imports(PageSize=2, **({"NextToken": token} if token else {}))
        seen += page["ImportSummaryList"]
        token = page.get("NextToken")
        if not token:
            break
    assert [s["ImportArn"] for s in seen] == arns
    assert all(s["ImportStatus"] == "COMPLETED" and s["InputFormat"] == "DYNAMODB_JSON" for s in seen)
    one = other.list_imports(TableArn=seen[1]["TableArn"])["ImportSummaryList"]
    assert [s["ImportArn"] for s in one] == [arns[1]]
    assert ddb.list_imports(TableArn=seen[1]["TableArn"])["ImportSummaryList"] == []


def test_import_of_many_items(srv, ddb, buckets, unique_name):
    """Throughput of a plain import (numbers in the report): 20 000 items."""
    base = buckets / BUCKET / unique_name
    base.mkdir()
    n = 20_000
    body = b"".join(b'{"Item":{"pk":{"S":"k%d"},"v":{"N":"%d"}}}\n' % (i, i) for i in range(n))
    (base / "d.json.gz").write_bytes(gzip.compress(body))
    started = time.monotonic()
    imp = _import(ddb, unique_name, "DYNAMODB_JSON", _params(unique_name), InputCompressionType="GZIP")
    took = time.monotonic() - started
    assert imp["ImportedItemCount"] == n
    print(f"import of {n} items: {took:.2f} s")


def test_export_and_import_with_workers(start_server, tmp_path_factory):
    """With --workers 2 the job runs in the process that took the request; every process answers Describe*
    (the descriptions are store rows), and a reused ClientToken is found whichever process gets it."""
    buckets = bucket_root(tmp_path_factory)
    srv = start_server(allow_any_credentials=True, workers=2, bucket_dir=str(buckets), pitr_day_seconds=DAY)
    clients = [ms_client(srv, ACCOUNT) for _ in range(4)]  # connections spread over the workers
    ddb = clients[0]
    arn = pitr_table(ddb, "workers-source")
    for i in range(50):
        clients[i % 4].put_item(TableName="workers-source", Item={"pk": {"S": f"k{i}"}})
    d = export(ddb, arn, ClientToken="workers-token")
    assert (d["ExportStatus"], d["ItemCount"]) == ("COMPLETED", 50)
    for c in clients:
        assert c.describe_export(ExportArn=d["ExportArn"])["ExportDescription"]["ExportStatus"] == "COMPLETED"
        again = c.export_table_to_point_in_time(TableArn=arn, S3Bucket=BUCKET, ClientToken="workers-token")
        assert again["ExportDescription"]["ExportArn"] == d["ExportArn"]
    imp = _import(clients[1], d["ExportManifest"].rsplit("/", 1)[0], "DYNAMODB_JSON", _params("workers-copy"),
                  InputCompressionType="GZIP")
    assert (imp["ImportStatus"], imp["ImportedItemCount"]) == ("COMPLETED", 50)
    for c in clients:
        assert c.scan(TableName="workers-copy", Select="COUNT")["Count"] == 50
        assert [s["ImportArn"] for s in c.list_imports()["ImportSummaryList"]] == [imp["ImportArn"]]


def test_an_import_cut_by_a_crash_is_failed_at_the_next_start(start_server, tmp_path_factory):
    buckets = bucket_root(tmp_path_factory)
    srv = start_server(allow_any_credentials=True, bucket_dir=str(buckets))
    ddb = ms_client(srv, ACCOUNT)
    (buckets / BUCKET / "big").mkdir()
    body = b"".join(b'{"Item":{"pk":{"S":"k%d"}}}\n' % i for i in range(60_000))
    (buckets / BUCKET / "big" / "d.json.gz").write_bytes(gzip.compress(body))
    d = ddb.import_table(S3BucketSource={"S3Bucket": BUCKET, "S3KeyPrefix": "big"}, InputFormat="DYNAMODB_JSON",
                         InputCompressionType="GZIP", TableCreationParameters=_params("cut"))["ImportTableDescription"]
    time.sleep(0.5)
    srv.kill()
    srv.start()
    ddb = ms_client(srv, ACCOUNT)
    after = ddb.describe_import(ImportArn=d["ImportArn"])["ImportTableDescription"]
    assert (after["ImportStatus"], after["FailureCode"]) == ("FAILED", "UNKNOWN"), after
    assert aws_error(ddb.describe_table, TableName="cut")[0] == "ResourceNotFoundException"
    # the name is free again
    (buckets / BUCKET / "small").mkdir()
    (buckets / BUCKET / "small" / "d.json").write_text('{"Item":{"pk":{"S":"a"}}}\n')
    again = _import(ddb, "small", "DYNAMODB_JSON", _params("cut"))
    assert again["ImportStatus"] == "COMPLETED"


def test_hostile_objects_are_errors_not_crashes(srv, ddb, buckets, unique_name):
    """A gzip bomb (over 256 MB decompressed), a truncated gzip file and a non-gzip file are each one error;
    the other objects import."""
    base = buckets / BUCKET / unique_name
    base.mkdir()
    import zlib

    bomb = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * (1 << 20)
    data = b"".join(bomb.compress(zeros) for _ in range(300)) + bomb.flush()
    (base / "a-bomb.gz").write_bytes(data)
    (base / "b-truncated.gz").write_bytes(gzip.compress(b'{"Item":{"pk":{"S":"t"}}}\n')[:-6])
    (base / "c-plain.json").write_bytes(b'{"Item":{"pk":{"S":"p"}}}\n')
    (base / "d-good.gz").write_bytes(gzip.compress(b'{"Item":{"pk":{"S":"g"}}}\n'))
    imp = _import(ddb, unique_name, "DYNAMODB_JSON", _params(unique_name), InputCompressionType="GZIP")
    assert (imp["ImportStatus"], imp["ImportedItemCount"], imp["ErrorCount"]) == ("COMPLETED", 1, 3), imp
    assert ddb.get_item(TableName=unique_name, Key={"pk": {"S": "g"}})["Item"]
    assert ddb.list_tables()  # the server is fine


@pytest.mark.parametrize("compression,pack", [("ZSTD", lambda b: zstandard.ZstdCompressor().compress(b)),
                                              ("GZIP", gzip.compress)])
def test_a_compression_bomb_stops_at_the_limit(compression, pack):
    from dynavault.dynamodb.exports.formats import LineError, decompress

    bomb = pack(b"\0" * 20_000_000)
    assert len(bomb) < 100_000
    with pytest.raises(LineError, match="too large"):
        decompress(bomb, compression, limit=1_000_000)
    with pytest.raises(LineError, match="not ZSTD|not GZIP"):
        decompress(b"garbage" * 10, compression)
