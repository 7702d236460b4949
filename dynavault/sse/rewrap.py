"""Re-wrap a table's data keys under a new table key (UpdateTable SSESpecification).

The old table key is unwrapped with KMS Decrypt, a new one comes from GenerateDataKey under the
new KMS key, and the SAME data keys (token, node epochs, stream) are wrapped again: no node blob
is ever rewritten (DESIGN.md invariant 6). Plaintext keys live only in local variables and in
``SwitchKeys``, whose repr shows no bytes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from dynavault.caller import Caller
from dynavault.errors import AWSError

from .crypto import unwrap_data_key, wrap_data_key
from .kms_errors import wrap_kms_error
from .table_keys import OWNED, TableKeyService, encryption_context, service_principal


@dataclass(slots=True)
class SwitchKeys:
    """Both plaintext table keys of a switch in progress; kept in memory only, never printed."""

    old: bytes = field(repr=False)
    new: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "SwitchKeys(<old>, <new>)"


def kms_call(keys: TableKeyService, caller: Caller, op: str, params: dict, *, wrap: bool = True) -> dict:
    """One KMS call as the database makes it: counted in metrics, failures in DynamoDB's words (§1.4)."""
    try:
        result = keys.kms.invoke(caller, op, params)
    except AWSError as err:
        if keys.metrics is not None:
            keys.metrics.kms_calls.labels(op, err.code).inc()
        if wrap:
            raise wrap_kms_error(err) from None
        raise
    if keys.metrics is not None:
        keys.metrics.kms_calls.labels(op, "ok").inc()
    return result


def decrypt_table_key(keys: TableKeyService, who: Caller, table_name: str, account: str, sse: dict,
                      *, wrap: bool = True) -> bytes:
    context = encryption_context(table_name, account)
    result = kms_call(keys, who, "Decrypt", {"CiphertextBlob": sse["table_key_blob"], "EncryptionContext": context},
                      wrap=wrap)
    return base64.b64decode(result["Plaintext"])


def table_key_user(keys: TableKeyService, caller: Caller, sse: dict) -> Caller:
    """Who decrypts a table key for a user's request: the owned key's account, else the user via DynamoDB."""
    if sse.get("mode") == OWNED:
        return keys.service_caller(keys.owned_account, caller.region)
    return caller.on_behalf(service_principal(caller.region))


def table_key_service(keys: TableKeyService, account: str, region: str, sse: dict) -> Caller:
    """Who decrypts a table key in the background: the database itself, through the table's grant."""
    if sse.get("mode") == OWNED:
        return keys.service_caller(keys.owned_account, region)
    return keys.service_caller(account, region)


def new_table_key(keys: TableKeyService, caller: Caller, table_name: str, mode: str,
                  key_arn: str) -> tuple[dict, bytes]:
    """A grant (unless owned) and a fresh table key under ``key_arn``: (record without data keys, plaintext)."""
    return keys.new_table_key(caller, table_name, mode, key_arn)


def rewrap_data_keys(old_key: bytes, new_key: bytes, table_id: bytes, data_keys: dict) -> dict:
    """The same data keys, wrapped by ``new_key``; every other field (epoch, seal counts) copied as is."""

    def again(purpose: str, wrapped: str, epoch: int = 0) -> str:
        raw = unwrap_data_key(old_key, table_id, purpose, epoch, base64.b64decode(wrapped))
        return base64.b64encode(wrap_data_key(new_key, table_id, purpose, epoch, raw)).decode()

    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data_keys.items()}
    out["token"] = again("token", data_keys["token"])
    out["stream"] = again("stream", data_keys["stream"])
    out["node"] = {e: again("node", w, int(e)) for e, w in data_keys["node"].items()}
    return out
