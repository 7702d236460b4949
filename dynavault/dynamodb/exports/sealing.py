"""Exported objects encrypted as S3 holds them: each object under a data key of its own.

S3SseAlgorithm ``KMS``: the data key comes from GenerateDataKey under the export's KMS key, asked for by the
exporting principal through S3 (so the key policy decides and the audit trail shows it), with S3's encryption
context ``{"aws:s3:arn": "arn:aws:s3:::<bucket>/<key>"}``. ``AES256`` (SSE-S3): the same, under the server's
AWS owned key, asked for by the service itself. The object on disk is an envelope::

    MAGIC (8) | header length (4, big endian) | header (JSON) | nonce (12) | AES-256-GCM(data) + tag

with the header naming the algorithm, the KMS key ARN, the wrapped data key (KMS ciphertext, base64) and
the encryption context; the whole prefix up to the nonce is the AAD, so a header edited to point elsewhere
fails like a flipped ciphertext byte. The context binds the object to its bucket and key: an object copied
under another key is refused (``check_place``). Manifests hold no item data and stay plaintext JSON (the
summary's ``s3SseAlgorithm`` / ``s3SseKmsKeyId`` say how the data files are held), so a decrypted export is
exactly AWS's files.
"""

from __future__ import annotations

import base64
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dynavault.errors import IntegrityError

MAGIC = b"DVS3ENV1"
_LEN = struct.Struct(">I")
#: a header is a few hundred bytes; anything past this is not one of ours
MAX_HEADER = 16384
KMS = "KMS"
AES256 = "AES256"


def s3_context(bucket: str, key: str) -> dict[str, str]:
    return {"aws:s3:arn": f"arn:aws:s3:::{bucket}/{key}"}


@dataclass(frozen=True)
class ObjectKeys:
    """Where data keys come from and go back to: ``generate(algorithm, key_id, context) -> (plaintext,
    wrapped, key ARN)`` and ``unwrap(algorithm, key_arn, wrapped, context) -> plaintext``."""

    generate: Callable[[str, str | None, dict[str, str]], tuple[bytes, bytes, str]]
    unwrap: Callable[[str, str, bytes, dict[str, str]], bytes]


def is_sealed(data: bytes) -> bool:
    return data[:len(MAGIC)] == MAGIC


def seal(keys: ObjectKeys, algorithm: str, key_id: str | None, bucket: str, key: str, data: bytes) -> bytes:
    context = s3_context(bucket, key)
    plaintext_key, wrapped, arn = keys.generate(algorithm, key_id, context)
    header = orjson.dumps({"alg": algorithm, "keyArn": arn, "dataKey": base64.b64encode(wrapped).decode(),
                           "context": context}, option=orjson.OPT_SORT_KEYS)
    prefix = MAGIC + _LEN.pack(len(header)) + header
    nonce = os.urandom(12)
    return prefix + nonce + AESGCM(plaintext_key).encrypt(nonce, data, prefix)


def header(data: bytes) -> dict:
    """The envelope's header (unauthenticated until ``open_sealed`` checks it); IntegrityError if malformed."""
    if not is_sealed(data) or len(data) < len(MAGIC) + 4:
        raise IntegrityError("exported object: not an encrypted object")
    (n,) = _LEN.unpack_from(data, len(MAGIC))
    if n > MAX_HEADER or len(data) < len(MAGIC) + 4 + n + 12 + 16:
        raise IntegrityError("exported object: malformed envelope")
    try:
        doc = orjson.loads(data[len(MAGIC) + 4: len(MAGIC) + 4 + n])
        if not isinstance(doc, dict) or not isinstance(doc.get("context"), dict):
            raise ValueError
        base64.b64decode(doc["dataKey"], validate=True)
        str(doc["alg"]), str(doc["keyArn"])
    except (ValueError, KeyError, TypeError):
        raise IntegrityError("exported object: malformed envelope header") from None
    return doc


def open_sealed(keys: ObjectKeys, data: bytes) -> bytes:
    """The object's plaintext; IntegrityError when any byte was changed (the key service's own refusal of a
    changed wrapped key or context surfaces as its error)."""
    doc = header(data)
    n = _LEN.unpack_from(data, len(MAGIC))[0]
    prefix_len = len(MAGIC) + 4 + n
    plaintext_key = keys.unwrap(doc["alg"], doc["keyArn"], base64.b64decode(doc["dataKey"]), doc["context"])
    nonce = data[prefix_len:prefix_len + 12]
    try:
        return AESGCM(plaintext_key).decrypt(nonce, data[prefix_len + 12:], data[:prefix_len])
    except (InvalidTag, ValueError):
        raise IntegrityError("exported object failed authentication: changed or damaged") from None


def check_place(data: bytes, bucket: str | None, key: str) -> None:
    """An envelope must sit where it was sealed for: the key (and the bucket, when known) in its context."""
    arn = header(data)["context"].get("aws:s3:arn", "")
    want = f"arn:aws:s3:::{bucket}/{key}" if bucket is not None else None
    # without the bucket (a folder given to ``dynavault export decrypt``), the key is a path relative to some
    # folder of the bucket dir: the end of the sealed ARN, or the whole of it when the folder is the bucket dir
    in_place = arn == want if want is not None else (arn.endswith("/" + key) or arn == "arn:aws:s3:::" + key)
    if not in_place:
        raise IntegrityError(f"exported object {key} was sealed for another place ({arn})")
