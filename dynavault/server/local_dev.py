"""Local-development conveniences: ``--shared-db`` and ``--init DIR`` (seed files run on a new data dir).

``--shared-db`` (DynamoDB Local's ``-sharedDb``): every access key acts in one account and every region is
one data set. The signature is still checked against the region the client signed for; only after it
passed is the request's identity moved to the shared account and region, so tables, KMS keys and audit
events are the same whatever key id and region a tool was configured with.

``--init DIR``: every ``*.json`` file in DIR, in name order, is run once when the server starts on a new
data dir (one that did not exist or was empty; always with ``--in-memory``), as LocalStack's init hooks
and the scripts DynamoDB Local users write. A file holds one JSON object with any of::

    {"Account": "123456789012", "Region": "us-east-1",          # optional: whose tables and keys
     "KmsKeys": [{"Alias": "alias/app", "Description": "..."}],  # CreateKey parameters (+ Alias)
     "Tables": [{...CreateTable parameters...}],
     "Items": {"TableName": [{"pk": {"S": "..."}}, ...]}}         # DynamoDB JSON, as PutItem takes

or is a bare CreateTable input (``aws dynamodb create-table --cli-input-json`` format). DIR may also hold
export folders (``.../AWSDynamoDB/<export id>/`` with its manifests and ``data/`` files, as ``aws s3 cp
--recursive`` of a DynamoDB export gives, or ``dynavault export decrypt`` writes; DIR itself may be one): after
the files ran, each full export (DYNAMODB_JSON or ION) fills the table its manifest names (``tableArn``), which
a seed file must create (the export holds items, not the table's key schema). Everything runs
through the same handlers, validation, authorization and audit trail as a request, as the account's root
principal with user agent ``dynavault-init``. A file that fails stops the start with one line naming the
file and entry. YAML is not read: no YAML library is a dependency.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from dynavault.caller import Caller
from dynavault.errors import AWSError, StartupError

from .app import RouteTable
from .credentials import Credential
from .sigv4 import Identity, Pending, SigV4Verifier

log = logging.getLogger("dynavault.server")

SHARED_REGION = "us-east-1"
INIT_USER_AGENT = "dynavault-init"


class SharedDbVerifier(SigV4Verifier):
    """SigV4 as usual, then one account and one region for every request (see the module doc)."""

    def __init__(self, *args: Any, account: str, region: str = SHARED_REGION, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.account = account
        self.region = region
        self._shared: dict[tuple[str, str], Credential] = {}

    def check_body(self, pending: Pending, method: str, path: str, query: str, headers: dict[str, str],
                   body: bytes) -> Identity:
        identity = super().check_body(pending, method, path, query, headers, body)
        cred = identity.credential
        key = (cred.access_key_id, cred.principal_arn)
        shared = self._shared.get(key)
        if shared is None:
            principal = cred.principal_arn.replace(f"::{cred.account_id}:", f"::{self.account}:", 1)
            shared = Credential(cred.access_key_id, cred.secret_access_key, self.account, principal)
            if len(self._shared) >= 4096:
                self._shared.clear()
            self._shared[key] = shared
        return Identity(shared, self.region, identity.service)


def is_new_data_dir(path: Path) -> bool:
    """No data dir yet, or an empty one: what ``--init`` runs on."""
    try:
        return not any(path.iterdir())
    except FileNotFoundError:
        return True
    except NotADirectoryError:
        return False


class _Seeder:
    def __init__(self, routes: RouteTable, account: str, region: str) -> None:
        self.routes = routes
        self.account = account
        self.region = region

    def call(self, target: str, params: dict, caller: Caller) -> dict:
        route = self.routes.get(target)
        if route is None:
            raise StartupError(f"--init: {target} is not served by this server")
        params = json.loads(json.dumps(params))  # handlers may keep what they get: a copy of the file's data
        if route.front.validate is not None:
            route.front.validate(route.operation, params)
        return route.handler(caller, params) or {}

    def caller(self, doc: dict) -> Caller:
        account = str(doc.get("Account") or self.account)
        region = str(doc.get("Region") or self.region)
        return Caller(account=account, region=region, principal_arn=f"arn:aws:iam::{account}:root",
                      access_key="", connection_id=-1, user_agent=INIT_USER_AGENT)


def run_init(directory: str, routes: RouteTable, *, account: str, region: str = SHARED_REGION) -> dict[str, int]:
    """Run the seed files in ``directory``; -> counts of keys, tables and items made."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise StartupError(f"--init {directory}: not a directory")
    # an export folder's own manifests are not seed files
    files = sorted(p for p in root.iterdir() if p.suffix.lower() == ".json" and p.is_file()
                   and not p.name.startswith("manifest-"))
    skipped = sorted(p.name for p in root.iterdir() if p.suffix.lower() in (".yaml", ".yml"))
    if skipped:
        log.warning("--init: YAML files are not read (no YAML library is a dependency): %s", ", ".join(skipped))
    seeder = _Seeder(routes, account, region)
    counts = {"files": 0, "kms_keys": 0, "tables": 0, "items": 0, "exports": 0}
    started = time.monotonic()
    log.info("--init: seeding from %d file(s) in %s", len(files), root)
    for path in files:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise StartupError(f"--init {path}: not a JSON document ({exc})") from None
        if not isinstance(doc, dict):
            raise StartupError(f"--init {path}: must hold one JSON object")
        _run_file(seeder, path, doc, counts)
        counts["files"] += 1
    for summary in sorted(root.rglob("manifest-summary.json")):
        _run_export(seeder, summary, counts)
        counts["exports"] += 1
    log.info("--init: done in %.2f s: %d KMS key(s), %d table(s), %d item(s) from %d file(s) and %d export(s)",
             time.monotonic() - started, counts["kms_keys"], counts["tables"], counts["items"], counts["files"],
             counts["exports"])
    return counts


_KNOWN = {"Account", "Region", "KmsKeys", "Tables", "Items"}


def _run_file(seeder: _Seeder, path: Path, doc: dict, counts: dict[str, int]) -> None:
    if "KeySchema" in doc and "TableName" in doc:  # a bare CreateTable input
        doc = {"Tables": [doc]}
    unknown = sorted(set(doc) - _KNOWN)
    if unknown:
        raise StartupError(f"--init {path}: unknown member(s) {', '.join(unknown)} (expected "
                           f"{', '.join(sorted(_KNOWN))}, or a CreateTable input)")
    caller = seeder.caller(doc)
    where = ""
    try:
        for i, spec in enumerate(doc.get("KmsKeys") or []):
            where = f"KmsKeys[{i}]"
            spec = dict(spec)
            alias = spec.pop("Alias", None)
            key = seeder.call("TrentService.CreateKey", spec, caller)["KeyMetadata"]
            if alias:
                seeder.call("TrentService.CreateAlias", {"AliasName": alias, "TargetKeyId": key["KeyId"]}, caller)
            counts["kms_keys"] += 1
        for i, spec in enumerate(doc.get("Tables") or []):
            where = f"Tables[{i}]"
            seeder.call("DynamoDB_20120810.CreateTable", spec, caller)
            counts["tables"] += 1
        items = doc.get("Items") or {}
        if not isinstance(items, dict):
            raise StartupError(f"--init {path}: Items must map table names to lists of items")
        for table, rows in items.items():
            for i, item in enumerate(rows):
                where = f"Items[{table!r}][{i}]"
                seeder.call("DynamoDB_20120810.PutItem", {"TableName": table, "Item": item}, caller)
                counts["items"] += 1
    except AWSError as err:
        raise StartupError(f"--init {path} {where}: {err.code}: {err.message}") from None
    except (TypeError, KeyError, AttributeError) as exc:
        raise StartupError(f"--init {path} {where}: malformed entry ({exc.__class__.__name__}: {exc})") from None


#: items per BatchWriteItem while loading an export (DynamoDB's limit)
_BATCH = 25


def _run_export(seeder: _Seeder, summary_path: Path, counts: dict[str, int]) -> None:
    """Fill the table an export folder's manifest names with the items of its data files."""
    from dynavault.dynamodb.exports import formats
    from dynavault.dynamodb.exports.sealing import is_sealed

    folder = summary_path.parent
    try:
        summary = json.loads(summary_path.read_text())
        table = str(summary["tableArn"]).rsplit("/", 1)[1]
        fmt = summary.get("outputFormat", "DYNAMODB_JSON")
        listed = [json.loads(line) for line in (folder / "manifest-files.json").read_text().splitlines()
                  if line.strip()]
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise StartupError(f"--init {folder}: not a readable export folder ({exc.__class__.__name__}: {exc})") from None
    if summary.get("exportType") == "INCREMENTAL_EXPORT":
        raise StartupError(f"--init {folder}: an incremental export holds changes, not a table: give a full export")
    caller = seeder.caller({})
    batch: list[dict] = []

    def flush() -> None:
        requests = [{"PutRequest": {"Item": item}} for item in batch]
        seeder.call("DynamoDB_20120810.BatchWriteItem", {"RequestItems": {table: requests}}, caller)
        counts["items"] += len(batch)
        batch.clear()

    where = "manifest-files.json"
    try:
        for entry in listed:
            name = str(entry["dataFileS3Key"]).rsplit("/", 1)[1]
            where = f"data/{name}"
            data = (folder / "data" / name).read_bytes()
            if is_sealed(data):
                raise StartupError(f"--init {folder / where}: encrypted by a dynavault server; write a plain copy "
                                   "first with `dynavault export decrypt SRC DST` and give that")
            text = formats.decompress(data, "GZIP" if name.endswith(".gz") else "NONE")
            docs = formats.ion_documents(text.decode()) if fmt == "ION" else (
                formats.parse_json_line(line) for line in text.splitlines() if line.strip())
            for doc in docs:
                if isinstance(doc, formats.LineError) or "Item" not in doc:
                    raise StartupError(f"--init {folder / where}: not an export line ({doc})")
                batch.append(doc["Item"])
                if len(batch) >= _BATCH:
                    flush()
        if batch:
            flush()
    except AWSError as err:
        raise StartupError(f"--init {folder / where}: table {table}: {err.code}: {err.message}") from None
    except (OSError, formats.LineError, KeyError, IndexError) as exc:
        raise StartupError(f"--init {folder / where}: {exc.__class__.__name__}: {exc}") from None
    log.info("--init: export %s loaded into table %s", folder.name, table)
