"""Table keys: creation under a KMS key, the per-connection cache, retirement.

The table key is 256 bits from KMS GenerateDataKey with DynamoDB's encryption context; only its
KMS ciphertext is kept (in the table's catalog record). Data keys (token, node epochs, stream) are
random and stored wrapped by the table key. A data operation gets its TableCrypto from the cache,
which is scoped per client connection, principal and table and refreshed with KMS Decrypt once older
than ``key_refresh_seconds`` (DESIGN.md "Key cache"). The principal is part of the scope because the
Decrypt that fills an entry is the key policy's check of that principal: another principal on the same
keep-alive connection must pass its own. Refresh failure fails closed.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from dynavault.caller import DYNAMODB_SERVICE, Caller
from dynavault.errors import AWSError, defer_if_possible

from .crypto import NodeCipher, StreamCipher, TableCrypto, unwrap_data_key, wrap_data_key
from .key_port import (
    InvalidKeyRequest,
    KeyDisabled,
    KeyInvalidState,
    KeyPort,
    KeyPortError,
    KeyUnavailable,
    KmsFailure,
)
from .kms_errors import wrap_kms_error

log = logging.getLogger("dynavault.sse")
T = TypeVar("T")

OWNED = "OWNED"
AWS_MANAGED = "AWS_MANAGED"
CUSTOMER = "CUSTOMER"
MANAGED_ALIAS = "alias/aws/dynamodb"
GRANT_OPERATIONS = ["DescribeKey", "GenerateDataKey", "Decrypt", "Encrypt", "ReEncryptFrom", "ReEncryptTo",
                    "RetireGrant"]


def service_principal(region: str) -> str:
    return f"dynamodb.{region}.amazonaws.com"


def encryption_context(table_name: str, account: str) -> dict[str, str]:
    return {"aws:dynamodb:tableName": table_name, "aws:dynamodb:subscriberId": account}


@dataclass(frozen=True, slots=True)
class TableKeyRef:
    """What the cache needs to know about a table: from its catalog record."""

    table_id: bytes
    table_name: str
    account: str
    region: str
    sse: dict  # the record made by create_table_keys


@dataclass(slots=True)
class _Entry:
    blob: str
    crypto: TableCrypto
    expires: float


def _unreachable():
    # what the remote adapter raises when the KMS endpoint cannot be reached (kms_client.RemoteKms)
    raise KeyUnavailable("KMSUnavailable", "KMS endpoint unreachable: injected fault (KmsUnavailable)", 500)


def service_caller(account: str, region: str) -> Caller:
    """DynamoDB itself, acting in ``account`` (the service principal, marked as a service call)."""
    principal = service_principal(region)
    return Caller(account=account, region=region, principal_arn=principal, source_ip=DYNAMODB_SERVICE,
                  user_agent=DYNAMODB_SERVICE, via_service=principal, is_service=True)


class TableKeyService:
    def __init__(
        self,
        kms: KeyPort,
        *,
        owned_key_arn: Callable[[str], str],
        owned_account: str,
        refresh_seconds: float = 300.0,
        shared_cache: bool = False,
        metrics=None,
        clock: Callable[[], float] = time.monotonic,
        outage: Callable[[str, str, str, str], bool] | None = None,
    ) -> None:
        self.kms = kms
        #: (account, region, table, KMS operation) -> whether the key service is down for that table now: an
        #: injected KMS outage (server/faults.py), failing exactly as an unreachable KMS fails
        self.outage = outage
        #: a call to the key port waits on the network (a remote KMS): requests move off the event loop for it
        self.blocking = bool(getattr(kms, "blocking", False))
        self._owned_key_arn = owned_key_arn
        self.owned_account = owned_account
        self.refresh_seconds = refresh_seconds
        self.shared_cache = shared_cache
        self.metrics = metrics
        # the labelled child, looked up once: labels() costs more than the cache lookup it counts
        self._cache_hits = metrics.key_cache.labels("hit") if metrics is not None else None
        self.clock = clock
        #: (connection, principal ARN, table id) -> entry
        self._entries: dict[tuple[int, str, bytes], _Entry] = {}
        self._by_connection: dict[int, set[tuple[str, bytes]]] = {}
        self._crypto_by_blob: dict[str, TableCrypto] = {}
        self._lock = threading.Lock()

    # -- KMS calls, as DynamoDB makes them -------------------------------------------------
    def call(self, op: str, fn: Callable[..., T], *args, wrap: bool = True, **kwargs) -> T:
        """One key-port call as the database makes it (``op`` is KMS's name for it, for metrics): failures
        in DynamoDB's words (§1.4), unless ``wrap`` is False: then the typed KeyPortError, for callers that
        judge the failure themselves."""
        try:
            result = fn(*args, **kwargs)
        except KeyPortError as err:
            if self.metrics is not None:
                self.metrics.kms_calls.labels(op, err.code).inc()
            if wrap:
                raise wrap_kms_error(err) from None
            raise
        if self.metrics is not None:
            self.metrics.kms_calls.labels(op, "ok").inc()
        return result

    def key_user(self, caller: Caller, sse: dict) -> Caller:
        """Who decrypts a table key for a user's request: the owned key's account, else the user via DynamoDB."""
        if sse.get("mode") == OWNED:
            return self.service_caller(self.owned_account, caller.region)
        return self._acting_for(caller)

    def key_service(self, account: str, region: str, sse: dict) -> Caller:
        """Who decrypts a table key in the background: the database itself, through the table's grant."""
        return self.service_caller(self.owned_account if sse.get("mode") == OWNED else account, region)

    def decrypt_table_key(self, who: Caller, table_name: str, account: str, sse: dict, *,
                          wrap: bool = True) -> bytes:
        context = encryption_context(table_name, account)
        if self.outage is not None and self.outage(account, who.region, table_name, "Decrypt"):
            return self.call("Decrypt", _unreachable, wrap=wrap)
        return self.call("Decrypt", self._decrypt_blob, who, sse["table_key_blob"], context, wrap=wrap)

    def _decrypt_blob(self, who: Caller, blob: str, context: dict[str, str]) -> bytes:
        try:
            raw = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError, TypeError):
            # what KMS answers for such a CiphertextBlob (only a catalog record edited by hand has one)
            raise KmsFailure("SerializationException", "Could not decode base64 for ciphertextBlob") from None
        return self.kms.decrypt(who, raw, context)

    def service_caller(self, account: str, region: str) -> Caller:
        return service_caller(account, region)

    def _acting_for(self, caller: Caller) -> Caller:
        return caller.on_behalf(service_principal(caller.region))

    def owned_key_arn(self, region: str) -> str:
        return self._owned_key_arn(region)

    def resolve(self, caller: Caller, mode: str, key_id: str | None) -> tuple[str, str]:
        """Resolve and validate the KMS key a table will use (§1.2, §1.4).

        Returns (key ARN, mode); a customer-named key that is the AWS managed key counts as AWS managed.
        """
        if mode == OWNED:
            return self.owned_key_arn(caller.region), OWNED
        target = MANAGED_ALIAS if mode == AWS_MANAGED else str(key_id)
        info = self.call("DescribeKey", self.kms.describe_key, self._acting_for(caller), target)
        arn = info.arn
        if info.state == "Disabled":
            raise wrap_kms_error(KeyDisabled("DisabledException", f"{arn} is disabled."))
        if info.state == "PendingDeletion":
            raise wrap_kms_error(KeyInvalidState("KMSInvalidStateException", f"{arn} is pending deletion."))
        if info.state not in (None, "Enabled"):
            raise wrap_kms_error(KeyInvalidState("KMSInvalidStateException", f"{arn} is {str(info.state).lower()}."))
        if info.usage != "ENCRYPT_DECRYPT" or info.spec != "SYMMETRIC_DEFAULT":
            raise wrap_kms_error(InvalidKeyRequest(
                "ValidationException",
                "EncryptionContext is supported only when creating a grant for a symmetric encryption KMS key.",
            ))
        return arn, (AWS_MANAGED if info.manager == "AWS" else CUSTOMER)

    def new_table_key(self, caller: Caller, table_name: str, mode: str, key_arn: str) -> tuple[dict, bytes]:
        """A grant for the table (unless owned) and a fresh table key under ``key_arn``.

        Returns (catalog record without data keys, plaintext table key); a failed GenerateDataKey
        retires the grant it made, so nothing is left behind.
        """
        context = encryption_context(table_name, caller.account)
        record: dict = {"mode": mode, "key_arn": key_arn}
        grant = None
        if mode == OWNED:
            generator = self.service_caller(self.owned_account, caller.region)
        else:
            grant = self.call("CreateGrant", self.kms.create_grant, self._acting_for(caller), key_arn,
                              grantee=service_principal(caller.region), retiring=service_principal(caller.region),
                              operations=list(GRANT_OPERATIONS), context_subset=context)
            record["grant_id"] = grant.grant_id
            record["grant_token"] = grant.token
            generator = self.service_caller(caller.account, caller.region)
        try:
            if self.outage is not None and self.outage(caller.account, caller.region, table_name, "GenerateDataKey"):
                self.call("GenerateDataKey", _unreachable)
            table_key, blob = self.call("GenerateDataKey", self.kms.generate_data_key, generator, key_arn, context)
        except AWSError:
            if grant is not None:
                self.retire_grant(caller.account, caller.region, key_arn, grant.grant_id, table_name)
            raise
        # the catalog is JSON: the blob is kept base64, as KMS's own API spells it
        record["table_key_blob"] = base64.b64encode(blob).decode()
        return record, table_key

    def create_table_keys(self, caller: Caller, table_name: str, table_id: bytes, mode: str, key_arn: str) -> dict:
        """Make the table key under ``key_arn`` and fresh wrapped data keys; returns the catalog record."""
        record, table_key = self.new_table_key(caller, table_name, mode, key_arn)
        record["data_keys"] = self._new_data_keys(table_key, table_id)
        # The new table's keys, for what CreateTable itself seals (its empty partition directories),
        # without a second KMS call; found again through ``live_crypto``.
        crypto = self.build_crypto(table_key, table_id, record["data_keys"])
        with self._lock:
            self._crypto_by_blob[record["table_key_blob"]] = crypto
        return record

    @staticmethod
    def _new_data_keys(table_key: bytes, table_id: bytes) -> dict:
        def wrapped(purpose: str, epoch: int = 0) -> str:
            return base64.b64encode(wrap_data_key(table_key, table_id, purpose, epoch, os.urandom(32))).decode()

        return {"token": wrapped("token"), "stream": wrapped("stream"), "node": {"0": wrapped("node")},
                "node_epoch": 0}

    def retire_grant(self, account: str, region: str, key_arn: str, grant_id: str, table_name: str = "") -> None:
        """RetireGrant as the database itself; a failure is logged, not raised (the table is gone or moved on)."""
        try:
            self.call("RetireGrant", self.kms.retire_grant, self.service_caller(account, region), key_arn, grant_id,
                      wrap=False)
        except KeyPortError as err:
            log.warning("table %s: retiring grant %s on %s failed: %s", table_name, grant_id, key_arn, err.code)

    def retire(self, ref: TableKeyRef) -> None:
        """DeleteTable: retire the table's grant and forget its cached keys."""
        grant_id = ref.sse.get("grant_id")
        if grant_id:
            self.retire_grant(ref.account, ref.region, ref.sse["key_arn"], grant_id, ref.table_name)
        self.forget_table(ref.table_id)

    # -- the per-connection cache ------------------------------------------------------------
    def crypto_for(self, caller: Caller, ref: TableKeyRef) -> TableCrypto:
        conn = 0 if self.shared_cache else caller.connection_id
        key = (conn, caller.principal_arn, ref.table_id)
        blob = ref.sse["table_key_blob"]
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None and entry.blob == blob and now < entry.expires:
            if self._cache_hits is not None:
                self._cache_hits.inc()
            return entry.crypto
        if self.blocking:
            defer_if_possible()  # a remote KMS call: not on the event loop (the request is run again in a thread)
        if self.metrics is not None:
            self.metrics.key_cache.labels("miss").inc()
        try:
            crypto = self._decrypt(caller, ref)
        except AWSError:
            if self.metrics is not None:
                self.metrics.key_refresh_failures.inc()
            with self._lock:  # fail closed: an expired entry is never used again
                self._entries.pop(key, None)
            raise
        with self._lock:
            self._entries[key] = _Entry(blob, crypto, now + self.refresh_seconds)
            self._by_connection.setdefault(conn, set()).add(key[1:])
        return crypto

    def cached(self, caller: Caller, ref: TableKeyRef) -> TableCrypto | None:
        """What ``crypto_for`` would answer from the cache, without calling KMS: None when it would have to (no
        entry, an expired one, or one for another table key blob)."""
        entry = self._entries.get((0 if self.shared_cache else caller.connection_id, caller.principal_arn,
                                   ref.table_id))
        if entry is None or entry.blob != ref.sse["table_key_blob"] or self.clock() >= entry.expires:
            return None
        return entry.crypto

    def _decrypt(self, caller: Caller, ref: TableKeyRef) -> TableCrypto:
        sse = ref.sse
        table_key = self.decrypt_table_key(self.key_user(caller, sse), ref.table_name, ref.account, sse)
        blob = sse["table_key_blob"]
        crypto = self._crypto_by_blob.get(blob)
        if crypto is None:
            crypto = self.build_crypto(table_key, ref.table_id, sse["data_keys"])
            with self._lock:
                self._crypto_by_blob[blob] = crypto
        return crypto

    @staticmethod
    def build_crypto(table_key: bytes, table_id: bytes, data_keys: dict) -> TableCrypto:
        def unwrap(purpose: str, wrapped: str, epoch: int = 0) -> bytes:
            return unwrap_data_key(table_key, table_id, purpose, epoch, base64.b64decode(wrapped))

        node_keys = {int(e): unwrap("node", w, int(e)) for e, w in data_keys["node"].items()}
        return TableCrypto(
            table_id,
            unwrap("token", data_keys["token"]),
            NodeCipher(node_keys, int(data_keys["node_epoch"])),
            StreamCipher(unwrap("stream", data_keys["stream"])),
            table_key,
        )

    def live_crypto(self, blob: str) -> TableCrypto | None:
        """The unwrapped keys of a table key blob, if some connection holds them now."""
        return self._crypto_by_blob.get(blob)

    def drop_connection(self, connection_id: int) -> None:
        with self._lock:
            for principal, table_id in self._by_connection.pop(connection_id, ()):
                self._entries.pop((connection_id, principal, table_id), None)

    def forget_table(self, table_id: bytes) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[2] == table_id]:
                self._entries.pop(key, None)
            for blob in [b for b, c in self._crypto_by_blob.items() if c.table_id == table_id]:
                self._crypto_by_blob.pop(blob, None)

    def prune(self) -> None:
        """Drop expired entries, and table crypto no live entry uses (so unused key material leaves memory)."""
        now = self.clock()
        with self._lock:
            for key in [k for k, e in self._entries.items() if e.expires <= now]:
                del self._entries[key]
                conns = self._by_connection.get(key[0])
                if conns is not None:
                    conns.discard(key[1:])
                    if not conns:
                        del self._by_connection[key[0]]
            live = {e.blob for e in self._entries.values()}
            # keep keys whose seal count has not been accounted yet (node-key epochs)
            for blob in [b for b, c in self._crypto_by_blob.items() if b not in live and not c.codec.seals]:
                del self._crypto_by_blob[blob]

    def cached_entries(self) -> int:
        return len(self._entries)
