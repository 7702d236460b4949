"""Settings: defaults, then the TOML config file, then DYNAVAULT_* environment variables, then flags.

Every time-based behavior takes its interval from here so tests can run it in seconds;
DynamoDB's and KMS's own values are the defaults.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dynavault.errors import StartupError


def _default_root_key_file() -> str:
    # Outside the data dir on purpose: a copied data dir alone must not be decryptable.
    return str(Path.home() / ".config" / "dynavault" / "root.key")


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: str = "./dynavault-data"
    root_key_file: str = field(default_factory=_default_root_key_file)
    #: "file" (root key file) or "pkcs11" (an HSM token via python-pkcs11)
    root_of_trust: str = "file"
    pkcs11_module: str = ""
    pkcs11_token_label: str = "dynavault"
    pkcs11_pin: str = ""
    pkcs11_key_label: str = "dynavault-root"
    kms_endpoint: str = ""
    #: credentials the database signs with when --kms-endpoint is set
    kms_access_key_id: str = ""
    kms_secret_access_key: str = ""
    allow_any_credentials: bool = False
    #: access key ids (comma-separated) of databases allowed to call this KMS on a caller's behalf
    #: (header x-dynavault-on-behalf-of), as DynamoDB calls AWS KMS for its users
    trusted_service_keys: str = ""
    #: account id for --allow-any-credentials when the access key id is not a 12-digit number
    default_account: str = "000000000000"
    key_refresh_seconds: float = 300.0
    key_check_seconds: float = 600.0
    sse_update_seconds: float = 22.0
    archive_after_seconds: float = 604800.0
    #: a global-table replica whose key has been unusable this long leaves its replication group (DynamoDB: 20 h)
    replica_inaccessible_seconds: float = 72000.0
    #: the regions this server serves (comma-separated; empty: every region). A request signed for another is
    #: refused as an unknown endpoint would be (InvalidSignatureException, credential scope)
    regions: str = ""
    #: REGION=URL[,REGION=URL...]: the dynavault server of each region served elsewhere (global-table replicas)
    replica_peer: str = ""
    #: JSON file (mode 0600): {region: {aws_access_key_id, aws_secret_access_key}} used to sign at each peer
    replica_peer_credentials: str = ""
    #: how often pending key deletions are checked (KMS deletes when the window ends)
    key_deletion_check_seconds: float = 60.0
    #: one day of the KMS deletion window, in seconds (tests shrink it)
    kms_day_seconds: float = 86400.0
    #: one day of a point-in-time recovery period and of a SYSTEM backup's 35-day life, in seconds (tests shrink it)
    pitr_day_seconds: float = 86400.0
    #: process-wide table key cache instead of per connection (opt-in)
    shared_key_cache: bool = False
    #: seals under one node key before a new epoch key is made (random nonces: stay far below 2^32)
    node_epoch_max_seals: int = 1 << 30
    epoch_check_seconds: float = 30.0
    #: how often the Time to Live sweeper looks for expired items (DynamoDB: "typically within a few days")
    ttl_sweep_seconds: float = 60.0
    #: UpdateTimeToLive refuses a second change to a table within this interval (DynamoDB documents one hour)
    ttl_cooldown_seconds: float = 3600.0
    #: DynamoDB's 10 GB item-collection limit for tables with local secondary indexes
    item_collection_max_bytes: int = 10 * 1024**3
    #: "group": commits share fsyncs and no response is sent before its data is on disk;
    #: "each": SQLite synchronous=FULL, one fsync inside every commit. Both acknowledge only durable writes.
    commit_mode: str = "group"
    #: DynamoDB Streams: a shard closes (and a child opens) once it is this old or holds this many records
    stream_shard_seconds: float = 14400.0
    stream_shard_max_records: int = 100_000
    #: stream records are trimmed once older than this (whole closed shards at a time)
    stream_retention_seconds: float = 86400.0
    #: how long a stream shows ENABLING / DISABLING after UpdateTable or CreateTable (DynamoDB: ~4-5 s)
    stream_status_seconds: float = 4.0
    #: a shard iterator expires this long after GetShardIterator / GetRecords handed it out
    stream_iterator_seconds: float = 900.0
    #: how long a new table shows CREATING, an updated one UPDATING and a deleted one DELETING (DynamoDB: a few
    #: seconds each); 0 makes each change instant
    create_table_seconds: float = 0.0
    update_table_seconds: float = 0.0
    delete_table_seconds: float = 0.0
    #: processes serving the port over one data dir (server/workers.py); 0: one per CPU core this process may
    #: run on (one with --in-memory and for `dynavault kms serve`)
    workers: int = 0
    log_file: str = ""
    log_level: str = "info"
    audit_rotate_bytes: int = 16 * 1024 * 1024
    #: audit segments whose newest event is older than this are deleted (CloudTrail's event history: 90 days);
    #: fractions work (tests); the sweep runs every retention/24, between 1 s and 1 h
    audit_retention_days: float = 90.0
    #: SigV4 clock skew window
    max_clock_skew_seconds: int = 900
    #: browser origins (comma-separated; "*" for any) that get CORS headers; empty: no CORS headers at all
    cors_origin: str = ""
    #: a request's headers and body must arrive within this many seconds of its first byte (slow senders
    #: are cut off); idle keep-alive connections between requests are closed after 120 s
    request_timeout_seconds: float = 60.0
    #: open client connections before requests are answered 503 (every AWS SDK retries it)
    max_connections: int = 1024
    #: DAX attribute lists (distinct sets of non-key attribute names) one account may register per region
    dax_attribute_lists_max: int = 100_000
    #: DAX's item cache and query cache entry lifetimes (a cluster's record-ttl-millis / query-ttl-millis);
    #: 0 turns that cache off
    dax_record_ttl_seconds: float = 300.0
    dax_query_ttl_seconds: float = 300.0
    #: the web console (/console/) with --allow-any-credentials: refused unless this is set too (anyone could
    #: sign in as any account)
    console_allow_any: bool = False
    #: a console session ends after this many idle seconds (and after 8 hours in any case)
    console_session_seconds: float = 900.0
    #: one line per request (time, request id, principal, account, region, operation, table, status, error
    #: type, duration, bytes; never item data, keys or secrets) appended to this file; "-" is stderr; empty: off
    access_log: str = ""
    #: the access log's format: "text" (one key=value line) or "json" (JSON lines)
    log_format: str = "text"
    #: nothing on disk: tables, KMS keys (root key included) and the audit trail live in this process's
    #: memory, still encrypted the same way; all of it is gone when the process ends
    in_memory: bool = False
    #: one account for every access key and one data set for every region (DynamoDB Local's -sharedDb);
    #: only with allow_any_credentials
    shared_db: bool = False
    #: provisioned tables and GSIs refuse requests over their read/write capacity units
    #: (ProvisionedThroughputExceededException), as DynamoDB does; per process
    enforce_throughput: bool = False
    #: how many seconds of unused capacity a table or GSI may save up for bursts (DynamoDB: 300)
    throughput_burst_seconds: float = 300.0
    #: a directory of JSON seed files (KMS keys, tables, items) run once, when the data dir is new
    init: str = ""
    #: the DAX data plane (the official DAX clients' CBOR protocol) on a TCP port (dax://) and a TLS port
    #: (daxs://, with a CA and node certificate the server makes in the data dir); unset or 0: no such
    #: listener, and no DAX cluster of that encryption type can be made
    dax_port: int | None = None
    dax_tls_port: int | None = None
    #: how long a new DAX cluster shows "creating", a deleted one "deleting", an added node "creating" (DAX:
    #: minutes); 0: the CreateCluster answer says "creating", the cluster is available from the next call on
    dax_cluster_seconds: float = 0.0
    #: local "buckets" for ExportTableToPointInTime and ImportTable: each subdirectory of this directory is a
    #: bucket (empty: those operations are refused, as before)
    bucket_dir: str = ""
    #: a JSON list of faults to inject from the start (DynavaultAdmin.PutFault bodies; server/faults.py)
    faults: str = ""
    config: str = ""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def data_path(self, *parts: str) -> Path:
        return Path(self.data_dir).joinpath(*parts)


_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_WORDS = _BOOL_TRUE | {"0", "false", "no", "off"}


def _coerce(name: str, value: Any) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if kind in ("bool", bool):
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in _BOOL_TRUE
    if kind in ("int", int):
        return int(value)
    if kind == "int | None":
        return None if value is None or str(value).strip() == "" else int(value)
    if kind in ("float", float):
        return float(value)
    return str(value)


def _key_line(text: str, key: str) -> int | None:
    """The 1-based line where ``key`` is assigned in TOML ``text`` (tomllib keeps no positions)."""
    quoted = r"[\"']?" + re.escape(key) + r"[\"']?"
    pattern = re.compile(r"^\s*(?:" + quoted + r"\s*=|\[\[?\s*" + quoted + r"\s*[.\]])")
    for number, line in enumerate(text.splitlines(), 1):
        if pattern.match(line):
            return number
    return None


def _read_config(path: str, names: list[str]) -> dict[str, Any]:
    """The settings in a TOML config file (top level or a ``[dynavault]`` table); every problem is a
    StartupError naming the file and line: a typo in a setting must not be silently ignored."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise StartupError(f"config file {path}: cannot be read ({exc.strerror or exc})") from None
    text = raw.decode("utf-8", errors="replace")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line N, column M)"
        raise StartupError(f"config file {path}: {exc}") from None
    section = doc.get("dynavault", doc) if isinstance(doc.get("dynavault"), dict) else doc
    values: dict[str, Any] = {}
    for key, value in section.items():
        name = key.replace("-", "_")
        line = _key_line(text, key)
        where = f"{path}, line {line}" if line else path
        if name not in names or name == "config" or isinstance(value, dict):
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise StartupError(f"config file {where}: unknown setting {key!r}{hint}")
        try:
            if _kind(name) == "boolean" and not isinstance(value, bool) and str(value).lower() not in _BOOL_WORDS:
                raise ValueError(value)
            values[name] = _coerce(name, value)
        except (TypeError, ValueError):
            raise StartupError(f"config file {where}: {key} = {value!r} is not a valid "
                               f"{_kind(name)}") from None
    if section is not doc:
        for key in doc:
            if key != "dynavault":
                line = _key_line(text, key)
                where = f"{path}, line {line}" if line else path
                raise StartupError(f"config file {where}: unknown setting {key!r} outside [dynavault]")
    return values


def _kind(name: str) -> str:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    return {"bool": "boolean", "int": "integer", "int | None": "integer", "float": "number"}.get(str(kind), "string")


def load_settings(overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Merge defaults < config file < environment < explicit overrides (flags given on the command line)."""
    environ = os.environ if environ is None else environ
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    names = Settings.field_names()
    config_file = overrides.get("config") or environ.get("DYNAVAULT_CONFIG", "")
    values: dict[str, Any] = {}
    if config_file:
        values.update(_read_config(config_file, names))
    for name in names:
        env = environ.get("DYNAVAULT_" + name.upper())
        if env is not None:
            values[name] = _coerce(name, env)
    for name, value in overrides.items():
        if name in names:
            values[name] = _coerce(name, value)
    values["config"] = config_file
    return Settings(**values)
