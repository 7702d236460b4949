"""Helpers of the export and import tests: a server with a bucket dir, waiting for jobs, reading exports."""

from __future__ import annotations

import gzip
import subprocess
import sys
import time
from pathlib import Path

import orjson

from tests.conftest import make_table

ACCOUNT = "123456789012"
#: one PITR "day" in seconds: 15 minutes (an incremental export's shortest period) is 0.9 s
DAY = 86.4
BUCKET = "exports-bucket"


def bucket_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("buckets")
    (root / BUCKET).mkdir()
    return root


def pitr_table(ddb, name: str, **kwargs) -> str:
    """A table with PITR on and its first base snapshot taken; -> its ARN."""
    arn = make_table(ddb, name, **kwargs)["TableArn"]
    ddb.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification={
        "PointInTimeRecoveryEnabled": True})
    deadline = time.time() + 20
    while time.time() < deadline:  # the first base is copied in the background
        desc = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        if desc["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED":
            break
        time.sleep(0.05)
    return arn


def export(ddb, arn: str, **kw) -> dict:
    """ExportTableToPointInTime, retried while the first base snapshot is copied; -> the final description."""
    kw.setdefault("S3Bucket", BUCKET)
    deadline = time.time() + 20
    while True:
        try:
            d = ddb.export_table_to_point_in_time(TableArn=arn, **kw)["ExportDescription"]
            break
        except ddb.exceptions.PointInTimeRecoveryUnavailableException as err:
            if "being enabled" not in str(err) or time.time() > deadline:
                raise
            time.sleep(0.05)
    return wait_export(ddb, d["ExportArn"])


def wait_export(ddb, arn: str, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while True:
        d = ddb.describe_export(ExportArn=arn)["ExportDescription"]
        if d["ExportStatus"] != "IN_PROGRESS" or time.time() > deadline:
            return d
        time.sleep(0.05)


def wait_import(ddb, arn: str, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while True:
        d = ddb.describe_import(ImportArn=arn)["ImportTableDescription"]
        if d["ImportStatus"] != "IN_PROGRESS" or time.time() > deadline:
            return d
        time.sleep(0.05)


def export_dir(root: Path, desc: dict) -> Path:
    """The export's folder (``<prefix>/AWSDynamoDB/<export id>``) in the bucket dir."""
    return root / desc["S3Bucket"] / desc["ExportManifest"].rsplit("/", 1)[0]


def decrypt(srv, src: Path, dst: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``dynavault export decrypt`` offline, with the server's data dir and root key (or ``extra`` flags)."""
    args = list(extra) or ["--data-dir", str(srv.data_dir), "--root-key-file", str(srv.root_key_file)]
    return subprocess.run([sys.executable, "-m", "dynavault.cli", "export", "decrypt", str(src), str(dst), *args],
                          capture_output=True, text=True, timeout=120, env=env)


def data_lines(folder: Path) -> list[bytes]:
    """Every line of every (plain) data file listed in the folder's manifest-files.json."""
    lines = []
    bucket_root = folder
    for line in (folder / "manifest-files.json").read_bytes().splitlines():
        key = orjson.loads(line)["dataFileS3Key"]
        name = key.split("/data/", 1)[1]
        path = folder / "data" / name
        if not path.exists():  # an incremental export's files are in the shared AWSDynamoDB/data folder
            path = bucket_root.parent / "data" / name
        lines += [x for x in gzip.decompress(path.read_bytes()).splitlines() if x.strip()]
    return lines
