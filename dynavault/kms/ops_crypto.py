"""Cryptographic operations: Encrypt, Decrypt, ReEncrypt, GenerateDataKey*, GenerateRandom.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from types import MappingProxyType

from dynavault.caller import Caller
from dynavault.errors import AWSError
from dynavault.kms import blob as blobfmt
from dynavault.kms import params as prm
from dynavault.kms.authz import hidden
from dynavault.kms.context import Handler, KmsContext
from dynavault.kms.model import CallInfo, KmsKey, Material

# -- cryptography --------------------------------------------------------------------------------------------

def _seal(ctx: KmsContext, key: KmsKey, plaintext: bytes, context: bytes) -> tuple[bytes, Material]:
    material = key.materials[-1]
    aead = ctx.ring.aead_for(key, material.index)
    if aead is None:
        raise AWSError("KMSInternalException", "The key material is unavailable.", 500)
    return blobfmt.seal(aead, key.key_id, material.index, plaintext, context), material


def _unseal(
    ctx: KmsContext,
    caller: Caller,
    ciphertext: bytes,
    context: dict,
    context_bytes: bytes,
    info: CallInfo,
    action: str,
    expected_key: object,
) -> tuple[KmsKey, bytes, Material]:
    try:
        header = blobfmt.parse_header(ciphertext)
    except blobfmt.BadBlob:
        raise AWSError("InvalidCiphertextException", "") from None
    key = ctx.ring.keys.get(header.key_id)
    if key is None and header.key_id not in ctx.ring.deleted:
        raise AWSError("InvalidCiphertextException", "")  # names no key we ever had: corrupted
    if key is None or key.region != caller.region or hidden(caller, key):
        raise AWSError(
            "AccessDeniedException",
            "The ciphertext refers to a customer master key that does not exist, "
            "does not exist in this region, "
            "or you are not allowed to access.",
        )
    info.touch(key)
    if expected_key is not None:
        wanted = ctx.authz.resolve(caller, expected_key, CallInfo(), "Decrypt")
        if wanted.key_id != key.key_id:
            raise AWSError(
                "IncorrectKeyException",
                "The key ID in the request does not identify a CMK that can perform this operation.",
            )
    ctx.authz.authorize(caller, key, action, context, context_bytes)
    prm.require_state(key)
    if header.material_index >= len(key.materials):
        raise AWSError("InvalidCiphertextException", "")
    aead = ctx.ring.aead_for(key, header.material_index)
    if aead is None:
        raise AWSError("InvalidCiphertextException", "")
    try:
        plaintext = blobfmt.open_blob(aead, ciphertext, context_bytes)
    except blobfmt.BadBlob:
        raise AWSError("InvalidCiphertextException", "") from None
    return key, plaintext, key.materials[header.material_index]


def encrypt(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    plaintext = prm.blob(params, "Plaintext")
    if not 1 <= len(plaintext) <= 4096:
        raise AWSError(
            "ValidationException",
            "1 validation error detected: Value at 'plaintext' failed to "
            "satisfy constraint: Member must have length "
            + ("less than or equal to 4096" if plaintext else "greater than or equal to 1"),
        )
    context, context_bytes = prm.context(params)
    key = ctx.authz.resolve(caller, params.get("KeyId"), info, "Encrypt")
    ctx.authz.authorize(caller, key, "Encrypt", context, context_bytes)
    prm.require_state(key)
    prm.require_symmetric(key, "Encrypt")
    algorithm = prm.algorithm(params)
    blob, _material = _seal(ctx, key, plaintext, context_bytes)
    return {
        "CiphertextBlob": base64.b64encode(blob).decode(),
        "KeyId": key.arn,
        "EncryptionAlgorithm": algorithm,
    }


def decrypt(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    ciphertext = prm.blob(params, "CiphertextBlob")
    if not 1 <= len(ciphertext) <= 6144:
        raise prm.validation(
            "ciphertextBlob",
            None if not ciphertext else "...",
            "Member must have length less than or equal to 6144"
            if ciphertext
            else "Member must have length greater than or equal to 1",
        )
    context, context_bytes = prm.context(params)
    algorithm = prm.algorithm(params)
    key, plaintext, material = _unseal(
        ctx, caller, ciphertext, context, context_bytes, info, "Decrypt", params.get("KeyId")
    )
    info.response_elements = {"keyMaterialId": material.material_id}
    return {
        "KeyId": key.arn,
        "Plaintext": base64.b64encode(plaintext).decode(),
        "EncryptionAlgorithm": algorithm,
        "KeyMaterialId": material.material_id,
    }


def re_encrypt(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    ciphertext = prm.blob(params, "CiphertextBlob")
    if params.get("DestinationKeyId") is None:
        raise prm.not_null("destinationKeyId")
    src_ctx, src_bytes = prm.context(params, "SourceEncryptionContext")
    dst_ctx, dst_bytes = prm.context(params, "DestinationEncryptionContext")
    src_alg = prm.algorithm(params, "SourceEncryptionAlgorithm")
    dst_alg = prm.algorithm(params, "DestinationEncryptionAlgorithm")
    src_key, plaintext, src_material = _unseal(
        ctx, caller, ciphertext, src_ctx, src_bytes, info, "ReEncryptFrom", params.get("SourceKeyId")
    )
    dst_key = ctx.authz.resolve(caller, params.get("DestinationKeyId"), info, "ReEncrypt", "destinationKeyId")
    ctx.authz.authorize(caller, dst_key, "ReEncryptTo", dst_ctx, dst_bytes)
    prm.require_state(dst_key)
    prm.require_symmetric(dst_key, "ReEncrypt")
    blob, dst_material = _seal(ctx, dst_key, plaintext, dst_bytes)
    return {
        "CiphertextBlob": base64.b64encode(blob).decode(),
        "SourceKeyId": src_key.arn,
        "KeyId": dst_key.arn,
        "SourceEncryptionAlgorithm": src_alg,
        "DestinationEncryptionAlgorithm": dst_alg,
        "SourceKeyMaterialId": src_material.material_id,
        "DestinationKeyMaterialId": dst_material.material_id,
    }


def _data_key(
    ctx: KmsContext, caller: Caller, params: dict, info: CallInfo, op: str
) -> tuple[KmsKey, bytes, bytes, Material]:
    key_spec = params.get("KeySpec")
    number = prm.integer(params, "NumberOfBytes", 1, 1024)
    if key_spec is not None and key_spec not in ("AES_256", "AES_128"):
        raise prm.validation("keySpec", key_spec, "Member must satisfy enum value set: [AES_256, AES_128]")
    if (key_spec is None) == (number is None):
        raise AWSError("ValidationException", "Please specify either number of bytes or key spec.")
    size = number if number is not None else (32 if key_spec == "AES_256" else 16)
    context, context_bytes = prm.context(params)
    key = ctx.authz.resolve(caller, params.get("KeyId"), info, op)
    ctx.authz.authorize(caller, key, op, context, context_bytes)
    prm.require_state(key)
    prm.require_symmetric(key, op)
    plaintext = os.urandom(size)
    blob, material = _seal(ctx, key, plaintext, context_bytes)
    return key, plaintext, blob, material


def generate_data_key(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    key, plaintext, blob, material = _data_key(ctx, caller, params, info, "GenerateDataKey")
    material_id = material.material_id
    info.response_elements = {"keyMaterialId": material_id}
    return {
        "CiphertextBlob": base64.b64encode(blob).decode(),
        "Plaintext": base64.b64encode(plaintext).decode(),
        "KeyId": key.arn,
        "KeyMaterialId": material_id,
    }


def generate_data_key_without_plaintext(
    ctx: KmsContext, caller: Caller, params: dict, info: CallInfo
) -> dict:
    key, _plaintext, blob, material = _data_key(
        ctx, caller, params, info, "GenerateDataKeyWithoutPlaintext"
    )
    material_id = material.material_id
    info.response_elements = {"keyMaterialId": material_id}
    return {
        "CiphertextBlob": base64.b64encode(blob).decode(),
        "KeyId": key.arn,
        "KeyMaterialId": material_id,
    }


def generate_random(ctx: KmsContext, caller: Caller, params: dict, info: CallInfo) -> dict:
    if params.get("CustomKeyStoreId") is not None:
        raise AWSError("CustomKeyStoreNotFoundException", "Custom key stores are not supported.")
    number = prm.integer(params, "NumberOfBytes", 1, 1024)
    if number is None:
        raise AWSError("ValidationException", "Please specify the number of bytes.")
    return {"Plaintext": base64.b64encode(os.urandom(number)).decode()}


HANDLERS: Mapping[str, Handler] = MappingProxyType(
    {
        "Encrypt": encrypt,
        "Decrypt": decrypt,
        "ReEncrypt": re_encrypt,
        "GenerateDataKey": generate_data_key,
        "GenerateDataKeyWithoutPlaintext": generate_data_key_without_plaintext,
        "GenerateRandom": generate_random,
    }
)
