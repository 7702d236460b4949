"""The stored form of an item (a base item or an index entry) inside a sealed tree node.

    version 1:  01 ‖ metadata length (u32 BE) ‖ metadata (JSON object, may be empty) ‖ item JSON

The metadata is room for what a later feature keeps beside an item (TTL bookkeeping, a replication
clock) without changing the item's own bytes, so GetItem can still hand the item JSON to the response
unparsed. Version 0 — what releases before the envelope wrote — is the bare item JSON, recognised by its
first byte ``{``; it stays readable, is rewritten as version 1 by the next write of that item, and
``dynavault upgrade`` rewrites the rest (``ItemStore`` never writes it).
"""

from __future__ import annotations

import orjson

from dynavault.errors import IntegrityError

VERSION = 1
_V1 = b"\x01"
_V1_EMPTY = b"\x01\x00\x00\x00\x00"
_LEGACY = 0x7B  # "{": a version-0 value is an item's JSON object


def seal_item(item_json: bytes, metadata: dict | None = None) -> bytes:
    """The stored value of an item given as canonical JSON (plus optional metadata)."""
    if not metadata:
        return _V1_EMPTY + item_json
    m = orjson.dumps(metadata)
    return _V1 + len(m).to_bytes(4, "big") + m + item_json


def item_json(raw: bytes) -> bytes:
    """The item's JSON inside a stored value."""
    head = raw[0] if raw else -1
    if head == 1:
        if raw[1:5] == b"\x00\x00\x00\x00":
            return raw[5:]
        return raw[5 + int.from_bytes(raw[1:5], "big"):]
    if head == _LEGACY:
        return raw
    raise IntegrityError("stored item has an unknown format")


def open_item(raw: bytes) -> dict:
    return orjson.loads(item_json(raw))


def metadata(raw: bytes) -> dict:
    """The metadata kept beside an item ({} for none, and for version 0)."""
    if raw[:1] == _V1:
        n = int.from_bytes(raw[1:5], "big")
        return orjson.loads(raw[5:5 + n]) if n else {}
    item_json(raw)  # raises for an unknown format
    return {}


def version(raw: bytes) -> int:
    if raw[:1] == _V1:
        return VERSION
    if raw[:1] == b"{":
        return 0
    raise IntegrityError("stored item has an unknown format")
