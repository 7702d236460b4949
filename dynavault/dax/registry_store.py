"""The attribute-list registry in the store, sealed: attribute names are user data.

Per (account, region) a registry key: 256 bits from KMS GenerateDataKey under the AWS owned key (DAX encrypts
with service keys only), kept only as its KMS ciphertext; its plaintext is cached per process and refreshed
with a Decrypt once older than the key refresh interval (fail closed: no key, no lists). Rows, under
``PREFIX`` ‖ account ‖ "/" ‖ region ‖ 0x00:

- ``k``: the registry key's KMS ciphertext (a CatalogRecord: a wrapped key, as a table's catalog keeps its own)
- ``n``: how many lists the scope holds (a count)
- ``i`` ‖ id (8 bytes): the list's names, sealed (AES-256-GCM, the row key as associated data, so a row moved
  to another id or account fails authentication: an integrity error, never other names)
- ``h`` ‖ HMAC(names): the id of a list, to find it again without reading every list

Allocation is one store transaction (read the ``h`` row, else count, write ``i``, ``h`` and ``n``): every process
serving the store hands out the same id for the same names, and an id never changes meaning.

The store's value types (Sealed, CatalogRecord) and the KMS calls are handed in by the runtime: this module
reaches no room but its own.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import threading
import time
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dynavault.dynamodb.layout import DAX_ATTRIBUTE_LISTS_PREFIX
from dynavault.errors import IntegrityError

from .registry import EMPTY_LIST_ID, RegistryFull

PREFIX = DAX_ATTRIBUTE_LISTS_PREFIX
_FORMAT = 1


def _scope_prefix(scope: str) -> bytes:
    return PREFIX + scope.encode() + b"\x00"


class StoreBackend:
    def __init__(self, store, *, sealed: Callable[[bytes], object], record: Callable[[bytes], object],
                 generate_key: Callable[[str], tuple[bytes, bytes]], decrypt_key: Callable[[str, bytes], bytes],
                 refresh_seconds: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        """``generate_key(scope) -> (plaintext, KMS ciphertext)``, ``decrypt_key(scope, ciphertext) -> plaintext``
        (scope: "account/region"); ``sealed`` / ``record``: the store's two value types."""
        self.store = store
        self._sealed = sealed
        self._record = record
        self._generate = generate_key
        self._decrypt = decrypt_key
        self.refresh_seconds = refresh_seconds
        self.clock = clock
        self._keys: dict[str, tuple[float, AESGCM, bytes]] = {}
        self._lock = threading.Lock()

    # ---- the registry key ------------------------------------------------------------------------------------
    def _key(self, scope: str, create: bool) -> tuple[AESGCM, bytes] | None:
        with self._lock:
            hit = self._keys.get(scope)
        if hit is not None and self.clock() - hit[0] < self.refresh_seconds:
            return hit[1], hit[2]
        row = _scope_prefix(scope) + b"k"
        raw = self.store.get(row)
        if raw is None:
            if not create:
                return None
            plaintext, blob = self._generate(scope)
            with self.store.transaction() as tx:
                existing = tx.get(row)
                if existing is None:
                    tx.put(row, self._record(json.dumps({"blob": base64.b64encode(blob).decode()}).encode()))
                    raw = None
                else:  # another process made it first: use theirs
                    raw = existing
            if raw is None:
                return self._remember(scope, plaintext)
        blob = base64.b64decode(json.loads(raw)["blob"])
        return self._remember(scope, self._decrypt(scope, blob))

    def _remember(self, scope: str, plaintext: bytes) -> tuple[AESGCM, bytes]:
        aead = AESGCM(plaintext)
        mac_key = hmac.digest(plaintext, b"dynavault dax attribute-list lookup v1", "sha256")
        with self._lock:
            self._keys[scope] = (self.clock(), aead, mac_key)
        return aead, mac_key

    # ---- rows -----------------------------------------------------------------------------------------------
    def _seal(self, aead: AESGCM, row: bytes, names: tuple[str, ...]) -> object:
        nonce = os.urandom(12)
        body = json.dumps(list(names), ensure_ascii=False).encode()
        return self._sealed(bytes([_FORMAT]) + nonce + aead.encrypt(nonce, body, row))

    @staticmethod
    def _open(aead: AESGCM, row: bytes, raw: bytes) -> tuple[str, ...]:
        if len(raw) < 29 or raw[0] != _FORMAT:
            raise IntegrityError("attribute list row")
        try:
            names = json.loads(aead.decrypt(raw[1:13], raw[13:], row))
        except InvalidTag:
            raise IntegrityError("attribute list row") from None
        return tuple(names)

    def allocate(self, scope: str, names: tuple[str, ...], max_lists: int) -> int:
        aead, mac_key = self._key(scope, create=True)
        base = _scope_prefix(scope)
        lookup = base + b"h" + hmac.digest(mac_key, json.dumps(list(names), ensure_ascii=False).encode(), "sha256")
        with self.store.transaction() as tx:
            found = tx.get(lookup)
            if found is not None:
                return int(found)
            count_raw = tx.get(base + b"n")
            count = int(count_raw) if count_raw is not None else 0
            if count >= max_lists:
                raise RegistryFull()
            list_id = EMPTY_LIST_ID + 1 + count
            row = base + b"i" + list_id.to_bytes(8, "big")
            tx.put(row, self._seal(aead, row, names))
            tx.put(lookup, self._record(str(list_id).encode()))
            tx.put(base + b"n", self._record(str(count + 1).encode()))
        return list_id

    def load(self, scope: str, list_id: int) -> tuple[str, ...] | None:
        if not 0 <= list_id < 1 << 63:
            return None
        row = _scope_prefix(scope) + b"i" + list_id.to_bytes(8, "big")
        raw = self.store.get(row)
        if raw is None:
            return None
        key = self._key(scope, create=False)
        if key is None:  # lists without their key: the key row vanished
            raise IntegrityError("attribute list key missing")
        return self._open(key[0], row, bytes(raw))

