"""Ciphertext blob format of the key service (self-describing, so Decrypt needs no KeyId).

    version (1 B = 0x01) ‖ key id (16 B, UUID) ‖ material index (4 B, big-endian) ‖ IV (12 B)
    ‖ AES-256-GCM(ct ‖ tag)

AAD = the 21-byte header ‖ canonical encryption context (JSON, keys sorted), so the key reference, the
material and the context are all authenticated: any change is a failed tag, never other plaintext.
"""

from __future__ import annotations

import os
import struct
import uuid
from dataclasses import dataclass

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = 1
_HEADER = struct.Struct(">B16sI")
HEADER_LEN = _HEADER.size  # 21
MIN_LEN = HEADER_LEN + 12 + 16


class BadBlob(Exception):
    """Not a blob of ours, or it fails authentication (the caller maps this to InvalidCiphertextException)."""


@dataclass(frozen=True, slots=True)
class BlobHeader:
    key_id: str
    material_index: int


def canonical_context(context: dict[str, str] | None) -> bytes:
    if not context:
        return b""
    return orjson.dumps(context, option=orjson.OPT_SORT_KEYS)


def seal(aead: AESGCM, key_id: str, material_index: int, plaintext: bytes, context: bytes) -> bytes:
    header = _HEADER.pack(VERSION, uuid.UUID(key_id).bytes, material_index)
    iv = os.urandom(12)
    return header + iv + aead.encrypt(iv, plaintext, header + context)


def parse_header(blob: bytes) -> BlobHeader:
    if len(blob) < MIN_LEN:
        raise BadBlob
    version, key_bytes, index = _HEADER.unpack_from(blob)
    if version != VERSION:
        raise BadBlob
    return BlobHeader(str(uuid.UUID(bytes=key_bytes)), index)


def open_blob(aead: AESGCM, blob: bytes, context: bytes) -> bytes:
    header = blob[:HEADER_LEN]
    try:
        return aead.decrypt(blob[HEADER_LEN : HEADER_LEN + 12], blob[HEADER_LEN + 12 :], header + context)
    except InvalidTag:
        raise BadBlob from None
