"""Open a data dir's tables and their keys offline (server stopped): shared by ``dynavault verify`` and
``dynavault upgrade``.

The table key of each table is unwrapped as the server does it (KMS ciphertext -> table key -> data keys,
through ``sse`` and ``kms`` code): locally from the key store and the root key file (``OfflineKms``, read-only,
never creating a root key), or through a remote KMS endpoint (``RemoteKms``).
"""

from __future__ import annotations

from pathlib import Path

from dynavault.caller import Caller
from dynavault.config import Settings
from dynavault.dynamodb.catalog import TableMeta
from dynavault.dynamodb.layout import CATALOG_PREFIX
from dynavault.errors import StartupError
from dynavault.kms import blob as blobfmt
from dynavault.kms.root import FileRoot, RootOfTrustError
from dynavault.kms.store import KeyStore
from dynavault.sse.crypto import TableCrypto
from dynavault.sse.key_port import (
    DataKey,
    Grant,
    InvalidCiphertext,
    KeyInfo,
    KeyNotFound,
    KeyPort,
    KmsFailure,
)
from dynavault.sse.kms_client import RemoteKms
from dynavault.sse.table_keys import TableKeyService
from dynavault.storage.kv.base import prefix_end
from dynavault.storage.kv.sqlite import SqliteKV
from dynavault.storage.trees import EncryptedTrees


# -- keys ---------------------------------------------------------------------------------------------------
class OfflineKms:
    """Decrypt only, from the key store on disk and the root key: what the in-process KMS would answer to the
    database, without policies, audit or any write (an auditor holding the root key can do this anyway)."""

    def __init__(self, data_dir: Path, root_key_file: Path) -> None:
        # FileRoot creates a missing key file: an offline tool must never do that
        if not root_key_file.is_file():
            raise StartupError(f"root key file {root_key_file} not found; give the file the server uses "
                               "(--root-key-file) or a KMS endpoint (--kms-endpoint)")
        try:
            self._root = FileRoot(root_key_file)
        except (OSError, RootOfTrustError) as exc:
            raise StartupError(f"root key file {root_key_file} cannot be used ({exc})") from None
        store_dir = data_dir / "kms"
        self.store = KeyStore(store_dir, readonly=True) if (store_dir / "keys.sqlite3").is_file() else None
        self.keys: dict[str, dict] = {}
        if self.store is not None:
            for doc in self.store.keys():
                self.keys[doc["key_id"]] = doc

    def __repr__(self) -> str:
        return f"OfflineKms(keys={len(self.keys)})"

    def decrypt(self, caller: Caller, blob: bytes, context: dict[str, str]) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        from dynavault.kms.model import KmsKey
        from dynavault.kms.trust import material_aad

        try:
            header = blobfmt.parse_header(blob)
        except blobfmt.BadBlob:
            raise InvalidCiphertext("InvalidCiphertextException", "the table key blob is malformed") from None
        doc = self.keys.get(header.key_id)
        if doc is None or self.store is None:
            raise KeyNotFound("NotFoundException", f"KMS key {header.key_id} is not in the key store (deleted?)")
        arn = KmsKey.from_doc(doc).arn
        sealed = self.store.sealed_material(header.key_id, header.material_index)
        if sealed is None:
            raise KeyNotFound("NotFoundException", f"key material {header.material_index} of {arn} is missing")
        try:
            material = self._root.unseal(sealed, material_aad(arn, header.material_index))
        except RootOfTrustError:
            raise StartupError(f"the root key does not open the key material of {arn}: wrong --root-key-file "
                               "for this data dir") from None
        try:
            return blobfmt.open_blob(AESGCM(material), blob, blobfmt.canonical_context(context))
        except blobfmt.BadBlob:
            raise InvalidCiphertext("InvalidCiphertextException", "the table key blob failed authentication") from None

    # offline tools only ever decrypt
    def _unsupported(self, operation: str) -> KmsFailure:
        return KmsFailure("UnsupportedOperationException", f"offline tools do not call {operation}")

    def describe_key(self, caller: Caller, key_id: str) -> KeyInfo:
        raise self._unsupported("DescribeKey")

    def generate_data_key(self, caller: Caller, key_id: str, context: dict[str, str]) -> DataKey:
        raise self._unsupported("GenerateDataKey")

    def create_grant(self, caller: Caller, key_id: str, *, grantee: str, retiring: str,
                     operations: list[str], context_subset: dict[str, str]) -> Grant:
        raise self._unsupported("CreateGrant")

    def retire_grant(self, caller: Caller, key_id: str, grant_id: str) -> None:
        raise self._unsupported("RetireGrant")

    def key_state(self, arn: str) -> str:
        key_id = arn.rsplit("/", 1)[-1]
        doc = self.keys.get(key_id)
        return doc["state"] if doc else "unknown"

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


class OfflineStore:
    """A data dir's table store, its key path and its trees, opened without a server.

    ``readonly`` opens the table store in SQLite's read-only mode (verify); otherwise it is opened for writing
    (upgrade), which the caller must do only with the server stopped."""

    def __init__(self, settings: Settings, *, readonly: bool) -> None:
        self.data = Path(settings.data_dir)
        if not self.data.is_dir():
            raise StartupError(f"data dir {self.data} not found; give the directory the server used (--data-dir)")
        db = self.data / "tables.db"
        if not readonly and not db.is_file():
            # SqliteKV would create an empty store: a typo in --data-dir must not leave one behind
            raise StartupError(f"no table store at {db}; give the data dir a server wrote (--data-dir)")
        self.kv = SqliteKV(db, readonly=readonly)
        self.kms: KeyPort
        try:
            if settings.kms_endpoint:
                self.kms = RemoteKms(settings.kms_endpoint, settings.kms_access_key_id,
                                     settings.kms_secret_access_key)
            else:
                self.kms = OfflineKms(self.data, Path(settings.root_key_file).expanduser())
        except BaseException:
            self.kv.close()
            raise
        from dynavault.kms.service import AWS_OWNED_ACCOUNT

        self.keys = TableKeyService(self.kms, owned_key_arn=lambda region: "", owned_account=AWS_OWNED_ACCOUNT)
        self.trees = EncryptedTrees(self.kv)

    def __repr__(self) -> str:
        return f"OfflineStore({str(self.data)!r})"

    def catalog(self) -> list[tuple[bytes, bytes]]:
        """The raw catalog rows (row key, record), in key order."""
        return list(self.kv.range(CATALOG_PREFIX, prefix_end(CATALOG_PREFIX)))

    def crypto(self, meta: TableMeta) -> TableCrypto:
        """The table's unwrapped keys. Raises KeyPortError when KMS refuses the table key, and IntegrityError,
        KeyError, ValueError or TypeError when the wrapped data keys do not open."""
        who = self.keys.key_service(meta.account, meta.region, meta.sse)
        table_key = self.keys.decrypt_table_key(who, meta.name, meta.account, meta.sse, wrap=False)
        return self.keys.build_crypto(table_key, meta.id_bytes, meta.sse["data_keys"])

    def close(self) -> None:
        self.kv.close()
        if isinstance(self.kms, OfflineKms):
            self.kms.close()
