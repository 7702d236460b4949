"""The startup check of the root of trust: refuse to start rather than run with the wrong root key.

A root key that cannot open the stored key material (missing file, another key, another token key) would let
the server start, fail every existing table, and accept new keys and writes sealed under a root that is about
to be replaced: acknowledged data lost once the right key is back. So before anything is written:

- key material present (a sealed check value, or any sealed material of a store made before the check value
  existed) and the root key missing -> refuse; never create a root key next to existing material;
- present and the root key cannot open it -> refuse;
- a root key file readable by group or others -> refuse (FileRoot);
- no key material at all (a fresh data dir) -> the root key is created if missing.

The check costs one AES-GCM open of a 32-byte value. After a successful start the store gets its check value
if it has none (``ensure_check_value``), so later starts never depend on which key happens to be stored first.
"""

from __future__ import annotations

import pathlib
import sqlite3

import orjson

from dynavault.config import Settings
from dynavault.errors import StartupError

from .root import RootKeyMissing, RootOfTrust, RootOfTrustError, open_root
from .store import KeyStore

CHECK_AAD = b"dynavault-root-check:v1"
CHECK_PLAINTEXT = b"dynavault root of trust check v1"


def material_aad(key_arn: str, index: int) -> bytes:
    """The AAD binding one sealed key material to its key and version."""
    return f"dynavault-kms-material:{key_arn}:{index}".encode()


def _store_probe(path: pathlib.Path) -> tuple[bytes, bytes] | None:
    """(sealed, aad) of one sealed value in the key store, read-only; None when it holds no key material."""
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StartupError(f"key store {path} cannot be opened ({exc}): restore it from a backup") from None
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "root_check" in tables:
            row = db.execute("SELECT sealed FROM root_check WHERE id = 1").fetchone()
            if row is not None:
                return bytes(row[0]), CHECK_AAD
        if {"materials", "keys"} <= tables:
            row = db.execute(
                "SELECT m.material_index, m.sealed, k.doc FROM materials m JOIN keys k ON k.key_id = m.key_id "
                "LIMIT 1"
            ).fetchone()
            if row is not None:
                index, sealed, doc = row
                key = orjson.loads(doc)
                arn = f"arn:aws:kms:{key['region']}:{key['account']}:key/{key['key_id']}"
                return bytes(sealed), material_aad(arn, index)
        return None
    except (sqlite3.Error, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise StartupError(f"key store {path} cannot be read ({exc}): restore it from a backup") from None
    finally:
        db.close()


def _where(settings: Settings) -> str:
    if (settings.root_of_trust or "file").lower() == "pkcs11":
        return f"PKCS#11 key {settings.pkcs11_key_label!r} on token {settings.pkcs11_token_label!r}"
    return f"root key file {pathlib.Path(settings.root_key_file).expanduser()}"


def open_checked_root(settings: Settings) -> RootOfTrust:
    """Open the root of trust and prove it opens the stored key material, or raise StartupError."""
    if settings.in_memory:
        return open_root(settings)  # a new key for a new, empty in-memory key store: nothing to prove
    store = settings.data_path("kms", "keys.sqlite3")
    probe = _store_probe(store)
    where = _where(settings)
    try:
        root = open_root(settings, create=probe is None)
    except RootKeyMissing:
        # only reached with key material present (a fresh data dir gets a new root key)
        raise StartupError(
            f"{where} is missing, but {store} holds key material sealed by a root key: restore it "
            f"(or point --root-key-file / the PKCS#11 settings at it); no new root key was created"
        ) from None
    except RootOfTrustError as exc:
        raise StartupError(f"{exc}") from None
    if probe is not None:
        sealed, aad = probe
        try:
            root.unseal(sealed, aad)
        except RootOfTrustError:
            root.close()
            raise StartupError(
                f"{where} cannot open the key material in {store} (it is not the root key that sealed it): "
                f"restore the right one (or point --root-key-file / the PKCS#11 settings at it)"
            ) from None
    return root


def ensure_check_value(store: KeyStore, root: RootOfTrust) -> None:
    """Give the store its sealed check value, once, under the root that was just proven to open it."""
    if store.root_check() is None:
        store.put_root_check(root.seal(CHECK_PLAINTEXT, CHECK_AAD))
