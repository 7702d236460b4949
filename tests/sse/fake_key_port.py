"""A KMS key port in memory (a test double of the external KMS, implementing dynavault.sse.key_port.KeyPort)
and a settable clock, for in-process tests of sse/."""

from __future__ import annotations

import os

from dynavault.caller import Caller
from dynavault.sse.key_port import (
    DataKey,
    Grant,
    InvalidCiphertext,
    KeyDisabled,
    KeyInfo,
    KeyNotFound,
    KeyPortError,
)
from dynavault.sse.table_keys import CUSTOMER, OWNED, TableKeyRef, TableKeyService

ACCOUNT = "111122223333"
OWNED_ACCOUNT = "000000000000"
ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/k1"
USER = Caller(account=ACCOUNT, region="us-east-1", principal_arn=f"arn:aws:iam::{ACCOUNT}:user/alice",
              connection_id=7)


class FakeKeys:
    """A key port in memory: blobs are opaque ids bound to a key and an encryption context."""

    def __init__(self) -> None:
        self.state = {ARN: "Enabled", "owned": "Enabled"}
        self.blobs: dict[bytes, tuple[str, dict, bytes]] = {}
        self.calls: list[tuple[str, str]] = []  # (operation, principal)
        self.fail: dict[str, KeyPortError] = {}

    def _check(self, op: str, caller: Caller, key_id: str) -> None:
        self.calls.append((op, caller.principal_arn))
        if op in self.fail:
            raise self.fail[op]
        if key_id not in self.state:
            raise KeyNotFound("NotFoundException", f"Key '{key_id}' does not exist")
        if self.state[key_id] == "Disabled":
            raise KeyDisabled("DisabledException", f"{key_id} is disabled.")

    def describe_key(self, caller: Caller, key_id: str) -> KeyInfo:
        self.calls.append(("DescribeKey", caller.principal_arn))
        if key_id not in self.state:
            raise KeyNotFound("NotFoundException", f"Key '{key_id}' does not exist")
        return KeyInfo(arn=key_id, state=self.state[key_id], manager="CUSTOMER")

    def generate_data_key(self, caller: Caller, key_id: str, context: dict[str, str]) -> DataKey:
        self._check("GenerateDataKey", caller, key_id)
        plaintext, blob = os.urandom(32), os.urandom(16)
        self.blobs[blob] = (key_id, dict(context), plaintext)
        return DataKey(plaintext, blob)

    def decrypt(self, caller: Caller, blob: bytes, context: dict[str, str]) -> bytes:
        if blob not in self.blobs:
            self.calls.append(("Decrypt", caller.principal_arn))
            raise InvalidCiphertext("InvalidCiphertextException", "")
        key_id, bound, plaintext = self.blobs[blob]
        self._check("Decrypt", caller, key_id)
        if bound != context:
            raise InvalidCiphertext("InvalidCiphertextException", "")
        return plaintext

    def create_grant(self, caller: Caller, key_id: str, *, grantee: str, retiring: str,
                     operations: list[str], context_subset: dict[str, str]) -> Grant:
        self._check("CreateGrant", caller, key_id)
        return Grant("g-1", "token")

    def retire_grant(self, caller: Caller, key_id: str, grant_id: str) -> None:
        self._check("RetireGrant", caller, key_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def table(keys: TableKeyService, mode: str = CUSTOMER) -> TableKeyRef:
    """A new table's keys made through ``keys``: what the cache needs to know of it."""
    table_id = os.urandom(16)
    record = keys.create_table_keys(USER, "t1", table_id, mode, ARN if mode != OWNED else "owned")
    return TableKeyRef(table_id, "t1", ACCOUNT, "us-east-1", record)
