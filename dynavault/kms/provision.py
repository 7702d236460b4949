"""The keys the key service provisions by itself: the AWS owned key (tables that name no KMS key) and each
account's AWS managed keys ``alias/aws/dynamodb`` and ``alias/aws/dax``, all created on first use.
"""

from __future__ import annotations

import orjson

from dynavault.caller import DYNAMODB_SERVICE
from dynavault.kms import policy as pol
from dynavault.kms.keyring import KeyRing
from dynavault.kms.model import (
    AWS_OWNED_ACCOUNT,
    MANAGED_DAX_ALIAS,
    MANAGED_DAX_DESCRIPTION,
    MANAGED_DYNAMODB_ALIAS,
    MANAGED_DYNAMODB_DESCRIPTION,
    OWNED_ALIAS,
    KmsKey,
)


def owned_key(ring: KeyRing, region: str) -> KmsKey:
    """The AWS owned key (in AWS_OWNED_ACCOUNT) of ``region``."""
    with ring.lock:
        alias = ring.aliases.get((AWS_OWNED_ACCOUNT, region), {}).get(OWNED_ALIAS)
        if alias is not None and alias["TargetKeyId"] in ring.keys:
            return ring.keys[alias["TargetKeyId"]]
        doc = {
            "Version": "2012-10-17",
            "Id": "aws-owned-dynamodb",
            "Statement": [
                {
                    "Sid": "DynamoDB itself",
                    "Effect": "Allow",
                    "Principal": {"Service": DYNAMODB_SERVICE},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                # the database refreshing a cached table key on a user's behalf (Decrypt via DynamoDB)
                {
                    "Sid": "Any principal, only through DynamoDB",
                    "Effect": "Allow",
                    "Principal": {"AWS": "*"},
                    "Action": [
                        "kms:Decrypt",
                        "kms:Encrypt",
                        "kms:GenerateDataKey*",
                        "kms:ReEncrypt*",
                        "kms:DescribeKey",
                    ],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"kms:ViaService": f"dynamodb.{region}.amazonaws.com"}},
                },
            ],
        }
        key = ring.new_key(
            AWS_OWNED_ACCOUNT,
            region,
            "AWS owned key for Amazon DynamoDB",
            orjson.dumps(doc).decode(),
            "AWS",
            rotation=True,
        )
        ring.put_alias(AWS_OWNED_ACCOUNT, region, OWNED_ALIAS, key.key_id, create=True)
        return key


#: alias -> (description, policy(account, region)) of the AWS managed keys made on first use
MANAGED_KEYS = {
    MANAGED_DYNAMODB_ALIAS: (MANAGED_DYNAMODB_DESCRIPTION, pol.dynamodb_managed_policy),
    MANAGED_DAX_ALIAS: (MANAGED_DAX_DESCRIPTION, pol.dax_managed_policy),
}


def managed_dynamodb_key(ring: KeyRing, account: str, region: str) -> KmsKey:
    """``account``'s AWS managed key for DynamoDB (alias/aws/dynamodb) in ``region``."""
    return managed_key(ring, account, region, MANAGED_DYNAMODB_ALIAS)


def managed_key(ring: KeyRing, account: str, region: str, alias_name: str) -> KmsKey:
    """``account``'s AWS managed key of ``alias_name`` (one of MANAGED_KEYS) in ``region``, made if missing."""
    description, policy = MANAGED_KEYS[alias_name]
    with ring.lock:
        alias = ring.aliases.get((account, region), {}).get(alias_name)
        if alias is not None and alias["TargetKeyId"] in ring.keys:
            return ring.keys[alias["TargetKeyId"]]
        key = ring.new_key(account, region, description, policy(account, region), "AWS", rotation=True)
        ring.put_alias(account, region, alias_name, key.key_id, create=True)
        return key
