"""Roots of trust: what seals KMS key material at rest.

Both seal with AES-256-GCM (random 96-bit nonce, caller-supplied AAD that names the key and material, so a
sealed blob cannot be moved to another key). ``FileRoot`` keeps a 256-bit key in a file outside the data
directory; ``Pkcs11Root`` keeps a non-extractable AES key on a PKCS#11 token and never sees its bytes.
"""

from __future__ import annotations

import os
import pathlib
import stat
import threading
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dynavault.config import Settings

_VERSION = b"\x01"


class RootOfTrustError(Exception):
    """The root of trust is missing, unreadable, or a sealed blob does not open."""


class RootKeyMissing(RootOfTrustError):
    """No root key file / no key of that label on the token."""


class RootOfTrust(Protocol):
    def seal(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def unseal(self, sealed: bytes, aad: bytes) -> bytes: ...

    def close(self) -> None: ...


class FileRoot:
    """A root key file: 32 bytes, readable by its owner only. Never created here (see ``create``)."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = pathlib.Path(path).expanduser()
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise RootKeyMissing(f"root key file {self.path} does not exist") from None
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            # as ssh does for private keys: a key others can read protects nothing
            raise RootOfTrustError(
                f"permissions {mode:04o} for {self.path} are too open: the root key file must be readable "
                f"by its owner only (chmod 600 {self.path})"
            )
        data = self.path.read_bytes()
        if len(data) != 32:
            raise RootOfTrustError(f"root key file {self.path} must hold exactly 32 bytes (it holds {len(data)})")
        self._aead = AESGCM(data)

    @staticmethod
    def create(path: pathlib.Path) -> None:
        """Write a new random root key at ``path`` (mode 0600) unless a file is already there."""
        path = pathlib.Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_EXCL: two processes starting at once must not each write a different root key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(32))
            fh.flush()
            os.fsync(fh.fileno())

    def __repr__(self) -> str:
        return f"FileRoot(path={str(self.path)!r})"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def unseal(self, sealed: bytes, aad: bytes) -> bytes:
        if len(sealed) < 29 or sealed[:1] != _VERSION:
            raise RootOfTrustError("sealed key material is malformed")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], aad)
        except InvalidTag:
            raise RootOfTrustError("sealed key material failed authentication") from None

    def close(self) -> None:
        pass


class MemoryRoot(FileRoot):
    """``--in-memory``: a random root key that lives only in this process (sealing works exactly as a file's
    key does; everything it sealed is unreadable once the process ends, which is the point)."""

    def __init__(self) -> None:  # not super().__init__: that reads a file; this key is made, never stored
        self.path = pathlib.Path("<memory>")
        self._aead = AESGCM(AESGCM.generate_key(256))

    def __repr__(self) -> str:
        return "MemoryRoot()"


class Pkcs11Root:
    """An AES-256 key on a PKCS#11 token (SoftHSM2 in tests), generated on the token if absent."""

    def __init__(self, module: str, token_label: str, pin: str, key_label: str, *, create: bool = False) -> None:
        import pkcs11
        from pkcs11 import Attribute, KeyType, ObjectClass

        if not module or not os.path.exists(module):
            raise RootOfTrustError(f"PKCS#11 module not found: {module!r}")
        self._pkcs11 = pkcs11
        self._lock = threading.Lock()
        lib = pkcs11.lib(module)
        token = lib.get_token(token_label=token_label)
        self._session = token.open(rw=True, user_pin=pin)
        self.key_label = key_label
        try:
            self._key = self._session.get_key(
                label=key_label, key_type=KeyType.AES, object_class=ObjectClass.SECRET_KEY
            )
        except pkcs11.NoSuchKey:
            if not create:
                self._session.close()
                raise RootKeyMissing(
                    f"PKCS#11 token {token_label!r} holds no AES key labelled {key_label!r}"
                ) from None
            template = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}
            self._key = self._session.generate_key(
                KeyType.AES, 256, label=key_label, store=True, template=template
            )

    def __repr__(self) -> str:
        return f"Pkcs11Root(key_label={self.key_label!r})"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        from pkcs11 import Mechanism
        from pkcs11.mechanisms import GCMParams

        nonce = os.urandom(12)
        with self._lock:
            ct = self._key.encrypt(plaintext, mechanism=Mechanism.AES_GCM,
                                   mechanism_param=GCMParams(nonce, aad, 128))
        return _VERSION + nonce + bytes(ct)

    def unseal(self, sealed: bytes, aad: bytes) -> bytes:
        from pkcs11 import Mechanism
        from pkcs11.mechanisms import GCMParams

        if len(sealed) < 29 or sealed[:1] != _VERSION:
            raise RootOfTrustError("sealed key material is malformed")
        try:
            with self._lock:
                return bytes(self._key.decrypt(sealed[13:], mechanism=Mechanism.AES_GCM,
                                               mechanism_param=GCMParams(sealed[1:13], aad, 128)))
        except self._pkcs11.PKCS11Error:
            raise RootOfTrustError("sealed key material failed authentication") from None

    def close(self) -> None:
        with self._lock:
            try:
                self._session.close()
            except Exception:  # closing a session twice or after finalize is harmless
                pass


def open_root(settings: Settings, *, create: bool = False) -> RootOfTrust:
    """The configured root of trust. ``create`` makes a missing root key: only on a data dir without key
    material (kms/trust.py decides), never next to material another root sealed."""
    if settings.in_memory:
        return MemoryRoot()
    kind = (settings.root_of_trust or "file").lower()
    if kind == "file":
        if create:
            FileRoot.create(pathlib.Path(settings.root_key_file))
        return FileRoot(pathlib.Path(settings.root_key_file))
    if kind == "pkcs11":
        return Pkcs11Root(settings.pkcs11_module, settings.pkcs11_token_label, settings.pkcs11_pin,
                          settings.pkcs11_key_label, create=create)
    raise RootOfTrustError(f"unknown root_of_trust {settings.root_of_trust!r} (use 'file' or 'pkcs11')")
