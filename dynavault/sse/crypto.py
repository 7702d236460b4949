"""Per-table crypto: the AEAD node codec, partition tokens, and data-key wrapping under the table key.

Sealed node format: version (1) ‖ epoch (4, big endian) ‖ nonce (12) ‖ AES-256-GCM(ciphertext ‖ tag).
The AAD is the storage-supplied location binding followed by that 5-byte header, so a blob can be
neither moved nor relabelled to another epoch.
"""

from __future__ import annotations

import base64
import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dynavault.errors import IntegrityError
from dynavault.storage.sealed import PartitionToken, Sealed

FORMAT_VERSION = 1
_HEADER = struct.Struct(">BI")
_WRAP_VERSION = b"dv-dk-1"
_CURSOR_VERSION = b"\x01"
_CURSOR_AAD = b"dv-cursor-1"


def wrap_data_key(table_key: bytes, table_id: bytes, purpose: str, epoch: int, data_key: bytes) -> bytes:
    """AES-256-GCM-wrap a data key under the table key, bound to table, purpose and epoch."""
    nonce = os.urandom(12)
    aad = _WRAP_VERSION + table_id + purpose.encode() + struct.pack(">I", epoch)
    return nonce + AESGCM(table_key).encrypt(nonce, data_key, aad)


def unwrap_data_key(table_key: bytes, table_id: bytes, purpose: str, epoch: int, wrapped: bytes) -> bytes:
    aad = _WRAP_VERSION + table_id + purpose.encode() + struct.pack(">I", epoch)
    try:
        return AESGCM(table_key).decrypt(wrapped[:12], wrapped[12:], aad)
    except InvalidTag:
        raise IntegrityError("a wrapped data key failed authentication") from None


class NodeCipher:
    """The NodeCodec storage receives: seals under the current epoch, opens any known epoch."""

    __slots__ = ("_keys", "_current", "_current_aead", "seals")

    def __init__(self, node_keys: dict[int, bytes], current_epoch: int) -> None:
        self._keys = {epoch: AESGCM(key) for epoch, key in node_keys.items()}
        self._current = current_epoch
        self._current_aead = self._keys[current_epoch]
        #: seals under the current epoch since the count was last taken (random nonces: an epoch
        #: key must retire long before 2^32 seals)
        self.seals = 0

    def __repr__(self) -> str:
        return f"NodeCipher(epochs={sorted(self._keys)}, current={self._current})"

    @property
    def epoch(self) -> int:
        return self._current

    def take_seals(self) -> int:
        n, self.seals = self.seals, 0
        return n

    def advance(self, epoch: int, key: bytes) -> None:
        """Seal under a new epoch key from now on; older epochs stay readable."""
        self._keys[epoch] = AESGCM(key)
        self._current = epoch
        self._current_aead = self._keys[epoch]

    def seal(self, aad: bytes, plaintext: bytes) -> Sealed:
        self.seals += 1
        header = _HEADER.pack(FORMAT_VERSION, self._current)
        nonce = os.urandom(12)
        return Sealed(header + nonce + self._current_aead.encrypt(nonce, plaintext, aad + header))

    def open(self, aad: bytes, sealed: Sealed) -> bytes:
        raw = sealed.raw
        if len(raw) < 5 + 12 + 16:
            raise IntegrityError("sealed node too short")
        version, epoch = _HEADER.unpack_from(raw)
        aead = self._keys.get(epoch)
        if version != FORMAT_VERSION or aead is None:
            raise IntegrityError("sealed node has an unknown format version or key epoch")
        try:
            return aead.decrypt(raw[5:17], raw[17:], aad + raw[:5])
        except InvalidTag:
            raise IntegrityError("sealed node failed authentication") from None


class StreamCipher:
    """AES-256-GCM for stream records (one key per table)."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "StreamCipher(<key>)"

    def seal(self, aad: bytes, plaintext: bytes) -> Sealed:
        nonce = os.urandom(12)
        return Sealed(nonce + self._aead.encrypt(nonce, plaintext, aad))

    def open(self, aad: bytes, sealed: Sealed) -> bytes:
        raw = sealed.raw
        try:
            return self._aead.decrypt(raw[:12], raw[12:], aad)
        except InvalidTag:
            raise IntegrityError("sealed stream record failed authentication") from None


class TableCrypto:
    """Everything a data operation needs from a table's keys. Holds key objects; prints none."""

    __slots__ = ("table_id", "_token_key", "_table_key", "codec", "stream", "_tokens", "_cursor")

    def __init__(self, table_id: bytes, token_key: bytes, codec: NodeCipher, stream: StreamCipher,
                 table_key: bytes = b"") -> None:
        self.table_id = table_id
        self._token_key = token_key
        self._table_key = table_key  # kept only to wrap new node-key epochs
        self.codec = codec
        self.stream = stream
        self._tokens: dict[bytes, PartitionToken] = {}  # hot partition keys -> token (an HMAC per request saved)
        self._cursor: AESGCM | None = None

    def new_node_epoch(self) -> tuple[int, str]:
        """Generate the next node-key epoch, switch to it, and return (epoch, key wrapped by the table key)."""
        epoch = self.codec.epoch + 1
        key = os.urandom(32)
        wrapped = wrap_data_key(self._table_key, self.table_id, "node", epoch, key)
        self.codec.advance(epoch, key)
        return epoch, base64.b64encode(wrapped).decode()

    def __repr__(self) -> str:
        return f"TableCrypto(table_id={self.table_id.hex()})"

    def token(self, index_id: int, key_bytes: bytes) -> PartitionToken:
        msg = index_id.to_bytes(4, "big") + key_bytes
        tok = self._tokens.get(msg)
        if tok is None:
            if len(self._tokens) >= 4096:
                self._tokens.clear()
            tok = self._tokens[msg] = PartitionToken(hmac.digest(self._token_key, msg, "sha256"))
        return tok

    def _cursor_aead(self) -> AESGCM:
        # HKDF keyed apart from the token HMACs (the token key is HKDF's input, not an HMAC key here), so no
        # cursor key can equal a partition token; no new wrapped key to store or rotate.
        if self._cursor is None:
            key = HKDF(hashes.SHA256(), 32, None, b"dynavault cursor key v1").derive(self._token_key)
            self._cursor = AESGCM(key)
        return self._cursor

    def seal_cursor(self, binding: bytes, plaintext: bytes) -> bytes:
        """Seal a pagination position handed to the client (it holds key values): opaque, and bound to this
        table and to ``binding`` (e.g. the statement it continues)."""
        nonce = os.urandom(12)
        aad = _CURSOR_AAD + self.table_id + binding
        return _CURSOR_VERSION + nonce + self._cursor_aead().encrypt(nonce, plaintext, aad)

    def open_cursor(self, binding: bytes, blob: bytes) -> bytes | None:
        """The plaintext of :meth:`seal_cursor`'s blob, or None when it was not sealed here for ``binding``."""
        if len(blob) < 1 + 12 + 16 or blob[:1] != _CURSOR_VERSION:
            return None
        try:
            return self._cursor_aead().decrypt(blob[1:13], blob[13:], _CURSOR_AAD + self.table_id + binding)
        except InvalidTag:
            return None
