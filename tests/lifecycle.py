"""Helpers shared by the key-lifecycle tests."""

from __future__ import annotations

import time

KEYS = [{"AttributeName": "pk", "KeyType": "HASH"}]
DEFS = [{"AttributeName": "pk", "AttributeType": "S"}]


def create_cmk_table(ddb, name: str, key_arn: str) -> None:
    ddb.create_table(TableName=name, KeySchema=KEYS, AttributeDefinitions=DEFS, BillingMode="PAY_PER_REQUEST",
                     SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn})


def wait_status(ddb, name: str, status: str, timeout: float) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        table = ddb.describe_table(TableName=name)["Table"]
        if table["TableStatus"] == status:
            return table
        time.sleep(0.2)
    raise AssertionError(f"{name} never reached {status}: {table['TableStatus']}")
