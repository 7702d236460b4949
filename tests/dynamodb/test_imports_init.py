"""``--init DIR`` with export folders: a plain export (AWS's files) seeds the table a seed file creates; an
encrypted export, an incremental one or a table no seed file creates refuse the start with one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.dynamodb.exports_util import (
    ACCOUNT,
    DAY,
    bucket_root,
    export,
    export_dir,
    pitr_table,
)
from tests.dynamodb.test_pitr import ms_client

FIXTURE = Path(__file__).parent.parent / "fixtures" / "aws-export"
CATALOG = {"TableName": "ProductCatalog", "BillingMode": "PAY_PER_REQUEST",
           "KeySchema": [{"AttributeName": "Id", "KeyType": "HASH"}],
           "AttributeDefinitions": [{"AttributeName": "Id", "AttributeType": "N"}]}


def _serve(tmp_path: Path, seed: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dynavault.cli", "serve", "--allow-any-credentials", "--in-memory",
                           "--port", "0", "--init", str(seed), "--root-key-file", str(tmp_path / "root.key")],
                          capture_output=True, text=True, timeout=60)


def test_init_seeds_from_an_aws_export_folder(start_server, tmp_path):
    seed = tmp_path / "seed"
    shutil.copytree(FIXTURE, seed / "product-catalog")
    (seed / "catalog.json").write_text(json.dumps(CATALOG))
    srv = start_server(allow_any_credentials=True, init=seed)
    ddb = srv.client("dynamodb")
    assert ddb.scan(TableName="ProductCatalog", Select="COUNT")["Count"] == 4
    assert ddb.get_item(TableName="ProductCatalog", Key={"Id": {"N": "201"}})["Item"]["Image"] == {"B": b"hello"}
    assert "--init: done" in srv.log_path.read_text() and "1 export(s)" in srv.log_path.read_text()


def test_init_dir_may_be_the_export_folder_itself(start_server, tmp_path):
    seed = tmp_path / "export"
    shutil.copytree(FIXTURE / "AWSDynamoDB" / "01700000000000-abcd1234", seed)
    (seed / "table.json").write_text(json.dumps(CATALOG))
    srv = start_server(allow_any_credentials=True, in_memory=True, init=seed)
    assert srv.client("dynamodb").scan(TableName="ProductCatalog", Select="COUNT")["Count"] == 4


def test_init_from_an_ion_export_made_here_and_decrypted(start_server, tmp_path_factory, tmp_path):
    buckets = bucket_root(tmp_path_factory)
    source = start_server("source", allow_any_credentials=True, bucket_dir=str(buckets), pitr_day_seconds=DAY)
    ddb = ms_client(source, ACCOUNT)
    arn = pitr_table(ddb, "ion-source")
    for i in range(30):
        ddb.put_item(TableName="ion-source", Item={"pk": {"S": f"k{i}"}, "n": {"NS": ["1", "2"]}})
    folder = export_dir(buckets, export(ddb, arn, ExportFormat="ION"))
    seed = tmp_path / "seed"
    table = {"TableName": "ion-source", "BillingMode": "PAY_PER_REQUEST",
             "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
             "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]}
    # still encrypted: refused, with what to do
    shutil.copytree(folder, seed / "export")
    (seed / "table.json").write_text(json.dumps(table))
    p = _serve(tmp_path, seed)
    assert p.returncode == 2 and "dynavault export decrypt" in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("dynavault: --init ") and "Traceback" not in p.stderr
    shutil.rmtree(seed / "export")
    out = subprocess.run([sys.executable, "-m", "dynavault.cli", "export", "decrypt", str(folder), str(seed / "export"),
                          "--data-dir", str(source.data_dir), "--root-key-file", str(source.root_key_file)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    srv = start_server("seeded", allow_any_credentials=True, in_memory=True, init=seed)
    items = srv.client("dynamodb").scan(TableName="ion-source")["Items"]
    assert len(items) == 30 and all(i["n"] == {"NS": ["1", "2"]} for i in items)


def test_init_export_without_its_table_refuses_to_start(tmp_path):
    seed = tmp_path / "seed"
    shutil.copytree(FIXTURE, seed)
    p = _serve(tmp_path, seed)
    assert p.returncode == 2
    assert "table ProductCatalog: ResourceNotFoundException" in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("dynavault: --init ") and "Traceback" not in p.stderr
