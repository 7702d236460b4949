"""The key service's model: key records, their key material versions, states, and the service's constants.

A key record is what the key store persists (``doc``/``from_doc``) plus what is derived on load (the parsed
policy) and what lives in other store tables (grants). It never holds key material: that is the key ring's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType

from dynavault.kms import policy as pol

#: account that owns the "AWS owned" service keys (tables without a KMS key); never a customer account
AWS_OWNED_ACCOUNT = "000000000042"
MANAGED_DYNAMODB_ALIAS = "alias/aws/dynamodb"
MANAGED_DYNAMODB_DESCRIPTION = "Default key that protects my DynamoDB data when no other key is defined"
#: DAX's single service default key, made on an account's first encrypted cluster (as aws/dynamodb on first use)
MANAGED_DAX_ALIAS = "alias/aws/dax"
MANAGED_DAX_DESCRIPTION = "Default key that protects my DAX data when no other key is defined"
OWNED_ALIAS = "alias/aws/dynamodb-owned"
ALIAS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:([^:]*):([^:]*):(alias/.+)$")

SYMMETRIC = "SYMMETRIC_DEFAULT"
KEY_SPECS = MappingProxyType({
    "SYMMETRIC_DEFAULT": ("ENCRYPT_DECRYPT",),
    "RSA_2048": ("ENCRYPT_DECRYPT", "SIGN_VERIFY"),
    "RSA_3072": ("ENCRYPT_DECRYPT", "SIGN_VERIFY"),
    "RSA_4096": ("ENCRYPT_DECRYPT", "SIGN_VERIFY"),
    "ECC_NIST_P256": ("SIGN_VERIFY",),
    "ECC_NIST_P384": ("SIGN_VERIFY",),
    "ECC_NIST_P521": ("SIGN_VERIFY",),
    "ECC_SECG_P256K1": ("SIGN_VERIFY",),
    "HMAC_224": ("GENERATE_VERIFY_MAC",),
    "HMAC_256": ("GENERATE_VERIFY_MAC",),
    "HMAC_384": ("GENERATE_VERIFY_MAC",),
    "HMAC_512": ("GENERATE_VERIFY_MAC",),
})
GRANT_OPERATIONS = (
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "Sign",
    "Verify",
    "GetPublicKey",
    "CreateGrant",
    "RetireGrant",
    "DescribeKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
)
#: operations whose KeyId may name a key of another account (AWS "Cross-account use: Yes")
CROSS_ACCOUNT = frozenset({
    "CreateGrant",
    "Decrypt",
    "DescribeKey",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GetKeyRotationStatus",
    "ListGrants",
    "ReEncrypt",
    "RetireGrant",
    "RevokeGrant",
})
READ_ONLY_PREFIXES = ("Describe", "List", "Get")
READ_ONLY = frozenset({
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateRandom",
})
#: request members that never go into audit events (secrets, or bulky and meaningless there)
SECRET_PARAMS = frozenset({"Plaintext", "CiphertextBlob", "GrantTokens", "GrantToken"})
MAX_ON_DEMAND_ROTATIONS = 25


@dataclass
class Material:
    index: int
    material_id: str
    created: float
    rotation_type: str  # "" for the original material, else AUTOMATIC | ON_DEMAND

    def doc(self) -> dict:
        return {
            "index": self.index,
            "id": self.material_id,
            "created": self.created,
            "type": self.rotation_type,
        }


@dataclass
class KmsKey:
    key_id: str
    account: str
    region: str
    created: float
    description: str
    key_usage: str
    key_spec: str
    key_manager: str
    policy_text: str
    state: str = "Enabled"
    deletion_date: float | None = None
    pending_window: int | None = None
    tags: list[dict] = field(default_factory=list)
    rotation_enabled: bool = False
    rotation_period: int = 365
    next_rotation: float | None = None
    materials: list[Material] = field(default_factory=list)
    on_demand_rotations: int = 0
    #: bumped whenever the policy or the grants change: part of the authorization cache key
    version: int = 0
    policy_doc: dict = field(default_factory=dict, repr=False)
    grants: dict[str, dict] = field(default_factory=dict, repr=False)

    @property
    def arn(self) -> str:
        return f"arn:aws:kms:{self.region}:{self.account}:key/{self.key_id}"

    def __repr__(self) -> str:  # never material, never policy bodies
        return f"KmsKey({self.arn}, {self.state})"

    def doc(self) -> dict:
        return {
            "key_id": self.key_id,
            "account": self.account,
            "region": self.region,
            "created": self.created,
            "description": self.description,
            "key_usage": self.key_usage,
            "key_spec": self.key_spec,
            "key_manager": self.key_manager,
            "policy": self.policy_text,
            "state": self.state,
            "deletion_date": self.deletion_date,
            "pending_window": self.pending_window,
            "tags": self.tags,
            "rotation_enabled": self.rotation_enabled,
            "rotation_period": self.rotation_period,
            "next_rotation": self.next_rotation,
            "materials": [m.doc() for m in self.materials],
            "on_demand_rotations": self.on_demand_rotations,
        }

    @classmethod
    def from_doc(cls, doc: dict) -> KmsKey:
        key = cls(
            key_id=doc["key_id"],
            account=doc["account"],
            region=doc["region"],
            created=doc["created"],
            description=doc["description"],
            key_usage=doc["key_usage"],
            key_spec=doc["key_spec"],
            key_manager=doc["key_manager"],
            policy_text=doc["policy"],
            state=doc["state"],
            deletion_date=doc["deletion_date"],
            pending_window=doc["pending_window"],
            tags=doc["tags"],
            rotation_enabled=doc["rotation_enabled"],
            rotation_period=doc["rotation_period"],
            next_rotation=doc["next_rotation"],
            materials=[Material(m["index"], m["id"], m["created"], m["type"]) for m in doc["materials"]],
            on_demand_rotations=doc.get("on_demand_rotations", 0),
        )
        key.policy_doc = pol.load(key.policy_text)
        return key

    def metadata(self) -> dict:
        md: dict = {
            "AWSAccountId": self.account,
            "KeyId": self.key_id,
            "Arn": self.arn,
            "CreationDate": self.created,
            "Enabled": self.state == "Enabled",
            "Description": self.description,
            "KeyUsage": self.key_usage,
            "KeyState": self.state,
            "Origin": "AWS_KMS",
            "KeyManager": self.key_manager,
            "CustomerMasterKeySpec": self.key_spec,
            "KeySpec": self.key_spec,
            "MultiRegion": False,
        }
        if self.deletion_date is not None:
            md["DeletionDate"] = self.deletion_date
        if self.key_usage == "ENCRYPT_DECRYPT":
            md["EncryptionAlgorithms"] = (
                [SYMMETRIC] if self.key_spec == SYMMETRIC else ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
            )
        elif self.key_usage == "SIGN_VERIFY":
            md["SigningAlgorithms"] = (
                ["RSASSA_PSS_SHA_256", "RSASSA_PKCS1_V1_5_SHA_256"]
                if self.key_spec.startswith("RSA")
                else ["ECDSA_SHA_256"]
            )
        else:
            md["MacAlgorithms"] = [f"HMAC_SHA_{self.key_spec.split('_')[1]}"]
        if self.key_spec == SYMMETRIC and self.materials:
            md["CurrentKeyMaterialId"] = self.materials[-1].material_id
        return md


@dataclass
class CallInfo:
    """What a handler learned that the audit event needs."""

    keys: list[KmsKey] = field(default_factory=list)
    response_elements: dict | None = None
    request_key_arn: str | None = None

    def touch(self, key: KmsKey) -> KmsKey:
        if all(k.key_id != key.key_id for k in self.keys):
            self.keys.append(key)
        return key
