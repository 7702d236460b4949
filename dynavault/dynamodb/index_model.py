"""Secondary indexes as data: parsed definitions and the entry an item has in each index.

An item's entry lives in partition ``crypto.token(index_id, key tuple of the index partition key
attributes)`` at tree key ``key tuple of the index sort key attributes ‖ base table primary key`` (keyorder
encodings are self-delimiting, so the concatenation still sorts by index sort key first, and items that share
an index key coexist). The value is the projected item. Items missing any index key attribute are not indexed
(sparse). Pure functions: the item store writes the entries, ``indexes.py`` validates and changes definitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from dynavault.errors import validation

from .keyorder import encode_key_value
from .values import decode_binary

if TYPE_CHECKING:
    from .catalog import TableMeta

_INVALID = "One or more parameter values were invalid: "
# DynamoDB's key size limits hold in every index too: a partition key value up to 2048 bytes, a sort key value
# up to 1024 (the base table's own limits, checked with its key in keys.py).
_MAX_BYTES = (2048, 1024)


@dataclass(frozen=True)
class IndexDef:
    """A parsed index definition (the catalog keeps the dict)."""

    name: str
    kind: str  # "lsi" | "gsi"
    index_id: int
    hash: tuple[tuple[str, str], ...]
    range: tuple[tuple[str, str], ...]
    projection: str
    non_key: frozenset[str]
    status: str
    backfilling: bool

    @property
    def key_names(self) -> list[str]:
        return [n for n, _ in self.hash] + [n for n, _ in self.range]

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"

    def projected_names(self, meta: TableMeta) -> frozenset[str] | None:
        """Top-level attributes the index holds (None: all of them)."""
        if self.projection == "ALL":
            return None
        # worked out once per table key (every write asks): derived from the fields, so outside them
        cached = self.__dict__.get("_projected")
        if cached is not None and cached[0] == meta.key_names:
            return cached[1]
        names = set(meta.key_names) | set(self.key_names)
        if self.projection == "INCLUDE":
            names |= self.non_key
        frozen = frozenset(names)
        object.__setattr__(self, "_projected", (frozenset(meta.key_names), frozen))
        return frozen


def parse_index(d: dict, kind: str, types: dict[str, str]) -> IndexDef:
    ks = d["KeySchema"]
    proj = d.get("Projection") or {}
    return IndexDef(
        name=d["IndexName"],
        kind=kind,
        index_id=int(d["IndexId"]),
        hash=tuple((k["AttributeName"], types[k["AttributeName"]]) for k in ks if k["KeyType"] == "HASH"),
        range=tuple((k["AttributeName"], types[k["AttributeName"]]) for k in ks if k["KeyType"] == "RANGE"),
        projection=proj.get("ProjectionType", "ALL"),
        non_key=frozenset(proj.get("NonKeyAttributes") or ()),
        status=d.get("IndexStatus", "ACTIVE"),
        backfilling=bool(d.get("Backfilling", False)),
    )


def index_defs(meta: TableMeta) -> list[IndexDef]:
    """All indexes of a table (LSIs first), parsed once per catalog state.

    The parsed list is kept on the table's own catalog entry (derived data, like its key names), not in a
    module-wide cache: it lives and dies with the store's catalog. The signature still guards it, as a
    definition list may be changed in place."""
    if not meta.local_indexes and not meta.global_indexes:
        return []
    sig = orjson.dumps([meta.local_indexes, meta.global_indexes, meta.attribute_definitions])
    cached = meta.parsed_indexes
    if cached is not None and cached[0] == sig:
        return cached[1]
    types = meta.attribute_types
    hit = [parse_index(d, "lsi", types) for d in meta.local_indexes]
    hit += [parse_index(d, "gsi", types) for d in meta.global_indexes]
    meta.parsed_indexes = (sig, hit)  # one tuple, swapped whole: a reader on another thread sees old or new
    return hit


def find_index(meta: TableMeta, name: str) -> IndexDef | None:
    for idx in index_defs(meta):
        if idx.name == name and idx.status != "DELETING":
            return idx
    return None


def stats_id(meta: TableMeta, index_id: int) -> str:
    return f"{meta.table_id}#{index_id}"


# -- entries --------------------------------------------------------------------------------------
def scalar(type_: str, value: dict) -> str | bytes:
    raw = value[type_]
    return decode_binary(raw) if type_ == "B" else raw


def encode_attr(type_: str, value: dict) -> bytes:
    return encode_key_value(type_, scalar(type_, value))


def base_key_bytes(meta: TableMeta, item: dict) -> bytes:
    """The base table primary key as a key tuple (the tie-breaker inside index trees)."""
    out = encode_attr(meta.hash_type, item[meta.hash_key])
    if meta.range_key:
        out += encode_attr(meta.range_type, item[meta.range_key])
    return out


def _key_parts(idx: IndexDef, item: dict, check: bool) -> tuple[bytes, bytes] | None:
    """(encoded partition tuple, encoded sort tuple), or None when the item is not in this (sparse) index."""
    parts = []
    for group, limit in zip((idx.hash, idx.range), _MAX_BYTES, strict=True):
        enc = b""
        for name, t in group:
            v = item.get(name)
            if v is None:
                return None
            actual = next(iter(v))
            if actual != t:
                if check:
                    raise validation(f"{_INVALID}Type mismatch for Index Key {name} Expected: {t} Actual: {actual} "
                                     f"IndexName: {idx.name}")
                return None
            if t in ("S", "B") and not v[t]:
                if check:
                    kind = "string" if t == "S" else "binary"
                    raise validation("One or more parameter values are not valid. A value specified for a secondary "
                                     "index key is not supported. The AttributeValue for a key attribute cannot "
                                     f"contain an empty {kind} value. IndexName: {idx.name}, IndexKey: {name}")
                return None
            size = _key_size(t, v)
            if size > limit:
                if check:
                    # DynamoDB's text for an index key over its limit (recorded from AWS answers for partition
                    # keys; the sort key answer is assumed to take the same form with its own limit).
                    raise validation(f"{_INVALID}Size limit exceeded for Index Key {name} Actual Size: {size} bytes "
                                     f"Max Size: {limit} bytes IndexName: {idx.name}")
                return None  # a backfill skips the item, as DynamoDB leaves index key violations out of the index
            enc += encode_attr(t, v)
        parts.append(enc)
    return parts[0], parts[1]


def _key_size(type_: str, value: dict) -> int:
    raw = value[type_]
    if type_ == "S":
        return len(raw.encode())
    if type_ == "B":
        return len(decode_binary(raw))
    return len(raw)  # a number: at most 38 digits, never near a limit


def project_entry(idx: IndexDef, meta: TableMeta, item: dict) -> dict:
    return _project(idx.projected_names(meta), item)


def _project(names: frozenset[str] | None, item: dict) -> dict:
    if names is None:
        return item
    return {k: v for k, v in item.items() if k in names}


def entry_for(idx: IndexDef, meta: TableMeta, crypto, item: dict | None, *, check: bool = False):
    """(token, tree key, projected item) of an item's entry in one index, or None."""
    if item is None:
        return None
    parts = _key_parts(idx, item, check)
    if parts is None:
        return None
    token = crypto.token(idx.index_id, parts[0])
    return token, parts[1] + base_key_bytes(meta, item), project_entry(idx, meta, item)


def change_entries(idx: IndexDef, meta: TableMeta, crypto, old: dict | None, new: dict | None, base: bytes = b""):
    """(old entry, new entry) of one item change in one index, as ``entry_for`` makes them (the new item's
    index keys checked). Old and new share their primary key (``base``: its key tuple, when the caller has it),
    and mostly their index key values: then the old entry's key is the new one's (one encoding, one HMAC)."""
    np = _key_parts(idx, new, True) if new is not None else None
    if old is None:
        op = None
    elif np is not None and _same_index_key(idx, old, new):
        op = np  # the same values encode the same, and they passed the new item's checks
    else:
        op = _key_parts(idx, old, False)
    if np is None and op is None:
        return None, None
    if not base:
        base = base_key_bytes(meta, new if new is not None else old)
    names = idx.projected_names(meta)
    n = o = None
    if np is not None:
        token = crypto.token(idx.index_id, np[0])
        n = (token, np[1] + base, _project(names, new))
    if op is not None:
        if np is None or op[0] != np[0]:
            token = crypto.token(idx.index_id, op[0])
        o = (token, n[1] if op is np else op[1] + base, _project(names, old))
    return o, n


def _same_index_key(idx: IndexDef, old: dict, new: dict) -> bool:
    for name, _ in idx.hash:
        if old.get(name) != new[name]:
            return False
    for name, _ in idx.range:
        if old.get(name) != new[name]:
            return False
    return True


def entry_write_units(size: int) -> float:
    return float(max(1, -(-size // 1024)))
