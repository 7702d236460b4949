"""The key ring: every key record, alias and grant in memory, the key store behind them, and key material.

Key material: 32 random bytes per material version, sealed by the root of trust in the key store, unsealed
into memory (as AESGCM objects) on first use and never written back in the clear. The ring owns the one
lock that serializes changes to keys, aliases and grants.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dynavault.config import Settings
from dynavault.kms import policy as pol
from dynavault.kms.model import SYMMETRIC, KmsKey, Material
from dynavault.kms.root import RootOfTrust, RootOfTrustError
from dynavault.kms.store import KeyStore
from dynavault.kms.trust import material_aad

log = logging.getLogger("dynavault.kms")


class KeyRing:
    def __init__(
        self, settings: Settings, clock: Callable[[], float], root: RootOfTrust, store: KeyStore
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.root = root
        self.store = store
        self.lock = threading.RLock()
        self.keys: dict[str, KmsKey] = {}
        self.aliases: dict[tuple[str, str], dict[str, dict]] = {}
        self.deleted: set[str] = set()
        self._aead: dict[tuple[str, int], AESGCM] = {}  # materials never change: kept across reloads
        self.reload()

    def reload(self) -> None:
        """(Re)read keys, grants, aliases and tombstones from the store — at start, and when another process
        changed them. The containers are updated in place: whoever holds ``keys`` sees the new ring."""
        keys: dict[str, KmsKey] = {}
        for doc in self.store.keys():
            key = KmsKey.from_doc(doc)
            keys[key.key_id] = key
        for key_id, grant in self.store.grants():
            if key_id in keys:
                keys[key_id].grants[grant["GrantId"]] = grant
        aliases: dict[tuple[str, str], dict[str, dict]] = {}
        for account, region, name, doc in self.store.aliases():
            aliases.setdefault((account, region), {})[name] = doc
        deleted = self.store.deleted_keys()
        with self.lock:
            self.keys.clear()
            self.keys.update(keys)
            self.aliases.clear()
            self.aliases.update(aliases)
            self.deleted.clear()
            self.deleted.update(deleted)

    def __repr__(self) -> str:
        return f"KeyRing(keys={len(self.keys)})"

    def forget_material(self) -> None:
        """Drop every unsealed material from memory (on close)."""
        self._aead.clear()

    def save(self, key: KmsKey, material: tuple[int, bytes] | None = None) -> None:
        self.store.put_key(key.key_id, key.doc(), material)

    def material_aad(self, key: KmsKey, index: int) -> bytes:
        return material_aad(key.arn, index)

    def _add_material(self, key: KmsKey, rotation_type: str) -> tuple[int, bytes]:
        index = len(key.materials)
        raw = os.urandom(32)
        sealed = self.root.seal(raw, self.material_aad(key, index))
        # cache first, publish second: a concurrent Encrypt may pick the new material at once
        self._aead[(key.key_id, index)] = AESGCM(raw)
        key.materials.append(
            Material(index, hashlib.sha256(os.urandom(32)).hexdigest(), self.clock(), rotation_type)
        )
        return index, sealed

    def new_key(
        self,
        account: str,
        region: str,
        description: str,
        policy_text: str,
        manager: str,
        key_usage: str = "ENCRYPT_DECRYPT",
        key_spec: str = SYMMETRIC,
        tags: list | None = None,
        rotation: bool = False,
    ) -> KmsKey:
        now = self.clock()
        key = KmsKey(
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
        with self.lock:
            material = self._add_material(key, "")
            self.save(key, material)
            self.keys[key.key_id] = key
        return key

    def rotate(self, key: KmsKey, rotation_type: str) -> None:
        index, sealed = self._add_material(key, rotation_type)
        try:
            self.save(key, (index, sealed))
        except BaseException:
            # never encrypt under material that is not durably stored
            key.materials.pop()
            self._aead.pop((key.key_id, index), None)
            raise

    def delete_key_now(self, key: KmsKey) -> None:
        """Forget the key, its aliases and its material for good (its deletion window ended). The caller
        drops cached authorization verdicts and records the event: the ring knows neither."""
        for (account, region), names in self.aliases.items():
            if account != key.account or region != key.region:
                continue
            for name in [n for n, a in names.items() if a["TargetKeyId"] == key.key_id]:
                del names[name]
                self.store.delete_alias(account, region, name)
        self.store.delete_key(key.key_id)
        self.keys.pop(key.key_id, None)
        self.deleted.add(key.key_id)
        for k in [k for k in self._aead if k[0] == key.key_id]:
            del self._aead[k]

    def aead_for(self, key: KmsKey, index: int) -> AESGCM | None:
        aead = self._aead.get((key.key_id, index))
        if aead is not None:
            return aead
        with self.lock:
            sealed = self.store.sealed_material(key.key_id, index)
            if sealed is None:
                return None
            try:
                raw = self.root.unseal(sealed, self.material_aad(key, index))
            except RootOfTrustError:
                log.error(
                    "key material of %s (material %d) does not unseal with the root of trust", key.arn, index
                )
                raise
            aead = AESGCM(raw)
            self._aead[(key.key_id, index)] = aead
            return aead

    def put_alias(self, account: str, region: str, name: str, key_id: str, create: bool) -> None:
        now = self.clock()
        with self.lock:
            names = self.aliases.setdefault((account, region), {})
            doc = names.get(name)
            if doc is None or create:
                doc = {"AliasName": name, "TargetKeyId": key_id, "CreationDate": now, "LastUpdatedDate": now}
            else:
                doc = {**doc, "TargetKeyId": key_id, "LastUpdatedDate": now}
            names[name] = doc
            self.store.put_alias(account, region, name, doc)
