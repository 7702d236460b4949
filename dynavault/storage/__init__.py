"""Storage: an encrypted B+tree per item collection over a small transactional key-value interface.

Nothing here sees plaintext keys or talks to KMS (DESIGN.md invariant 2): callers hand in opaque
partition tokens and an AEAD codec, and the key-value store only ever accepts sealed blobs or catalog
records. Nothing in this package imports from ``dynavault`` except ``dynavault.errors``.
"""

from dynavault.storage.kv.base import KVStore, KVTransaction
from dynavault.storage.kv.sqlite import SqliteKV
from dynavault.storage.sealed import CatalogRecord, NodeCodec, PartitionToken, Sealed
from dynavault.storage.trees import EncryptedTrees

__all__ = ["CatalogRecord", "EncryptedTrees", "KVStore", "KVTransaction", "NodeCodec", "Sealed", "SqliteKV", "PartitionToken"]
