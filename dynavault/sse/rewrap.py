"""Re-wrap a table's data keys under a new table key (UpdateTable SSESpecification).

The old table key is unwrapped with KMS Decrypt, a new one comes from GenerateDataKey under the
new KMS key, and the SAME data keys (token, node epochs, stream) are wrapped again: no node blob
is ever rewritten (DESIGN.md invariant 6). Plaintext keys live only in local variables and in
``SwitchKeys``, whose repr shows no bytes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from .crypto import unwrap_data_key, wrap_data_key


@dataclass(slots=True)
class SwitchKeys:
    """Both plaintext table keys of a switch in progress; kept in memory only, never printed."""

    old: bytes = field(repr=False)
    new: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "SwitchKeys(<old>, <new>)"


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
