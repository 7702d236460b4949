"""The KMS-compatible key service (TrentService JSON 1.1 semantics), in-process.

Handlers take ``(caller, params)`` with params exactly as the wire carries them (blobs base64, timestamps
epoch seconds) and return the response dict; errors are AWSError with KMS's codes and texts. Every call,
success or failure, appends one CloudTrail-shaped event to the audit trail.

Key material: 32 random bytes per material version, sealed by the root of trust in the key store, unsealed
into memory (as AESGCM objects) on first use and never written back in the clear.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dynavault.audit.trail import AuditTrail
from dynavault.caller import DYNAMODB_SERVICE, Caller
from dynavault.config import Settings
from dynavault.errors import AWSError
from dynavault.kms import blob as blobfmt
from dynavault.kms import policy as pol
from dynavault.kms.root import RootOfTrustError
from dynavault.kms.store import KeyStore
from dynavault.kms.trust import ensure_check_value, material_aad, open_checked_root

log = logging.getLogger("dynavault.kms")

#: account that owns the "AWS owned" service keys (tables without a KMS key); never a customer account
AWS_OWNED_ACCOUNT = "000000000042"
MANAGED_DYNAMODB_ALIAS = "alias/aws/dynamodb"
MANAGED_DYNAMODB_DESCRIPTION = "Default key that protects my DynamoDB data when no other key is defined"
_OWNED_ALIAS = "alias/aws/dynamodb-owned"

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:([^:]*):([^:]*):key/(.+)$")
_ALIAS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:([^:]*):([^:]*):(alias/.+)$")
_ALIAS_NAME = re.compile(r"^[a-zA-Z0-9:/_-]+$")
_ALIAS_DOC = (
    'Alias must start with the prefix "alias/". Please see '
    "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html"
)

_SYMMETRIC = "SYMMETRIC_DEFAULT"
_KEY_SPECS = {
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
}
_GRANT_OPERATIONS = [
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
]
#: operations whose KeyId may name a key of another account (AWS "Cross-account use: Yes")
_CROSS_ACCOUNT = {
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
}
_READ_ONLY_PREFIXES = ("Describe", "List", "Get")
_READ_ONLY = {
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateRandom",
}
#: request members that never go into audit events (secrets, or bulky and meaningless there)
_SECRET_PARAMS = {"Plaintext", "CiphertextBlob", "GrantTokens", "GrantToken"}
_MAX_ON_DEMAND_ROTATIONS = 25


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _camel(value: object) -> object:
    if isinstance(value, dict):
        return {_lower_first(k): _camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel(v) for v in value]
    return value


def _validation(field_path: str, value: object, constraint: str) -> AWSError:
    shown = "null" if value is None else f"'{value}'"
    return AWSError(
        "ValidationException",
        f"1 validation error detected: Value {shown} at '{field_path}' "
        f"failed to satisfy constraint: {constraint}",
    )


def _not_null(field_path: str) -> AWSError:
    return _validation(field_path, None, "Member must not be null")


# -- in-memory model -------------------------------------------------------------------------------------


@dataclass
class _Material:
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
class _Key:
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
    materials: list[_Material] = field(default_factory=list)
    on_demand_rotations: int = 0
    #: bumped whenever the policy or the grants change: part of the authorization cache key
    version: int = 0
    policy_doc: dict = field(default_factory=dict, repr=False)
    grants: dict[str, dict] = field(default_factory=dict, repr=False)

    @property
    def arn(self) -> str:
        return f"arn:aws:kms:{self.region}:{self.account}:key/{self.key_id}"

    def __repr__(self) -> str:  # never material, never policy bodies
        return f"_Key({self.arn}, {self.state})"

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
    def from_doc(cls, doc: dict) -> _Key:
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
            materials=[_Material(m["index"], m["id"], m["created"], m["type"]) for m in doc["materials"]],
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
                [_SYMMETRIC] if self.key_spec == _SYMMETRIC else ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]
            )
        elif self.key_usage == "SIGN_VERIFY":
            md["SigningAlgorithms"] = (
                ["RSASSA_PSS_SHA_256", "RSASSA_PKCS1_V1_5_SHA_256"]
                if self.key_spec.startswith("RSA")
                else ["ECDSA_SHA_256"]
            )
        else:
            md["MacAlgorithms"] = [f"HMAC_SHA_{self.key_spec.split('_')[1]}"]
        if self.key_spec == _SYMMETRIC and self.materials:
            md["CurrentKeyMaterialId"] = self.materials[-1].material_id
        return md


@dataclass
class _CallInfo:
    """What a handler learned that the audit event needs."""

    keys: list[_Key] = field(default_factory=list)
    response_elements: dict | None = None
    request_key_arn: str | None = None

    def touch(self, key: _Key) -> _Key:
        if all(k.key_id != key.key_id for k in self.keys):
            self.keys.append(key)
        return key


# -- the service -----------------------------------------------------------------------------------------


class KeyService:
    def __init__(self, settings: Settings, trail: AuditTrail, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.trail = trail
        self.clock = clock
        self._lock = threading.RLock()
        # before anything is written: a root that cannot open the stored material refuses the start
        self._root = open_checked_root(settings)
        try:
            self._store = KeyStore(settings.data_path("kms"))
            ensure_check_value(self._store, self._root)
        except BaseException:
            self._root.close()
            raise
        self._keys: dict[str, _Key] = {}
        self._aliases: dict[tuple[str, str], dict[str, dict]] = {}
        self._aead: dict[tuple[str, int], AESGCM] = {}
        self._authz_cache: dict[tuple, bool] = {}
        for doc in self._store.keys():
            key = _Key.from_doc(doc)
            self._keys[key.key_id] = key
        self._deleted: set[str] = self._store.deleted_keys()
        for key_id, grant in self._store.grants():
            if key_id in self._keys:
                self._keys[key_id].grants[grant["GrantId"]] = grant
        for account, region, name, doc in self._store.aliases():
            self._aliases.setdefault((account, region), {})[name] = doc
        self._handlers: dict[str, Callable[[Caller, dict, _CallInfo], dict]] = {
            "CreateKey": self._create_key,
            "DescribeKey": self._describe_key,
            "ListKeys": self._list_keys,
            "CreateAlias": self._create_alias,
            "UpdateAlias": self._update_alias,
            "DeleteAlias": self._delete_alias,
            "ListAliases": self._list_aliases,
            "EnableKey": self._enable_key,
            "DisableKey": self._disable_key,
            "ScheduleKeyDeletion": self._schedule_key_deletion,
            "CancelKeyDeletion": self._cancel_key_deletion,
            "Encrypt": self._encrypt,
            "Decrypt": self._decrypt,
            "ReEncrypt": self._re_encrypt,
            "GenerateDataKey": self._generate_data_key,
            "GenerateDataKeyWithoutPlaintext": self._generate_data_key_without_plaintext,
            "GenerateRandom": self._generate_random,
            "EnableKeyRotation": self._enable_key_rotation,
            "DisableKeyRotation": self._disable_key_rotation,
            "GetKeyRotationStatus": self._get_key_rotation_status,
            "RotateKeyOnDemand": self._rotate_key_on_demand,
            "ListKeyRotations": self._list_key_rotations,
            "GetKeyPolicy": self._get_key_policy,
            "PutKeyPolicy": self._put_key_policy,
            "ListKeyPolicies": self._list_key_policies,
            "CreateGrant": self._create_grant,
            "ListGrants": self._list_grants,
            "ListRetirableGrants": self._list_retirable_grants,
            "RetireGrant": self._retire_grant,
            "RevokeGrant": self._revoke_grant,
            "TagResource": self._tag_resource,
            "UntagResource": self._untag_resource,
            "ListResourceTags": self._list_resource_tags,
        }
        self._ops = {name: self._bind(name) for name in self._handlers}

    def __repr__(self) -> str:
        return f"KeyService(keys={len(self._keys)})"

    # -- public interface ----------------------------------------------------------------------------------

    def operations(self) -> dict[str, Callable[[Caller, dict], dict]]:
        return dict(self._ops)

    def invoke(self, caller: Caller, operation: str, params: dict) -> dict:
        op = self._ops.get(operation)
        if op is None:
            raise AWSError("UnknownOperationException", None)
        return op(caller, params)

    def owned_key_arn(self, region: str) -> str:
        """The AWS owned key (in AWS_OWNED_ACCOUNT) protecting tables that name no KMS key."""
        with self._lock:
            alias = self._aliases.get((AWS_OWNED_ACCOUNT, region), {}).get(_OWNED_ALIAS)
            if alias is not None and alias["TargetKeyId"] in self._keys:
                return self._keys[alias["TargetKeyId"]].arn
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
            key = self._new_key(
                AWS_OWNED_ACCOUNT,
                region,
                "AWS owned key for Amazon DynamoDB",
                orjson.dumps(doc).decode(),
                "AWS",
                rotation=True,
            )
            self._put_alias(AWS_OWNED_ACCOUNT, region, _OWNED_ALIAS, key.key_id, create=True)
            return key.arn

    def sweep(self) -> None:
        """Delete keys whose deletion window ended; perform due automatic rotations."""
        now = self.clock()
        with self._lock:
            for key in list(self._keys.values()):
                if (
                    key.state == "PendingDeletion"
                    and key.deletion_date is not None
                    and key.deletion_date <= now
                ):
                    self._delete_key_now(key)
                elif (
                    key.state == "Enabled"
                    and key.rotation_enabled
                    and key.next_rotation is not None
                    and key.next_rotation <= now
                ):
                    self._rotate(key, "AUTOMATIC")
                    key.next_rotation = now + key.rotation_period * self.settings.kms_day_seconds
                    self._save(key)
                    self._internal_event(key, "RotateKey")

    def close(self) -> None:
        with self._lock:
            self._aead.clear()
            self._store.close()
            self._root.close()

    # -- dispatch and audit --------------------------------------------------------------------------------

    def _bind(self, name: str) -> Callable[[Caller, dict], dict]:
        handler = self._handlers[name]

        def call(caller: Caller, params: dict) -> dict:
            info = _CallInfo()
            try:
                if params is None:
                    params = {}
                if not isinstance(params, dict):
                    raise AWSError(
                        "SerializationException", "Start of structure or map found where not expected."
                    )
                response = handler(caller, params, info)
            except AWSError as err:
                self._audit(name, caller, params, info, err)
                raise
            except Exception:
                log.exception("KMS %s failed", name)
                err = AWSError(
                    "KMSInternalException",
                    "The request was rejected because an internal "
                    "exception occurred. The request can be retried.",
                    500,
                )
                self._audit(name, caller, params, info, err)
                raise err from None
            self._audit(name, caller, params, info, None)
            return response

        call.__name__ = name
        return call

    def _identity(self, caller: Caller) -> dict:
        if caller.is_service:
            return {
                "type": "AWSService",
                "invokedBy": _service_root(caller.via_service or caller.principal_arn),
            }
        ident: dict = {
            "type": caller.user_type(),
            "principalId": caller.access_key or caller.account,
            "arn": caller.principal_arn,
            "accountId": caller.account,
        }
        if caller.access_key:
            ident["accessKeyId"] = caller.access_key
        if ident["type"] == "IAMUser" and "/" in caller.principal_arn:
            ident["userName"] = caller.principal_arn.rsplit("/", 1)[-1]
        if caller.via_service:
            ident["invokedBy"] = _service_root(caller.via_service)
        return ident

    def _audit(
        self, name: str, caller: Caller, params: object, info: _CallInfo, err: AWSError | None
    ) -> None:
        now = self.clock()
        request = None
        if isinstance(params, dict):
            request = {_lower_first(k): _camel(v) for k, v in params.items() if k not in _SECRET_PARAMS}
        via = caller.via_service or (caller.principal_arn if caller.is_service else None)
        event: dict = {
            "eventVersion": "1.08",
            "userIdentity": self._identity(caller),
            "eventTime": _iso(now),
            "eventSource": "kms.amazonaws.com",
            "eventName": name,
            "awsRegion": caller.region,
            "sourceIPAddress": _service_root(via) if via else caller.source_ip,
            "userAgent": _service_root(via) if via else caller.user_agent,
            "requestParameters": request or None,
            "responseElements": None if err else info.response_elements,
            "requestID": str(uuid.uuid4()),
            "eventID": str(uuid.uuid4()),
            "readOnly": name in _READ_ONLY or name.startswith(_READ_ONLY_PREFIXES),
            "resources": [{"accountId": k.account, "type": "AWS::KMS::Key", "ARN": k.arn} for k in info.keys],
            "eventType": "AwsApiCall",
            "managementEvent": True,
            "eventCategory": "Management",
        }
        if err is not None:
            event["errorCode"] = err.code
            event["errorMessage"] = err.message or ""
        # Recipients: the caller's account and each key owner's account; the AWS owned key's events stay in
        # AWS_OWNED_ACCOUNT only (customers never see them).
        owned = any(k.account == AWS_OWNED_ACCOUNT for k in info.keys)
        recipients = [AWS_OWNED_ACCOUNT] if owned else [caller.account]
        if not owned:
            for k in info.keys:
                if k.account not in recipients:
                    recipients.append(k.account)
        if len(recipients) > 1:
            event["sharedEventID"] = str(uuid.uuid4())
        for i, account in enumerate(recipients):
            ev = event if i == 0 else {**event, "eventID": str(uuid.uuid4())}
            ev["recipientAccountId"] = account
            try:
                self.trail.record(ev)
            except Exception:  # the audit trail failing must be loud, but not hide the call's own error
                log.exception("audit record failed")
                if err is None:
                    raise

    def _internal_event(self, key: _Key, name: str) -> None:
        event = {
            "eventVersion": "1.08",
            "userIdentity": {"accountId": key.account, "invokedBy": "AWS Internal"},
            "eventTime": _iso(self.clock()),
            "eventSource": "kms.amazonaws.com",
            "eventName": name,
            "awsRegion": key.region,
            "sourceIPAddress": "AWS Internal",
            "userAgent": "AWS Internal",
            "requestParameters": None,
            "responseElements": None,
            "eventID": str(uuid.uuid4()),
            "readOnly": False,
            "resources": [{"accountId": key.account, "type": "AWS::KMS::Key", "ARN": key.arn}],
            "eventType": "AwsServiceEvent",
            "managementEvent": True,
            "eventCategory": "Management",
            "recipientAccountId": key.account,
        }
        self.trail.record(event)

    # -- key lifecycle helpers -----------------------------------------------------------------------------

    def _save(self, key: _Key, material: tuple[int, bytes] | None = None) -> None:
        self._store.put_key(key.key_id, key.doc(), material)

    def _material_aad(self, key: _Key, index: int) -> bytes:
        return material_aad(key.arn, index)

    def _add_material(self, key: _Key, rotation_type: str) -> tuple[int, bytes]:
        index = len(key.materials)
        raw = os.urandom(32)
        sealed = self._root.seal(raw, self._material_aad(key, index))
        # cache first, publish second: a concurrent Encrypt may pick the new material at once
        self._aead[(key.key_id, index)] = AESGCM(raw)
        key.materials.append(
            _Material(index, hashlib.sha256(os.urandom(32)).hexdigest(), self.clock(), rotation_type)
        )
        return index, sealed

    def _new_key(
        self,
        account: str,
        region: str,
        description: str,
        policy_text: str,
        manager: str,
        key_usage: str = "ENCRYPT_DECRYPT",
        key_spec: str = _SYMMETRIC,
        tags: list | None = None,
        rotation: bool = False,
    ) -> _Key:
        now = self.clock()
        key = _Key(
            key_id=str(uuid.uuid4()),
            account=account,
            region=region,
            created=now,
            description=description,
            key_usage=key_usage,
            key_spec=key_spec,
            key_manager=manager,
            policy_text=policy_text,
            tags=list(tags or []),
        )
        key.policy_doc = pol.parse(policy_text)
        if rotation:
            key.rotation_enabled = True
            key.next_rotation = now + key.rotation_period * self.settings.kms_day_seconds
        with self._lock:
            material = self._add_material(key, "")
            self._save(key, material)
            self._keys[key.key_id] = key
        return key

    def _rotate(self, key: _Key, rotation_type: str) -> None:
        index, sealed = self._add_material(key, rotation_type)
        try:
            self._save(key, (index, sealed))
        except BaseException:
            # never encrypt under material that is not durably stored
            key.materials.pop()
            self._aead.pop((key.key_id, index), None)
            raise

    def _delete_key_now(self, key: _Key) -> None:
        for (account, region), names in self._aliases.items():
            if account != key.account or region != key.region:
                continue
            for name in [n for n, a in names.items() if a["TargetKeyId"] == key.key_id]:
                del names[name]
                self._store.delete_alias(account, region, name)
        self._store.delete_key(key.key_id)
        self._keys.pop(key.key_id, None)
        self._deleted.add(key.key_id)
        for k in [k for k in self._aead if k[0] == key.key_id]:
            del self._aead[k]
        self._authz_cache.clear()
        self._internal_event(key, "DeleteKey")

    def _aead_for(self, key: _Key, index: int) -> AESGCM | None:
        aead = self._aead.get((key.key_id, index))
        if aead is not None:
            return aead
        with self._lock:
            sealed = self._store.sealed_material(key.key_id, index)
            if sealed is None:
                return None
            try:
                raw = self._root.unseal(sealed, self._material_aad(key, index))
            except RootOfTrustError:
                log.error(
                    "key material of %s (material %d) does not unseal with the root of trust", key.arn, index
                )
                raise
            aead = AESGCM(raw)
            self._aead[(key.key_id, index)] = aead
            return aead

    def _put_alias(self, account: str, region: str, name: str, key_id: str, create: bool) -> None:
        now = self.clock()
        with self._lock:
            names = self._aliases.setdefault((account, region), {})
            doc = names.get(name)
            if doc is None or create:
                doc = {"AliasName": name, "TargetKeyId": key_id, "CreationDate": now, "LastUpdatedDate": now}
            else:
                doc = {**doc, "TargetKeyId": key_id, "LastUpdatedDate": now}
            names[name] = doc
            self._store.put_alias(account, region, name, doc)

    def _managed_dynamodb_key(self, account: str, region: str) -> _Key:
        with self._lock:
            alias = self._aliases.get((account, region), {}).get(MANAGED_DYNAMODB_ALIAS)
            if alias is not None and alias["TargetKeyId"] in self._keys:
                return self._keys[alias["TargetKeyId"]]
            key = self._new_key(
                account,
                region,
                MANAGED_DYNAMODB_DESCRIPTION,
                pol.dynamodb_managed_policy(account, region),
                "AWS",
                rotation=True,
            )
            self._put_alias(account, region, MANAGED_DYNAMODB_ALIAS, key.key_id, create=True)
            return key

    # -- resolution and authorization ----------------------------------------------------------------------

    def _resolve(
        self, caller: Caller, key_ref: object, info: _CallInfo, op: str, field_path: str = "keyId"
    ) -> _Key:
        if key_ref is None:
            raise _not_null(field_path)
        if not isinstance(key_ref, str):
            raise AWSError("SerializationException", f"Unexpected value type for {field_path}")
        if not 1 <= len(key_ref) <= 2048:
            raise _validation(field_path, key_ref, "Member must have length greater than or equal to 1")
        m = _KEY_ARN.match(key_ref)
        if m:
            region, account, key_id = m.groups()
            if region != caller.region:
                raise AWSError("NotFoundException", f"Invalid arn {region}")
            key = self._keys.get(key_id)
            if key is None or key.account != account or key.region != region or self._hidden(caller, key):
                raise AWSError("NotFoundException", f"Key '{key_ref}' does not exist")
        else:
            m = _ALIAS_ARN.match(key_ref)
            if m:
                region, account, name = m.groups()
                if region != caller.region:
                    raise AWSError("NotFoundException", f"Invalid arn {region}")
                alias_arn = key_ref
            elif key_ref.startswith("alias/"):
                region, account, name = caller.region, caller.account, key_ref
                alias_arn = f"arn:aws:kms:{region}:{account}:{name}"
            else:
                if not _UUID.match(key_ref) and not key_ref.startswith("mrk-"):
                    raise AWSError("NotFoundException", f"Invalid keyId '{key_ref}'")
                key = self._keys.get(key_ref.lower())
                arn = f"arn:aws:kms:{caller.region}:{caller.account}:key/{key_ref}"
                if key is None or key.account != caller.account or key.region != caller.region:
                    raise AWSError("NotFoundException", f"Key '{arn}' does not exist")
                return self._cross_account_check(caller, info.touch(key), op)
            if name == MANAGED_DYNAMODB_ALIAS and account == caller.account and account != AWS_OWNED_ACCOUNT:
                key = self._managed_dynamodb_key(account, region)
            elif name == _OWNED_ALIAS and account == caller.account == AWS_OWNED_ACCOUNT:
                # a remote database (dynavault serve --kms-endpoint) finds the owned key by its alias
                self.owned_key_arn(region)
                key = self._keys[self._aliases[(account, region)][_OWNED_ALIAS]["TargetKeyId"]]
            else:
                alias = self._aliases.get((account, region), {}).get(name)
                key = self._keys.get(alias["TargetKeyId"]) if alias is not None else None
                if key is None or self._hidden(caller, key):
                    raise AWSError("NotFoundException", f"Alias {alias_arn} is not found.")
        return self._cross_account_check(caller, info.touch(key), op)

    @staticmethod
    def _hidden(caller: Caller, key: _Key) -> bool:
        """AWS owned keys exist only for the database: to a customer's own calls they are unknown keys."""
        return (
            key.account == AWS_OWNED_ACCOUNT
            and caller.account != AWS_OWNED_ACCOUNT
            and not caller.is_service
            and caller.via_service is None
        )

    def _cross_account_check(self, caller: Caller, key: _Key, op: str) -> _Key:
        if key.account != caller.account and op not in _CROSS_ACCOUNT:
            raise self._denied(caller, key, op)
        return key

    def _denied(self, caller: Caller, key: _Key, action: str, explicit: bool = False) -> AWSError:
        tail = (
            "with an explicit deny in a resource-based policy"
            if explicit
            else f"because no resource-based policy allows the kms:{action} action"
        )
        return AWSError(
            "AccessDeniedException",
            f"User: {caller.principal_arn} is not authorized to perform: kms:{action} "
            f"on resource: {key.arn} {tail}",
        )

    def _authorize(
        self,
        caller: Caller,
        key: _Key,
        action: str,
        context: dict | None = None,
        context_bytes: bytes = b"",
        extra: dict[str, list[str]] | None = None,
    ) -> None:
        scope = pol.cache_scope(key.policy_doc, caller.source_ip)
        cache_key = (
            key.key_id,
            key.version,
            caller.principal_arn,
            caller.account,
            caller.is_service,
            caller.via_service,
            action,
            context_bytes,
            scope,
            tuple(sorted((k, tuple(v)) for k, v in extra.items())) if extra else (),
        )
        verdict = self._authz_cache.get(cache_key) if scope is not None else None
        if verdict is None:
            verdict = self._evaluate(caller, key, action, context, extra)
            if scope is not None:
                if len(self._authz_cache) > 50_000:
                    self._authz_cache.clear()
                self._authz_cache[cache_key] = verdict
        if verdict is True:
            return
        raise self._denied(caller, key, action, explicit=verdict == pol.DENY)

    def _evaluate(
        self, caller: Caller, key: _Key, action: str, context: dict | None, extra: dict | None = None
    ) -> bool | str:
        values = pol.request_context(
            account=caller.account,
            principal_arn=caller.principal_arn,
            action=f"kms:{action}",
            source_ip=caller.source_ip,
            via_service=caller.via_service,
            is_service=caller.is_service,
            now=self.clock(),
            encryption_context=context,
            extra={"kms:KeySpec": [key.key_spec], "kms:KeyUsage": [key.key_usage], "kms:KeyOrigin": ["AWS_KMS"],
                   **(extra or {})},
        )
        req = pol.Request(caller.principal_arn, caller.account, caller.is_service, f"kms:{action}", values)
        verdict = pol.evaluate(key.policy_doc, req)
        if verdict == pol.DENY:
            return pol.DENY
        if verdict == pol.ALLOW:
            return True
        for grant in key.grants.values():
            if self._grant_allows(grant, caller, action, context):
                return True
        return False

    @staticmethod
    def _grantee_matches(principal: str, caller: Caller) -> bool:
        if principal == caller.principal_arn:
            return True
        if caller.is_service:
            return principal == _service_root(caller.principal_arn)
        return principal in (caller.account, f"arn:aws:iam::{caller.account}:root")

    def _grant_allows(self, grant: dict, caller: Caller, action: str, context: dict | None) -> bool:
        if action not in grant["Operations"] or not self._grantee_matches(grant["GranteePrincipal"], caller):
            return False
        constraints = grant.get("Constraints") or {}
        if action in ("DescribeKey", "RetireGrant"):
            return True
        ctx = context or {}
        subset = constraints.get("EncryptionContextSubset")
        if subset is not None and any(ctx.get(k) != v for k, v in subset.items()):
            return False
        equals = constraints.get("EncryptionContextEquals")
        if equals is not None and ctx != equals:
            return False
        return True

    # -- parameter helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _context(params: dict, name: str = "EncryptionContext") -> tuple[dict[str, str], bytes]:
        ctx = params.get(name)
        if ctx is None:
            return {}, b""
        if not isinstance(ctx, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in ctx.items()
        ):
            raise AWSError("SerializationException", f"Unexpected value type for {_lower_first(name)}")
        return ctx, blobfmt.canonical_context(ctx)

    @staticmethod
    def _bytes(params: dict, name: str, required: bool = True) -> bytes | None:
        value = params.get(name)
        if value is None:
            if required:
                raise _not_null(_lower_first(name))
            return None
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        if not isinstance(value, str):
            raise AWSError("SerializationException", f"Unexpected value type for {_lower_first(name)}")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise AWSError(
                "SerializationException", f"Could not decode base64 for {_lower_first(name)}"
            ) from None

    @staticmethod
    def _int(params: dict, name: str, lo: int, hi: int, default: int | None = None) -> int | None:
        value = params.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise AWSError("SerializationException", f"Unexpected value type for {_lower_first(name)}")
        if value < lo:
            raise _validation(
                _lower_first(name), value, f"Member must have value greater than or equal to {lo}"
            )
        if value > hi:
            raise _validation(_lower_first(name), value, f"Member must have value less than or equal to {hi}")
        return value

    @staticmethod
    def _string(params: dict, name: str, required: bool = False, max_len: int = 2048) -> str | None:
        value = params.get(name)
        if value is None:
            if required:
                raise _not_null(_lower_first(name))
            return None
        if not isinstance(value, str):
            raise AWSError("SerializationException", f"Unexpected value type for {_lower_first(name)}")
        if len(value) > max_len:
            raise _validation(
                _lower_first(name), value, f"Member must have length less than or equal to {max_len}"
            )
        return value

    def _page(
        self, items: list, params: dict, limit_default: int = 100, limit_max: int = 1000
    ) -> tuple[list, dict]:
        limit = self._int(params, "Limit", 1, limit_max, limit_default)
        marker = params.get("Marker")
        start = 0
        if marker is not None:
            try:
                start = int(base64.urlsafe_b64decode(str(marker).encode()).decode())
                if start < 0:
                    raise ValueError
            except (ValueError, binascii.Error, UnicodeDecodeError):
                raise AWSError("InvalidMarkerException", "Invalid marker") from None
        page = items[start : start + limit]
        more = start + limit < len(items)
        extra: dict = {"Truncated": more}
        if more:
            extra["NextMarker"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
        return page, extra

    @staticmethod
    def _require_state(key: _Key, *, allow_disabled: bool = False, allow_pending: bool = False) -> None:
        if key.state == "PendingDeletion" and not allow_pending:
            raise AWSError("KMSInvalidStateException", f"{key.arn} is pending deletion.")
        if key.state == "Disabled" and not allow_disabled:
            raise AWSError("DisabledException", f"{key.arn} is disabled.")

    @staticmethod
    def _require_symmetric(key: _Key, op: str) -> None:
        if key.key_spec != _SYMMETRIC:
            if key.key_usage != "ENCRYPT_DECRYPT" or op.startswith("GenerateDataKey"):
                raise AWSError(
                    "InvalidKeyUsageException",
                    f"{key.arn} key usage is {key.key_usage} which is not valid for {op}.",
                )
            raise AWSError(
                "UnsupportedOperationException",
                f"{key.arn} key spec {key.key_spec} is not supported for {op} by this key service.",
            )

    # -- operations: keys ----------------------------------------------------------------------------------

    def _create_key(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        if caller.is_service:
            raise AWSError("AccessDeniedException", "Service principals cannot create keys.")
        description = self._string(params, "Description", max_len=8192) or ""
        key_spec = (
            self._string(params, "KeySpec") or self._string(params, "CustomerMasterKeySpec") or _SYMMETRIC
        )
        if key_spec not in _KEY_SPECS:
            raise _validation(
                "keySpec", key_spec, "Member must satisfy enum value set: [" + ", ".join(_KEY_SPECS) + "]"
            )
        key_usage = self._string(params, "KeyUsage") or _KEY_SPECS[key_spec][0]
        if key_usage not in ("ENCRYPT_DECRYPT", "SIGN_VERIFY", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT"):
            raise _validation(
                "keyUsage",
                key_usage,
                "Member must satisfy enum value set: "
                "[SIGN_VERIFY, ENCRYPT_DECRYPT, GENERATE_VERIFY_MAC, KEY_AGREEMENT]",
            )
        if key_usage not in _KEY_SPECS[key_spec]:
            raise AWSError(
                "ValidationException", f"KeyUsage {key_usage} is not compatible with KeySpec {key_spec}"
            )
        origin = self._string(params, "Origin") or "AWS_KMS"
        if origin != "AWS_KMS":
            raise AWSError(
                "UnsupportedOperationException", f"Origin {origin} is not supported by this key service."
            )
        if params.get("MultiRegion"):
            raise AWSError(
                "UnsupportedOperationException", "Multi-Region keys are not supported by this key service."
            )
        if params.get("CustomKeyStoreId") or params.get("XksKeyId"):
            raise AWSError(
                "UnsupportedOperationException", "Custom key stores are not supported by this key service."
            )
        tags = self._tags(params)
        if len(tags) > pol.MAX_TAGS:
            raise pol.too_many_tags("TagException")
        policy_text = params.get("Policy")
        if policy_text is None:
            policy_text = pol.default_policy(caller.account)
        else:
            pol.parse(policy_text)
        key = self._new_key(
            caller.account,
            caller.region,
            description,
            policy_text,
            "CUSTOMER",
            key_usage=key_usage,
            key_spec=key_spec,
            tags=tags,
        )
        info.touch(key)
        md = key.metadata()
        info.response_elements = {"keyMetadata": _camel({**md, "CreationDate": _iso(key.created)})}
        return {"KeyMetadata": md}

    def _describe_key(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        key = self._resolve(caller, params.get("KeyId"), info, "DescribeKey")
        self._authorize(caller, key, "DescribeKey")
        return {"KeyMetadata": key.metadata()}

    def _list_keys(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        keys = sorted(
            (k for k in self._keys.values() if k.account == caller.account and k.region == caller.region),
            key=lambda k: (k.created, k.key_id),
        )
        page, extra = self._page(keys, params)
        return {"Keys": [{"KeyId": k.key_id, "KeyArn": k.arn} for k in page], **extra}

    def _enable_key(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        key = self._resolve(caller, params.get("KeyId"), info, "EnableKey")
        self._authorize(caller, key, "EnableKey")
        self._require_state(key, allow_disabled=True)
        with self._lock:
            key.state = "Enabled"
            self._save(key)
        return {}

    def _disable_key(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        key = self._resolve(caller, params.get("KeyId"), info, "DisableKey")
        self._authorize(caller, key, "DisableKey")
        self._require_state(key, allow_disabled=True)
        with self._lock:
            key.state = "Disabled"
            self._save(key)
        return {}

    def _schedule_key_deletion(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        window = params.get("PendingWindowInDays", 30)
        if isinstance(window, bool) or not isinstance(window, int):
            raise AWSError("SerializationException", "Unexpected value type for pendingWindowInDays")
        key = self._resolve(caller, params.get("KeyId"), info, "ScheduleKeyDeletion")
        self._authorize(caller, key, "ScheduleKeyDeletion")
        if not 7 <= window <= 30:
            raise AWSError(
                "ValidationException", f"PendingWindowInDays should be between 7 and 30, but it is {window}"
            )
        self._require_state(key, allow_disabled=True)
        with self._lock:
            key.state = "PendingDeletion"
            key.pending_window = window
            key.deletion_date = self.clock() + window * self.settings.kms_day_seconds
            self._save(key)
        out = {
            "KeyId": key.arn,
            "DeletionDate": key.deletion_date,
            "KeyState": key.state,
            "PendingWindowInDays": window,
        }
        info.response_elements = {
            "keyId": key.arn,
            "deletionDate": _iso(key.deletion_date),
            "keyState": key.state,
            "pendingWindowInDays": window,
        }
        return out

    def _cancel_key_deletion(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        key = self._resolve(caller, params.get("KeyId"), info, "CancelKeyDeletion")
        self._authorize(caller, key, "CancelKeyDeletion")
        if key.state != "PendingDeletion":
            raise AWSError("KMSInvalidStateException", f"{key.arn} is not pending deletion.")
        with self._lock:
            key.state = "Disabled"  # as AWS: cancelling leaves the key disabled
            key.deletion_date = None
            key.pending_window = None
            self._save(key)
        info.response_elements = {"keyId": key.arn}
        return {"KeyId": key.arn}

    # -- operations: aliases -------------------------------------------------------------------------------

    def _alias_name(self, caller: Caller, params: dict, op: str) -> str:
        name = params.get("AliasName")
        if name is None:
            raise _not_null("aliasName")
        if not isinstance(name, str):
            raise AWSError("SerializationException", "Unexpected value type for aliasName")
        if not 1 <= len(name) <= 256:
            raise _validation("aliasName", name, "Member must have length less than or equal to 256")
        if not _ALIAS_NAME.match(name):
            raise _validation(
                "aliasName", name, "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"
            )
        if not name.startswith("alias/"):
            raise AWSError("ValidationException", _ALIAS_DOC)
        if name.startswith("alias/aws/"):
            # AWS reserves this prefix for AWS managed keys; customers cannot create, move or delete them.
            arn = f"arn:aws:kms:{caller.region}:{caller.account}:{name}"
            raise AWSError(
                "AccessDeniedException",
                f"User: {caller.principal_arn} is not authorized to perform: kms:{op} on resource: {arn} "
                "because the alias/aws/ prefix is reserved for AWS managed keys",
            )
        return name

    def _alias_target(self, caller: Caller, params: dict, info: _CallInfo, op: str) -> _Key:
        target = params.get("TargetKeyId")
        if isinstance(target, str) and (target.startswith("alias/") or _ALIAS_ARN.match(target)):
            raise AWSError("ValidationException", "Aliases must refer to keys. Not aliases")
        key = self._resolve(caller, target, info, op, "targetKeyId")
        if key.account != caller.account:
            raise self._denied(caller, key, op)
        self._authorize(caller, key, op)
        self._require_state(key, allow_disabled=True)
        return key

    def _create_alias(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        name = self._alias_name(caller, params, "CreateAlias")
        key = self._alias_target(caller, params, info, "CreateAlias")
        with self._lock:
            if name in self._aliases.get((caller.account, caller.region), {}):
                raise AWSError(
                    "AlreadyExistsException",
                    f"An alias with the name arn:aws:kms:{caller.region}:"
                    f"{caller.account}:{name} already exists",
                )
            self._put_alias(caller.account, caller.region, name, key.key_id, create=True)
        return {}

    def _update_alias(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        name = self._alias_name(caller, params, "UpdateAlias")
        current = self._aliases.get((caller.account, caller.region), {}).get(name)
        if current is None:
            raise AWSError(
                "NotFoundException",
                f"Alias arn:aws:kms:{caller.region}:{caller.account}:{name} is not found.",
            )
        if current["TargetKeyId"] in self._keys:
            info.touch(self._keys[current["TargetKeyId"]])
        key = self._alias_target(caller, params, info, "UpdateAlias")
        old = self._keys.get(current["TargetKeyId"])
        if old is not None and (old.key_spec, old.key_usage) != (key.key_spec, key.key_usage):
            raise AWSError(
                "ValidationException", f"{old.arn} key usage or key spec does not match {key.arn}."
            )
        self._put_alias(caller.account, caller.region, name, key.key_id, create=False)
        return {}

    def _delete_alias(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        name = self._alias_name(caller, params, "DeleteAlias")
        with self._lock:
            names = self._aliases.get((caller.account, caller.region), {})
            current = names.get(name)
            if current is None:
                raise AWSError(
                    "NotFoundException",
                    f"Alias arn:aws:kms:{caller.region}:{caller.account}:{name} is not found.",
                )
            key = self._keys.get(current["TargetKeyId"])
            if key is not None:
                info.touch(key)
                self._authorize(caller, key, "DeleteAlias")
            del names[name]
            self._store.delete_alias(caller.account, caller.region, name)
        return {}

    def _list_aliases(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        names = self._aliases.get((caller.account, caller.region), {})
        target = None
        if params.get("KeyId") is not None:
            key = self._resolve(caller, params.get("KeyId"), info, "ListAliases")
            target = key.key_id
        entries = []
        for name, doc in sorted(names.items()):
            if target is not None and doc["TargetKeyId"] != target:
                continue
            entries.append(
                {
                    "AliasName": name,
                    "AliasArn": f"arn:aws:kms:{caller.region}:{caller.account}:{name}",
                    "TargetKeyId": doc["TargetKeyId"],
                    "CreationDate": doc["CreationDate"],
                    "LastUpdatedDate": doc["LastUpdatedDate"],
                }
            )
        page, extra = self._page(entries, params, 50, 100)
        return {"Aliases": page, **extra}

    # -- operations: cryptography --------------------------------------------------------------------------

    def _seal(self, key: _Key, plaintext: bytes, context: bytes) -> tuple[bytes, _Material]:
        material = key.materials[-1]
        aead = self._aead_for(key, material.index)
        if aead is None:
            raise AWSError("KMSInternalException", "The key material is unavailable.", 500)
        return blobfmt.seal(aead, key.key_id, material.index, plaintext, context), material

    def _unseal(
        self,
        caller: Caller,
        ciphertext: bytes,
        context: dict,
        context_bytes: bytes,
        info: _CallInfo,
        action: str,
        expected_key: object,
    ) -> tuple[_Key, bytes, _Material]:
        try:
            header = blobfmt.parse_header(ciphertext)
        except blobfmt.BadBlob:
            raise AWSError("InvalidCiphertextException", "") from None
        key = self._keys.get(header.key_id)
        if key is None and header.key_id not in self._deleted:
            raise AWSError("InvalidCiphertextException", "")  # names no key we ever had: corrupted
        if key is None or key.region != caller.region or self._hidden(caller, key):
            raise AWSError(
                "AccessDeniedException",
                "The ciphertext refers to a customer master key that does not exist, "
                "does not exist in this region, "
                "or you are not allowed to access.",
            )
        info.touch(key)
        if expected_key is not None:
            wanted = self._resolve(caller, expected_key, _CallInfo(), "Decrypt")
            if wanted.key_id != key.key_id:
                raise AWSError(
                    "IncorrectKeyException",
                    "The key ID in the request does not identify a CMK that can perform this operation.",
                )
        self._authorize(caller, key, action, context, context_bytes)
        self._require_state(key)
        if header.material_index >= len(key.materials):
            raise AWSError("InvalidCiphertextException", "")
        aead = self._aead_for(key, header.material_index)
        if aead is None:
            raise AWSError("InvalidCiphertextException", "")
        try:
            plaintext = blobfmt.open_blob(aead, ciphertext, context_bytes)
        except blobfmt.BadBlob:
            raise AWSError("InvalidCiphertextException", "") from None
        return key, plaintext, key.materials[header.material_index]

    @staticmethod
    def _algorithm(params: dict, name: str = "EncryptionAlgorithm") -> str:
        alg = params.get(name)
        if alg is None or alg == _SYMMETRIC:
            return _SYMMETRIC
        if alg in ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE"):
            raise AWSError(
                "InvalidKeyUsageException",
                f"The encryption algorithm {alg} is not valid for a symmetric encryption KMS key.",
            )
        raise _validation(
            _lower_first(name),
            alg,
            "Member must satisfy enum value set: [SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, "
            "RSAES_OAEP_SHA_256, SM2PKE]",
        )

    def _encrypt(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        plaintext = self._bytes(params, "Plaintext")
        if not 1 <= len(plaintext) <= 4096:
            raise AWSError(
                "ValidationException",
                "1 validation error detected: Value at 'plaintext' failed to "
                "satisfy constraint: Member must have length "
                + ("less than or equal to 4096" if plaintext else "greater than or equal to 1"),
            )
        context, context_bytes = self._context(params)
        key = self._resolve(caller, params.get("KeyId"), info, "Encrypt")
        self._authorize(caller, key, "Encrypt", context, context_bytes)
        self._require_state(key)
        self._require_symmetric(key, "Encrypt")
        algorithm = self._algorithm(params)
        blob, _material = self._seal(key, plaintext, context_bytes)
        return {
            "CiphertextBlob": base64.b64encode(blob).decode(),
            "KeyId": key.arn,
            "EncryptionAlgorithm": algorithm,
        }

    def _decrypt(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        ciphertext = self._bytes(params, "CiphertextBlob")
        if not 1 <= len(ciphertext) <= 6144:
            raise _validation(
                "ciphertextBlob",
                None if not ciphertext else "...",
                "Member must have length less than or equal to 6144"
                if ciphertext
                else "Member must have length greater than or equal to 1",
            )
        context, context_bytes = self._context(params)
        algorithm = self._algorithm(params)
        key, plaintext, material = self._unseal(
            caller, ciphertext, context, context_bytes, info, "Decrypt", params.get("KeyId")
        )
        info.response_elements = {"keyMaterialId": material.material_id}
        return {
            "KeyId": key.arn,
            "Plaintext": base64.b64encode(plaintext).decode(),
            "EncryptionAlgorithm": algorithm,
            "KeyMaterialId": material.material_id,
        }

    def _re_encrypt(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        ciphertext = self._bytes(params, "CiphertextBlob")
        if params.get("DestinationKeyId") is None:
            raise _not_null("destinationKeyId")
        src_ctx, src_bytes = self._context(params, "SourceEncryptionContext")
        dst_ctx, dst_bytes = self._context(params, "DestinationEncryptionContext")
        src_alg = self._algorithm(params, "SourceEncryptionAlgorithm")
        dst_alg = self._algorithm(params, "DestinationEncryptionAlgorithm")
        src_key, plaintext, src_material = self._unseal(
            caller, ciphertext, src_ctx, src_bytes, info, "ReEncryptFrom", params.get("SourceKeyId")
        )
        dst_key = self._resolve(caller, params.get("DestinationKeyId"), info, "ReEncrypt", "destinationKeyId")
        self._authorize(caller, dst_key, "ReEncryptTo", dst_ctx, dst_bytes)
        self._require_state(dst_key)
        self._require_symmetric(dst_key, "ReEncrypt")
        blob, dst_material = self._seal(dst_key, plaintext, dst_bytes)
        return {
            "CiphertextBlob": base64.b64encode(blob).decode(),
            "SourceKeyId": src_key.arn,
            "KeyId": dst_key.arn,
            "SourceEncryptionAlgorithm": src_alg,
            "DestinationEncryptionAlgorithm": dst_alg,
            "SourceKeyMaterialId": src_material.material_id,
            "DestinationKeyMaterialId": dst_material.material_id,
        }

    def _data_key(
        self, caller: Caller, params: dict, info: _CallInfo, op: str
    ) -> tuple[_Key, bytes, bytes, _Material]:
        key_spec = params.get("KeySpec")
        number = self._int(params, "NumberOfBytes", 1, 1024)
        if key_spec is not None and key_spec not in ("AES_256", "AES_128"):
            raise _validation("keySpec", key_spec, "Member must satisfy enum value set: [AES_256, AES_128]")
        if (key_spec is None) == (number is None):
            raise AWSError("ValidationException", "Please specify either number of bytes or key spec.")
        size = number if number is not None else (32 if key_spec == "AES_256" else 16)
        context, context_bytes = self._context(params)
        key = self._resolve(caller, params.get("KeyId"), info, op)
        self._authorize(caller, key, op, context, context_bytes)
        self._require_state(key)
        self._require_symmetric(key, op)
        plaintext = os.urandom(size)
        blob, material = self._seal(key, plaintext, context_bytes)
        return key, plaintext, blob, material

    def _generate_data_key(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        key, plaintext, blob, material = self._data_key(caller, params, info, "GenerateDataKey")
        material_id = material.material_id
        info.response_elements = {"keyMaterialId": material_id}
        return {
            "CiphertextBlob": base64.b64encode(blob).decode(),
            "Plaintext": base64.b64encode(plaintext).decode(),
            "KeyId": key.arn,
            "KeyMaterialId": material_id,
        }

    def _generate_data_key_without_plaintext(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        key, _plaintext, blob, material = self._data_key(
            caller, params, info, "GenerateDataKeyWithoutPlaintext"
        )
        material_id = material.material_id
        info.response_elements = {"keyMaterialId": material_id}
        return {
            "CiphertextBlob": base64.b64encode(blob).decode(),
            "KeyId": key.arn,
            "KeyMaterialId": material_id,
        }

    def _generate_random(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        if params.get("CustomKeyStoreId") is not None:
            raise AWSError("CustomKeyStoreNotFoundException", "Custom key stores are not supported.")
        number = self._int(params, "NumberOfBytes", 1, 1024)
        if number is None:
            raise AWSError("ValidationException", "Please specify the number of bytes.")
        return {"Plaintext": base64.b64encode(os.urandom(number)).decode()}

    # -- operations: rotation ------------------------------------------------------------------------------

    def _rotation_key(self, caller: Caller, params: dict, info: _CallInfo, op: str) -> _Key:
        key = self._resolve(caller, params.get("KeyId"), info, op)
        self._authorize(caller, key, op)
        self._require_state(key)
        if key.key_spec != _SYMMETRIC:
            raise AWSError(
                "UnsupportedOperationException",
                "You cannot perform this operation on a non-symmetric key or a key with "
                "non-ENCRYPT_DECRYPT key usage.",
            )
        return key

    def _enable_key_rotation(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        period = self._int(params, "RotationPeriodInDays", 90, 2560, 365)
        key = self._rotation_key(caller, params, info, "EnableKeyRotation")
        with self._lock:
            key.rotation_enabled = True
            key.rotation_period = period
            key.next_rotation = self.clock() + period * self.settings.kms_day_seconds
            self._save(key)
        return {}

    def _disable_key_rotation(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        key = self._rotation_key(caller, params, info, "DisableKeyRotation")
        with self._lock:
            key.rotation_enabled = False
            key.next_rotation = None
            self._save(key)
        return {}

    def _get_key_rotation_status(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        key = self._resolve(caller, params.get("KeyId"), info, "GetKeyRotationStatus")
        self._authorize(caller, key, "GetKeyRotationStatus")
        out: dict = {"KeyRotationEnabled": key.rotation_enabled, "KeyId": key.arn}
        if key.rotation_enabled:
            out["RotationPeriodInDays"] = key.rotation_period
            if key.next_rotation is not None:
                out["NextRotationDate"] = key.next_rotation
        return out

    def _rotate_key_on_demand(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        key = self._rotation_key(caller, params, info, "RotateKeyOnDemand")
        with self._lock:
            if key.on_demand_rotations >= _MAX_ON_DEMAND_ROTATIONS:
                raise AWSError(
                    "LimitExceededException",
                    f"The on-demand rotations limit has been reached for the given keyId: {key.arn}",
                )
            key.on_demand_rotations += 1
            self._rotate(key, "ON_DEMAND")
        return {"KeyId": key.key_id}

    def _list_key_rotations(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        key = self._resolve(caller, params.get("KeyId"), info, "ListKeyRotations")
        self._authorize(caller, key, "ListKeyRotations")
        if key.key_spec != _SYMMETRIC:
            raise AWSError(
                "UnsupportedOperationException",
                "You cannot perform this operation on a non-symmetric key or a key with "
                "non-ENCRYPT_DECRYPT key usage.",
            )
        rotations = [
            {
                "KeyId": key.key_id,
                "KeyMaterialId": m.material_id,
                "RotationDate": m.created,
                "RotationType": m.rotation_type,
            }
            for m in key.materials
            if m.rotation_type
        ]
        page, extra = self._page(rotations, params)
        return {"Rotations": page, **extra}

    # -- operations: policies ------------------------------------------------------------------------------

    @staticmethod
    def _policy_name(params: dict) -> str:
        name = params.get("PolicyName", "default")
        if name is None:
            name = "default"
        if not isinstance(name, str):
            raise AWSError("SerializationException", "Unexpected value type for policyName")
        if name != "default":
            raise AWSError("NotFoundException", "No such policy exists")
        return name

    def _get_key_policy(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        key = self._resolve(caller, params.get("KeyId"), info, "GetKeyPolicy")
        self._authorize(caller, key, "GetKeyPolicy")
        name = self._policy_name(params)
        return {"Policy": key.policy_text, "PolicyName": name}

    def _put_key_policy(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        if params.get("Policy") is None:
            raise _not_null("policy")
        key = self._resolve(caller, params.get("KeyId"), info, "PutKeyPolicy")
        self._authorize(caller, key, "PutKeyPolicy")
        self._policy_name(params)
        doc = pol.parse(params["Policy"])
        with self._lock:
            key.policy_text = params["Policy"]
            key.policy_doc = doc
            key.version += 1
            self._save(key)
        return {}

    def _list_key_policies(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        key = self._resolve(caller, params.get("KeyId"), info, "ListKeyPolicies")
        self._authorize(caller, key, "ListKeyPolicies")
        return {"PolicyNames": ["default"], "Truncated": False}

    # -- operations: grants --------------------------------------------------------------------------------

    @staticmethod
    def _grant_token(grant_id: str) -> str:
        # Opaque to clients; carries the grant id plus randomness so every CreateGrant returns a fresh token.
        raw = b"dvgt1" + bytes.fromhex(grant_id) + os.urandom(16)
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def _grant_id_from_token(token: object) -> str:
        try:
            text = str(token)
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            if not raw.startswith(b"dvgt1") or len(raw) != 5 + 32 + 16:
                raise ValueError
            return raw[5:37].hex()
        except (ValueError, binascii.Error):
            raise AWSError("InvalidGrantTokenException", "Grant token is invalid") from None

    def _create_grant(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        grantee = self._string(params, "GranteePrincipal", required=True, max_len=256)
        retiring = self._string(params, "RetiringPrincipal", max_len=256)
        operations = params.get("Operations")
        if operations is None:
            raise _not_null("operations")
        if not isinstance(operations, list) or not all(isinstance(o, str) for o in operations):
            raise AWSError("SerializationException", "Unexpected value type for operations")
        bad = [o for o in operations if o not in _GRANT_OPERATIONS]
        if bad or not operations:
            raise _validation(
                "operations",
                "[" + ", ".join(operations) + "]",
                "Member must satisfy constraint: [Member must satisfy enum value set: ["
                + ", ".join(_GRANT_OPERATIONS)
                + "]]",
            )
        constraints = params.get("Constraints")
        if constraints is not None:
            if not isinstance(constraints, dict) or set(constraints) - {
                "EncryptionContextSubset",
                "EncryptionContextEquals",
            }:
                raise AWSError("SerializationException", "Unexpected value type for constraints")
            for value in constraints.values():
                if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()
                ):
                    raise AWSError("SerializationException", "Unexpected value type for constraints")
        name = self._string(params, "Name", max_len=256)
        key = self._resolve(caller, params.get("KeyId"), info, "CreateGrant")
        self._authorize(caller, key, "CreateGrant", extra=pol.grant_context(
            operations, grantee, retiring, aws_resource=caller.via_service is not None))
        self._require_state(key)
        if constraints and key.key_spec != _SYMMETRIC:
            raise AWSError(
                "ValidationException",
                "EncryptionContext is supported only when creating a grant for a "
                "symmetric encryption KMS key.",
            )
        grant = {
            "KeyId": key.arn,
            "Name": name or "",
            "GranteePrincipal": grantee,
            "IssuingAccount": f"arn:aws:iam::{caller.account}:root",
            "Operations": list(dict.fromkeys(operations)),
        }
        if retiring:
            grant["RetiringPrincipal"] = retiring
        if constraints:
            grant["Constraints"] = constraints
        with self._lock:
            existing = None
            if name:
                for g in key.grants.values():
                    if all(
                        g.get(k) == grant.get(k)
                        for k in (
                            "Name",
                            "GranteePrincipal",
                            "RetiringPrincipal",
                            "Operations",
                            "Constraints",
                        )
                    ):
                        existing = g
                        break
            if existing is None:
                grant_id = hashlib.sha256(os.urandom(32)).hexdigest()
                grant = {"GrantId": grant_id, "CreationDate": self.clock(), **grant}
                key.grants[grant_id] = grant
                key.version += 1
                self._store.put_grant(grant_id, key.key_id, grant)
            else:
                grant_id = existing["GrantId"]
        info.response_elements = {"grantId": grant_id}
        return {"GrantToken": self._grant_token(grant_id), "GrantId": grant_id}

    @staticmethod
    def _grant_entry(grant: dict) -> dict:
        return {
            k: grant[k]
            for k in (
                "KeyId",
                "GrantId",
                "Name",
                "CreationDate",
                "GranteePrincipal",
                "RetiringPrincipal",
                "IssuingAccount",
                "Operations",
                "Constraints",
            )
            if k in grant
        }

    def _list_grants(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        key = self._resolve(caller, params.get("KeyId"), info, "ListGrants")
        self._authorize(caller, key, "ListGrants")
        grant_id = params.get("GrantId")
        grantee = params.get("GranteePrincipal")
        grants = sorted(key.grants.values(), key=lambda g: (g["CreationDate"], g["GrantId"]))
        entries = [
            self._grant_entry(g)
            for g in grants
            if (grant_id is None or g["GrantId"] == grant_id)
            and (grantee is None or g["GranteePrincipal"] == grantee)
        ]
        page, extra = self._page(entries, params, 50, 100)
        return {"Grants": page, **extra}

    def _list_retirable_grants(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        retiring = self._string(params, "RetiringPrincipal", required=True, max_len=256)
        entries = []
        for key in sorted(self._keys.values(), key=lambda k: (k.created, k.key_id)):
            if key.account != caller.account or key.region != caller.region:
                continue
            for g in sorted(key.grants.values(), key=lambda g: (g["CreationDate"], g["GrantId"])):
                if g.get("RetiringPrincipal") == retiring:
                    entries.append(self._grant_entry(g))
        page, extra = self._page(entries, params, 50, 100)
        return {"Grants": page, **extra}

    def _find_grant(self, key: _Key, grant_id: object) -> dict:
        grant = key.grants.get(grant_id) if isinstance(grant_id, str) else None
        if grant is None:
            raise AWSError("NotFoundException", f"Grant ID {grant_id} not found")
        return grant

    def _drop_grant(self, key: _Key, grant_id: str) -> None:
        with self._lock:
            key.grants.pop(grant_id, None)
            key.version += 1
            self._store.delete_grant(grant_id)

    def _retire_grant(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        token = params.get("GrantToken")
        if token is not None:
            grant_id = self._grant_id_from_token(token)
            key = next((k for k in self._keys.values() if grant_id in k.grants), None)
            if key is None:
                raise AWSError("NotFoundException", f"Grant ID {grant_id} not found")
            info.touch(key)
        else:
            if params.get("KeyId") is None or params.get("GrantId") is None:
                raise AWSError(
                    "ValidationException", "Either GrantToken or KeyId and GrantId must be specified."
                )
            key = self._resolve(caller, params.get("KeyId"), info, "RetireGrant")
            grant_id = params["GrantId"]
        grant = self._find_grant(key, grant_id)
        retiring = grant.get("RetiringPrincipal")
        allowed = (
            (retiring is not None and self._grantee_matches(retiring, caller))
            or (
                "RetireGrant" in grant["Operations"]
                and self._grantee_matches(grant["GranteePrincipal"], caller)
            )
            or (not caller.is_service and caller.account == key.account)
            or (
                caller.is_service
                and caller.account == key.account
                and retiring is not None
                and _service_root(retiring) == _service_root(caller.principal_arn)
            )
        )
        if not allowed:
            raise self._denied(caller, key, "RetireGrant")
        info.response_elements = {"keyId": key.arn, "grantId": grant_id}
        self._drop_grant(key, grant_id)
        return {}

    def _revoke_grant(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        if params.get("GrantId") is None:
            raise _not_null("grantId")
        key = self._resolve(caller, params.get("KeyId"), info, "RevokeGrant")
        self._authorize(caller, key, "RevokeGrant")
        self._find_grant(key, params["GrantId"])
        self._drop_grant(key, params["GrantId"])
        return {}

    # -- operations: tags ----------------------------------------------------------------------------------

    @staticmethod
    def _tags(params: dict) -> list[dict]:
        tags = params.get("Tags")
        if tags is None:
            return []
        if not isinstance(tags, list):
            raise AWSError("SerializationException", "Unexpected value type for tags")
        out: list[dict] = []
        for i, tag in enumerate(tags, 1):
            if (
                not isinstance(tag, dict)
                or not isinstance(tag.get("TagKey"), str)
                or not isinstance(tag.get("TagValue"), str)
            ):
                raise AWSError("SerializationException", "Unexpected value type for tags")
            if not 1 <= len(tag["TagKey"]) <= 128:
                raise _validation(
                    f"tags.{i}.member.tagKey",
                    tag["TagKey"],
                    "Member must have length greater than or equal to 1"
                    if not tag["TagKey"]
                    else "Member must have length less than or equal to 128",
                )
            if len(tag["TagValue"]) > 256:
                raise _validation(
                    f"tags.{i}.member.tagValue",
                    tag["TagValue"],
                    "Member must have length less than or equal to 256",
                )
            if tag["TagKey"].lower().startswith("aws:"):
                raise AWSError("TagException", "Tags beginning with aws: are reserved")
            out = [t for t in out if t["TagKey"] != tag["TagKey"]]
            out.append({"TagKey": tag["TagKey"], "TagValue": tag["TagValue"]})
        return out

    def _tag_resource(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        if params.get("Tags") is None:
            raise _not_null("tags")
        tags = self._tags(params)
        key = self._resolve(caller, params.get("KeyId"), info, "TagResource")
        self._authorize(caller, key, "TagResource")
        self._require_state(key, allow_disabled=True)
        with self._lock:
            new_keys = {t["TagKey"] for t in tags}
            merged = [t for t in key.tags if t["TagKey"] not in new_keys] + tags
            if len(merged) > pol.MAX_TAGS:  # the key's quota, counting the tags it already has
                raise pol.too_many_tags("LimitExceededException")
            key.tags = merged
            self._save(key)
        return {}

    def _untag_resource(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        keys = params.get("TagKeys")
        if keys is None:
            raise _not_null("tagKeys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise AWSError("SerializationException", "Unexpected value type for tagKeys")
        key = self._resolve(caller, params.get("KeyId"), info, "UntagResource")
        self._authorize(caller, key, "UntagResource")
        self._require_state(key, allow_disabled=True)
        with self._lock:
            key.tags = [t for t in key.tags if t["TagKey"] not in set(keys)]
            self._save(key)
        return {}

    def _list_resource_tags(self, caller: Caller, params: dict, info: _CallInfo) -> dict:
        key = self._resolve(caller, params.get("KeyId"), info, "ListResourceTags")
        self._authorize(caller, key, "ListResourceTags")
        page, extra = self._page(list(key.tags), params, 50, 50)
        return {"Tags": page, **extra}


def _service_root(principal: str) -> str:
    """dynamodb.us-east-1.amazonaws.com -> dynamodb.amazonaws.com (CloudTrail's invokedBy form)."""
    parts = principal.split(".")
    if len(parts) == 4 and parts[-2:] == ["amazonaws", "com"]:
        return f"{parts[0]}.amazonaws.com"
    return principal
