"""Helpers shared by the key-lifecycle tests."""

from __future__ import annotations

import time

from botocore.exceptions import ClientError

from tests.conftest import make_table


def create_cmk_table(ddb, name: str, key_arn: str) -> None:
    make_table(ddb, name, sse={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn})


def wait_status(ddb, name: str, status: str, timeout: float) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        table = ddb.describe_table(TableName=name)["Table"]
        if table["TableStatus"] == status:
            return table
        time.sleep(0.2)
    raise AssertionError(f"{name} never reached {status}: {table['TableStatus']}")


def wait_key_gone(kms, key_id: str, timeout: float = 20) -> None:
    """Waits until KMS answers NotFoundException for a key scheduled for deletion."""
    deadline = time.time() + timeout
    while True:
        try:
            kms.describe_key(KeyId=key_id)
        except ClientError as err:
            assert err.response["Error"]["Code"] == "NotFoundException"
            return
        assert time.time() < deadline
        time.sleep(0.2)
