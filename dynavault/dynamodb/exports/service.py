"""What exports and imports share: the bucket store, the store rows, the data keys of encrypted objects, the
background worker, and how the table's keys and DynamoDB's times are read."""

from __future__ import annotations

import base64
import datetime
import hashlib
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dynavault.errors import AWSError, IntegrityError, validation
from dynavault.sse.key_port import InvalidCiphertext, KeyPortError
from dynavault.sse.kms_errors import wrap_kms_error
from dynavault.sse.table_keys import service_caller
from dynavault.timestamps import epoch_seconds

from .buckets import BucketStore
from .sealing import AES256, KMS, ObjectKeys

if TYPE_CHECKING:
    from dynavault.caller import Caller

    from ..database import Database

log = logging.getLogger("dynavault.dynamodb.exports")

#: the principal S3 calls KMS through for a user's SSE-KMS object (kms:ViaService, the audit's invokedBy)
S3_SERVICE = "s3.amazonaws.com"


@dataclass(eq=False)
class Transfers:
    """The runtime-built context of export and import handlers: the database and the buckets."""

    db: Database
    buckets: BucketStore
    #: leases of the jobs this process runs or has queued (``export:<arn>``, ``import:<arn>``)
    held: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __repr__(self) -> str:
        return f"<Transfers {self.buckets!r}>"

    # -- with several workers: who runs a job -------------------------------------------------------------
    # A job holds a lease from the request that starts it until it ends, renewed by a periodic job of its
    # process (``renew_held``): queued behind a long one on the backup thread, it still shows alive. When its
    # process dies (kill -9 included) the lease expires and the worker running the store-wide jobs fails it
    # (``exports.fail_abandoned``): the caller learns at once, not at the next start. Without workers there
    # are no leases: a job dies only with the one process, and the next start fails it (``recover``).
    def hold(self, name: str) -> None:
        leases = self.db.leases
        if leases is None:
            return
        with self._lock:
            self.held.add(name)
        leases.renew(name)

    def let_go(self, name: str) -> None:
        leases = self.db.leases
        if leases is None:
            return
        with self._lock:
            self.held.discard(name)
        leases.release_one(name)

    def renew_held(self) -> None:
        leases = self.db.leases
        if leases is None:
            return
        with self._lock:
            names = sorted(self.held)
        for name in names:
            leases.renew(name)

    def abandoned(self, name: str) -> bool:
        """Whether the job under lease ``name`` has no living process (with workers; never without)."""
        return self.db.leases is not None and not self.db.leases.taken(name)

    def object_keys(self, caller: Caller) -> ObjectKeys:
        """Data keys for the objects of ``caller``'s export or import: SSE-KMS through the caller's own key
        (GenerateDataKey / Decrypt as the caller via S3, authorized and audited), SSE-S3 (AES256) under the
        server's AWS owned key, asked for by the service itself."""
        keys = self.db.keys

        def who(algorithm: str) -> Caller:
            if algorithm == AES256:
                return service_caller(keys.owned_account, caller.region)
            return caller.on_behalf(S3_SERVICE)

        def generate(algorithm: str, key_id: str | None, context: dict[str, str]) -> tuple[bytes, bytes, str]:
            target = keys.owned_key_arn(caller.region) if algorithm == AES256 else str(key_id)
            dk = keys.call("GenerateDataKey", keys.kms.generate_data_key, who(algorithm), target, context)
            arn = target if target.startswith("arn:") else keys.call(
                "DescribeKey", keys.kms.describe_key, who(algorithm), target).arn
            return dk.plaintext, dk.blob, arn

        def unwrap(algorithm: str, key_arn: str, blob: bytes, context: dict[str, str]) -> bytes:
            if algorithm not in (AES256, KMS):
                raise AWSError("ValidationException", f"unknown object encryption {algorithm!r}")
            try:
                return keys.call("Decrypt", keys.kms.decrypt, who(algorithm), blob, context, wrap=False)
            except InvalidCiphertext:  # a changed wrapped key or context: the object was tampered with
                raise IntegrityError("exported object failed authentication: its wrapped data key") from None
            except KeyPortError as err:
                raise wrap_kms_error(err) from None

        return ObjectKeys(generate, unwrap)


def iso(t: float) -> str:
    """AWS's manifest time form: 2020-11-04T07:28:34.028Z."""
    moment = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def timestamp(value: object, member: str) -> float:
    """A timestamp member as the shape check lets it through: epoch seconds or ISO 8601 text."""
    seconds = epoch_seconds(value)
    if seconds is None:
        raise validation(f"Invalid {member}: {value}")
    return seconds


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def kms_failure(err: Exception) -> tuple[str, str]:
    """(FailureCode, FailureMessage) of a job that a key refused."""
    if isinstance(err, AWSError):
        return err.code, err.message
    if isinstance(err, KeyPortError):
        return err.code, err.message
    return "UNKNOWN", "Internal error"
