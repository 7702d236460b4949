"""The structural boundary between the crypto layer above and storage below.

The key-value store accepts exactly two value types, :class:`Sealed` (AEAD output) and
:class:`CatalogRecord` (metadata allowed in plaintext); anything else is a ``TypeError``. So plaintext
item data cannot reach disk by accident: a caller would have to wrap it in one of these types on purpose.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["PartitionToken", "Sealed", "CatalogRecord", "NodeCodec", "TOKEN_SIZE"]

TOKEN_SIZE = 32


def _as_bytes(raw: object, what: str) -> bytes:
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, (bytearray, memoryview)):
        return bytes(raw)
    raise TypeError(f"{what} needs bytes, got {type(raw).__name__}")


class _Frozen:
    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")


class PartitionToken(_Frozen):
    """An opaque 32-byte partition token (an HMAC computed above storage).

    Frozen, hashable and ordered by its bytes: Scan walks partitions in token order. Tokens reveal only
    equality of partition keys, so the repr may show a short prefix.
    """

    __slots__ = ("raw",)
    raw: bytes

    def __init__(self, raw: bytes) -> None:
        raw = _as_bytes(raw, "PartitionToken")
        if len(raw) != TOKEN_SIZE:
            raise ValueError(f"PartitionToken must be {TOKEN_SIZE} bytes, got {len(raw)}")
        object.__setattr__(self, "raw", raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PartitionToken) and self.raw == other.raw

    def __lt__(self, other: PartitionToken) -> bool:
        if not isinstance(other, PartitionToken):
            return NotImplemented
        return self.raw < other.raw

    def __le__(self, other: PartitionToken) -> bool:
        if not isinstance(other, PartitionToken):
            return NotImplemented
        return self.raw <= other.raw

    def __gt__(self, other: PartitionToken) -> bool:
        if not isinstance(other, PartitionToken):
            return NotImplemented
        return self.raw > other.raw

    def __ge__(self, other: PartitionToken) -> bool:
        if not isinstance(other, PartitionToken):
            return NotImplemented
        return self.raw >= other.raw

    def __hash__(self) -> int:
        return hash((PartitionToken, self.raw))

    def __repr__(self) -> str:
        return f"PartitionToken({self.raw[:6].hex()}…)"

    def __reduce__(self):
        return (PartitionToken, (self.raw,))


class Sealed(_Frozen):
    """AEAD output (nonce, ciphertext, tag and the codec's own header): the only value type the KV store
    accepts for table data. Its repr shows the length, never the bytes."""

    __slots__ = ("raw",)
    raw: bytes

    def __init__(self, raw: bytes) -> None:
        object.__setattr__(self, "raw", _as_bytes(raw, "Sealed"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and self.raw == other.raw

    def __hash__(self) -> int:
        return hash((Sealed, self.raw))

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        return f"Sealed(<{len(self.raw)} bytes>)"

    def __reduce__(self):
        return (Sealed, (self.raw,))


class CatalogRecord(_Frozen):
    """Metadata that DynamoDB itself keeps outside the encrypted item data and that may therefore be
    stored in plaintext: table and index names, key schema and attribute definitions, sizes and counts,
    and *wrapped* (KMS- or table-key-encrypted) keys. Never item data, key values or plaintext keys.

    This is the second and last value type the KV store accepts. The repr shows only the length."""

    __slots__ = ("raw",)
    raw: bytes

    def __init__(self, raw: bytes) -> None:
        object.__setattr__(self, "raw", _as_bytes(raw, "CatalogRecord"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CatalogRecord) and self.raw == other.raw

    def __hash__(self) -> int:
        return hash((CatalogRecord, self.raw))

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        return f"CatalogRecord(<{len(self.raw)} bytes>)"

    def __reduce__(self):
        return (CatalogRecord, (self.raw,))


@runtime_checkable
class NodeCodec(Protocol):
    """The AEAD the layer above hands to storage (for B+tree nodes: AES-256-GCM under a node key).

    ``aad`` is built by storage and binds where the blob lives; ``open`` must raise
    ``dynavault.errors.IntegrityError`` when authentication fails (never return wrong data)."""

    def seal(self, aad: bytes, plaintext: bytes) -> Sealed: ...

    def open(self, aad: bytes, sealed: Sealed) -> bytes: ...
