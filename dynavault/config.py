"""Settings: defaults, then the TOML config file, then DYNAVAULT_* environment variables, then flags.

Every time-based behavior takes its interval from here so tests can run it in seconds;
DynamoDB's and KMS's own values are the defaults.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


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
    workers: int = 1
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
    config: str = ""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def data_path(self, *parts: str) -> Path:
        return Path(self.data_dir).joinpath(*parts)


_BOOL_TRUE = {"1", "true", "yes", "on"}


def _coerce(name: str, value: Any) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if kind in ("bool", bool):
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in _BOOL_TRUE
    if kind in ("int", int):
        return int(value)
    if kind in ("float", float):
        return float(value)
    return str(value)


def load_settings(overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Merge defaults < config file < environment < explicit overrides (flags given on the command line)."""
    environ = os.environ if environ is None else environ
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    names = Settings.field_names()
    config_file = overrides.get("config") or environ.get("DYNAVAULT_CONFIG", "")
    values: dict[str, Any] = {}
    if config_file:
        with open(config_file, "rb") as fh:
            doc = tomllib.load(fh)
        section = doc.get("dynavault", doc)
        for key, value in section.items():
            key = key.replace("-", "_")
            if key in names:
                values[key] = _coerce(key, value)
    for name in names:
        env = environ.get("DYNAVAULT_" + name.upper())
        if env is not None:
            values[name] = _coerce(name, env)
    for name, value in overrides.items():
        if name in names:
            values[name] = _coerce(name, value)
    values["config"] = config_file
    return Settings(**values)
